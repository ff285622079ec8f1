"""Runtime ISA dispatch: the kernels are built once per ISA level and the best level the CPU runs is
loaded at import (FASTCONV_ISA caps it). Here: what is reported and chosen, the cap and its errors,
every level this CPU runs switched to in one process and checked against the reference, and the kernel
libraries' exports. (.ci/run also runs the whole kernel suite once per level, and the baseline under
an emulated CPU without AVX.)"""
import contextlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastconv as fc
from _helpers import assert_close, num_threads, randn, run_python as python
from shapes import CONV_ARGS, CONV_CASES, DTYPES, POOL_CASES

if "cpp" not in fc.available_backends():
    pytest.skip("the cpp backend is not built", allow_module_level=True)
from fastconv import _cpp  # noqa: E402

LEVELS = _cpp.isa_levels()
SUPPORTED = _cpp.supported_isas()
PKG = os.path.dirname(fc.__file__)


@contextlib.contextmanager
def active_isa(isa):
    before = _cpp.isa()
    _cpp._use_isa(isa)
    try:
        yield
    finally:
        _cpp._use_isa(before)


def run_python(code, **env):
    full = {k: v for k, v in os.environ.items() if k != "FASTCONV_ISA"}
    full.update(env)
    return python("-c", code, env=full)


def test_reports_the_best_supported_level_or_the_cap():
    assert SUPPORTED and SUPPORTED[0] == LEVELS[0], "the baseline level runs everywhere"
    assert set(SUPPORTED) <= set(LEVELS)
    cap = os.environ.get("FASTCONV_ISA")
    expected = SUPPORTED[-1] if not cap else [lvl for lvl in SUPPORTED if LEVELS.index(lvl) <= LEVELS.index(cap)][-1]
    assert fc.isa() == _cpp.isa() == expected
    assert f"isa={expected}" in _cpp.build_info()


@pytest.mark.parametrize("cap", LEVELS)
def test_fastconv_isa_caps_the_level(cap):
    expected = [lvl for lvl in SUPPORTED if LEVELS.index(lvl) <= LEVELS.index(cap)][-1]
    code = ("import fastconv as fc; from fastconv import cabi; lib, ffi = cabi.load(); "
            "print(fc.isa(), ffi.string(lib.fc_isa()).decode())")
    r = run_python(code, FASTCONV_ISA=cap)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [expected, expected]


def test_bad_fastconv_isa_is_a_clear_error():
    r = run_python("import numpy as np, fastconv as fc; fc.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)))",
                   FASTCONV_ISA="avx9000")
    assert r.returncode != 0
    assert "ValueError: FASTCONV_ISA=avx9000: expected one of " + ", ".join(LEVELS) in r.stderr
    r = run_python("from fastconv import cabi; lib, ffi = cabi.load(); assert lib.fc_isa() == ffi.NULL; "
                   "print(ffi.string(lib.fc_last_error()).decode())", FASTCONV_ISA="avx9000")
    assert r.returncode == 0, r.stderr
    assert "FASTCONV_ISA=avx9000" in r.stdout


def test_switching_levels_keeps_the_thread_bound():
    with num_threads(1):
        for isa in SUPPORTED:
            with active_isa(isa):
                assert _cpp.isa() == isa and _cpp.get_num_threads() == 1


def test_unsupported_level_is_refused():
    with pytest.raises(ValueError, match="not a level this CPU runs"):
        _cpp._use_isa("not-a-level")


def _conv_all(case, dtype, rng):
    x, w = randn(rng, case["x"], dtype), randn(rng, case["w"], dtype)
    kw = {k: case[k] for k in CONV_ARGS}
    y = fc.conv2d(x, w, **kw)
    dy = randn(rng, y.shape, dtype)
    return [(y, fc.conv2d(x, w, **kw, backend="numpy")),
            (fc.conv2d_input_grad(dy, w, x.shape, **kw), fc.conv2d_input_grad(dy, w, x.shape, **kw, backend="numpy")),
            (fc.conv2d_weight_grad(x, dy, w.shape, **kw),
             fc.conv2d_weight_grad(x, dy, w.shape, **kw, backend="numpy"))]


