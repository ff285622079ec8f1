"""Public ops: validate once (_validate), allocate the output, dispatch to the chosen backend.

conv_transpose2d, convolve2d and correlate2d are derived from the primitive kernels here, so every
backend gets them for free (DESIGN: derive, don't duplicate).
"""
from __future__ import annotations

import numpy as np

from . import _validate as V
from .backends import resolve
from .backends.kernels import resolve_algorithm

_NCHW = "(N, C, H, W)"

_ALGORITHM_DOC = """
    algorithm: 'auto' (default: set_algorithm / FASTCONV_ALGORITHM), 'direct', 'winograd' or 'fft' — how
    the cpp backend computes it (the numpy and numba backends always compute directly). 'direct' gives
    results that do not depend on the algorithm choice; a forced algorithm that cannot compute the call
    raises ValueError naming why. Error bounds, max|y − y64| / max|y64| on N(0,1) data, measured on the
    bench's 3x3 layers and 512-channel layers (tested: float32 ≤ 1e-4, float64 ≤ 1e-11): direct float32
    up to 1.6e-6; Winograd F(2x2,3x3) float32 up to 7e-7, float64 3e-15; F(4x4,3x3) float32 up to 1.2e-5,
    float64 3e-14 (Winograd: 3x3, stride 1, groups 1; dilated layers run on the stride-phase sub-images)."""


def conv2d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, algorithm=None, backend=None):
    """Cross-correlation y[n,o,i,j] = b[o] + Σ w[o,c,a,b]·x[n,c, i·s+a·d−p, j·s+b·d−p] (PyTorch's conv2d).

    x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out,) -> (N, C_out, H_out, W_out).
    padding: int, (h, w), ((top, bottom), (left, right)), 'valid', 'same' (ceil(H/stride) outputs, extra pad
    bottom/right), 'full' or 'causal' ((kW−1)·d_w on the left only: column j reads no input after column j).
    The kernels take only (top, left) and the output size; reads past the bottom/right edge are zeros, so
    every padding form works on every backend and in both gradients.
    """
    algorithm = resolve_algorithm(algorithm)
    x, weight, bias = V.float_arrays(x=x, weight=weight, bias=bias)
    g = V.conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    V.check_bias(bias, (g.C_out,))
    y = np.empty((g.N, g.C_out, g.H_out, g.W_out), x.dtype)
    resolve(backend).conv2d(x, weight, bias, y, g.stride, g.pad, g.dilation, g.groups, algorithm=algorithm)
    return y


def conv2d_input_grad(dy, weight, input_shape, *, stride=1, padding=0, dilation=1, groups=1, algorithm=None,
                      backend=None):
    """dL/dx of conv2d given dy = dL/dy: a full convolution of dy with the 180°-rotated kernel
    (strided and dilated as the forward pass was). Returns an array of `input_shape`."""
    algorithm = resolve_algorithm(algorithm)
    dy, weight = V.float_arrays(dy=dy, weight=weight)
    input_shape = V.shape_tuple("input_shape", input_shape, 4)
    g = V.conv_geometry(input_shape, weight.shape, stride, padding, dilation, groups, x_name="input_shape")
    V.check_shape("dy", dy, (g.N, g.C_out, g.H_out, g.W_out), f"conv2d output for input_shape {input_shape}")
    dx = np.empty(input_shape, dy.dtype)
    resolve(backend).conv2d_input_grad(dy, weight, dx, g.stride, g.pad, g.dilation, g.groups, algorithm=algorithm)
    return dx


def conv2d_weight_grad(x, dy, weight_shape, *, stride=1, padding=0, dilation=1, groups=1, algorithm=None,
                       backend=None):
    """dL/dw of conv2d: the valid correlation of x with the output delta dy. Returns `weight_shape`."""
    algorithm = resolve_algorithm(algorithm)
    x, dy = V.float_arrays(x=x, dy=dy)
    weight_shape = V.shape_tuple("weight_shape", weight_shape, 4)
    g = V.conv_geometry(x.shape, weight_shape, stride, padding, dilation, groups, w_name="weight_shape")
    V.check_shape("dy", dy, (g.N, g.C_out, g.H_out, g.W_out), f"conv2d output for x {x.shape}")
    dw = np.empty(weight_shape, x.dtype)
    resolve(backend).conv2d_weight_grad(x, dy, dw, g.stride, g.pad, g.dilation, g.groups, algorithm=algorithm)
    return dw


for _f in (conv2d, conv2d_input_grad, conv2d_weight_grad):
    _f.__doc__ = (_f.__doc__ or "") + _ALGORITHM_DOC


