"""AvgPool2d and AdaptiveAvgPool2d (PyTorch's definitions), forward and backward.

AvgPool2d is derived from the depthwise conv2d (DESIGN 7): a window mean is a depthwise convolution with
a constant kernel, divided by the window's size, or with count_include_pad=False by the number of its
elements inside the input (the same convolution of a plane of ones).
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V
from .. import ops
from .base import Layer, accepts_unbatched


@accepts_unbatched
class AvgPool2d(Layer):
    """PyTorch's nn.AvgPool2d (ceil_mode=False; divisor_override supported)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                         count_include_pad=count_include_pad, divisor_override=divisor_override)
        if ceil_mode:
            raise ValueError("ceil_mode: AvgPool2d supports ceil_mode=False only")
        self.kernel = V.pair("kernel_size", kernel_size, 1)
        self.stride = self.kernel if stride is None else V.pair("stride", stride, 1)
        self.padding = V.pair("padding", padding, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel)):
            raise ValueError(f"padding: must be at most half of kernel_size {self.kernel}, got {padding!r}")
        self.count_include_pad, self.divisor_override = bool(count_include_pad), divisor_override

    def _geometry(self, C):
        return dict(stride=self.stride, padding=self.padding, groups=C)

    def _divisor(self, x):
        """The divisor of every output (a scalar, or (H_out, W_out) without counting the padding)."""
        if self.divisor_override:
            return float(self.divisor_override)
        if self.count_include_pad:
            return float(self.kernel[0] * self.kernel[1])
        ones = np.ones((1, 1) + x.shape[2:], x.dtype)
        return ops.conv2d(ones, np.ones((1, 1) + self.kernel, x.dtype), stride=self.stride, padding=self.padding)[0, 0]

    def forward(self, x):
        x = self._check_input(x, ("N", "C", "H", "W"))
        C = x.shape[1]
        self.input_shape, self.divisor = x.shape, self._divisor(x)
        self.ones = np.ones((C, 1) + self.kernel, x.dtype)
        return ops.conv2d(x, self.ones, **self._geometry(C)) / self.divisor

    def backward(self, dy):
        shape = self._cached("input_shape")
        return ops.conv2d_input_grad(np.asarray(dy / self.divisor, dy.dtype), self.ones, shape,
                                     **self._geometry(shape[1]))


def _adaptive_windows(n, out):
    """PyTorch's adaptive pooling windows along one axis: [⌊i·n/out⌋, ⌈(i+1)·n/out⌉) for i < out."""
    return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]


class AdaptiveAvgPool2d(Layer):
    """PyTorch's nn.AdaptiveAvgPool2d: output_size (h, w) (an int for both; None keeps that input size), each
    output the mean of its window [⌊i·H/h⌋, ⌈(i+1)·H/h⌉)."""

    def __init__(self, output_size):
        super().__init__(output_size=output_size)
        sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        if len(sizes) != 2 or any(s is not None and (not isinstance(s, int) or s < 1) for s in sizes):
            raise ValueError(f"output_size: expected an int >= 1 or a pair of them (or None), got {output_size!r}")
        self.output_size = tuple(sizes)

    def forward(self, x):
        x = self._check_input(x, ("N", "C", "H", "W"))
        H, W = x.shape[2:]
        out = [n if s is None else s for n, s in zip((H, W), self.output_size)]
        self.input_shape = x.shape
        self.windows = _adaptive_windows(H, out[0]), _adaptive_windows(W, out[1])
        y = np.empty(x.shape[:2] + tuple(out), x.dtype)
        for i, (h0, h1) in enumerate(self.windows[0]):
            for j, (w0, w1) in enumerate(self.windows[1]):
                y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
        return y

    def backward(self, dy):
        dx = np.zeros(self._cached("input_shape"), dy.dtype)
        for i, (h0, h1) in enumerate(self.windows[0]):
            for j, (w0, w1) in enumerate(self.windows[1]):   # windows may overlap: accumulate
                dx[:, :, h0:h1, w0:w1] += (dy[:, :, i, j] / ((h1 - h0) * (w1 - w0)))[:, :, None, None]
        return dx