@pytest.mark.parametrize("isa", SUPPORTED)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_level_matches_the_reference(isa, dtype, rng):
    """The shared dense and pooling sweeps, a depthwise layer on rows of whole vectors, tiled and unshared
    convs, all run by the kernels of one level switched to in this process."""
    with active_isa(isa), fc.use_backend("cpp"):
        cases = CONV_CASES + [dict(id="dw-wide", x=(2, 3, 9, 32), w=(3, 1, 3, 3), stride=1, padding="same",
                                   dilation=1, groups=3)]
        for case in cases:
            for got, want in _conv_all(case, dtype, rng):
                assert_close(got, want, dtype)
        for case in POOL_CASES:
            x = randn(rng, case["x"], dtype)
            args = (case["kernel_size"], case["stride"], case["padding"])
            y, sw = fc.max_pool2d(x, *args, ceil_mode=case["ceil_mode"])
            y_ref, sw_ref = fc.max_pool2d(x, *args, ceil_mode=case["ceil_mode"], backend="numpy")
            np.testing.assert_array_equal(y, y_ref)
            np.testing.assert_array_equal(sw, sw_ref)
            np.testing.assert_array_equal(fc.max_unpool2d(y, sw, x.shape),
                                          fc.max_unpool2d(y, sw, x.shape, backend="numpy"))
        x = randn(rng, (2, 3, 9, 10), dtype)
        for op, w_shape in (("tiled_conv2d", (2, 3, 4, 3, 3, 3)), ("unshared_conv2d", (7, 8, 4, 3, 3, 3))):
            w = randn(rng, w_shape, dtype)
            y = getattr(fc, op)(x, w)
            assert_close(y, getattr(fc, op)(x, w, backend="numpy"), dtype)
            dy = randn(rng, y.shape, dtype)
            for sfx, args in (("_input_grad", (dy, w, x.shape)), ("_weight_grad", (x, dy, w.shape))):
                fn = getattr(fc, op + sfx)
                assert_close(fn(*args), fn(*args, backend="numpy"), dtype)


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
@pytest.mark.parametrize("isa", LEVELS)
def test_kernel_libraries_export_only_their_table(isa):
    """Nothing compiled for one level (standard-library templates included) may bind to another's."""
    lib = os.path.join(PKG, f"libfastconv_{isa}.so")
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True, text=True).stdout
    assert [line.split()[-1] for line in out.splitlines() if line.strip()] == ["fastconv_kernel_table"]


OLD_CPU_CHECK = """
import numpy as np, fastconv as fc
rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64):
    x, w = rng.standard_normal((2, 3, 11, 13)).astype(dtype), rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    np.testing.assert_allclose(fc.conv2d(x, w, padding=1), fc.conv2d(x, w, padding=1, backend="numpy"), 1e-4, 1e-4)
    y, sw = fc.max_pool2d(x, 3, 2, 1)
    y_ref, sw_ref = fc.max_pool2d(x, 3, 2, 1, backend="numpy")
    assert (y == y_ref).all() and (sw == sw_ref).all()
    assert (fc.max_unpool2d(y, sw, x.shape) == fc.max_unpool2d(y, sw, x.shape, backend="numpy")).all()
print(fc.isa())
"""


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or LEVELS[0] != "sse2",
                    reason="needs Debian's qemu-user on x86-64")
def test_no_illegal_instruction_on_a_cpu_without_avx(tmp_path):
    """Under qemu's Nehalem model (SSE4.2, no AVX) the package imports, picks sse2 and computes correctly:
    no code of a wider level is reached on the way (qemu stops the process at the first such instruction)."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(PKG))
    env.pop("FASTCONV_ISA", None)
    r = subprocess.run(["qemu-x86_64", "-cpu", "Nehalem", sys.executable, "-c", OLD_CPU_CHECK], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["sse2"]
