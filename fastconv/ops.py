"""Public ops: validate once (_validate), allocate the output, dispatch to the chosen backend.

conv_transpose2d (here), convolve2d and correlate2d (_plane.py) are derived from the primitive kernels, so
every backend gets them for free (DESIGN: derive, don't duplicate); so are PyTorch's unbatched (C, H, W)
inputs (_unbatched), padding modes other than zeros (_padding) and unpooling without accumulation. An empty
batch is answered here, before any kernel.
"""
from __future__ import annotations

import functools

import numpy as np

from . import _padding as P
from . import _validate as V
from .backends import resolve
from .backends.kernels import resolve_algorithm
from ._plane import convolve2d, correlate2d  # noqa: F401  (public ops on 2-D planes, scipy's semantics)

_NCHW = "(N, C, H, W)"

_ALGORITHM_DOC = """
    algorithm: 'auto' (default: set_algorithm / FASTCONV_ALGORITHM), 'direct', 'winograd' or 'fft' — how
    the cpp backend computes it (the numpy and numba backends always compute directly). 'direct' gives
    results that do not depend on the algorithm choice; a forced algorithm that cannot compute the call
    raises ValueError naming why. Error bounds, max|y − y64| / max|y64| on N(0,1) data, measured on the
    bench's 3x3 layers and 512-channel layers (tested: float32 ≤ 1e-4, float64 ≤ 1e-11): direct float32
    up to 1.6e-6; Winograd F(2x2,3x3) float32 up to 7e-7, float64 3e-15; F(4x4,3x3) float32 up to 1.2e-5,
    float64 3e-14; F(4x4,5x5) float32 up to 1.7e-5, float64 2.7e-14 (Winograd: 3x3 and 5x5, stride 1,
    groups 1; dilated layers run on the stride-phase sub-images);
    FFT over 16x16 to 128x128 tiles (the conv2d forward, both its gradients and the plane ops: stride 1,
    groups 1, any padding and dilation) float32 up to 4e-7, float64 2.6e-15 (on these and the 11x11 and
    31x31 bench rows; the weight gradient of the 31x31 row, a sum of a million products, 1.6e-14)."""


def _unbatched(batched_result=True, **where):
    """Let an op take PyTorch's unbatched (C, H, W) inputs: `where` maps the op's NCHW arrays and shapes to
    their positional index. When the first of them is 3-D, each gets a batch of one, and (if batched_result)
    every array of the result loses it again. 4-D calls pass straight through."""
    names = list(where.items())
    first_name, first_pos = names[0]

    def add_batch(name, v):
        if name.endswith("_shape") or name == "output_size":
            return (1,) + V.shape_tuple(name, v, 3)
        return np.asarray(v)[None]

    def wrap(fn):
        @functools.wraps(fn)
        def op(*args, **kwargs):
            first = args[first_pos] if len(args) > first_pos else kwargs.get(first_name)
            if (first.ndim if isinstance(first, np.ndarray) else np.ndim(first)) != 3:   # arrays: no np.ndim call
                return fn(*args, **kwargs)
            args = list(args)
            for name, pos in names:
                if pos < len(args):
                    args[pos] = add_batch(name, args[pos])
                elif kwargs.get(name) is not None:
                    kwargs[name] = add_batch(name, kwargs[name])
            out = fn(*args, **kwargs)
            if not batched_result:
                return out
            return tuple(a[0] for a in out) if isinstance(out, tuple) else out[0]
        return op
    return wrap


def _mode_pads(x_shape, k_hw, stride, padding, dilation, padding_mode):
    """(top, bottom, left, right) for a padding_mode other than 'zeros' (the kernels pad with zeros themselves):
    the input is then extended explicitly and the kernels get no padding."""
    P.check_mode(padding_mode)
    if len(x_shape) != 4:
        raise ValueError(f"x: expected a 4-D array {_NCHW} or an unbatched (C, H, W) one, got shape {tuple(x_shape)}")
    return V.conv_padding(padding, x_shape[2:], k_hw, V.pair("stride", stride, 1), V.pair("dilation", dilation, 1))


def _padded_shape(shape, pads):
    return tuple(shape[:2]) + (shape[2] + pads[0] + pads[1], shape[3] + pads[2] + pads[3])


