"""torch.nn modules computed by fastconv's kernels.

Conv2d, ConvTranspose2d, BatchNorm2d, MaxPool2d and MaxUnpool2d subclass their torch.nn namesakes and change
only the computation: constructors, parameters, initialisation, state-dict keys and repr are torch's, so
`load_state_dict` moves weights either way and `patch` can swap a layer's class in place. TiledConv2d and
LocallyConnected2d (which torch lacks) take fastconv.nn's constructors and weight layouts, the state-dict
keys of fastconv.nn and of its torch twins (fastconv.nn.to_torch).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import _validate as V
from . import functional as FC


class Conv2d(nn.Conv2d):
    """torch.nn.Conv2d (every constructor argument, padding_mode included) on fastconv.conv2d."""

    def _conv_forward(self, input, weight, bias):
        padding = self.padding
        if self.padding_mode != "zeros":  # torch pads explicitly for these modes too, then convolves unpadded
            input, padding = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode), 0
        return FC.conv2d(input, weight, bias, stride=self.stride, padding=padding, dilation=self.dilation,
                         groups=self.groups)


class ConvTranspose2d(nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d (forward(input, output_size=None) included) on fastconv.conv_transpose2d."""

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros":
            raise ValueError("Only `zeros` padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, 2,
                                              self.dilation)
        return FC.conv_transpose2d(input, self.weight, self.bias, stride=self.stride, padding=self.padding,
                                   output_padding=output_padding, dilation=self.dilation, groups=self.groups)


class BatchNorm2d(nn.BatchNorm2d):
    """torch.nn.BatchNorm2d whose normalisation by the batch's statistics (training mode, or no running
    statistics) runs on fastconv.batch_norm2d, forward and backward; running statistics, momentum (None: a
    cumulative average) and num_batches_tracked are updated exactly as torch does. In eval mode with running
    statistics the layer is a per-channel affine map, which stays torch's own; so do inputs the kernels do not
    take (not CPU float32/float64 of the parameters' dtype, or not 4-D: torch raises for those).

    relu=True (an attribute; `patch(model, fuse_relu=True)` sets it) makes the layer BatchNorm2d followed by
    ReLU: fused into the normalisation's passes over the data, forward and backward, in training mode."""

    relu = False

    def __init__(self, *args, relu=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.relu = relu

    def extra_repr(self):
        return super().extra_repr() + (", relu=True" if self.relu else "")

    def forward(self, input):
        uses_batch = self.training or self.running_mean is None
        params = [p for p in (self.weight, self.bias) if p is not None]
        if not uses_batch or input.dim() != 4 or not input.is_cpu or input.dtype not in (torch.float32, torch.float64) \
                or any(p.dtype != input.dtype or not p.is_cpu for p in params):
            y = super().forward(input)
            return torch.relu_(y) if self.relu else y
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        y, mean, inv_std = FC.batch_norm2d(input, self.weight, self.bias, eps=self.eps, relu=self.relu)
        M = input.numel() // max(1, input.shape[1])
        if self.training and self.running_mean is not None and M > 0:
            with torch.no_grad():   # torch's running_var is the unbiased variance
                var = (inv_std.double().pow(-2) - self.eps).clamp_min(0) * (M / max(1, M - 1))
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(var.to(self.running_var.dtype), alpha=factor)
        return y


class FusedReLU(nn.ReLU):
    """The ReLU after a BatchNorm2d with relu=True, which `patch(model, fuse_relu=True)` swaps it to: its input
    is already rectified, so forward returns it as it is (the ReLU's own result when inplace). As with
    torch.ao.quantization.fuse_modules, the pair must stay together: unpatch before rearranging the model."""

    def forward(self, input):
        return input


class MaxPool2d(nn.MaxPool2d):
    """torch.nn.MaxPool2d on fastconv.max_pool2d: return_indices=True also returns the switches (int64, PyTorch's
    flat h·W + w indices, for MaxUnpool2d)."""

    def forward(self, input):
        y, switches = FC.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                                    ceil_mode=self.ceil_mode)
        return (y, switches) if self.return_indices else y


class MaxUnpool2d(nn.MaxUnpool2d):
    """torch.nn.MaxUnpool2d on fastconv.max_unpool2d. Where two switches name one position (overlapping pooling
    windows) the values are summed, which makes this max-pool's exact backward pass; torch keeps one of them."""

    def forward(self, input, indices, output_size=None):
        hw = F._unpool_output_size(input, self.kernel_size, self.stride, self.padding, output_size)
        return FC.max_unpool2d(input, indices, hw)


def _uniform_(tensor, fan_in):
    """nn.Conv2d's default init for a weight or bias of any layout: U(±1/sqrt(fan_in)) (kaiming_uniform_ with
    a = sqrt(5) is exactly that, but it reads fan_in off a 4-D layout)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    nn.init.uniform_(tensor, -bound, bound)


class _LocalConv(nn.Module):
    """Shared by TiledConv2d and LocallyConnected2d: the weight grid (G_h, G_w, C_out, C_in, kH, kW) and its init."""

    def __init__(self, in_channels, out_channels, kernel_size, grid, bias_shape, stride, padding, device, dtype):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = V.pair("kernel_size", kernel_size, 1)
        self.stride, self.padding = V.pair("stride", stride, 1), padding
        self.weight = nn.Parameter(torch.empty(*grid, out_channels, in_channels, *self.kernel_size, **factory))
        self.register_parameter("bias", nn.Parameter(torch.empty(*bias_shape, **factory)) if bias_shape else None)
        self.reset_parameters()

    def reset_parameters(self):
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        _uniform_(self.weight, fan_in)
        if self.bias is not None:
            _uniform_(self.bias, fan_in)


class TiledConv2d(_LocalConv):
    """Tiled convolution (Le et al. 2010) on fastconv.tiled_conv2d: output (i, j) uses weight[i % T_h, j % T_w];
    weight (T_h, T_w, C_out, C_in, kH, kW), bias (C_out,). padding takes every fastconv form."""

    def __init__(self, in_channels, out_channels, kernel_size, tile, stride=1, padding=0, bias=True, device=None,
                 dtype=None):
        tile = V.pair("tile", tile, 1)
        super().__init__(in_channels, out_channels, kernel_size, tile, (out_channels,) if bias else None,
                         stride, padding, device, dtype)
        self.tile = tile

    def forward(self, input):
        return FC.tiled_conv2d(input, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, tile={self.tile}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class LocallyConnected2d(_LocalConv):
    """Locally connected (unshared) convolution on fastconv.unshared_conv2d: every output position has its own
    kernel. input_size (H, W) fixes the output size; weight (H_out, W_out, C_out, C_in, kH, kW),
    bias (C_out, H_out, W_out)."""

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, padding=0, bias=True,
                 device=None, dtype=None):
        input_size = V.pair("input_size", input_size, 1)
        g = V.conv_geometry((1, in_channels) + input_size, (out_channels, in_channels) +
                            V.pair("kernel_size", kernel_size, 1), stride, padding, 1, 1,
                            x_name="input_size", w_name="kernel_size")
        output_size = (g.H_out, g.W_out)
        super().__init__(in_channels, out_channels, kernel_size, output_size,
                         (out_channels,) + output_size if bias else None, stride, padding, device, dtype)
        self.input_size, self.output_size = input_size, output_size

    def forward(self, input):
        return FC.unshared_conv2d(input, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"input_size={self.input_size}, stride={self.stride}, padding={self.padding}, "
                f"bias={self.bias is not None}")
