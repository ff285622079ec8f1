"""convolve2d and correlate2d: scipy.signal's functions (mode, boundary, fillvalue, dtypes) on fastconv's kernels.

The result dtype is scipy's, np.result_type of the two inputs. Floats run through the conv2d kernel of the
chosen backend on one 1×1×H×W plane; a complex plane is the same kernel on two channels (real, imaginary)
with a 2×2 weight of the kernel's parts. boundary='fill' with a zero fillvalue is the kernels' own zero
padding; any other boundary extends the image explicitly (_padding) and runs a 'valid' correlation.
Integer inputs are computed exactly in NumPy 64-bit integer arithmetic, whatever the backend: sums wrap
modulo 2**64 and the cast to the result dtype wraps on, which is what scipy's C loops give in that dtype.
Booleans, which scipy refuses, follow np.convolve: the result is True where any product is.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import _padding as P
from . import _validate as V
from .backends import resolve
from .backends.kernels import resolve_algorithm

_MODES = ("full", "valid", "same")
# scipy's boundary names (and their synonyms) -> the extension of _padding ('fill' pads with fillvalue)
_BOUNDARIES = {"fill": "fill", "pad": "fill", "wrap": "circular", "circular": "circular",
               "symm": "symmetric", "symmetric": "symmetric"}


def _result_dtype(image, kernel) -> np.dtype:
    dt = np.result_type(image, kernel)
    if dt.kind in "biu" or dt in (np.float32, np.float64, np.complex64, np.complex128):
        return dt
    raise TypeError(f"image/kernel: expected bool, integer, float32/float64 or complex64/complex128 arrays "
                    f"(as scipy.signal), got {image.dtype} and {kernel.dtype}")


def _fill(fillvalue, dt: np.dtype):
    """scipy's fillvalue rules: a complex value only for complex results, an integer one within the dtype."""
    try:
        fv = complex(fillvalue)
    except (TypeError, ValueError):
        raise TypeError(f"fillvalue: expected a number, got {fillvalue!r}") from None
    if dt.kind == "c":
        return dt.type(fv)
    if fv.imag:
        raise ValueError(f"fillvalue: {fillvalue!r} is complex but the result dtype is {dt}")
    if dt.kind in "iu" and not np.iinfo(dt).min <= int(fv.real) <= np.iinfo(dt).max:
        raise ValueError(f"fillvalue: {fillvalue!r} does not fit the result dtype {dt}")
    return dt.type(fv.real) if dt.kind != "b" else fv.real != 0


