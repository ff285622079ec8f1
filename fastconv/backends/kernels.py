"""Which C++ implementation runs: the registry's implementation lists (csrc/registry.cpp), reported,
listed and forced from Python.

Every op of the cpp backend has an ordered list of named implementations (`op__variant`); a call runs
the first that can compute its problem and pays on it. `kernel_for` names the one a call would run,
`use_kernel` / FASTCONV_KERNEL force one (a `ValueError` names why, when it cannot compute the call),
`implementations()` lists them all. Forcing affects calls that run on the cpp backend only.

Each implementation also belongs to an algorithm: 'direct' (the direct and GEMM kernels; with
algorithm='direct' a result does not depend on what 'auto' would pick), 'winograd' or 'fft'. The dense conv ops take `algorithm=`
('auto' lets the registry choose among all); `set_algorithm` / FASTCONV_ALGORITHM set the default.
The numpy and numba backends always compute directly and ignore it.
"""
from __future__ import annotations

import contextlib
import os
from typing import NamedTuple

from .._validate import check_algorithm
from ._overrides import Overrides

_state = Overrides()


class Kernel(NamedTuple):
    """The implementation a call runs, the ISA level of the kernels it runs on, its algorithm and the
    algorithm's tile (e.g. 'F(4x4,3x3)'; None for the direct kernels)."""
    name: str
    isa: str
    algorithm: str = "direct"
    tile: str = None

    def __str__(self):
        how = "" if self.algorithm == "direct" else f", {self.algorithm}" + (f" {self.tile}" if self.tile else "")
        return f"{self.name} ({self.isa}{how})"


def _cpp():
    from . import load
    return load("cpp")._cpp


def implementations() -> dict:
    """{op: [implementation names, best first]} of the cpp backend's registry."""
    return _cpp().implementations()


def _parse(names) -> dict:
    """{op: name} for implementation names; ValueError for a name the registry does not have."""
    known = {n: op for op, impls in implementations().items() for n in impls}
    forced = {}
    for name in names:
        if name not in known:
            raise ValueError(f"kernel: unknown implementation {name!r}; `fastconv info --kernels` lists them")
        forced[known[name]] = name
    return forced


_env = None


def _env_forced() -> dict:
    global _env
    if _env is None:
        spec = os.environ.get("FASTCONV_KERNEL", "")
        _env = _parse([n.strip() for n in spec.split(",") if n.strip()]) if spec.strip() else {}
    return _env


def forced(op: str) -> str:
    """The implementation forced for `op` on this thread ('' for the registry's choice)."""
    top = _state.top("forced")
    return (_env_forced() if top is None else top).get(op, "")


@contextlib.contextmanager
def use_kernel(*names: str):
    """Force these implementations (one per op, e.g. 'conv2d__packed_gemm') for cpp-backend calls on this
    thread while the block runs; those of other ops keep what FASTCONV_KERNEL or the registry choose.
    A call whose problem a forced implementation cannot compute raises ValueError naming why."""
    top = _state.top("forced")
    with _state.push("forced", {**(_env_forced() if top is None else top), **_parse(names)}):
        yield


_default_algorithm = None


def get_algorithm() -> str:
    """The default algorithm of the dense conv ops: set_algorithm's, else FASTCONV_ALGORITHM, else 'auto'."""
    global _default_algorithm
    if _default_algorithm is None:
        env = os.environ.get("FASTCONV_ALGORITHM", "").strip()
        _default_algorithm = check_algorithm(env) if env else "auto"
    return _default_algorithm


def set_algorithm(algorithm: str) -> None:
    """Make `algorithm` ('auto', 'direct', 'winograd' or 'fft') the default of conv2d, its gradients,
    correlate2d/convolve2d and the conv layers, for calls that do not pass `algorithm=`."""
    global _default_algorithm
    _default_algorithm = check_algorithm(algorithm)


def resolve_algorithm(algorithm=None) -> str:
    """An op's `algorithm=` argument: None means the default."""
    return get_algorithm() if algorithm is None else check_algorithm(algorithm)


def dry_run():
    """The list that cpp-backend calls on this thread append their implementation's name to instead of
    running (None: they run)."""
    return _state.top("dry")


def kernel_for(op_name: str, *args, **kwargs) -> Kernel:
    """The implementation (and ISA level) that `fastconv.<op_name>(*args, **kwargs)` runs on the cpp
    backend, with what use_kernel/FASTCONV_KERNEL force. The arguments are validated as the call would
    validate them (same errors); no kernel runs. Derived ops name the kernel they run on
    (conv_transpose2d: conv2d_input_grad's; convolve2d, correlate2d: conv2d's)."""
    from .. import ops

    fn = getattr(ops, op_name, None) if not op_name.startswith("_") else None
    if fn is None:
        raise ValueError(f"op_name: expected a fastconv op such as 'conv2d', got {op_name!r}")
    kwargs["backend"] = "cpp"
    with _state.push("dry", []) as names:
        fn(*args, **kwargs)
    algorithm, tile = _cpp().algorithms().get(names[-1], ("direct", ""))
    return Kernel(names[-1], _cpp().isa(), algorithm, tile or None)
