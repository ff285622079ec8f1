"""fastconv's ops on torch tensors, differentiable: the signatures of fastconv.ops (less `backend`; choose one
with fastconv.use_backend), tensors in and out.

Each function turns the argument forms fastconv accepts (ints or pairs, padding words, per-side padding)
into the canonical ones of the operator schemas and calls torch.ops.fastconv.<op>. Unbatched (C, H, W)
inputs work where PyTorch accepts them, giving unbatched results.

A call that nothing could observe runs the operator's CPU kernel directly (_library._run): the dispatcher's
round trip through Python would otherwise cost about as much as a small convolution itself.
"""
from __future__ import annotations

import torch

from .. import _validate as V
from .. import ops
from . import _autograd  # noqa: F401  (registers the autograd formulas)
from ._library import _PLAIN, _np, _run, _unobserved

OPS = torch.ops.fastconv


def _tensor(name, t, optional=False):
    if t is None and optional:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    return t


def _tensors(**named):
    """TypeError unless each is a tensor (a bias may be None)."""
    for name, t in named.items():
        _tensor(name, t, optional=name == "bias")


def _batched(name, x, layout):
    """x as a batch (N, C, H, W), and whether it was one unbatched (C, H, W) sample."""
    _tensor(name, x)
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a 4-D tensor {layout} or an unbatched 3-D one, got shape {tuple(x.shape)}")
    return x, False


def _unbatch(y, unbatched):
    return y.squeeze(0) if unbatched else y


def _shape(name, shape, ndim):
    """A shape argument as a list (torch.Size or a sequence)."""
    if isinstance(shape, torch.Size) or isinstance(shape, (tuple, list)):
        if len(shape) == ndim:
            return list(shape)
    raise ValueError(f"{name}: expected a sequence of {ndim} ints, got {shape!r}")


def _conv_args(x_hw, k_hw, stride, padding, dilation):
    stride, dilation = V.pair("stride", stride, 1), V.pair("dilation", dilation, 1)
    return stride, V.conv_padding(padding, x_hw, k_hw, stride, dilation), dilation


def conv2d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1):
    """fastconv.conv2d (PyTorch's cross-correlation, every fastconv padding form) on tensors."""
    # The common call, batched plain tensors that nothing observes, hands the user's argument forms to
    # ops.conv2d as they are: validated once, not normalised here first (half of the per-call overhead).
    if type(x) in _PLAIN and type(weight) in _PLAIN and (bias is None or type(bias) in _PLAIN) and x.dim() == 4 \
            and _unobserved((x, weight, bias)):
        return torch.from_numpy(ops.conv2d(_np(x), _np(weight), _np(bias), stride=stride, padding=padding,
                                           dilation=dilation, groups=groups))
    x, unbatched = _batched("x", x, "(N, C_in, H, W)")
    _tensors(weight=weight, bias=bias)
    if weight.dim() != 4:
        raise ValueError(f"weight: expected a 4-D tensor (C_out, C_in/groups, kH, kW), got shape {tuple(weight.shape)}")
    s, p, d = _conv_args(x.shape[2:], weight.shape[2:], stride, padding, dilation)
    return _unbatch(_run("conv2d", x, weight, bias, s, p, d, V._int("groups", groups)), unbatched)


def conv2d_input_grad(dy, weight, input_shape, *, stride=1, padding=0, dilation=1, groups=1):
    """fastconv.conv2d_input_grad on tensors: dL/dx of conv2d, of `input_shape`."""
    _tensors(dy=dy, weight=weight)
    input_shape = _shape("input_shape", input_shape, 4)
    s, p, d = _conv_args(input_shape[2:], weight.shape[2:], stride, padding, dilation)
    return _run("conv2d_input_grad", dy, weight, input_shape, s, p, d, V._int("groups", groups))


def conv2d_weight_grad(x, dy, weight_shape, *, stride=1, padding=0, dilation=1, groups=1):
    """fastconv.conv2d_weight_grad on tensors: dL/dw of conv2d, of `weight_shape`."""
    _tensors(x=x, dy=dy)
    weight_shape = _shape("weight_shape", weight_shape, 4)
    s, p, d = _conv_args(x.shape[2:], weight_shape[2:], stride, padding, dilation)
    return _run("conv2d_weight_grad", x, dy, weight_shape, s, p, d, V._int("groups", groups))


