"""Backend registry: interchangeable modules with the same function table, chosen in one place.

A backend module defines the kernels named in OPS. Each receives validated, C-contiguous arrays of
one float dtype, a preallocated output it fills, and plain int pairs; it does math only. The one check
a kernel makes is max_unpool2d's: it returns how many switches lie outside the output plane (skipped,
never written through), because a separate range check would cost a pass over the switches as long as
the scatter. The dense conv kernels also take `algorithm` (keyword): the cpp backend keeps to it, the
others compute directly whatever it says. A backend whose import fails is simply unavailable.
"""
from __future__ import annotations

import contextlib
import importlib
import os

from ._overrides import Overrides

# Ordered fastest first: the default default is the first one that imports.
_MODULES = {
    "cpp": "fastconv.backends.cpp",
    "numba": "fastconv.backends.numba_cpu",
    "numpy": "fastconv.backends.reference",
}

OPS = (
    "conv2d", "conv2d_input_grad", "conv2d_weight_grad",
    "max_pool2d", "max_unpool2d",
    "tiled_conv2d", "tiled_conv2d_input_grad", "tiled_conv2d_weight_grad",
    "unshared_conv2d", "unshared_conv2d_input_grad", "unshared_conv2d_weight_grad",
    "batch_norm2d", "batch_norm2d_grad",
)

_loaded: dict = {}
_failed: dict = {}
_state = Overrides()
_default = None
_num_threads = None


def _check_name(name):
    if name not in _MODULES:
        raise ValueError(f"backend: expected one of {list(_MODULES)}, got {name!r}")


def load(name: str):
    """The backend module `name`; ValueError if unknown, RuntimeError if it cannot be imported here."""
    _check_name(name)
    if name in _loaded:
        return _loaded[name]
    if name in _failed:
        raise RuntimeError(f"backend {name!r} is not available: {_failed[name]}")
    try:
        mod = importlib.import_module(_MODULES[name])
    except ValueError:  # a configuration error (a bad FASTCONV_ISA), not a missing backend
        raise
    except Exception as e:  # any import failure just makes the backend unavailable
        _failed[name] = f"{type(e).__name__}: {e}"
        raise RuntimeError(f"backend {name!r} is not available: {_failed[name]}") from e
    if _num_threads is not None and hasattr(mod, "set_num_threads"):
        mod.set_num_threads(_num_threads)
    _loaded[name] = mod
    return mod


def available_backends() -> list:
    out = []
    for name in _MODULES:
        try:
            load(name)
            out.append(name)
        except RuntimeError:
            pass
    return out


def unavailable_reasons() -> dict:
    available_backends()
    return dict(_failed)


def get_backend() -> str:
    """The name of the current default backend."""
    override = _state.top("backend")
    if override is not None:
        return override
    global _default
    if _default is None:
        env = os.environ.get("FASTCONV_BACKEND")
        if env:
            _check_name(env)
            _default = env
        else:
            _default = available_backends()[0]
    return _default


def set_backend(name: str) -> None:
    global _default
    load(name)
    _default = name


@contextlib.contextmanager
def use_backend(name: str):
    """Temporarily make `name` the default backend (per thread)."""
    load(name)
    with _state.push("backend", name):
        yield


def resolve(backend=None):
    """The backend module for an op's `backend=` argument."""
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend: expected a name such as 'cpp', got {backend!r}")
    return load(backend or get_backend())


def isa():
    """The ISA level of the cpp kernels that run ('sse2', 'avx2', 'avx512' on x86-64, 'neon' on aarch64):
    the best the CPU supports, capped by FASTCONV_ISA. None when the cpp backend is unavailable."""
    try:
        return load("cpp").isa()
    except RuntimeError:
        return None


MAX_THREADS = 4096  # far above any machine's cores; the bound keeps it a C int everywhere


def set_num_threads(n: int) -> None:
    """Bound the threads of compiled kernels (every backend, loaded now or later): 1 <= n <= 4096."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_THREADS:
        raise ValueError(f"n: expected an int from 1 to {MAX_THREADS}, got {n!r}")
    _num_threads = n
    for mod in _loaded.values():
        if hasattr(mod, "set_num_threads"):
            mod.set_num_threads(n)


def get_num_threads() -> int:
    """The bound set by set_num_threads / FASTCONV_NUM_THREADS; unset, what the compiled kernels use
    (OpenMP's default: OMP_NUM_THREADS, as Dask sets it in its worker processes, or the core count)."""
    if _num_threads is not None:
        return _num_threads
    try:
        return load("cpp").get_num_threads()
    except RuntimeError:
        return os.cpu_count() or 1


if os.environ.get("FASTCONV_NUM_THREADS"):
    set_num_threads(int(os.environ["FASTCONV_NUM_THREADS"]))
