"""Hostile arguments never crash, hang or give a silently wrong result: extreme strides, paddings, dilations
and kernels (each case in a subprocess, where a crash would only fail the test), pool windows far larger
than the input, the thread bound's range, and kernels called in children of fork() after a multi-threaded
call in the parent."""
import os
import textwrap

import numpy as np
import pytest

import fastconv as fc
from _helpers import assert_close, run_python

BIG = [2**30, 2**61, 2**62, 2**63 - 1]

# (call, the argument a ValueError must name — None: the call must equal the reference), and where the
# reference cannot allocate the padded input, a call of the same windows on a small one to compare with.
EXTREME = [
    ("fc.conv2d_weight_grad(x, np.ones((2, 4, 1, 1)), (4, 3, 3, 2), stride=2**30)", None),
    ("fc.conv2d_weight_grad(x, np.ones((2, 4, 1, 1)), (4, 3, 3, 2), stride=2**29, padding=1)", "padding|None"),
    ("fc.conv2d(x, np.ones((4, 3, 3, 3)), stride=(2**62, 1))", None),
    ("fc.conv2d(x, np.ones((3, 1, 3, 3)), groups=3, stride=2**62, padding=2**61)", "padding"),
    ("fc.conv2d_input_grad(np.ones((2, 3, 1, 1)), np.ones((3, 1, 3, 3)), x.shape, groups=3, stride=2**62)", None),
    ("fc.conv2d(x, np.ones((4, 3, 3, 3)), dilation=2**61)", "weight"),
    ("fc.conv2d(x, np.ones((4, 3, 3, 3)), dilation=2**61, padding=2**62)", "padding"),
    ("fc.conv2d(x, np.ones((4, 3, 3, 3)), padding=((2**63 - 1, 0), (0, 0)))", "padding"),
    ("fc.conv2d(x, np.ones((4, 3, 3, 3)), stride=2**63)", "stride"),
    ("fc.conv2d(x, np.ones((4, 3, 3, 3)), stride=-2**63)", "stride"),
    ("fc.tiled_conv2d(x, np.ones((2, 2, 4, 3, 3, 3)), stride=2**62)", None),
    ("fc.unshared_conv2d(x, np.ones((1, 1, 4, 3, 3, 3)), stride=2**62)", None),
    ("fc.max_pool2d(x, (1, 2**28), 1, (0, 2**27))", None, "fc.max_pool2d(x, (1, 18), 1, (0, 9))"),
    ("fc.max_pool2d(x, 2**40, 2**62, 2**39)", "padding"),
    ("fc.max_pool2d(x, 2**20, 2**62, 2**19)", None, "fc.max_pool2d(x, (14, 18), 100, (7, 9))"),
    ("fc.max_pool2d(x, 2**62, 1, 2**61)", "padding"),
]

SCRIPT = """
import sys, numpy as np, fastconv as fc
x = np.linspace(-1, 1, 2 * 3 * 7 * 9).reshape(2, 3, 7, 9)
for i, (call, reference) in enumerate({cases!r}):
    print(i, end=" ", flush=True)
    try:
        got = eval(call)
    except ValueError as e:
        print("ValueError", e, flush=True)
        continue
    with fc.use_backend("numpy"):
        want = eval(reference)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    print("equal", flush=True)
"""


@pytest.mark.parametrize("backend", [b for b in fc.available_backends() if b != "numpy"] or ["numpy"])
def test_extreme_geometry_is_a_result_or_a_named_error(backend):
    """All cases in one subprocess per backend (a crash fails the test and the output names the case)."""
    cases = [(c[0], (c + (c[0],))[2]) for c in EXTREME]
    r = run_python("-c", SCRIPT.format(cases=cases), env=dict(os.environ, FASTCONV_BACKEND=backend), timeout=300)
    lines = r.stdout.splitlines()
    assert r.returncode == 0, f"case {lines[-1] if lines else 0} crashed or failed (rc {r.returncode}): {r.stderr[-1500:]}"
    assert len(lines) == len(EXTREME)
    for line, (call, names, *_) in zip(lines, EXTREME):
        outcome = line.split(" ", 1)[1]
        if names is None:
            assert outcome == "equal", (call, outcome)
        elif outcome != "equal" or "None" not in names:
            assert any(outcome.startswith(f"ValueError {n}:") for n in names.split("|")), (call, outcome)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_windows_larger_than_the_input_are_clipped(backend, dtype, rng):
    x = rng.standard_normal((2, 3, 7, 9)).astype(dtype)
    for k, s, p, ceil in [((20, 3), 1, (10, 1), False), ((9, 30), (2, 1), (4, 15), True), ((7, 9), 5, 0, False)]:
        y, sw = fc.max_pool2d(x, k, s, p, ceil_mode=ceil, backend=backend)
        y_ref, sw_ref = fc.max_pool2d(x, k, s, p, ceil_mode=ceil, backend="numpy")
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(sw, sw_ref)


