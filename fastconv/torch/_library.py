"""fastconv's ops as PyTorch operators: torch.ops.fastconv.<op>, one per op of fastconv.ops, with CPU and fake kernels.

Schemas take canonical arguments only (int pairs, conv padding as (top, bottom, left, right)), so a traced
graph records plain numbers; fastconv.torch.functional turns the user's forms into them. The CPU kernels
hand the tensors' memory to fastconv.ops as NumPy views (`detach().numpy()` shares it; ops.py copies a
non-contiguous one once) and wrap the result with torch.from_numpy, which shares it too. The fake kernels
give torch.compile and torch.export the output shapes from the arithmetic ops.py validates with (_validate),
so a bad shape raises the same error at trace time as in eager mode.
"""
from __future__ import annotations

import torch

from .. import _validate as V
from .. import ops

_CONV = "int[2] stride, int[4] padding, int[2] dilation, int groups"
_LOCAL = "int[2] stride, int[4] padding"

SCHEMAS = {
    "conv2d": f"(Tensor x, Tensor weight, Tensor? bias, {_CONV}) -> Tensor",
    "conv2d_input_grad": f"(Tensor dy, Tensor weight, SymInt[4] input_shape, {_CONV}) -> Tensor",
    "conv2d_weight_grad": f"(Tensor x, Tensor dy, SymInt[4] weight_shape, {_CONV}) -> Tensor",
    "conv_transpose2d": "(Tensor x, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
                        "int[2] output_padding, int[2] dilation, int groups) -> Tensor",
    "max_pool2d": "(Tensor x, int[2] kernel_size, int[2] stride, int[2] padding, bool ceil_mode, int[2] dilation) "
                  "-> (Tensor, Tensor)",
    "max_unpool2d": "(Tensor y, Tensor switches, SymInt[4] output_size) -> Tensor",
    "batch_norm2d": "(Tensor x, Tensor? weight, Tensor? bias, float eps, bool relu=False) -> (Tensor, Tensor, Tensor)",
    "batch_norm2d_grad": "(Tensor dy, Tensor x, Tensor mean, Tensor inv_std, Tensor? weight, Tensor? bias=None, "
                         "bool relu=False) -> (Tensor, Tensor, Tensor)",
}
for _op in ("tiled_conv2d", "unshared_conv2d"):
    SCHEMAS[_op] = f"(Tensor x, Tensor weight, Tensor? bias, {_LOCAL}) -> Tensor"
    SCHEMAS[_op + "_input_grad"] = f"(Tensor dy, Tensor weight, SymInt[4] input_shape, {_LOCAL}) -> Tensor"
    SCHEMAS[_op + "_weight_grad"] = f"(Tensor x, Tensor dy, SymInt[6] weight_shape, {_LOCAL}) -> Tensor"

LIB = torch.library.Library("fastconv", "DEF")
for _name, _schema in SCHEMAS.items():
    LIB.define(_name + _schema, tags=(torch.Tag.pt2_compliant_tag,))


def _np(t):
    """The tensor's memory as a NumPy array. Kernels run below autograd, where an input may still carry
    requires_grad (numpy() refuses those), hence detach(); None (an absent bias) passes through."""
    if t is None:
        return None
    return t.detach().numpy() if t.requires_grad else t.numpy()


def _sides(padding):
    """(top, bottom, left, right) -> fastconv's (h, w) when symmetric (the shorter path through its checks),
    else ((top, bottom), (left, right))."""
    t, b, l, r = padding
    return (t, l) if t == b and l == r else ((t, b), (l, r))


KERNELS = {}   # name -> CPU kernel, for the calls that may skip the dispatcher (_run)


def _cpu(name):
    def register(fn):
        LIB.impl(name, fn, "CPU")
        KERNELS[name] = fn
        return fn
    return register


def _fake(name):
    return torch.library.register_fake(f"fastconv::{name}", lib=LIB)


# -- dense convolution ------------------------------------------------------------------------------
@_cpu("conv2d")
def _conv2d(x, weight, bias, stride, padding, dilation, groups):
    return torch.from_numpy(ops.conv2d(_np(x), _np(weight), _np(bias), stride=stride, padding=_sides(padding),
                                       dilation=dilation, groups=groups))


@_cpu("conv2d_input_grad")
def _conv2d_input_grad(dy, weight, input_shape, stride, padding, dilation, groups):
    return torch.from_numpy(ops.conv2d_input_grad(_np(dy), _np(weight), input_shape, stride=stride,
                                                  padding=_sides(padding), dilation=dilation, groups=groups))


@_cpu("conv2d_weight_grad")
def _conv2d_weight_grad(x, dy, weight_shape, stride, padding, dilation, groups):
    return torch.from_numpy(ops.conv2d_weight_grad(_np(x), _np(dy), weight_shape, stride=stride,
                                                   padding=_sides(padding), dilation=dilation, groups=groups))


@_cpu("conv_transpose2d")
def _conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation, groups):
    return torch.from_numpy(ops.conv_transpose2d(_np(x), _np(weight), _np(bias), stride=stride, padding=padding,
                                                 output_padding=output_padding, dilation=dilation, groups=groups))


@_fake("conv2d")
def _conv2d_fake(x, weight, bias, stride, padding, dilation, groups):
    g = V.conv_geometry(x.shape, weight.shape, stride, _sides(padding), dilation, groups)
    return x.new_empty((g.N, g.C_out, g.H_out, g.W_out))


@_fake("conv2d_input_grad")
def _conv2d_input_grad_fake(dy, weight, input_shape, stride, padding, dilation, groups):
    return dy.new_empty(input_shape)


@_fake("conv2d_weight_grad")
def _conv2d_weight_grad_fake(x, dy, weight_shape, stride, padding, dilation, groups):
    return x.new_empty(weight_shape)