@_unbatched(x=0)
def conv2d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", algorithm=None,
           backend=None):
    """Cross-correlation y[n,o,i,j] = b[o] + Σ w[o,c,a,b]·x[n,c, i·s+a·d−p, j·s+b·d−p] (PyTorch's conv2d).

    x (N, C_in, H, W) or unbatched (C_in, H, W), float32/float64; weight (C_out, C_in/groups, kH, kW), bias
    (C_out,) -> (N, C_out, H_out, W_out) (unbatched in, unbatched out); N = 0 gives an empty result.
    padding: int, (h, w), ((top, bottom), (left, right)), 'valid', 'same' (ceil(H/stride) outputs, extra pad
    bottom/right), 'full' or 'causal' ((kW−1)·d_w on the left only: column j reads no input after column j).
    padding_mode: PyTorch's 'zeros' | 'reflect' | 'replicate' | 'circular'.
    The kernels take only (top, left) and the output size; reads past the bottom/right edge are zeros, so
    every padding form works on every backend and in both gradients.
    """
    algorithm = resolve_algorithm(algorithm)
    x, weight, bias = V.float_arrays(x=x, weight=weight, bias=bias)
    if padding_mode != "zeros":
        pads = _mode_pads(x.shape, weight.shape[2:], stride, padding, dilation, padding_mode)
        x, padding = P.pad(x, pads, padding_mode), 0
    g = V.conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    V.check_bias(bias, (g.C_out,))
    y = V.empty("x, weight, padding, stride, dilation", (g.N, g.C_out, g.H_out, g.W_out), x.dtype)
    if g.N:
        resolve(backend).conv2d(x, weight, bias, y, g.stride, g.pad, g.dilation, g.groups, algorithm=algorithm)
    return y


@_unbatched(dy=0, input_shape=2)
def conv2d_input_grad(dy, weight, input_shape, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
                      algorithm=None, backend=None):
    """dL/dx of conv2d given dy = dL/dy: a full convolution of dy with the 180°-rotated kernel
    (strided and dilated as the forward pass was). Returns an array of `input_shape` ((N, C, H, W) or
    (C, H, W), with dy (N, C_out, H_out, W_out) or (C_out, H_out, W_out), float32/float64). With a
    padding_mode other than 'zeros', the gradient of the padded input is folded back onto the positions the
    padding copied."""
    algorithm = resolve_algorithm(algorithm)
    dy, weight = V.float_arrays(dy=dy, weight=weight)
    input_shape = V.shape_tuple("input_shape", input_shape, 4, batch=True)
    if padding_mode != "zeros":
        pads = _mode_pads(input_shape, weight.shape[2:], stride, padding, dilation, padding_mode)
        dxp = conv2d_input_grad(dy, weight, _padded_shape(input_shape, pads), stride=stride, dilation=dilation,
                                groups=groups, algorithm=algorithm, backend=backend)
        return P.fold(dxp, pads, padding_mode, input_shape[2:])
    g = V.conv_geometry(input_shape, weight.shape, stride, padding, dilation, groups, x_name="input_shape")
    V.check_shape("dy", dy, (g.N, g.C_out, g.H_out, g.W_out), f"conv2d output for input_shape {input_shape}")
    dx = V.empty("input_shape", input_shape, dy.dtype)
    if g.N:
        resolve(backend).conv2d_input_grad(dy, weight, dx, g.stride, g.pad, g.dilation, g.groups, algorithm=algorithm)
    return dx


@_unbatched(batched_result=False, x=0, dy=1)
def conv2d_weight_grad(x, dy, weight_shape, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
                       algorithm=None, backend=None):
    """dL/dw of conv2d: the valid correlation of x with the output delta dy (both batched or both unbatched,
    float32/float64). Returns `weight_shape`; an empty batch gives zeros."""
    algorithm = resolve_algorithm(algorithm)
    x, dy = V.float_arrays(x=x, dy=dy)
    weight_shape = V.shape_tuple("weight_shape", weight_shape, 4)
    if padding_mode != "zeros":
        pads = _mode_pads(x.shape, weight_shape[2:], stride, padding, dilation, padding_mode)
        x, padding = P.pad(x, pads, padding_mode), 0
    g = V.conv_geometry(x.shape, weight_shape, stride, padding, dilation, groups, w_name="weight_shape")
    V.check_shape("dy", dy, (g.N, g.C_out, g.H_out, g.W_out), f"conv2d output for x {x.shape}")
    dw = V.empty("weight_shape", weight_shape, x.dtype)
    if g.N:
        resolve(backend).conv2d_weight_grad(x, dy, dw, g.stride, g.pad, g.dilation, g.groups, algorithm=algorithm)
    else:
        dw[...] = 0   # an empty batch contributes nothing
    return dw