def conv_transpose2d(x, weight, bias=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """fastconv.conv_transpose2d (PyTorch's semantics, weight (C_in, C_out/groups, kH, kW)) on tensors."""
    x, unbatched = _batched("x", x, "(N, C_in, H, W)")
    _tensors(weight=weight, bias=bias)
    g = V.transpose_geometry(x.shape, weight.shape, stride, padding, output_padding, dilation, groups)
    output_padding = V.pair("output_padding", output_padding, 0)
    y = _run("conv_transpose2d", x, weight, bias, g.stride, g.padding, output_padding, g.dilation, g.groups)
    return _unbatch(y, unbatched)


def _tiled(op, x, weight, bias, stride, padding):
    x, unbatched = _batched("x", x, "(N, C_in, H, W)")
    _tensors(weight=weight, bias=bias)
    if weight.dim() != 6:
        raise ValueError(f"weight: expected a 6-D tensor (T_h, T_w, C_out, C_in, kH, kW), got shape "
                         f"{tuple(weight.shape)}")
    s, p, _ = _conv_args(x.shape[2:], weight.shape[4:], stride, padding, 1)
    return _unbatch(_run(op, x, weight, bias, s, p), unbatched)


def _local_grad(op, a, b, shape, shape_name, stride, padding):
    """op_input_grad(dy, weight, input_shape) or op_weight_grad(x, dy, weight_shape)."""
    shape = _shape(shape_name, shape, 4 if shape_name == "input_shape" else 6)
    if shape_name == "input_shape":
        x_hw, k_hw = shape[2:], _tensor("weight", b).shape[4:]
    else:
        x_hw, k_hw = _tensor("x", a).shape[2:], shape[4:]
    s, p, _ = _conv_args(x_hw, k_hw, stride, padding, 1)
    return _run(op, a, b, shape, s, p)


def tiled_conv2d(x, weight, bias=None, *, stride=1, padding=0):
    """fastconv.tiled_conv2d on tensors: weight (T_h, T_w, C_out, C_in, kH, kW), bias (C_out,)."""
    return _tiled("tiled_conv2d", x, weight, bias, stride, padding)


def tiled_conv2d_input_grad(dy, weight, input_shape, *, stride=1, padding=0):
    """fastconv.tiled_conv2d_input_grad on tensors: dL/dx, of `input_shape`."""
    return _local_grad("tiled_conv2d_input_grad", dy, weight, input_shape, "input_shape", stride, padding)


def tiled_conv2d_weight_grad(x, dy, weight_shape, *, stride=1, padding=0):
    """fastconv.tiled_conv2d_weight_grad on tensors: dL/dw, of `weight_shape`."""
    return _local_grad("tiled_conv2d_weight_grad", x, dy, weight_shape, "weight_shape", stride, padding)


def unshared_conv2d(x, weight, bias=None, *, stride=1, padding=0):
    """fastconv.unshared_conv2d on tensors: weight (H_out, W_out, C_out, C_in, kH, kW), bias (C_out, H_out, W_out)."""
    return _tiled("unshared_conv2d", x, weight, bias, stride, padding)


def unshared_conv2d_input_grad(dy, weight, input_shape, *, stride=1, padding=0):
    """fastconv.unshared_conv2d_input_grad on tensors: dL/dx, of `input_shape`."""
    return _local_grad("unshared_conv2d_input_grad", dy, weight, input_shape, "input_shape", stride, padding)


def unshared_conv2d_weight_grad(x, dy, weight_shape, *, stride=1, padding=0):
    """fastconv.unshared_conv2d_weight_grad on tensors: dL/dw, of `weight_shape`."""
    return _local_grad("unshared_conv2d_weight_grad", x, dy, weight_shape, "weight_shape", stride, padding)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, *, ceil_mode=False):
    """fastconv.max_pool2d on tensors -> (y, switches); switches (int64) are PyTorch's return_indices."""
    x, unbatched = _batched("x", x, "(N, C, H, W)")
    kernel = V.pair("kernel_size", kernel_size, 1)
    stride = kernel if stride is None else V.pair("stride", stride, 1)
    y, switches = _run("max_pool2d", x, kernel, stride, V.pair("padding", padding, 0), bool(ceil_mode),
                       V.pair("dilation", dilation, 1))
    return _unbatch(y, unbatched), _unbatch(switches, unbatched)


def max_unpool2d(y, switches, output_size):
    """fastconv.max_unpool2d on tensors: zero except out[n, c].flat[switches[n, c, i, j]] += y[n, c, i, j].
    output_size: (N, C, H, W), or (H, W) (N and C from y); an unbatched (C, h, w) y gives (C, H, W)."""
    y, unbatched = _batched("y", y, "(N, C, H, W)")
    switches = _tensor("switches", switches)
    if unbatched:
        switches = switches.unsqueeze(0)
    size = list(output_size) if isinstance(output_size, (tuple, list, torch.Size)) else None
    if size is not None and len(size) in (2, 3):
        size = list(y.shape[:2]) + size[-2:]
    size = _shape("output_size", size, 4)
    return _unbatch(_run("max_unpool2d", y, switches, size), unbatched)


def batch_norm2d(x, weight=None, bias=None, *, eps=1e-5, relu=False):
    """fastconv.batch_norm2d on tensors -> (y, mean, inv_std): normalised with the batch's own statistics
    (PyTorch's training mode), with relu=True followed by a ReLU in the same pass (and its gradient in the
    normalisation's); y is differentiable in x, weight and bias, mean and inv_std are not."""
    _tensor("x", x)
    _tensor("weight", weight, optional=True)
    _tensor("bias", bias, optional=True)
    if x.dim() != 4:
        raise ValueError(f"x: expected a 4-D tensor (N, C, H, W), got shape {tuple(x.shape)}")
    return _run("batch_norm2d", x, weight, bias, float(eps), bool(relu))