@_fake("conv_transpose2d")
def _conv_transpose2d_fake(x, weight, bias, stride, padding, output_padding, dilation, groups):
    g = V.transpose_geometry(x.shape, weight.shape, stride, padding, output_padding, dilation, groups)
    return x.new_empty((g.N, g.C_out, g.H_out, g.W_out))


# -- tiled and unshared convolution ---------------------------------------------------------------------
def _local_ops(op):
    forward, input_grad, weight_grad = (getattr(ops, op + s) for s in ("", "_input_grad", "_weight_grad"))

    @_cpu(op)
    def _forward(x, weight, bias, stride, padding):
        return torch.from_numpy(forward(_np(x), _np(weight), _np(bias), stride=stride, padding=_sides(padding)))

    @_cpu(op + "_input_grad")
    def _input_grad(dy, weight, input_shape, stride, padding):
        return torch.from_numpy(input_grad(_np(dy), _np(weight), input_shape, stride=stride, padding=_sides(padding)))

    @_cpu(op + "_weight_grad")
    def _weight_grad(x, dy, weight_shape, stride, padding):
        return torch.from_numpy(weight_grad(_np(x), _np(dy), weight_shape, stride=stride, padding=_sides(padding)))

    @_fake(op)
    def _forward_fake(x, weight, bias, stride, padding):
        g, _ = V.tiled_geometry(x.shape, weight.shape, stride, _sides(padding), op)
        return x.new_empty((g.N, g.C_out, g.H_out, g.W_out))

    @_fake(op + "_input_grad")
    def _input_grad_fake(dy, weight, input_shape, stride, padding):
        return dy.new_empty(input_shape)

    @_fake(op + "_weight_grad")
    def _weight_grad_fake(x, dy, weight_shape, stride, padding):
        return x.new_empty(weight_shape)


_local_ops("tiled_conv2d")
_local_ops("unshared_conv2d")


# -- pooling with switches ------------------------------------------------------------------------------
@_cpu("max_pool2d")
def _max_pool2d(x, kernel_size, stride, padding, ceil_mode, dilation):
    y, switches = ops.max_pool2d(_np(x), kernel_size, stride, padding, dilation, ceil_mode=ceil_mode)
    return torch.from_numpy(y), torch.from_numpy(switches)


@_cpu("max_unpool2d")
def _max_unpool2d(y, switches, output_size):
    return torch.from_numpy(ops.max_unpool2d(_np(y), _np(switches), output_size))


@_fake("max_pool2d")
def _max_pool2d_fake(x, kernel_size, stride, padding, ceil_mode, dilation):
    V.check_ndim("x", x, 4, "(N, C, H, W)")
    g = V.pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode, dilation)
    shape = (x.shape[0], x.shape[1], g.H_out, g.W_out)
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.int64)


@_fake("max_unpool2d")
def _max_unpool2d_fake(y, switches, output_size):
    return y.new_empty(output_size)


# -- batch normalisation with the batch's statistics ----------------------------------------------------------
@_cpu("batch_norm2d")
def _batch_norm2d(x, weight, bias, eps, relu=False):
    return tuple(map(torch.from_numpy, ops.batch_norm2d(_np(x), _np(weight), _np(bias), eps=eps, relu=relu)))


@_cpu("batch_norm2d_grad")
def _batch_norm2d_grad(dy, x, mean, inv_std, weight, bias=None, relu=False):
    return tuple(map(torch.from_numpy, ops.batch_norm2d_grad(_np(dy), _np(x), _np(mean), _np(inv_std), _np(weight),
                                                             _np(bias), relu=relu)))


@_fake("batch_norm2d")
def _batch_norm2d_fake(x, weight, bias, eps, relu=False):
    V.check_ndim("x", x, 4, "(N, C, H, W)")
    C = x.shape[1]
    return x.new_empty(x.shape), x.new_empty(C), x.new_empty(C)


@_fake("batch_norm2d_grad")
def _batch_norm2d_grad_fake(dy, x, mean, inv_std, weight, bias=None, relu=False):
    C = x.shape[1]
    return x.new_empty(x.shape), x.new_empty(C), x.new_empty(C)


# -- calls that skip the dispatcher ---------------------------------------------------------------------
# A call that nothing could observe — no autograd graph to record (grad mode off or no input requiring grad),
# no torch.compile / export / jit tracing, no torch-function or dispatch mode (fake tensors, vmap,
# FlopCounter), no profiler, plain CPU tensors — runs the operator's CPU kernel directly: fastconv.torch's
# functions and the autograd formulas' gradient calls (a backward pass without create_graph) take this path.
_OVERLOADS = {name: getattr(torch.ops.fastconv, name).default for name in KERNELS}
_PLAIN = (torch.Tensor, torch.nn.Parameter)
_C = torch._C
_is_compiling = torch.compiler.is_compiling


def _unobserved(args):
    """Whether no autograd graph, tracer, mode or profiler would see this call (see above)."""
    if _is_compiling():   # first: under dynamo the rest is never traced
        return False
    grad = _C.is_grad_enabled()
    for a in args:
        if isinstance(a, torch.Tensor) and (type(a) not in _PLAIN or not a.is_cpu or grad and a.requires_grad):
            return False
    return not (_C._is_torch_function_mode_enabled() or _C._len_torch_dispatch_stack()
                or _C._are_functorch_transforms_active() or _C._get_tracing_state()
                or _C._autograd._profiler_enabled())


def _run(name, *args):
    """torch.ops.fastconv.<name>(*args), or its CPU kernel directly when nothing would observe the call."""
    if _unobserved(args):
        return KERNELS[name](*args)
    return _OVERLOADS[name](*args)