for _f in (conv2d, conv2d_input_grad, conv2d_weight_grad):
    _f.__doc__ = (_f.__doc__ or "") + _ALGORITHM_DOC


@_unbatched(x=0)
def conv_transpose2d(x, weight, bias=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1,
                     algorithm=None, backend=None):
    """PyTorch's conv_transpose2d: weight (C_in, C_out/groups, kH, kW); the gradient of conv2d w.r.t. its input.

    x (N, C_in, H, W) or unbatched (C_in, H, W), float32/float64; N = 0 gives an empty result.
    H_out = (H − 1)·s − 2p + d·(kH − 1) + output_padding + 1; padding is an int or a pair.
    """
    x, weight, bias = V.float_arrays(x=x, weight=weight, bias=bias)
    g = V.transpose_geometry(x.shape, weight.shape, stride, padding, output_padding, dilation, groups)
    if any(g.extra):  # output_padding >= stride (allowed when < dilation): the conv2d of that output has more
        x = np.pad(x, ((0, 0), (0, 0), (0, g.extra[0]), (0, g.extra[1])))  # rows; theirs are zero in x
    y = conv2d_input_grad(x, weight, (g.N, g.C_out, g.H_out, g.W_out), stride=g.stride, padding=g.padding,
                          dilation=g.dilation, groups=g.groups, algorithm=algorithm,
                          backend=backend)
    if bias is not None:
        V.check_bias(bias, (g.C_out,))
        y += bias[None, :, None, None]
    return y


@_unbatched(x=0)
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, *, ceil_mode=False, backend=None):
    """Max-pool that records its switches -> (y, switches), as PyTorch's max_pool2d(..., return_indices=True).

    x (N, C, H, W) or unbatched (C, H, W), float32/float64 (N = 0 gives empty results). switches (int64, shape
    of y) hold the flat index h·W + w of each maximum within its (n, c) plane, PyTorch's return_indices
    convention; ties go to the first maximum in row-major window order; padding is −∞ and at most half the
    kernel (PyTorch's bound, whatever the dilation); NaN propagates. dilation spaces a window's taps. With
    ceil_mode, windows that start inside the input (or its top/left padding) and reach past it are clipped,
    kernels larger than the input included.
    """
    x = V.float_array("x", x)
    V.check_ndim("x", x, 4, _NCHW + " or (C, H, W)")
    if min(x.shape[1:]) < 1:
        raise ValueError(f"x: expected non-empty (C, H, W) (only the batch may be empty), got shape {x.shape}")
    g = V.pool_geometry(x.shape, kernel_size, stride, padding, bool(ceil_mode), dilation)
    args = "x, kernel_size, stride, padding, dilation"   # what sets the size of both outputs
    y = V.empty(args, x.shape[:2] + (g.H_out, g.W_out), x.dtype)
    switches = V.empty(args, y.shape, np.int64)
    if x.shape[0]:
        resolve(backend).max_pool2d(x, y, switches, g.kernel, g.stride, g.pad, g.dilation)
    return y, switches


def _last_duplicates(y, switches, plane):
    """y with every switch that a later one (in row-major order of its plane) repeats set to 0: scattered with
    accumulation, only the last of each duplicate is left, as torch.nn.MaxUnpool2d writes them."""
    planes = np.arange(y.shape[0] * y.shape[1]).repeat(y[0, 0].size)
    keys = planes * plane + switches.reshape(-1)
    _, first_of_reversed = np.unique(keys[::-1], return_index=True)
    keep = np.zeros(keys.size, bool)
    keep[keys.size - 1 - first_of_reversed] = True
    return np.where(keep.reshape(y.shape), y, y.dtype.type(0))


