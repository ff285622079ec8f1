"""Autograd formulas of the fastconv operators, each built from fastconv's own gradient kernels.

Every formula calls the registered operators (torch.ops.fastconv.*, through _library._run: their CPU kernels
directly where nothing observes the call), never NumPy, so a backward pass is itself traceable by
torch.compile and differentiable again. The convolutions and their two gradients are
bilinear in their two tensors, so each one's gradient is another member of the same triple:
  y  = f(x, w)          dx = f_input_grad(dy, w)      dw = f_weight_grad(x, dy)
  dx = f_input_grad(dy, w):   d(dy) = f(ddx, w),             d(w) = f_weight_grad(ddx, dy)
  dw = f_weight_grad(x, dy):  d(x)  = f_input_grad(dy, ddw), d(dy) = f(x, ddw)
(from ⟨ddx, f_input_grad(dy, w)⟩ = ⟨f(ddx, w), dy⟩ = ⟨f_weight_grad(ddx, dy), w⟩). Max-pool's gradient is
max-unpool through the switches; max-unpool's is the gather at the switches. Batch norm's gradient is
batch_norm2d_grad, itself not differentiable again.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._library import _run


def _register(name, setup_context, backward):
    torch.library.register_autograd(f"fastconv::{name}", backward, setup_context=setup_context)


def _family(op, bias_dims):
    """Formulas for op, op_input_grad and op_weight_grad; the trailing arguments (geometry) pass through."""
    f, f_input_grad, f_weight_grad = op, op + "_input_grad", op + "_weight_grad"

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:2])
        ctx.geometry = inputs[3:]

    def forward_backward(ctx, dy):
        x, w = ctx.saved_tensors
        need, geo = ctx.needs_input_grad, ctx.geometry
        dx = _run(f_input_grad, dy, w, x.shape, *geo) if need[0] else None
        dw = _run(f_weight_grad, x, dy, w.shape, *geo) if need[1] else None
        db = dy.sum(bias_dims) if need[2] else None
        return (dx, dw, db) + (None,) * len(geo)

    def input_grad_backward(ctx, ddx):
        dy, w = ctx.saved_tensors
        need, geo = ctx.needs_input_grad, ctx.geometry
        d_dy = _run(f, ddx, w, None, *geo) if need[0] else None
        d_w = _run(f_weight_grad, ddx, dy, w.shape, *geo) if need[1] else None
        return (d_dy, d_w, None) + (None,) * len(geo)

    def weight_grad_backward(ctx, ddw):
        x, dy = ctx.saved_tensors
        need, geo = ctx.needs_input_grad, ctx.geometry
        d_x = _run(f_input_grad, dy, ddw, x.shape, *geo) if need[0] else None
        d_dy = _run(f, x, ddw, None, *geo) if need[1] else None
        return (d_x, d_dy, None) + (None,) * len(geo)

    _register(op, setup, forward_backward)
    _register(op + "_input_grad", setup, input_grad_backward)
    _register(op + "_weight_grad", setup, weight_grad_backward)


_family("conv2d", (0, 2, 3))
_family("tiled_conv2d", (0, 2, 3))
_family("unshared_conv2d", (0,))   # bias (C_out, H_out, W_out): one value per output position


def _conv_transpose2d_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:2])
    ctx.geometry = inputs[3:]


def _conv_transpose2d_backward(ctx, dy):
    """conv_transpose2d(x, w) is conv2d_input_grad(x, w) into the output's shape, so its gradients are conv2d's
    forward (dx) and weight gradient (dw). With output_padding >= stride that conv2d has extra rows/columns,
    which x lacks: dx drops them, and x gets zeros there for dw."""
    x, w = ctx.saved_tensors
    stride, (ph, pw), output_padding, dilation, groups = ctx.geometry
    pads = [ph, ph, pw, pw]
    need = ctx.needs_input_grad
    dx = dw = db = None
    if need[0]:
        dx = _run("conv2d", dy, w, None, stride, pads, dilation, groups)[:, :, :x.shape[2], :x.shape[3]]
    if need[1]:
        extra = [o // s for o, s in zip(output_padding, stride)]
        xp = F.pad(x, (0, extra[1], 0, extra[0])) if any(extra) else x
        dw = _run("conv2d_weight_grad", dy, xp, w.shape, stride, pads, dilation, groups)
    if need[2]:
        db = dy.sum((0, 2, 3))
    return dx, dw, db, None, None, None, None, None


_register("conv_transpose2d", _conv_transpose2d_setup, _conv_transpose2d_backward)


def _max_pool2d_setup(ctx, inputs, output):
    switches = output[1]
    ctx.mark_non_differentiable(switches)
    ctx.save_for_backward(switches)
    ctx.input_shape = inputs[0].shape


def _max_pool2d_backward(ctx, dy, _dswitches):
    (switches,) = ctx.saved_tensors
    return _run("max_unpool2d", dy, switches, ctx.input_shape), None, None, None, None, None


_register("max_pool2d", _max_pool2d_setup, _max_pool2d_backward)


def _max_unpool2d_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _max_unpool2d_backward(ctx, dout):
    """out[n, c].flat[switches[n, c, i, j]] += y[n, c, i, j], so dy[n, c, i, j] = dout[n, c].flat[switches[...]]."""
    (switches,) = ctx.saved_tensors
    N, C = switches.shape[:2]
    dy = dout.reshape(N, C, -1).gather(2, switches.reshape(N, C, -1)).reshape(switches.shape)
    return dy, None, None


_register("max_unpool2d", _max_unpool2d_setup, _max_unpool2d_backward)


def _batch_norm2d_setup(ctx, inputs, output):
    x, weight, bias, _, relu = inputs
    _, mean, inv_std = output
    ctx.mark_non_differentiable(mean, inv_std)
    ctx.save_for_backward(x, weight, bias, mean, inv_std)
    ctx.affine, ctx.relu = (weight is not None, bias is not None), relu


def _batch_norm2d_backward(ctx, dy, _dmean, _dinv_std):
    """The statistics are outputs for running averages and the gradient, not differentiable ones."""
    x, weight, bias, mean, inv_std = ctx.saved_tensors
    dx, dw, db = _run("batch_norm2d_grad", dy, x, mean, inv_std, weight, bias, ctx.relu)
    need = ctx.needs_input_grad
    return (dx if need[0] else None, dw if need[1] and ctx.affine[0] else None,
            db if need[2] and ctx.affine[1] else None, None, None)


def _batch_norm2d_grad_setup(ctx, inputs, output):
    pass


def _batch_norm2d_grad_backward(ctx, *grads):
    raise NotImplementedError("fastconv::batch_norm2d_grad is not differentiable: batch_norm2d has no double "
                              "backward (use torch.nn.functional.batch_norm for higher derivatives)")


_register("batch_norm2d", _batch_norm2d_setup, _batch_norm2d_backward)
_register("batch_norm2d_grad", _batch_norm2d_grad_setup, _batch_norm2d_grad_backward)
