"""Convolution layers: Conv2d (shared weights), TiledConv2d (tiled weights), LocallyConnected2d (unshared),
ConvTranspose2d.

Each forward calls the public op, each backward its two gradient ops (DESIGN 12: layers call ops, never
backends). Weights are in the layouts of API.md: dense (C_out, C_in/groups, kH, kW); tiled
(T_h, T_w, C_out, C_in, kH, kW) with bias (C_out,); unshared (H_out, W_out, C_out, C_in, kH, kW) with
bias (C_out, H_out, W_out). Every layer takes (N, C, H, W) or unbatched (C, H, W) input, as PyTorch's;
the three forward convolutions take PyTorch's padding_mode ('zeros' | 'reflect' | 'replicate' | 'circular').
"""
from __future__ import annotations

import numpy as np

from .. import _padding as P
from .. import _validate as V
from .. import ops
from .base import Layer, accepts_unbatched


def _algorithm_config(algorithm):
    """The conv layers' `algorithm` (None: the default of fastconv.set_algorithm) as a config entry, kept
    out of the config when None so that models saved before it existed read back unchanged."""
    return {} if algorithm is None else {"algorithm": V.check_algorithm(algorithm)}


@accepts_unbatched
class Conv2d(Layer):
    """PyTorch's nn.Conv2d: weight (C_out, C_in/groups, kH, kW), bias (C_out,). padding also takes
    ((top, bottom), (left, right)) and 'causal' (see ops.conv2d). `algorithm` ('auto', 'direct',
    'winograd', 'fft'; None: fastconv.set_algorithm's) is passed to the forward and both gradients."""
    param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", *, algorithm=None, dtype=np.float32, rng=None):
        super().__init__(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                         stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias,
                         padding_mode=padding_mode, **_algorithm_config(algorithm))
        self.padding_mode = P.check_mode(padding_mode)
        self.algorithm = algorithm
        kH, kW = V.pair("kernel_size", kernel_size, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups: {groups} must divide in_channels ({in_channels}) and out_channels ({out_channels})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        fan_in = in_channels // groups * kH * kW
        self._init_params((out_channels, in_channels // groups, kH, kW), (out_channels,) if bias else None,
                          fan_in, rng, dtype)

    def _geometry(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
                    padding_mode=self.padding_mode, algorithm=self.algorithm)

    def forward(self, x):
        self.x = x = self._check_input(x, ("N", self.in_channels, "H", "W"))
        return ops.conv2d(x, self.weight, self.bias, **self._geometry())

    def backward(self, dy):
        x = self._cached("x")
        self._set_grad("weight", ops.conv2d_weight_grad(x, dy, self.weight.shape, **self._geometry()))
        if self.bias is not None:
            self._set_grad("bias", dy.sum(axis=(0, 2, 3)))
        return ops.conv2d_input_grad(dy, self.weight, x.shape, **self._geometry())


@accepts_unbatched
class TiledConv2d(Layer):
    """Tiled convolution (Le et al. 2010): output (i, j) uses kernel weight[i % T_h, j % T_w].

    weight (T_h, T_w, C_out, C_in, kH, kW), bias (C_out,); tile = (1, 1) is Conv2d.
    """
    param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, tile, stride=1, padding=0, bias=True,
                 padding_mode="zeros", *, dtype=np.float32, rng=None):
        super().__init__(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, tile=tile,
                         stride=stride, padding=padding, bias=bias, padding_mode=padding_mode)
        self.padding_mode = P.check_mode(padding_mode)
        kH, kW = V.pair("kernel_size", kernel_size, 1)
        T_h, T_w = V.pair("tile", tile, 1)
        self.in_channels, self.out_channels, self.tile = in_channels, out_channels, (T_h, T_w)
        self.stride, self.padding = stride, padding
        self._init_params((T_h, T_w, out_channels, in_channels, kH, kW), (out_channels,) if bias else None,
                          in_channels * kH * kW, rng, dtype)

    def forward(self, x):
        self.x = x = self._check_input(x, ("N", self.in_channels, "H", "W"))
        return ops.tiled_conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                                padding_mode=self.padding_mode)

    def backward(self, dy):
        x = self._cached("x")
        geo = dict(stride=self.stride, padding=self.padding, padding_mode=self.padding_mode)
        self._set_grad("weight", ops.tiled_conv2d_weight_grad(x, dy, self.weight.shape, **geo))
        if self.bias is not None:
            self._set_grad("bias", dy.sum(axis=(0, 2, 3)))
        return ops.tiled_conv2d_input_grad(dy, self.weight, x.shape, **geo)