@_unbatched(y=0, switches=1, output_size=2)
def max_unpool2d(y, switches, output_size, *, accumulate=True, backend=None):
    """out (shape output_size) is zero except out[n,c].flat[switches[n,c,i,j]] += y[n,c,i,j].

    y, switches (N, C, H_out, W_out) with output_size (N, C, H, W), or unbatched (C, H_out, W_out) with
    (C, H, W); y float32/float64, switches int64. accumulate=True is the deconvnet unpooling step and exactly
    max_pool2d's backward pass (overlapping windows accumulate); accumulate=False keeps, of duplicate switches,
    the last in row-major order: torch.nn.MaxUnpool2d's result.
    """
    y = V.float_array("y", y)
    V.check_ndim("y", y, 4, _NCHW + " or (C, H_out, W_out)")
    output_size = V.shape_tuple("output_size", output_size, 4, batch=True)
    if output_size[:2] != y.shape[:2]:
        raise ValueError(f"output_size: expected (N, C) = {y.shape[:2]} to match y, got {output_size}")
    if min(y.shape[1:]) < 1:
        raise ValueError(f"y: expected non-empty (C, H_out, W_out) (only the batch may be empty), got shape {y.shape}")
    sw = np.asarray(switches)
    if sw.dtype != np.int64:
        raise TypeError(f"switches: expected dtype int64 (as max_pool2d returns), got {sw.dtype}")
    V.check_shape("switches", sw, y.shape, "same as y")
    out = V.empty("output_size", output_size, y.dtype)
    if not y.shape[0]:
        return out
    if not accumulate:
        y = _last_duplicates(y, sw, out[0, 0].size)
    # The kernels skip and count switches outside the plane: the range check costs no pass of its own.
    if resolve(backend).max_unpool2d(y, np.ascontiguousarray(sw), out):
        raise ValueError(f"switches: values must lie in [0, {out[0, 0].size}) for output plane {output_size[2:]}, "
                         f"got range [{sw.min()}, {sw.max()}]")
    return out


def _tiled_forward(op, x, weight, bias, stride, padding, padding_mode, backend):
    x, weight, bias = V.float_arrays(x=x, weight=weight, bias=bias)
    V.check_ndim("x", x, 4, _NCHW)
    if padding_mode != "zeros":
        pads = _mode_pads(x.shape, weight.shape[4:], stride, padding, 1, padding_mode)
        x, padding = P.pad(x, pads, padding_mode), 0
    g, grid = V.tiled_geometry(x.shape, weight.shape, stride, padding, op)
    V.check_bias(bias, (g.C_out, g.H_out, g.W_out) if op == "unshared_conv2d" else (g.C_out,))
    y = V.empty("x, weight, padding, stride", (g.N, g.C_out, g.H_out, g.W_out), x.dtype)
    if g.N:
        getattr(resolve(backend), op)(x, weight, bias, y, g.stride, g.pad)
    return y


def _tiled_input_grad(op, dy, weight, input_shape, stride, padding, padding_mode, backend):
    dy, weight = V.float_arrays(dy=dy, weight=weight)
    input_shape = V.shape_tuple("input_shape", input_shape, 4, batch=True)
    if padding_mode != "zeros":
        pads = _mode_pads(input_shape, weight.shape[4:], stride, padding, 1, padding_mode)
        dxp = _tiled_input_grad(op, dy, weight, _padded_shape(input_shape, pads), stride, 0, "zeros", backend)
        return P.fold(dxp, pads, padding_mode, input_shape[2:])
    g, _ = V.tiled_geometry(input_shape, weight.shape, stride, padding, op, x_name="input_shape")
    V.check_shape("dy", dy, (g.N, g.C_out, g.H_out, g.W_out), f"{op} output for input_shape {input_shape}")
    dx = V.empty("input_shape", input_shape, dy.dtype)
    if g.N:
        getattr(resolve(backend), op + "_input_grad")(dy, weight, dx, g.stride, g.pad)
    return dx