def _pads(shape, mode, flip):
    """(top, bottom, left, right) of the correlation with the (flipped, for convolve2d) kernel: 'same' centres
    on the 'full' *convolution* as scipy does, so the flip moves the centre for even kernels."""
    out = []
    for k in shape:
        before = {"valid": 0, "full": k - 1, "same": k // 2 if flip else (k - 1) // 2}[mode]
        out += [before, {"valid": 0, "full": k - 1, "same": k - 1 - before}[mode]]
    return tuple(out)


def _float_correlate(x, w, pad, out_hw, algorithm, backend):
    """y (C_out, *out_hw) = the conv2d kernel on one image x (C_in, H, W) with w (C_out, C_in, kH, kW)."""
    y = V.empty("image, kernel, mode", (1, w.shape[0]) + out_hw, x.dtype)
    resolve(backend).conv2d(np.ascontiguousarray(x[None]), np.ascontiguousarray(w), None, y, (1, 1), pad, (1, 1), 1,
                            algorithm=algorithm)
    return y[0]


def _plane_op(image, kernel, mode, boundary, fillvalue, flip, algorithm, backend):
    algorithm = resolve_algorithm(algorithm)
    image, kernel = np.asarray(image), np.asarray(kernel)
    for name, a in (("image", image), ("kernel", kernel)):
        if a.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D array (H, W), got shape {a.shape}")
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"mode: expected 'full', 'valid' or 'same', got {mode!r}")
    if not isinstance(boundary, str) or boundary not in _BOUNDARIES:
        raise ValueError(f"boundary: expected 'fill', 'wrap' or 'symm' (or 'pad', 'circular', 'symmetric'), "
                         f"got {boundary!r}")
    if min(image.shape) < 1 or min(kernel.shape) < 1:
        raise ValueError(f"image/kernel: empty arrays are not supported, got {image.shape} and {kernel.shape}")
    dt = _result_dtype(image, kernel)
    fill = _fill(fillvalue, dt)
    swapped = False
    if mode == "valid":
        if all(i >= k for i, k in zip(image.shape, kernel.shape)):
            pass
        elif all(k >= i for i, k in zip(image.shape, kernel.shape)):
            image, kernel, swapped = kernel, image, True  # scipy swaps so the larger one is the image
        else:
            raise ValueError(f"kernel: in 'valid' mode one of image {image.shape} and kernel {kernel.shape} must be "
                             "at least as large as the other in every dimension")
    image = image.astype(dt, copy=False)
    w = (kernel[::-1, ::-1] if flip else np.conj(kernel)).astype(dt, copy=False)  # correlate2d conjugates, as scipy
    pads = _pads(kernel.shape, mode, flip)
    H, W = image.shape
    out_hw = (H + pads[0] + pads[1] - kernel.shape[0] + 1, W + pads[2] + pads[3] - kernel.shape[1] + 1)
    extension = _BOUNDARIES[boundary]
    zero_fill = extension == "fill" and fill == 0 and dt.kind in "fc"
    if not zero_fill:   # every other boundary: the image extended explicitly, then a 'valid' correlation
        image = (np.pad(image, ((pads[0], pads[1]), (pads[2], pads[3])), constant_values=fill)
                 if extension == "fill" else P.pad(image, pads, extension, name="boundary"))
        pads = (0, 0, 0, 0)
    if dt.kind == "f":
        y = _float_correlate(image[None], w[None, None], pads[::2], out_hw, algorithm, backend)[0]
    elif dt.kind == "c":
        part = np.float32 if dt == np.complex64 else np.float64
        x = np.stack([image.real, image.imag]).astype(part)
        wr, wi = w.real.astype(part), w.imag.astype(part)
        re, im = _float_correlate(x, np.array([[wr, -wi], [wi, wr]]), pads[::2], out_hw, algorithm, backend)
        y = (re + 1j * im).astype(dt)
    else:
        acc = np.uint64 if dt.kind == "u" and dt.itemsize == 8 else np.int64
        windows = sliding_window_view(image.astype(acc), w.shape)
        y = np.einsum("ijab,ab->ij", windows, w.astype(acc))
        y = y != 0 if dt.kind == "b" else y.astype(dt)
    return np.ascontiguousarray(y[::-1, ::-1] if swapped and not flip else y)


def correlate2d(image, kernel, mode="full", boundary="fill", fillvalue=0, *, algorithm=None, backend=None):
    """Equals scipy.signal.correlate2d(image, kernel, mode, boundary, fillvalue): Σ image[i+a, j+b]·conj(kernel[a, b]).

    image, kernel: 2-D arrays of bool, any integer, float32/float64 or complex64/complex128 type; the result has
    scipy's dtype (np.result_type of the two), integers computed exactly. mode 'full' | 'valid' | 'same';
    boundary 'fill' (with fillvalue) | 'wrap' | 'symm'. algorithm: as conv2d's (floating-point planes only).
    """
    return _plane_op(image, kernel, mode, boundary, fillvalue, flip=False, algorithm=algorithm, backend=backend)


def convolve2d(image, kernel, mode="full", boundary="fill", fillvalue=0, *, algorithm=None, backend=None):
    """Equals scipy.signal.convolve2d(image, kernel, mode, boundary, fillvalue) (true convolution, the kernel
    rotated by 180°). Inputs, dtypes, modes and boundaries as correlate2d."""
    return _plane_op(image, kernel, mode, boundary, fillvalue, flip=True, algorithm=algorithm, backend=backend)
