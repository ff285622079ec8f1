"""The random source of fastconv.nn: one global NumPy Generator, reseeded by `manual_seed`.

Layers draw their initial weights (and Dropout its masks) from an explicit `rng=` (a Generator or an
int seed) when given one, else from this global generator — PyTorch's `torch.manual_seed` model.
"""
from __future__ import annotations

import contextlib
import numbers

import numpy as np

_global = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the global generator used by layers constructed (and Dropout masks drawn) without `rng=`."""
    global _global
    _global = np.random.default_rng(seed)


def get_rng(rng=None) -> np.random.Generator:
    """`rng` as a Generator: None -> the global one, an int -> a fresh seeded one, a Generator -> itself."""
    if rng is None:
        return _global
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng: expected None, an int seed or a numpy.random.Generator, got {rng!r}")


@contextlib.contextmanager
def seeded(seed):
    """Temporarily replace the global generator by one seeded with `seed` (None: leave it alone)."""
    global _global
    if seed is None:
        yield _global
        return
    saved = _global
    _global = np.random.default_rng(seed)
    try:
        yield _global
    finally:
        _global = saved


def kaiming_uniform(shape, fan_in: int, rng, dtype) -> np.ndarray:
    """PyTorch's default init: kaiming_uniform_(a=sqrt(5)) = U(−1/sqrt(fan_in), 1/sqrt(fan_in)).

    The same bound serves the bias (PyTorch draws it from U(−1/sqrt(fan_in), 1/sqrt(fan_in)) too).
    """
    bound = 1.0 / np.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