def _tiled_weight_grad(op, x, dy, weight_shape, stride, padding, padding_mode, backend):
    x, dy = V.float_arrays(x=x, dy=dy)
    V.check_ndim("x", x, 4, _NCHW)
    weight_shape = V.shape_tuple("weight_shape", weight_shape, 6)
    if padding_mode != "zeros":
        pads = _mode_pads(x.shape, weight_shape[4:], stride, padding, 1, padding_mode)
        x, padding = P.pad(x, pads, padding_mode), 0
    g, _ = V.tiled_geometry(x.shape, weight_shape, stride, padding, op, w_name="weight_shape")
    V.check_shape("dy", dy, (g.N, g.C_out, g.H_out, g.W_out), f"{op} output for x {x.shape}")
    dw = V.empty("weight_shape", weight_shape, x.dtype)
    if g.N:
        getattr(resolve(backend), op + "_weight_grad")(x, dy, dw, g.stride, g.pad)
    else:
        dw[...] = 0   # an empty batch contributes nothing
    return dw


# The tiled and unshared ops take what conv2d takes (minus dilation and groups): unbatched (C, H, W) inputs,
# an empty batch, every padding form and padding_mode.

@_unbatched(x=0)
def tiled_conv2d(x, weight, bias=None, *, stride=1, padding=0, padding_mode="zeros", backend=None):
    """Tiled convolution (Le et al. 2010): weight (T_h, T_w, C_out, C_in, kH, kW), bias (C_out,);
    output position (i, j) uses kernel weight[i % T_h, j % T_w]. T = (1, 1) is conv2d. x (N, C_in, H, W) or
    (C_in, H, W), float32/float64. padding takes every form conv2d does, ((top, bottom), (left, right)) and
    'causal' included."""
    return _tiled_forward("tiled_conv2d", x, weight, bias, stride, padding, padding_mode, backend)


@_unbatched(dy=0, input_shape=2)
def tiled_conv2d_input_grad(dy, weight, input_shape, *, stride=1, padding=0, padding_mode="zeros", backend=None):
    """dL/dx of tiled_conv2d; dy (N, C_out, H_out, W_out) or unbatched, float32/float64; returns `input_shape`."""
    return _tiled_input_grad("tiled_conv2d", dy, weight, input_shape, stride, padding, padding_mode, backend)


@_unbatched(batched_result=False, x=0, dy=1)
def tiled_conv2d_weight_grad(x, dy, weight_shape, *, stride=1, padding=0, padding_mode="zeros", backend=None):
    """dL/dw of tiled_conv2d from x and dy (both batched or both unbatched, float32/float64); returns an array
    of `weight_shape` (T_h, T_w, C_out, C_in, kH, kW)."""
    return _tiled_weight_grad("tiled_conv2d", x, dy, weight_shape, stride, padding, padding_mode, backend)


@_unbatched(x=0)
def unshared_conv2d(x, weight, bias=None, *, stride=1, padding=0, padding_mode="zeros", backend=None):
    """Unshared (locally connected) convolution: weight (H_out, W_out, C_out, C_in, kH, kW), bias
    (C_out, H_out, W_out); every output position has its own kernel. Equals tiled_conv2d with T = (H_out, W_out).
    x (N, C_in, H, W) or (C_in, H, W), float32/float64."""
    return _tiled_forward("unshared_conv2d", x, weight, bias, stride, padding, padding_mode, backend)


@_unbatched(dy=0, input_shape=2)
def unshared_conv2d_input_grad(dy, weight, input_shape, *, stride=1, padding=0, padding_mode="zeros", backend=None):
    """dL/dx of unshared_conv2d; dy (N, C_out, H_out, W_out) or unbatched, float32/float64; returns `input_shape`."""
    return _tiled_input_grad("unshared_conv2d", dy, weight, input_shape, stride, padding, padding_mode, backend)


@_unbatched(batched_result=False, x=0, dy=1)
def unshared_conv2d_weight_grad(x, dy, weight_shape, *, stride=1, padding=0, padding_mode="zeros", backend=None):
    """dL/dw of unshared_conv2d from x and dy (both batched or both unbatched, float32/float64); returns an
    array of `weight_shape` (H_out, W_out, C_out, C_in, kH, kW)."""
    return _tiled_weight_grad("unshared_conv2d", x, dy, weight_shape, stride, padding, padding_mode, backend)


