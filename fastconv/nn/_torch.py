"""PyTorch twins of the fastconv.nn layers (imported only when torch is): to_torch(model).

torch has no tiled or locally connected layer, so those two are written here with F.unfold, with
fastconv's weight layouts, so a state dict moves between the two frameworks unchanged.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import _validate as V
from . import conv, layers, norm, pooling
from .sequential import Sequential


class _UnfoldConv(nn.Module):
    """Shared forward of the tiled and unshared layers: one kernel per output position, gathered by `_kernels`."""

    def __init__(self, weight, bias, kernel_size, stride, padding):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight).clone())
        self.bias = None if bias is None else nn.Parameter(torch.as_tensor(bias).clone())
        self.kernel_size = V.pair("kernel_size", kernel_size, 1)
        self.stride, self.padding = V.pair("stride", stride, 1), padding

    def forward(self, x):
        x = _pad(x, self.padding, self.kernel_size, self.stride, (1, 1))
        N, _, H, W = x.shape
        H_out = (H - self.kernel_size[0]) // self.stride[0] + 1
        W_out = (W - self.kernel_size[1]) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, stride=self.stride)                         # (N, C_in·kH·kW, L)
        w = self._kernels(H_out, W_out)                                                  # (H_out, W_out, C_out, ...)
        w = w.reshape(H_out * W_out, w.shape[2], -1)
        y = torch.einsum("lok,nkl->nol", w, cols).reshape(N, -1, H_out, W_out)
        return y if self.bias is None else y + self._bias()


def _pad(x, padding, kernel_size, stride, dilation):
    """x zero-padded as fastconv's conv layers pad it (every padding form, asymmetric ones included)."""
    pt, pb, pl, pr = V.conv_padding(padding, tuple(x.shape[2:]), kernel_size, stride, dilation)
    return F.pad(x, (pl, pr, pt, pb))


class TorchPaddedConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state-dict keys) that pads as fastconv does first: for the padding
    forms torch's constructor refuses, ((top, bottom), (left, right)), 'causal' and 'full'."""

    def __init__(self, *args, fastconv_padding, **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self.fastconv_padding = fastconv_padding

    def forward(self, x):
        return super().forward(_pad(x, self.fastconv_padding, self.kernel_size, self.stride, self.dilation))


def _torch_takes(padding):
    """Whether torch.nn.Conv2d accepts this padding as it is (ints, (h, w), 'valid', 'same')."""
    if isinstance(padding, str):
        return padding.lower() in ("valid", "same")
    return not (isinstance(padding, (tuple, list)) and any(isinstance(v, (tuple, list)) for v in padding))


class TorchTiledConv2d(_UnfoldConv):
    def _kernels(self, H_out, W_out):
        T_h, T_w = self.weight.shape[:2]
        return self.weight[torch.arange(H_out) % T_h][:, torch.arange(W_out) % T_w]

    def _bias(self):
        return self.bias[None, :, None, None]


class TorchLocallyConnected2d(_UnfoldConv):
    def _kernels(self, H_out, W_out):
        return self.weight

    def _bias(self):
        return self.bias[None]


def _convert(layer):
    c = layer.config
    if isinstance(layer, Sequential):
        return nn.Sequential(OrderedDict((name, _convert(sub)) for name, sub in layer.named_layers()))
    if isinstance(layer, conv.Conv2d):
        args = (c["in_channels"], c["out_channels"], c["kernel_size"], c["stride"])
        more = dict(dilation=c["dilation"], groups=c["groups"], bias=c["bias"])
        mode = c.get("padding_mode", "zeros")
        if _torch_takes(c["padding"]):
            m = nn.Conv2d(*args, padding=c["padding"], padding_mode=mode, **more)
        elif mode == "zeros":
            m = TorchPaddedConv2d(*args, fastconv_padding=c["padding"], **more)
        else:
            raise TypeError(f"to_torch: no PyTorch equivalent for Conv2d padding {c['padding']!r} with "
                            f"padding_mode={mode!r}")
    elif isinstance(layer, (conv.TiledConv2d, conv.LocallyConnected2d)) and c.get("padding_mode", "zeros") != "zeros":
        raise TypeError(f"to_torch: no PyTorch twin of {type(layer).__name__} with padding_mode={c['padding_mode']!r}")
    elif isinstance(layer, conv.TiledConv2d):
        return TorchTiledConv2d(layer.weight, layer.bias, c["kernel_size"], c["stride"], c["padding"])
    elif isinstance(layer, conv.LocallyConnected2d):
        return TorchLocallyConnected2d(layer.weight, layer.bias, c["kernel_size"], c["stride"], c["padding"])
    elif isinstance(layer, layers.Linear):
        m = nn.Linear(c["in_features"], c["out_features"], c["bias"])
    elif isinstance(layer, layers.MaxPool2d):
        return nn.MaxPool2d(c["kernel_size"], c["stride"], c["padding"], c.get("dilation", 1), ceil_mode=c["ceil_mode"])
    elif isinstance(layer, layers.ReLU):
        return nn.ReLU()
    elif isinstance(layer, layers.Flatten):
        return nn.Flatten()
    elif isinstance(layer, layers.Dropout):
        return nn.Dropout(c["p"])
    elif isinstance(layer, conv.ConvTranspose2d):
        m = nn.ConvTranspose2d(c["in_channels"], c["out_channels"], c["kernel_size"], c["stride"], c["padding"],
                               c["output_padding"], c["groups"], c["bias"], c["dilation"])
    elif isinstance(layer, norm.BatchNorm2d):   # parameters and statistics are copied by to_torch
        return nn.BatchNorm2d(c["num_features"], c["eps"], c["momentum"], c["affine"])
    elif isinstance(layer, norm.LocalResponseNorm):
        return nn.LocalResponseNorm(c["size"], c["alpha"], c["beta"], c["k"])
    elif isinstance(layer, norm.Softmax):
        return nn.Softmax(dim=c["dim"])
    elif isinstance(layer, pooling.AvgPool2d):
        return nn.AvgPool2d(c["kernel_size"], c["stride"], c["padding"], c["ceil_mode"], c["count_include_pad"],
                            c["divisor_override"])
    elif isinstance(layer, pooling.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool2d(c["output_size"])
    else:
        raise TypeError(f"to_torch: no PyTorch equivalent for {type(layer).__name__}")
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(np.asarray(layer.weight, np.float32)))
        if layer.bias is not None:
            m.bias.copy_(torch.as_tensor(np.asarray(layer.bias, np.float32)))
    return m


def to_torch(model):
    """torch.nn.Sequential (or module) equivalent to `model`, weights copied, in the model's dtype and mode."""
    m = _convert(model)
    if model.dtype == np.float64:
        m = m.double()
    if model.dtype is not None:   # copy again at full precision (the float32 copy above only shaped them)
        with torch.no_grad():
            state = dict(m.named_parameters(), **dict(m.named_buffers()))
            for name, value in model.state():
                state[name].copy_(torch.as_tensor(value))
    return m.train(model.training)
