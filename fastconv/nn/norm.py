"""BatchNorm2d, LocalResponseNorm and Softmax: PyTorch's definitions, forward and backward.

BatchNorm2d holds PyTorch's buffers (running_mean, running_var, num_batches_tracked) beside its
parameters, under PyTorch's state-dict keys, so a torchvision `*_bn` checkpoint loads as it is.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from .base import Layer, _float_dtype, placeholder_params


class BatchNorm2d(Layer):
    """y = (x − mean) / sqrt(var + eps) · weight + bias, per channel. Training: the batch's statistics (biased
    variance), and the running ones updated by `momentum` (with the unbiased variance, as PyTorch); eval: the
    running statistics. weight, bias (C,) (absent when affine=False)."""
    param_names = ("weight", "bias")
    buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, *, dtype=np.float32):
        super().__init__(num_features=num_features, eps=eps, momentum=momentum, affine=affine)
        dtype = _float_dtype(dtype)
        self.num_features, self.eps, self.momentum = num_features, float(eps), float(momentum)
        self.weight = np.ones(num_features, dtype) if affine else None
        self.bias = np.zeros(num_features, dtype) if affine else None
        self.running_mean, self.running_var = np.zeros(num_features, dtype), np.ones(num_features, dtype)
        self.num_batches_tracked = np.zeros((), np.int64)
        self.zero_grad()

    def astype(self, dtype):
        super().astype(dtype)
        self.running_mean, self.running_var = (b.astype(_float_dtype(dtype)) for b in (self.running_mean, self.running_var))
        return self

    def forward(self, x):
        x = self._check_input(x, ("N", self.num_features, "H", "W"))
        if self.training:   # the batch's statistics: ops.batch_norm2d, and its gradient in backward
            y, mean, inv_std = ops.batch_norm2d(x, self.weight, self.bias, eps=self.eps)
            n, m = x.size // self.num_features, self.momentum
            var = np.maximum(1.0 / np.square(inv_std.astype(np.float64)) - self.eps, 0.0)
            if n:   # an empty batch leaves them as they are, as in PyTorch
                self.running_mean[...] = (1 - m) * self.running_mean + m * mean
                self.running_var[...] = (1 - m) * self.running_var + m * var * (n / max(n - 1, 1))
            self.num_batches_tracked += 1
        else:
            mean = self.running_mean.astype(x.dtype)
            inv_std = (1.0 / np.sqrt(self.running_var + self.eps)).astype(x.dtype)
            y = (x - mean[:, None, None]) * inv_std[:, None, None]
            if self.weight is not None:
                y = y * self.weight[:, None, None] + self.bias[:, None, None]
        self.x, self.mean, self.inv_std = x, mean, inv_std
        return y

    def backward(self, dy):
        x, mean, inv_std = self._cached("x"), self.mean, self.inv_std
        if self.training:
            dx, dw, db = ops.batch_norm2d_grad(dy, x, mean, inv_std, self.weight)
        else:   # the statistics are constants: a per-channel affine map
            scale = inv_std if self.weight is None else inv_std * self.weight
            dx = dy * scale[:, None, None]
            dw = (dy * (x - mean[:, None, None]) * inv_std[:, None, None]).sum(axis=(0, 2, 3))
            db = dy.sum(axis=(0, 2, 3))
        if self.weight is not None:
            self._set_grad("weight", dw)
            self._set_grad("bias", db)
        return dx


def _channel_window_sum(a, before, after):
    """s[:, c] = Σ a[:, c − before … c + after] (zero outside the channels), by a cumulative sum along axis 1."""
    padded = np.pad(a, ((0, 0), (before + 1, after)) + ((0, 0),) * (a.ndim - 2))
    c = np.cumsum(padded, axis=1)
    size = before + after + 1
    return c[:, size:] - c[:, :-size]


class LocalResponseNorm(Layer):
    """PyTorch's local response normalisation across channels (Krizhevsky et al. 2012):
    y_c = x_c / (k + α/n · Σ_{c'=c−⌊n/2⌋}^{c+⌊(n−1)/2⌋} x_{c'}²)^β, n = size."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__(size=size, alpha=alpha, beta=beta, k=k)
        if int(size) < 1:
            raise ValueError(f"size: expected an int >= 1, got {size!r}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def forward(self, x):
        self.x = x = self._check_input(x, ("N", "C", "H", "W"))
        self.div = self.k + self.alpha / self.size * _channel_window_sum(x * x, self.size // 2, (self.size - 1) // 2)
        return x * self.div ** -self.beta

    def backward(self, dy):
        x, div = self._cached("x"), self.div
        t = dy * x * div ** (-self.beta - 1)   # channel j feeds the windows of c in [j − ⌊(n−1)/2⌋, j + ⌊n/2⌋]
        back = _channel_window_sum(t, (self.size - 1) // 2, self.size // 2)
        return dy * div ** -self.beta - (2 * self.alpha * self.beta / self.size) * x * back


class Softmax(Layer):
    """y = exp(x) / Σ exp(x) along `dim` (PyTorch's nn.Softmax; dim=1 for (N, classes) logits)."""

    def __init__(self, dim=1):
        super().__init__(dim=dim)
        self.dim = int(dim)

    def forward(self, x):
        x = np.asarray(x)
        e = np.exp(x - x.max(axis=self.dim, keepdims=True))
        self.y = e / e.sum(axis=self.dim, keepdims=True)
        return self.y

    def backward(self, dy):
        y = self._cached("y")
        return y * (dy - (dy * y).sum(axis=self.dim, keepdims=True))


def fold_batch_norm(model):
    """The eval-mode `model` with every BatchNorm2d that directly follows a Conv2d in the same container
    folded into that conv: with s = weight / sqrt(running_var + eps), the conv's weight becomes weight·s and
    its bias (bias − running_mean)·s + BatchNorm's bias. A new model: the folded convs are new layers, the
    others are shared; the kept layers keep their names ("features.0" still names the conv), the folded
    BatchNorm2d's name is gone. Outputs and input gradients equal the original's up to rounding."""
    from .conv import Conv2d
    from .sequential import Sequential
    if model.training:
        raise ValueError("fold_batch_norm: the model is in training mode, where BatchNorm2d uses the batch's "
                         "statistics; call model.eval() first")
    pairs = []
    for name, layer in model.named_layers():
        if isinstance(layer, Sequential):
            layer = fold_batch_norm(layer)
        elif isinstance(layer, BatchNorm2d) and pairs and type(pairs[-1][1]) is Conv2d:
            pairs[-1] = (pairs[-1][0], _folded(pairs[-1][1], layer))
            continue
        pairs.append((name, layer))
    return Sequential(*pairs).eval()


def _folded(conv, bn):
    s = 1 / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    shift = -bn.running_mean * s
    if bn.weight is not None:
        s, shift = s * bn.weight, shift * bn.weight + bn.bias
    with placeholder_params():   # no random init: the folded arrays replace the placeholders
        folded = type(conv)(**{**conv.config, "bias": True}, dtype=conv.dtype)
    folded.weight = (conv.weight * s[:, None, None, None]).astype(conv.dtype)
    folded.bias = (shift if conv.bias is None else conv.bias * s + shift).astype(conv.dtype)
    folded.zero_grad()
    return folded.eval()
