"""Backend selection: the registry, backend=, set_backend, use_backend, FASTCONV_BACKEND, set_num_threads."""
import contextlib
import glob
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastconv as fc
import fastconv.backends as B

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def restore_registry_state(monkeypatch):
    """set_backend / set_num_threads change process-wide state: put it back after each test."""
    monkeypatch.setattr(B, "_default", B._default)
    threads = B._num_threads
    yield
    if threads is not None:
        fc.set_num_threads(threads)
    else:
        fc.set_num_threads(os.cpu_count() or 1)  # tell loaded modules, then forget the explicit setting
        B._num_threads = None


def _run(code, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("FASTCONV_")}
    full.update(env)
    full["PYTHONPATH"] = REPO + os.pathsep + full.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120)


def test_available_backends_lists_numpy():
    names = fc.available_backends()
    assert "numpy" in names
    assert set(names) <= {"cpp", "numba", "numpy"}
    assert names == [n for n in ("cpp", "numba", "numpy") if n in names]  # fastest first


def test_cpp_listed_when_built():
    if not glob.glob(os.path.join(REPO, "fastconv", "_cpp*")):
        pytest.skip("the C++ extension is not built in this tree")
    assert "cpp" in fc.available_backends(), B.unavailable_reasons().get("cpp")


def test_unavailable_backend_raises_runtime_error_naming_it():
    missing = [n for n in ("cpp", "numba") if n not in fc.available_backends()]
    if not missing:
        pytest.skip("every backend is available")
    with pytest.raises(RuntimeError, match=f"backend '{missing[0]}' is not available"):
        fc.conv2d(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 1, 1)), backend=missing[0])
    with pytest.raises(RuntimeError, match=f"backend '{missing[0]}'"):
        fc.set_backend(missing[0])


def test_backend_keyword_selects_module(any_backend, monkeypatch):
    calls = []
    mod = B.load(any_backend)
    real = mod.conv2d
    monkeypatch.setattr(mod, "conv2d", lambda *a, **kw: calls.append(any_backend) or real(*a, **kw))
    fc.set_backend("numpy")
    x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(fc.conv2d(x, w, backend=any_backend), np.full((1, 1, 2, 2), 4.0))
    assert calls == [any_backend]


def test_set_backend_changes_default(any_backend):
    fc.set_backend(any_backend)
    assert fc.get_backend() == any_backend
    fc.set_backend("numpy")
    assert fc.get_backend() == "numpy"


def test_set_backend_unknown_name():
    with pytest.raises(ValueError, match=r"^backend: expected one of"):
        fc.set_backend("tpu")
    with pytest.raises(ValueError, match=r"^backend: expected one of"):
        with fc.use_backend("tpu"):
            pass


def test_use_backend_restores(any_backend):
    fc.set_backend("numpy")
    with fc.use_backend(any_backend):
        assert fc.get_backend() == any_backend
        with fc.use_backend("numpy"):
            assert fc.get_backend() == "numpy"
        assert fc.get_backend() == any_backend
    assert fc.get_backend() == "numpy"
    with pytest.raises(KeyError):
        with fc.use_backend(any_backend):
            raise KeyError("boom")
    assert fc.get_backend() == "numpy"


def test_use_backend_and_use_kernel_are_per_thread():
    """An override active in one thread is not seen by another, which keeps the defaults; none stays active."""
    from fastconv.backends import kernels
    default = fc.available_backends()[0]
    fc.set_backend(default)
    other = "numpy" if default != "numpy" else default
    seen = []
    with fc.use_backend(other):
        with kernels.use_kernel("conv2d__packed_gemm") if default == "cpp" else contextlib.nullcontext():
            t = threading.Thread(target=lambda: seen.append((fc.get_backend(), kernels.forced("conv2d"))))
            t.start()
            t.join()
            assert fc.get_backend() == other
            assert kernels.forced("conv2d") == ("conv2d__packed_gemm" if default == "cpp" else "")
    assert seen == [(default, "")]
    assert B._state._active == 0 and kernels._state._active == 0


def test_use_backend_routes_ops(any_backend, monkeypatch):
    mod = B.load(any_backend)
    calls = []
    real = mod.max_pool2d
    monkeypatch.setattr(mod, "max_pool2d", lambda *a: calls.append(1) or real(*a))
    fc.set_backend("numpy")
    with fc.use_backend(any_backend):
        fc.max_pool2d(np.zeros((1, 1, 2, 2)), 2)
    assert calls == [1]


def test_env_var_selects_backend():
    r = _run("import fastconv as fc; print(fc.get_backend())", FASTCONV_BACKEND="numpy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "numpy"


def test_env_var_unknown_backend():
    r = _run("import fastconv as fc; fc.get_backend()", FASTCONV_BACKEND="gpu")
    assert r.returncode != 0
    assert "backend: expected one of" in r.stderr and "'gpu'" in r.stderr


def test_default_is_fastest_available():
    r = _run("import fastconv as fc; print(fc.get_backend(), fc.available_backends()[0])")
    assert r.returncode == 0, r.stderr
    default, fastest = r.stdout.split()
    assert default == fastest


def test_env_var_num_threads():
    r = _run("import fastconv as fc; print(fc.get_num_threads())", FASTCONV_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_set_num_threads():
    fc.set_num_threads(1)
    assert fc.get_num_threads() == 1
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    for name in fc.available_backends():
        np.testing.assert_array_equal(fc.conv2d(x, w, backend=name), np.full((1, 3, 3, 3), 18.0))
    fc.set_num_threads(2)
    assert fc.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_set_num_threads_rejects(bad):
    with pytest.raises(ValueError, match=r"^n: expected an int from 1 to 4096"):
        fc.set_num_threads(bad)


DENSE_AND_POOL_OPS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad", "max_pool2d", "max_unpool2d")


def test_backends_share_the_function_table():
    assert set(DENSE_AND_POOL_OPS) <= set(B.OPS)
    for name in fc.available_backends():
        mod = B.load(name)
        missing = [op for op in DENSE_AND_POOL_OPS if not callable(getattr(mod, op, None))]
        assert not missing, f"backend {name!r} lacks {missing}"


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI promises a built extension")
def test_ci_runs_the_compiled_backends():
    """In CI the installed package must carry its C++ kernels, so the suite exercises them (not only numpy)."""
    assert "cpp" in fc.available_backends(), fc.backends.unavailable_reasons()
    assert "numba" in fc.available_backends(), fc.backends.unavailable_reasons()