def test_thread_bound_and_integer_range():
    for bad in (0, -1, 4097, 2**31, 2.0, True):
        with pytest.raises(ValueError, match="n: expected an int from 1 to 4096"):
            fc.set_num_threads(bad)
    with pytest.raises(ValueError, match="dilation: .* does not fit in a 64-bit integer"):
        fc.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1)), dilation=np.uint64(2**64 - 1))


def test_empty_tile_grid_is_refused_on_every_backend():
    for be in fc.available_backends():
        with pytest.raises(ValueError, match=r"weight: expected a kernel grid of at least 1 x 1"):
            fc.tiled_conv2d(np.ones((1, 1, 4, 4)), np.zeros((1, 0, 1, 1, 3, 3)), backend=be)


FORK = textwrap.dedent("""
    import multiprocessing as mp, numpy as np, fastconv as fc
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((8, 16, 32, 32)), rng.standard_normal((16, 16, 3, 3))
    fc.set_num_threads(2)
    y = fc.conv2d(x, w, padding=1)           # the parent's OpenMP threads now exist
    p, sw = fc.max_pool2d(y, 2)

    def child(i):
        fc.set_num_threads(2)                # asked for, but a forked child runs on one thread
        d = np.abs(fc.conv2d(x, w, padding=1) - y).max()
        return float(d + np.abs(fc.max_pool2d(y, 2)[0] - p).max())

    if __name__ == "__main__":
        with mp.get_context("fork").Pool(2) as pool:
            print(pool.map(child, range(4)))
""")


@pytest.mark.skipif("cpp" not in fc.available_backends(), reason="the cpp backend is not built")
def test_fork_after_a_multithreaded_call(tmp_path):
    script = tmp_path / "fork_check.py"
    script.write_text(FORK)
    r = run_python(str(script), env=dict(os.environ, FASTCONV_BACKEND="cpp"))
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.strip() == "[0.0, 0.0, 0.0, 0.0]"


CABI = """
import numpy as np, fastconv as fc
from fastconv import cabi
lib, ffi = cabi.load()
x = np.linspace(-1, 1, 2 * 3 * 7 * 9).reshape(2, 3, 7, 9)
w = np.ones((4, 3, 3, 3))
f = lambda a: ffi.cast("double *", a.ctypes.data)
def conv(sh, sw, ph, pw, dh, dw, H_out, W_out):
    y = np.zeros((2, 4, max(H_out, 1), max(W_out, 1)))
    p = ffi.new("fc_conv_params *", [2, 3, 7, 9, 4, 3, 3, H_out, W_out, sh, sw, ph, pw, dh, dw, 1])
    rc = lib.fc_conv2d_f64(p, f(x), f(w), ffi.NULL, f(y))
    return rc, ffi.string(lib.fc_last_error()).decode(), y
big = 2**63 - 1
for args in [(2**62, 1, 0, 0, 1, 1, 1, 7), (1, 1, 0, big, 1, 1, 5, 1), (2**62, 2**62, 2**61, 2**61, 1, 1, 1, 1),
             (1, 1, 0, 0, 2**61, 1, 5, 7), (1, 1, 2**62, 0, 2**61, 1, 5, 7), (big, big, big, big, big, big, 1, 1)]:
    rc, msg, y = conv(*args)
    if rc == lib.FC_OK:
        ref = fc.conv2d(x, w, stride=args[:2], padding=args[2:4], dilation=args[4:6], backend="numpy")[:, :, :args[6], :args[7]]
        np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
        print("equal")
    else:
        print(rc, msg)
print(lib.fc_conv_output_size(7, big, big, 3, 1, 1), lib.fc_conv_output_size(7, 0, 0, 3, 2**62, 2**61))
pool = ffi.new("fc_pool_params *", [2, 3, 7, 9, 7, 10, 1, 2**28, 1, 1, 0, 2**27])
y, sw = np.zeros((2, 3, 7, 10)), np.zeros((2, 3, 7, 10), np.int64)
rc = lib.fc_max_pool2d_f64(pool, f(x), f(y), ffi.cast("int64_t *", sw.ctypes.data))
ref, ref_sw = fc.max_pool2d(x, (1, 18), 1, (0, 9), backend="numpy")
print(rc, bool((y == ref).all() and (sw == ref_sw).all()))
"""