@accepts_unbatched
class LocallyConnected2d(Layer):
    """Unshared convolution: every output position (i, j) has its own kernel weight[i, j].

    input_size (H, W) fixes the output size; weight (H_out, W_out, C_out, C_in, kH, kW),
    bias (C_out, H_out, W_out).
    """
    param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, padding=0, bias=True,
                 padding_mode="zeros", *, dtype=np.float32, rng=None):
        super().__init__(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                         input_size=input_size, stride=stride, padding=padding, bias=bias, padding_mode=padding_mode)
        self.padding_mode = P.check_mode(padding_mode)
        kH, kW = V.pair("kernel_size", kernel_size, 1)
        self.input_size = V.pair("input_size", input_size, 1)
        g = V.conv_geometry((1, in_channels) + self.input_size, (out_channels, in_channels, kH, kW),
                            stride, padding, 1, 1, x_name="input_size", w_name="kernel_size")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.output_size = (g.H_out, g.W_out)
        self.stride, self.padding = stride, padding
        self._init_params((g.H_out, g.W_out, out_channels, in_channels, kH, kW),
                          (out_channels, g.H_out, g.W_out) if bias else None, in_channels * kH * kW, rng, dtype)

    def forward(self, x):
        self.x = x = self._check_input(x, ("N", self.in_channels) + self.input_size)
        return ops.unshared_conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                                   padding_mode=self.padding_mode)

    def backward(self, dy):
        x = self._cached("x")
        geo = dict(stride=self.stride, padding=self.padding, padding_mode=self.padding_mode)
        self._set_grad("weight", ops.unshared_conv2d_weight_grad(x, dy, self.weight.shape, **geo))
        if self.bias is not None:
            self._set_grad("bias", dy.sum(axis=0))
        return ops.unshared_conv2d_input_grad(dy, self.weight, x.shape, **geo)


@accepts_unbatched
class ConvTranspose2d(Layer):
    """PyTorch's nn.ConvTranspose2d (its argument order): weight (C_in, C_out/groups, kH, kW), bias (C_out,).
    The backward pass is conv2d's forward (dx) and weight gradient (dw) on dy (see ops.conv_transpose2d)."""
    param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, *, algorithm=None, dtype=np.float32, rng=None):
        super().__init__(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                         padding=padding, output_padding=output_padding, groups=groups, bias=bias, dilation=dilation,
                         **_algorithm_config(algorithm))
        self.algorithm = algorithm
        kH, kW = V.pair("kernel_size", kernel_size, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups: {groups} must divide in_channels ({in_channels}) and out_channels ({out_channels})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.dilation, self.groups = dilation, groups
        fan_in = out_channels // groups * kH * kW   # torch reads fan_in off weight.size(1)
        self._init_params((in_channels, out_channels // groups, kH, kW), (out_channels,) if bias else None,
                          fan_in, rng, dtype)

    def forward(self, x):
        self.x = x = self._check_input(x, ("N", self.in_channels, "H", "W"))
        return ops.conv_transpose2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                                    output_padding=self.output_padding, dilation=self.dilation, groups=self.groups,
                                    algorithm=self.algorithm)

    def backward(self, dy):
        x = self._cached("x")
        g = V.transpose_geometry(x.shape, self.weight.shape, self.stride, self.padding, self.output_padding,
                                 self.dilation, self.groups)
        geo = dict(stride=g.stride, padding=g.padding, dilation=g.dilation, groups=g.groups, algorithm=self.algorithm)
        if any(g.extra):   # conv2d of dy has rows/columns beyond x's: x gets zeros there, dx drops them
            x = np.pad(x, ((0, 0), (0, 0), (0, g.extra[0]), (0, g.extra[1])))
        self._set_grad("weight", ops.conv2d_weight_grad(dy, x, self.weight.shape, **geo))
        if self.bias is not None:
            self._set_grad("bias", dy.sum(axis=(0, 2, 3)))
        H, W = self.x.shape[2:]
        return np.ascontiguousarray(ops.conv2d(dy, self.weight, **geo)[:, :, :H, :W])
