"""Linear, MaxPool2d, ReLU (with switchable backward rules), Flatten and Dropout.

ReLU's backward rule is the hook the visualization methods use (Springenberg et al. 2015; Zeiler & Fergus
2014): they differ from the gradient only in how a ReLU passes a signal backwards.
  'gradient'   dx = dy · [x > 0]            (backpropagation)
  'deconvnet'  dx = dy · [dy > 0]           (the deconvnet's rectification; ignores the forward input)
  'guided'     dx = dy · [x > 0] · [dy > 0] (guided backpropagation)
Set `relu.backward_rule` to one of these names (or to a callable `rule(x, dy) -> dx`), or switch every
ReLU of a model for a block with `with fastconv.nn.backward_rule(model, 'guided'): ...`.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import _validate as V
from .. import ops
from . import _random
from .base import Layer, accepts_unbatched

RELU_RULES = {
    "gradient": lambda x, dy: dy * (x > 0),
    "deconvnet": lambda x, dy: dy * (dy > 0),
    "guided": lambda x, dy: dy * ((x > 0) & (dy > 0)),
}


class ReLU(Layer):
    """y = max(x, 0); backward per `backward_rule` ('gradient', 'deconvnet', 'guided' or a callable)."""
    backward_rule = "gradient"

    def __init__(self):
        super().__init__()

    def forward(self, x):
        self.x = x = np.asarray(x)
        return np.maximum(x, 0)

    def backward(self, dy):
        rule = self.backward_rule
        fn = rule if callable(rule) else RELU_RULES.get(rule)
        if fn is None:
            raise ValueError(f"ReLU.backward_rule: expected one of {list(RELU_RULES)} or a callable, got {rule!r}")
        return fn(self._cached("x"), dy)


@contextlib.contextmanager
def backward_rule(model, rule):
    """Within the block, every ReLU in `model` (a Sequential or a single layer) back-propagates by `rule`."""
    if not callable(rule) and rule not in RELU_RULES:
        raise ValueError(f"rule: expected one of {list(RELU_RULES)} or a callable, got {rule!r}")
    relus = [layer for layer in _all_layers(model) if isinstance(layer, ReLU)]
    saved = [relu.__dict__.get("backward_rule") for relu in relus]
    for relu in relus:
        relu.backward_rule = rule
    try:
        yield model
    finally:
        for relu, old in zip(relus, saved):
            if old is None:
                relu.__dict__.pop("backward_rule", None)
            else:
                relu.backward_rule = old


def _all_layers(model):
    if hasattr(model, "named_layers"):
        for _, layer in model.named_layers():
            yield from _all_layers(layer)
    else:
        yield model


class Linear(Layer):
    """y = x · weightᵀ + bias; weight (out_features, in_features), bias (out_features,)."""
    param_names = ("weight", "bias")

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, rng=None):
        super().__init__(in_features=in_features, out_features=out_features, bias=bias)
        self.in_features, self.out_features = in_features, out_features
        self._init_params((out_features, in_features), (out_features,) if bias else None, in_features, rng, dtype)

    def forward(self, x):
        self.x = x = self._check_input(x, ("N", self.in_features))
        y = x @ self.weight.T
        if self.bias is not None:
            y += self.bias
        return y

    def backward(self, dy):
        x = self._cached("x")
        self._set_grad("weight", dy.T @ x)
        if self.bias is not None:
            self._set_grad("bias", dy.sum(axis=0))
        return dy @ self.weight


@accepts_unbatched
class MaxPool2d(Layer):
    """Max-pool that keeps its switches (`.switches`, PyTorch's flat indices) for backward and the deconvnet.
    ceil_mode keeps API.md's position; dilation (PyTorch's, keyword) follows it."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, dilation=1):
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode, dilation=dilation)
        V.pair("kernel_size", kernel_size, 1)
        V.pair("dilation", dilation, 1)
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode
        self.dilation = dilation
        self.switches = None
        self.input_shape = None

    def forward(self, x):
        x = self._check_input(x, ("N", "C", "H", "W"))
        y, self.switches = ops.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                                          ceil_mode=self.ceil_mode)
        self.input_shape = x.shape
        return y

    def backward(self, dy):
        return ops.max_unpool2d(dy, self._cached("switches"), self.input_shape)


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1·d2·...), like nn.Flatten()."""

    def __init__(self):
        super().__init__()
        self.input_shape = None

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"Flatten: expected an input with a batch dimension, got shape {x.shape}")
        self.input_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return np.reshape(dy, self._cached("input_shape"))


class Dropout(Layer):
    """Inverted dropout (PyTorch's): in training, zero with probability p and scale the rest by 1/(1 − p);
    the identity in eval mode. The mask of the last forward pass is kept in `.mask` (None: identity).
    Masks come from `rng` if given, else from the global generator (which fit(seed=...) seeds)."""

    def __init__(self, p=0.5, *, rng=None):
        super().__init__(p=p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p: dropout probability must lie in [0, 1], got {p}")
        self.p = float(p)
        self.rng = rng if rng is None else _random.get_rng(rng)
        self.mask = None

    def forward(self, x):
        x = np.asarray(x)
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        keep = _random.get_rng(self.rng).random(x.shape) >= self.p
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        self.mask = keep.astype(x.dtype) * x.dtype.type(scale)
        return x * self.mask

    def backward(self, dy):
        return dy if self.mask is None else dy * self.mask