@pytest.mark.skipif("cpp" not in fc.available_backends(), reason="the C ABI library is not built")
def test_c_abi_refuses_or_computes_extreme_geometry():
    """The C ABI's own checks (it is called without Python): 128-bit geometry, the padded-size bound, the
    one-output stride and the clipped pool window; each case returns FC_OK with the reference's result
    or FC_EINVAL with a message, in a subprocess where a crash would only fail the test."""
    pytest.importorskip("cffi")
    r = run_python("-c", CABI)
    assert r.returncode == 0, r.stderr[-1500:]
    lines = r.stdout.splitlines()
    assert lines[0] == "equal"                                       # stride 2**62 along an axis of one output
    assert lines[1].startswith("1 fc_conv2d_f64: ") and "2**48" in lines[1]  # pad 2**63 - 1
    assert lines[2].startswith("1 ") and "2**48" in lines[2]
    assert lines[3].startswith("1 ") and "H_out = 5 must lie in [1, 0]" in lines[3]  # dilated kernel too large
    assert lines[4].startswith("1 ") and "2**48" in lines[4]
    assert lines[5].startswith("1 ")
    assert lines[6] == "0 0"
    assert lines[7] == "0 True"


def test_unpickled_arrays_reach_the_kernels(backend, rng):
    """An array that went through pickle (a Dask or multiprocessing worker's) has an equal but distinct
    dtype object: the kernels take it like any other."""
    import pickle
    x, w = pickle.loads(pickle.dumps((rng.standard_normal((2, 3, 8, 8)).astype(np.float32),
                                      rng.standard_normal((4, 3, 3, 3)).astype(np.float32))))
    assert_close(fc.conv2d(x, w, padding=1, backend=backend), fc.conv2d(x, w, padding=1, backend="numpy"), np.float32)
    y, sw = fc.max_pool2d(x, 2, backend=backend)
    np.testing.assert_array_equal(y, fc.max_pool2d(x, 2, backend="numpy")[0])


SCRATCH = """
import resource, sys, threading, numpy as np, fastconv as fc
rng = np.random.default_rng(0)
x, dy = rng.standard_normal((8, 256, 28, 28)), rng.standard_normal((8, 256, 28, 28))
with fc.use_kernel("conv2d_weight_grad__winograd_f4x3"):   # float64 partial sums: over 32 MiB of scratch
    want = fc.conv2d_weight_grad(x, dy, (256, 256, 3, 3), padding=1)
    got = [None] * 3
    def run(i):
        with fc.use_kernel("conv2d_weight_grad__winograd_f4x3"):
            got[i] = fc.conv2d_weight_grad(x, dy, (256, 256, 3, 3), padding=1)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]   # the cache's busy path too
    [t.start() for t in threads], [t.join() for t in threads]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    again = fc.conv2d_weight_grad(x, dy, (256, 256, 3, 3), padding=1)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(all(np.array_equal(g, want) for g in got + [again]), faults)
"""


@pytest.mark.skipif("cpp" not in fc.available_backends(), reason="the cpp backend is not built")
def test_large_scratch_is_kept_for_the_next_call_and_shared_safely_by_threads():
    """Scratch over glibc's mmap threshold comes back from the cache instead of faulting in afresh;
    calls from several Python threads at once get distinct blocks (equal results); the cache can be off."""
    results = {}
    for cache in ("1", "0"):
        r = run_python("-c", SCRATCH, env=dict(os.environ, FASTCONV_SCRATCH_CACHE=cache, FASTCONV_NUM_THREADS="2"))
        assert r.returncode == 0, r.stderr[-1500:]
        equal, faults = r.stdout.split()
        assert equal == "True"
        results[cache] = int(faults)
    partials = 2 * 36 * 256 * 256 * 8   # two (of the several) slices' transformed dw partial sums, float64
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):   # ASan's allocator keeps freed blocks itself
        assert results["0"] > partials // 4096 and results["0"] > 10 * results["1"], results