def conv_transpose2d(x, weight, bias=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1,
                     algorithm=None, backend=None):
    """PyTorch's conv_transpose2d: weight (C_in, C_out/groups, kH, kW); the gradient of conv2d w.r.t. its input.

    H_out = (H − 1)·s − 2p + d·(kH − 1) + output_padding + 1; padding is an int or a pair.
    """
    x, weight, bias = V.float_arrays(x=x, weight=weight, bias=bias)
    g = V.transpose_geometry(x.shape, weight.shape, stride, padding, output_padding, dilation, groups)
    if any(g.extra):  # output_padding >= stride (allowed when < dilation): the conv2d of that output has more
        x = np.pad(x, ((0, 0), (0, 0), (0, g.extra[0]), (0, g.extra[1])))  # rows; theirs are zero in x
    y = conv2d_input_grad(x, weight, (g.N, g.C_out, g.H_out, g.W_out), stride=g.stride, padding=g.padding,
                          dilation=g.dilation, groups=g.groups, algorithm=algorithm, backend=backend)
    if bias is not None:
        V.check_bias(bias, (g.C_out,))
        y += bias[None, :, None, None]
    return y


def _plane_op(image, kernel, mode, flip, algorithm, backend):
    """scipy.signal.correlate2d/convolve2d (zero boundary) through the conv2d kernel on a 1×1×H×W plane."""
    algorithm = resolve_algorithm(algorithm)
    image, kernel = V.float_arrays(image=image, kernel=kernel)
    V.check_ndim("image", image, 2, "(H, W)")
    V.check_ndim("kernel", kernel, 2, "(kH, kW)")
    if not isinstance(mode, str) or mode not in ("full", "valid", "same"):
        raise ValueError(f"mode: expected 'full', 'valid' or 'same', got {mode!r}")
    if min(image.shape) < 1 or min(kernel.shape) < 1:
        raise ValueError(f"image/kernel: empty arrays are not supported, got {image.shape} and {kernel.shape}")
    swapped = False
    if mode == "valid":
        if all(i >= k for i, k in zip(image.shape, kernel.shape)):
            pass
        elif all(k >= i for i, k in zip(image.shape, kernel.shape)):
            image, kernel, swapped = kernel, image, True  # scipy swaps so the larger one is the image
        else:
            raise ValueError(f"kernel: in 'valid' mode one of image {image.shape} and kernel {kernel.shape} must be "
                             "at least as large as the other in every dimension")
    w = kernel[::-1, ::-1] if flip else kernel
    k = np.array(kernel.shape)
    if mode == "valid":
        pad = (0, 0)
    elif mode == "full":
        pad = tuple(k - 1)
    else:  # centred on the 'full' *convolution* as scipy does, so the flip moves the centre for even kernels
        pad = tuple(k // 2 if flip else (k - 1) // 2)
    H, W = image.shape
    full_out = (H + k[0] - 1, W + k[1] - 1)
    out_hw = {"valid": (H - k[0] + 1, W - k[1] + 1), "full": full_out, "same": (H, W)}[mode]
    y = np.empty((1, 1) + out_hw, image.dtype)
    resolve(backend).conv2d(image[None, None], np.ascontiguousarray(w)[None, None], None, y,
                            (1, 1), pad, (1, 1), 1, algorithm=algorithm)
    y = y[0, 0]
    if swapped and not flip:
        y = y[::-1, ::-1].copy()
    return y


def correlate2d(image, kernel, mode="full", *, algorithm=None, backend=None):
    """Equals scipy.signal.correlate2d(image, kernel, mode) with a zero boundary."""
    return _plane_op(image, kernel, mode, flip=False, algorithm=algorithm, backend=backend)


def convolve2d(image, kernel, mode="full", *, algorithm=None, backend=None):
    """Equals scipy.signal.convolve2d(image, kernel, mode) with a zero boundary (true convolution)."""
    return _plane_op(image, kernel, mode, flip=True, algorithm=algorithm, backend=backend)


def max_pool2d(x, kernel_size, stride=None, padding=0, *, ceil_mode=False, backend=None):
    """Max-pool that records its switches -> (y, switches).

    switches (int64, shape of y) hold the flat index h·W + w of each maximum within its (n, c) plane,
    PyTorch's return_indices convention; ties go to the first maximum in row-major window order;
    padding is −∞ and at most half the kernel; NaN propagates.
    """
    x = V.float_array("x", x)
    V.check_ndim("x", x, 4, _NCHW)
    g = V.pool_geometry(x.shape, kernel_size, stride, padding, bool(ceil_mode))
    y = np.empty(x.shape[:2] + (g.H_out, g.W_out), x.dtype)
    switches = np.empty(y.shape, np.int64)
    resolve(backend).max_pool2d(x, y, switches, g.kernel, g.stride, g.pad)
    return y, switches


def max_unpool2d(y, switches, output_size, *, backend=None):
    """out (shape output_size) is zero except out[n,c].flat[switches[n,c,i,j]] += y[n,c,i,j].

    The deconvnet unpooling step, and exactly max_pool2d's backward pass (overlapping windows accumulate).
    """
    y = V.float_array("y", y)
    V.check_ndim("y", y, 4, _NCHW)
    output_size = V.shape_tuple("output_size", output_size, 4)
    if output_size[:2] != y.shape[:2]:
        raise ValueError(f"output_size: expected (N, C) = {y.shape[:2]} to match y, got {output_size}")
    sw = np.asarray(switches)
    if sw.dtype != np.int64:
        raise TypeError(f"switches: expected dtype int64 (as max_pool2d returns), got {sw.dtype}")
    V.check_shape("switches", sw, y.shape, "same as y")
    out = np.empty(output_size, y.dtype)
    # The kernels skip and count switches outside the plane: the range check costs no pass of its own.
    if resolve(backend).max_unpool2d(y, np.ascontiguousarray(sw), out):
        raise ValueError(f"switches: values must lie in [0, {out[0, 0].size}) for output plane {output_size[2:]}, "
                         f"got range [{sw.min()}, {sw.max()}]")
    return out


def _tiled_forward(op, x, weight, bias, stride, padding, backend):
    x, weight, bias = V.float_arrays(x=x, weight=weight, bias=bias)
    V.check_ndim("x", x, 4, _NCHW)
    g, grid = V.tiled_geometry(x.shape, weight.shape, stride, padding, op)
    V.check_bias(bias, (g.C_out, g.H_out, g.W_out) if op == "unshared_conv2d" else (g.C_out,))
    y = np.empty((g.N, g.C_out, g.H_out, g.W_out), x.dtype)
    getattr(resolve(backend), op)(x, weight, bias, y, g.stride, g.pad)
    return y


def _tiled_input_grad(op, dy, weight, input_shape, stride, padding, backend):
    dy, weight = V.float_arrays(dy=dy, weight=weight)
    input_shape = V.shape_tuple("input_shape", input_shape, 4)
    g, _ = V.tiled_geometry(input_shape, weight.shape, stride, padding, op, x_name="input_shape")
    V.check_shape("dy", dy, (g.N, g.C_out, g.H_out, g.W_out), f"{op} output for input_shape {input_shape}")
    dx = np.empty(input_shape, dy.dtype)
    getattr(resolve(backend), op + "_input_grad")(dy, weight, dx, g.stride, g.pad)
    return dx


def _tiled_weight_grad(op, x, dy, weight_shape, stride, padding, backend):
    x, dy = V.float_arrays(x=x, dy=dy)
    V.check_ndim("x", x, 4, _NCHW)
    weight_shape = V.shape_tuple("weight_shape", weight_shape, 6)
    g, _ = V.tiled_geometry(x.shape, weight_shape, stride, padding, op, w_name="weight_shape")
    V.check_shape("dy", dy, (g.N, g.C_out, g.H_out, g.W_out), f"{op} output for x {x.shape}")
    dw = np.empty(weight_shape, x.dtype)
    getattr(resolve(backend), op + "_weight_grad")(x, dy, dw, g.stride, g.pad)
    return dw


def tiled_conv2d(x, weight, bias=None, *, stride=1, padding=0, backend=None):
    """Tiled convolution (Le et al. 2010): weight (T_h, T_w, C_out, C_in, kH, kW), bias (C_out,);
    output position (i, j) uses kernel weight[i % T_h, j % T_w]. T = (1, 1) is conv2d. padding takes every
    form conv2d does, ((top, bottom), (left, right)) and 'causal' included."""
    return _tiled_forward("tiled_conv2d", x, weight, bias, stride, padding, backend)


def tiled_conv2d_input_grad(dy, weight, input_shape, *, stride=1, padding=0, backend=None):
    """dL/dx of tiled_conv2d; returns an array of `input_shape`."""
    return _tiled_input_grad("tiled_conv2d", dy, weight, input_shape, stride, padding, backend)


def tiled_conv2d_weight_grad(x, dy, weight_shape, *, stride=1, padding=0, backend=None):
    """dL/dw of tiled_conv2d; returns an array of `weight_shape` (T_h, T_w, C_out, C_in, kH, kW)."""
    return _tiled_weight_grad("tiled_conv2d", x, dy, weight_shape, stride, padding, backend)


def unshared_conv2d(x, weight, bias=None, *, stride=1, padding=0, backend=None):
    """Unshared (locally connected) convolution: weight (H_out, W_out, C_out, C_in, kH, kW), bias
    (C_out, H_out, W_out); every output position has its own kernel. Equals tiled_conv2d with T = (H_out, W_out)."""
    return _tiled_forward("unshared_conv2d", x, weight, bias, stride, padding, backend)


def unshared_conv2d_input_grad(dy, weight, input_shape, *, stride=1, padding=0, backend=None):
    """dL/dx of unshared_conv2d; returns an array of `input_shape`."""
    return _tiled_input_grad("unshared_conv2d", dy, weight, input_shape, stride, padding, backend)


def unshared_conv2d_weight_grad(x, dy, weight_shape, *, stride=1, padding=0, backend=None):
    """dL/dw of unshared_conv2d; returns an array of `weight_shape` (H_out, W_out, C_out, C_in, kH, kW)."""
    return _tiled_weight_grad("unshared_conv2d", x, dy, weight_shape, stride, padding, backend)
