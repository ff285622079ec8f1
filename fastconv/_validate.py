"""Argument normalisation and output-size arithmetic, done once for every backend.

Everything a backend receives has passed through here: float32/float64 C-contiguous arrays of one
dtype, and plain int pairs for stride, padding (top, left) and dilation: the bottom/right padding only
sets the output size, and a kernel reads zeros wherever a window leaves the input. Errors name the argument,
the shape received and the shape expected.
"""
from __future__ import annotations

import functools
import numbers
from typing import NamedTuple, Optional

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INT64_MAX = 2**63 - 1
# The kernels index padded planes, strided spans and their byte counts in 64-bit arithmetic. A call
# whose padded input (N·C·H_pad·W_pad) stays below this many elements keeps every such index far from
# overflow; nothing that fits in memory comes near it.
MAX_PADDED_ELEMENTS = 2**48


def float_array(name: str, a, dtype: Optional[np.dtype] = None) -> np.ndarray:
    """`a` as a C-contiguous float32/float64 array; TypeError for anything else."""
    if a is None:
        raise TypeError(f"{name}: expected a float32 or float64 array, got None")
    arr = np.asarray(a)
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {arr.dtype}")
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(f"{name}: dtype {arr.dtype} differs from the input's dtype {dtype}; "
                        "mixed float dtypes are not supported (cast explicitly)")
    return np.ascontiguousarray(arr)


def float_arrays(**named):
    """Validate several arrays that must share one float dtype (the first one's); a None bias passes through."""
    out, dtype = [], None
    for name, a in named.items():
        if a is None and name == "bias":
            out.append(None)
            continue
        arr = float_array(name, a, dtype)
        dtype = arr.dtype
        out.append(arr)
    return out


ALGORITHMS = ("auto", "direct", "winograd", "fft")


def check_algorithm(algorithm) -> str:
    """`algorithm` if it names one of ALGORITHMS, else ValueError naming the choices."""
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm: expected one of {', '.join(map(repr, ALGORITHMS))}, got {algorithm!r}")
    return algorithm


def check_ndim(name: str, a: np.ndarray, ndim: int, layout: str) -> None:
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array {layout}, got shape {a.shape}")


def _ints(v) -> bool:
    """An exact int or a (nested) tuple of them: values that compare equal only when they mean the same."""
    if type(v) is int:
        return True
    if type(v) is not tuple:
        return False
    for e in v:
        if type(e) is not int and not _ints(e):
            return False
    return True


def _memoized(geometry):
    """Cache a geometry function's results for calls whose arguments are exact ints, strings, bools or tuples of
    ints (the usual call: a layer applied again and again). Anything else (floats, NumPy integers, lists, bools
    inside tuples) is checked afresh every time: it may compare equal to an int but be checked differently.
    A bool is told apart from the int it equals by a marker in the key. Errors are never cached."""
    cache = {}

    @functools.wraps(geometry)
    def cached(*args, **kwargs):
        key = list(args)
        for i, v in enumerate(args):
            if type(v) is bool:
                key[i] = (bool, v)
            elif type(v) is not str and not _ints(v):
                return geometry(*args, **kwargs)
        if kwargs:  # the argument names used in messages
            if not all(type(v) is str for v in kwargs.values()):
                return geometry(*args, **kwargs)
            key.append(tuple(kwargs.items()))
        key = tuple(key)
        result = cache.get(key)
        if result is None:
            if len(cache) >= 1024:
                cache.clear()
            result = cache[key] = geometry(*args, **kwargs)
        return result
    return cached


def _int(name: str, v) -> int:
    if type(v) is not int:  # the common case skips the slow abstract-base-class check below
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name}: expected an int or a pair of ints, got {v!r}")
        v = int(v)
    if not -INT64_MAX <= v <= INT64_MAX:
        raise ValueError(f"{name}: {v} does not fit in a 64-bit integer")
    return v


def check_padded_size(x_name: str, x_shape, padded_hw) -> None:
    """ValueError naming the padding when the padded input exceeds MAX_PADDED_ELEMENTS."""
    N, C = x_shape[:2]
    if N * C * padded_hw[0] * padded_hw[1] > MAX_PADDED_ELEMENTS:
        if tuple(padded_hw) == tuple(x_shape[2:]):
            raise ValueError(f"{x_name}: {tuple(x_shape)} exceeds {MAX_PADDED_ELEMENTS} elements (2**48)")
        raise ValueError(f"padding: the padded input {tuple(padded_hw)} of {x_name} {tuple(x_shape)} exceeds "
                         f"{MAX_PADDED_ELEMENTS} elements (2**48): the padding, stride or dilation is out of range")


