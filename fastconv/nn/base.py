"""Layer: the base class of every fastconv.nn layer (and of Sequential).

A layer maps a NumPy batch forward, caching what its backward pass needs (DESIGN 12), and maps dL/dy
back to dL/dx, *overwriting* (not accumulating) `.weight_grad` / `.bias_grad` on the way. Parameters
are plain NumPy arrays in PyTorch layouts; `parameters()` yields `(name, value, grad)`. The constructor
arguments are kept in `config` so that `save`/`load` can rebuild the layer.
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np

from . import _random


_placeholders = False


@contextlib.contextmanager
def placeholder_params():
    """Layers built in this block get placeholder parameters (see Layer._init_params) and no grads."""
    global _placeholders
    saved, _placeholders = _placeholders, True
    try:
        yield
    finally:
        _placeholders = saved


def accepts_unbatched(cls):
    """Class decorator: the layer also takes PyTorch's unbatched (C, H, W) input and then returns unbatched
    output (and dx); its own forward and backward always see a batch."""
    forward, backward = cls.forward, cls.backward

    @functools.wraps(forward)
    def batched_forward(self, x):
        self.unbatched = np.ndim(x) == 3
        y = forward(self, np.asarray(x)[None] if self.unbatched else x)
        return y[0] if self.unbatched else y

    @functools.wraps(backward)
    def batched_backward(self, dy):
        if getattr(self, "unbatched", False):
            return backward(self, np.asarray(dy)[None])[0]
        return backward(self, dy)

    cls.forward, cls.backward = batched_forward, batched_backward
    return cls


class Layer:
    param_names: tuple = ()   # attribute names of the parameters this layer type can hold
    buffer_names: tuple = ()  # attribute names of state that is not trained but saved (BatchNorm's statistics)

    def __init__(self, **config):
        self.training = True
        self._config = config

    # -- construction helpers ---------------------------------------------------------------
    def _init_params(self, weight_shape, bias_shape, fan_in, rng, dtype):
        """PyTorch's default init (kaiming_uniform_(a=sqrt(5)) for weight, U(±1/sqrt(fan_in)) for bias).
        Inside `placeholder_params()` (loading a file) the parameters are read-only zero views that take no
        memory, until the file's arrays replace them."""
        dtype = _float_dtype(dtype)
        if _placeholders:
            self.weight = np.broadcast_to(np.zeros((), dtype), weight_shape)
            self.bias = np.broadcast_to(np.zeros((), dtype), bias_shape) if bias_shape else None
            self.zero_grad()
            return
        rng = _random.get_rng(rng)
        self.weight = _random.kaiming_uniform(weight_shape, fan_in, rng, dtype)
        self.bias = _random.kaiming_uniform(bias_shape, fan_in, rng, dtype) if bias_shape else None
        self.zero_grad()

    # -- the layer protocol -------------------------------------------------------------------
    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    @property
    def config(self) -> dict:
        """Constructor arguments (JSON-friendly) that rebuild this layer: type(layer)(**layer.config)."""
        return dict(self._config)

    def parameters(self):
        """Yield (name, value, grad) for each parameter present (a layer built with bias=False has no bias)."""
        for name in self.param_names:
            value = getattr(self, name, None)
            if value is not None:
                yield name, value, getattr(self, name + "_grad")

    def buffers(self):
        """Yield (name, value) for each buffer: arrays in PyTorch's state dict that no optimizer updates."""
        for name in self.buffer_names:
            yield name, getattr(self, name)

    def state(self):
        """Yield (name, value) for every parameter and buffer: the entries of a PyTorch state dict."""
        for name, value, _ in self.parameters():
            yield name, value
        yield from self.buffers()

    def zero_grad(self) -> None:
        for name in self.param_names:
            value = getattr(self, name, None)
            setattr(self, name + "_grad", None if value is None or _placeholders else np.zeros_like(value))

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    @property
    def dtype(self):
        """The parameters' dtype, or None for a layer without parameters."""
        for _, value, _ in self.parameters():
            return value.dtype
        return None

    def astype(self, dtype):
        """Convert the parameters (and zero the grads) in place to float32/float64; returns self."""
        dtype = _float_dtype(dtype)
        for name in self.param_names:
            value = getattr(self, name, None)
            if value is not None:
                setattr(self, name, np.broadcast_to(np.zeros((), dtype), value.shape) if _placeholders
                        else value.astype(dtype))
        self.zero_grad()
        return self

    # -- forward/backward helpers ---------------------------------------------------------------
    def _check_input(self, x, expected):
        """x as an array of `expected` shape (ints fixed, strings free) and of the parameters' dtype."""
        x = np.asarray(x)
        if x.ndim != len(expected) or any(not isinstance(e, str) and e != s for e, s in zip(expected, x.shape)):
            shape = "(" + ", ".join(str(e) for e in expected) + ")"
            raise ValueError(f"{type(self).__name__}: expected input of shape {shape}, got {x.shape}")
        dtype = self.dtype
        if dtype is not None and x.dtype != dtype:
            raise TypeError(f"{type(self).__name__}: input dtype {x.dtype} differs from the parameters' dtype {dtype}; "
                            f"cast the input (x.astype(np.{dtype})) or the model (model.astype(np.{x.dtype}))")
        return x

    def _cached(self, name):
        value = getattr(self, name, None)
        if value is None:
            raise RuntimeError(f"{type(self).__name__}: backward() called before forward()")
        return value

    def _set_grad(self, name, value) -> None:
        """Overwrite the grad in place when possible, so references an optimizer holds stay valid."""
        grad = getattr(self, name + "_grad", None)
        if grad is not None and grad.shape == value.shape and grad.dtype == value.dtype:
            grad[...] = value
        else:
            setattr(self, name + "_grad", value)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{type(self).__name__}({args})"


def _float_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    return dtype


def jsonable(v):
    """Tuples -> lists, NumPy scalars -> Python scalars (for the JSON architecture in save())."""
    if isinstance(v, (tuple, list)):
        return [jsonable(e) for e in v]
    if isinstance(v, np.generic):
        return v.item()
    return v