def _channel_values(name, a, C, dtype, optional=False):
    """A (C,) array of the input's dtype (None passes through when optional)."""
    if a is None and optional:
        return None
    a = V.float_array(name, a, dtype)
    V.check_shape(name, a, (C,), "one value per channel")
    return a


def _moments_input(name, x):
    x = V.float_array(name, x)
    V.check_ndim(name, x, 4, _NCHW)
    if x.shape[1] and 0 < x.size // x.shape[1] < 2:
        raise ValueError(f"{name}: expected more than one value per channel (N·H·W >= 2) to take batch statistics "
                         f"from, got shape {x.shape}")
    return x


def batch_norm2d(x, weight=None, bias=None, *, eps=1e-5, relu=False, backend=None):
    """Batch normalisation with the batch's own statistics (PyTorch's training mode): returns
    (y, mean, inv_std), y = (x − mean)·inv_std·weight + bias per channel, with mean and
    inv_std = 1/sqrt(var + eps) (biased variance) over the channel's N·H·W values.
    relu=True fuses a following ReLU: y = max(y, 0) (NaN stays NaN), in the same pass over the data.

    x (N, C, H, W) float32/float64 with N·H·W >= 2 (as PyTorch requires; N = 0 gives empty y and NaN
    statistics); weight, bias (C,) or None (1 and 0).
    mean and inv_std (C,) are what batch_norm2d_grad takes and what running statistics are updated from
    (the biased variance is 1/inv_std² − eps; PyTorch's running_var takes it times M/(M − 1)). The statistics
    are summed in float64 whatever the dtype. Running statistics (eval mode) are a per-channel affine map,
    which needs no kernel of its own."""
    x = _moments_input("x", x)
    C = x.shape[1]
    weight = _channel_values("weight", weight, C, x.dtype, optional=True)
    bias = _channel_values("bias", bias, C, x.dtype, optional=True)
    eps = float(eps)
    if not eps >= 0:
        raise ValueError(f"eps: expected a number >= 0, got {eps}")
    y = V.empty("x", x.shape, x.dtype)
    mean, inv_std = np.empty(C, x.dtype), np.empty(C, x.dtype)
    if x.size:
        resolve(backend).batch_norm2d(x, weight, bias, y, mean, inv_std, eps, bool(relu))
    else:
        mean[...] = inv_std[...] = np.nan
    return y, mean, inv_std


def batch_norm2d_grad(dy, x, mean, inv_std, weight=None, bias=None, *, relu=False, backend=None):
    """The gradient of batch_norm2d (batch statistics, which depend on x too): returns (dx, dweight, dbias),
    dbias = Σ dy, dweight = Σ dy·x_hat, dx = weight·inv_std·(dy − dbias/M − x_hat·dweight/M) with
    x_hat = (x − mean)·inv_std and sums over the M = N·H·W values of each channel.

    dy, x (N, C, H, W) of one shape and dtype; mean, inv_std as batch_norm2d returned them; weight, bias (C,)
    or None. relu=True: the gradient of batch_norm2d(..., relu=True), dy zeroed first where the forward's y
    (recomputed from x, the statistics, weight and bias exactly as the forward computed it) was <= 0, as
    PyTorch's ReLU backward does; bias is read only then. dweight and dbias are returned whether or not the
    forward had weight and bias."""
    x = _moments_input("x", x)
    dy = V.float_array("dy", dy, x.dtype)
    V.check_shape("dy", dy, x.shape, "same as x")
    C = x.shape[1]
    mean = _channel_values("mean", mean, C, x.dtype)
    inv_std = _channel_values("inv_std", inv_std, C, x.dtype)
    weight = _channel_values("weight", weight, C, x.dtype, optional=True)
    bias = _channel_values("bias", bias, C, x.dtype, optional=True)
    dx = V.empty("x", x.shape, x.dtype)
    dw, db = np.zeros(C, x.dtype), np.zeros(C, x.dtype)
    if x.size:
        resolve(backend).batch_norm2d_grad(dy, x, mean, inv_std, weight, bias, dx, dw, db, bool(relu))
    return dx, dw, db