def moving_stride(stride, out_hw) -> tuple:
    """The stride with 1 along an axis of one output: one window never moves, so the result is the same
    and the kernels' strided index arithmetic stays within the padded input."""
    return tuple(s if o > 1 else 1 for s, o in zip(stride, out_hw))


def pair(name: str, v, minimum: int) -> tuple:
    """int or (h, w) -> (h, w), each >= minimum."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name}: expected an int or a pair (h, w), got {v!r}")
        p = (_int(name, v[0]), _int(name, v[1]))
    else:
        p = (_int(name, v),) * 2
    if min(p) < minimum:
        raise ValueError(f"{name}: each value must be >= {minimum}, got {v!r}")
    return p


def shape_tuple(name: str, shape, ndim: int, batch: bool = False) -> tuple:
    """`shape` as `ndim` positive ints; with `batch`, the first (N) may also be 0 (an empty batch)."""
    try:
        t = tuple(_int(name, s) for s in shape)
    except TypeError:
        raise TypeError(f"{name}: expected a tuple of {ndim} ints, got {shape!r}") from None
    if len(t) != ndim or min(t[batch:] or (1,)) < 1 or t[0] < 0:
        raise ValueError(f"{name}: expected {ndim} positive ints{' (N may be 0)' if batch else ''}, got {shape!r}")
    return t


def conv_padding(padding, in_hw, k_hw, stride, dilation) -> tuple:
    """Padding spec -> (top, bottom, left, right).

    int or (h, w): that much on both sides; ((top, bottom), (left, right)): as given; 'valid': none;
    'same': ceil(in/stride) outputs, the odd pixel bottom/right; 'full': (k−1)·d on every side;
    'causal': (k−1)·d on the left only, none on the right or along the height (WaveNet's causal
    convolution over the width, so output column j reads no input column after j).
    """
    if isinstance(padding, str):
        word = padding.lower()
        if word == "valid":
            return (0, 0, 0, 0)
        spans = [d * (k - 1) + 1 for k, d in zip(k_hw, dilation)]
        if word == "full":
            return (spans[0] - 1, spans[0] - 1, spans[1] - 1, spans[1] - 1)
        if word == "causal":
            return (0, 0, spans[1] - 1, 0)
        if word == "same":
            out = []
            for n, span, s in zip(in_hw, spans, stride):
                total = max(0, (-(-n // s) - 1) * s + span - n)
                out += [total // 2, total - total // 2]
            return tuple(out)
        raise ValueError("padding: expected an int, a pair, ((top, bottom), (left, right)), or one of 'valid', "
                         f"'same', 'full', 'causal'; got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and any(isinstance(v, (tuple, list)) for v in padding):
        if not all(isinstance(v, (tuple, list)) and len(v) == 2 for v in padding):
            raise ValueError(f"padding: expected ((top, bottom), (left, right)), got {padding!r}")
        (pt, pb), (pl, pr) = (pair("padding", v, 0) for v in padding)
        return (pt, pb, pl, pr)
    ph, pw = pair("padding", padding, 0)
    return (ph, ph, pw, pw)


def conv_out(n: int, before: int, after: int, k: int, s: int, d: int) -> int:
    return (n + before + after - d * (k - 1) - 1) // s + 1


class ConvGeometry(NamedTuple):
    N: int
    C_in: int
    H: int
    W: int
    C_out: int
    kH: int
    kW: int
    H_out: int
    W_out: int
    stride: tuple
    pad: tuple        # (top, left): all a kernel needs once the output size is fixed
    dilation: tuple
    groups: int


@_memoized
def conv_geometry(x_shape, w_shape, stride, padding, dilation, groups,
                  x_name="x", w_name="weight") -> ConvGeometry:
    """Shape arithmetic for dense conv: x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW)."""
    if len(x_shape) != 4:
        raise ValueError(f"{x_name}: expected a 4-D array (N, C_in, H, W) or an unbatched (C_in, H, W) one, "
                         f"got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"{w_name}: expected a 4-D array (C_out, C_in/groups, kH, kW), got shape {tuple(w_shape)}")
    N, C_in, H, W = x_shape
    C_out, C_g, kH, kW = w_shape
    groups = _int("groups", groups)
    if groups < 1:
        raise ValueError(f"groups: must be >= 1, got {groups}")
    if C_in % groups or C_out % groups:
        raise ValueError(f"groups: {groups} must divide both input channels ({C_in}) and output channels ({C_out})")
    if C_g != C_in // groups:
        raise ValueError(f"{w_name}: expected shape ({C_out}, {C_in // groups}, kH, kW) for {C_in} input channels "
                         f"and groups={groups}, got {tuple(w_shape)}")
    if min(x_shape[1:]) < 1 or min(w_shape) < 1:  # an empty batch (N = 0) is fine, as in PyTorch
        raise ValueError(f"{x_name}/{w_name}: empty dimensions other than the batch (N) are not supported, got "
                         f"{tuple(x_shape)} and {tuple(w_shape)}")
    stride = pair("stride", stride, 1)
    dilation = pair("dilation", dilation, 1)
    pt, pb, pl, pr = conv_padding(padding, (H, W), (kH, kW), stride, dilation)
    H_out = conv_out(H, pt, pb, kH, stride[0], dilation[0])
    W_out = conv_out(W, pl, pr, kW, stride[1], dilation[1])
    if H_out < 1 or W_out < 1:
        raise ValueError(f"{w_name}: dilated kernel ({dilation[0] * (kH - 1) + 1}, {dilation[1] * (kW - 1) + 1}) is larger "
                         f"than the padded input ({H + pt + pb}, {W + pl + pr}) of {x_name} {tuple(x_shape)}")
    check_padded_size(x_name, x_shape, (H + pt + pb, W + pl + pr))
    stride = moving_stride(stride, (H_out, W_out))
    return ConvGeometry(N, C_in, H, W, C_out, kH, kW, H_out, W_out, stride, (pt, pl), dilation, groups)


def empty(name: str, shape: tuple, dtype) -> np.ndarray:
    """np.empty, whose failures name the arguments that sized the array."""
    try:
        return np.empty(shape, dtype)
    except (MemoryError, ValueError) as e:  # ValueError: more bytes than the address space
        size = np.prod(shape, dtype=float) * np.dtype(dtype).itemsize
        error = MemoryError if isinstance(e, MemoryError) else ValueError
        raise error(f"{name}: the result of shape {tuple(shape)} ({np.dtype(dtype)}, {size / 2**30:.3g} GiB) cannot "
                    "be allocated") from None


def check_shape(name: str, a: np.ndarray, expected: tuple, what: str = "") -> None:
    if tuple(a.shape) != tuple(expected):
        extra = f" ({what})" if what else ""
        raise ValueError(f"{name}: expected shape {tuple(expected)}{extra}, got {tuple(a.shape)}")


def check_bias(bias: Optional[np.ndarray], expected: tuple) -> None:
    if bias is not None:
        check_shape("bias", bias, expected, "one value per output channel" if len(expected) == 1 else "")


class PoolGeometry(NamedTuple):
    H_out: int
    W_out: int
    kernel: tuple     # clipped to the input: what the kernels receive
    stride: tuple
    pad: tuple
    dilation: tuple


@_memoized
def pool_geometry(x_shape, kernel_size, stride, padding, ceil_mode, dilation=1) -> PoolGeometry:
    """PyTorch's max-pool output arithmetic: padding at most half the kernel; with ceil_mode the last
    window must start inside the input or its top/left padding, and windows reaching past the far edge are
    clipped (so a kernel larger than the input still gives an output where the rounding allows one)."""
    kernel = pair("kernel_size", kernel_size, 1)
    stride = kernel if stride is None else pair("stride", stride, 1)
    pad = pair("padding", padding, 0)
    # the common undilated call skips the pair normalisation: pooling calls are often small and many
    dilation = (1, 1) if type(dilation) is int and dilation == 1 else pair("dilation", dilation, 1)
    H, W = x_shape[2:]
    spans = kernel if dilation == (1, 1) else tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(2 * p > k for p, k in zip(pad, kernel)):   # PyTorch's bound: half the kernel, dilated or not
        raise ValueError(f"padding: must be at most half of kernel_size {kernel}, got {pad}")
    out = []
    for n, span, s, p in zip((H, W), spans, stride, pad):
        room = n + 2 * p - span
        o = (room + s - 1 if ceil_mode else room) // s + 1
        if ceil_mode and o > 0 and (o - 1) * s >= n + p:
            o -= 1
        if o < 1:
            raise ValueError(f"kernel_size: {spans} (dilated) is larger than the padded input "
                             f"{(H + 2 * pad[0], W + 2 * pad[1])} and leaves no output" +
                             ("" if ceil_mode else " (ceil_mode=True may keep one: windows are clipped)"))
        out.append(o)
    check_padded_size("x", x_shape, (H + 2 * pad[0], W + 2 * pad[1]))
    # Windows are clipped to the input, and every window starts at or after -pad: taps at or past H + pad read
    # nothing, so the kernels get the kernel cut to the taps that can land in the input (their workspace
    # follows it), and a stride of 1 along an axis of one output (see moving_stride).
    clipped = tuple(min(k, (n + p - 1) // d + 1) for k, n, p, d in zip(kernel, (H, W), pad, dilation))
    return PoolGeometry(out[0], out[1], clipped, moving_stride(stride, out), pad, dilation)


class TransposeGeometry(NamedTuple):
    N: int
    C_out: int
    H_out: int
    W_out: int
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    extra: tuple      # rows, cols of zeros to append to x: output_padding >= stride makes conv2d's output larger


@_memoized
def transpose_geometry(x_shape, w_shape, stride, padding, output_padding, dilation, groups) -> TransposeGeometry:
    """PyTorch's conv_transpose2d arithmetic: x (N, C_in, H, W), weight (C_in, C_out/groups, kH, kW),
    H_out = (H − 1)·s − 2p + d·(kH − 1) + output_padding + 1; padding an int or a pair (as PyTorch)."""
    if len(x_shape) != 4:
        raise ValueError(f"x: expected a 4-D array (N, C_in, H, W) or an unbatched (C_in, H, W) one, "
                         f"got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"weight: expected a 4-D array (C_in, C_out/groups, kH, kW), got shape {tuple(w_shape)}")
    if isinstance(padding, str) or isinstance(padding, (tuple, list)) and any(isinstance(v, (str, tuple, list))
                                                                          for v in padding):
        raise ValueError(f"padding: conv_transpose2d takes an int or a pair (as PyTorch), got {padding!r}")
    s, p, d = pair("stride", stride, 1), pair("padding", padding, 0), pair("dilation", dilation, 1)
    op = pair("output_padding", output_padding, 0)
    if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
        raise ValueError(f"output_padding: must be smaller than stride {s} or dilation {d}, got {op}")
    groups = _int("groups", groups)
    if groups < 1 or w_shape[0] % groups:
        raise ValueError(f"groups: must be >= 1 and divide weight.shape[0] = {w_shape[0]}, got {groups}")
    if x_shape[1] != w_shape[0]:
        raise ValueError(f"weight: expected shape ({x_shape[1]}, C_out/groups, kH, kW) for x with {x_shape[1]} "
                         f"channels, got {tuple(w_shape)}")
    if min(x_shape[1:]) < 1 or min(w_shape) < 1:
        raise ValueError(f"x/weight: empty dimensions other than the batch (N) are not supported, got "
                         f"{tuple(x_shape)} and {tuple(w_shape)}")
    N, _, H, W = x_shape
    out_hw = [(n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
              for n, si, pi, di, ki, oi in zip((H, W), s, p, d, w_shape[2:], op)]
    if min(out_hw) < 1:
        raise ValueError(f"padding: {p} leaves no output for x {tuple(x_shape)} and kernel {tuple(w_shape[2:])}")
    if max(out_hw) >= 2**63:
        raise ValueError(f"stride/dilation: the output size {tuple(out_hw)} of x {tuple(x_shape)} and kernel "
                         f"{tuple(w_shape[2:])} does not fit in a 64-bit integer")
    extra = tuple(oi // si for oi, si in zip(op, s))
    return TransposeGeometry(N, w_shape[1] * groups, out_hw[0], out_hw[1], s, p, d, groups, extra)


@_memoized
def tiled_geometry(x_shape, w_shape, stride, padding, op: str, x_name="x", w_name="weight") -> tuple:
    """Shape arithmetic for tiled/unshared conv: weight (T_h, T_w, C_out, C_in, kH, kW).

    Returns (ConvGeometry, (T_h, T_w)). For op == 'unshared_conv2d' the grid (T_h, T_w) must be (H_out, W_out).
    """
    layout = "(H_out, W_out, C_out, C_in, kH, kW)" if op == "unshared_conv2d" else "(T_h, T_w, C_out, C_in, kH, kW)"
    if len(w_shape) != 6:
        raise ValueError(f"{w_name}: expected a 6-D array {layout}, got shape {tuple(w_shape)}")
    T_h, T_w, C_out, C_in, kH, kW = w_shape
    if T_h < 1 or T_w < 1:
        raise ValueError(f"{w_name}: expected a kernel grid of at least 1 x 1 in {layout}, got shape {tuple(w_shape)}")
    if len(x_shape) == 4 and x_shape[1] != C_in:
        raise ValueError(f"{w_name}: expected C_in = {x_shape[1]} (the channels of {x_name}) in {layout}, "
                         f"got shape {tuple(w_shape)}")
    g = conv_geometry(x_shape, (C_out, C_in, kH, kW), stride, padding, 1, 1, x_name, w_name)
    if op == "unshared_conv2d" and (T_h, T_w) != (g.H_out, g.W_out):
        raise ValueError(f"{w_name}: the kernel grid must equal the output size: expected shape "
                         f"({g.H_out}, {g.W_out}, {C_out}, {C_in}, {kH}, {kW}), got {tuple(w_shape)}")
    return g, (T_h, T_w)
