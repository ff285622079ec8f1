"""The 'numba' backend: the function table of backends.OPS as Numba-compiled, multi-threaded kernels.

Same signatures as reference.py: validated C-contiguous arrays of one float dtype, a preallocated
output that the kernel overwrites, int pairs for stride/padding(top, left)/dilation. These wrappers
only replace a None bias by a dummy plus a flag, pass a zero of the array dtype (so float32 stays
float32 inside the kernels) and dispatch. The kernels live in _numba_dense.py (conv2d family),
_numba_tiled.py (tiled and unshared) and _numba_pool.py; flags in _numba_config.py. Numba compiles
once per dtype and caches on disk, so only the first call on a machine pays the JIT.
"""
import functools

import numba
import numpy as np

from . import _numba_dense as _dense
from . import _numba_tiled as _tiled
from . import _numba_pool as _pool
from . import _numba_norm as _norm


def set_num_threads(n):
    """Bound the kernels' threads (clamped to numba's pool size, NUMBA_NUM_THREADS)."""
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


def _memory_errors(kernel):
    """A Numba kernel whose allocation fails inside a parallel loop raises SystemError, caused by the
    MemoryError; the caller gets the MemoryError (the workspace of the dense forward grows with the
    dilated kernel's height: a dilation near 2**31 asks for more than any machine has)."""
    @functools.wraps(kernel)
    def call(*args, **kwargs):
        try:
            return kernel(*args, **kwargs)
        except SystemError as e:
            if isinstance(e.__cause__, MemoryError):
                raise e.__cause__ from None
            raise
    return call


def _bias(b, dtype, shape):
    """(array, has_b): b reshaped to `shape` (ndim fixed per kernel) or a zero dummy of that ndim."""
    if b is None:
        return np.zeros((1,) * len(shape), dtype), False
    return b.reshape(shape), True


@_memory_errors
def conv2d(x, w, b, y, stride, pad, dilation, groups, algorithm="auto"):
    b, has_b = _bias(b, x.dtype, (w.shape[0],))
    _dense.conv2d(x, w, b, has_b, y, *stride, *pad, *dilation, groups, x.dtype.type(0))


@_memory_errors
def conv2d_input_grad(dy, w, dx, stride, pad, dilation, groups, algorithm="auto"):
    _dense.conv2d_input_grad(dy, w, dx, *stride, *pad, *dilation, groups, dy.dtype.type(0))


@_memory_errors
def conv2d_weight_grad(x, dy, dw, stride, pad, dilation, groups, algorithm="auto"):
    _dense.conv2d_weight_grad(x, dy, dw, *stride, *pad, *dilation, groups, x.dtype.type(0))


@_memory_errors
def max_pool2d(x, y, switches, kernel, stride, pad, dilation):
    _pool.max_pool2d(x, y, switches, *kernel, *stride, *pad, *dilation)


@_memory_errors
def max_unpool2d(y, switches, out):
    return _pool.max_unpool2d(y, switches, out)


@_memory_errors
def tiled_conv2d(x, w, b, y, stride, pad):
    b, has_b = _bias(b, x.dtype, (w.shape[2], 1, 1))
    _tiled.tiled_forward(x, w, b, has_b, y, *stride, *pad, x.dtype.type(0))


@_memory_errors
def tiled_conv2d_input_grad(dy, w, dx, stride, pad):
    _tiled.tiled_input_grad(dy, w, dx, *stride, *pad)


@_memory_errors
def tiled_conv2d_weight_grad(x, dy, dw, stride, pad):
    _tiled.tiled_weight_grad(x, dy, dw, *stride, *pad)


@_memory_errors
def unshared_conv2d(x, w, b, y, stride, pad):
    b, has_b = _bias(b, x.dtype, (w.shape[2], 1, 1) if b is None else b.shape)
    _tiled.tiled_forward(x, w, b, has_b, y, *stride, *pad, x.dtype.type(0))


# The unshared gradients are the tiled ones with T = (H_out, W_out): the same kernels.
unshared_conv2d_input_grad = tiled_conv2d_input_grad
unshared_conv2d_weight_grad = tiled_conv2d_weight_grad


@_memory_errors
def batch_norm2d(x, w, b, y, mean, inv_std, eps, relu):
    (w, has_w), (b, has_b) = _bias(w, x.dtype, (x.shape[1],)), _bias(b, x.dtype, (x.shape[1],))
    _norm.batch_norm2d(x, w, b, has_w, has_b, y, mean, inv_std, float(eps), bool(relu))


@_memory_errors
def batch_norm2d_grad(dy, x, mean, inv_std, w, b, dx, dw, db, relu):
    (w, has_w), (b, has_b) = _bias(w, x.dtype, (x.shape[1],)), _bias(b, x.dtype, (x.shape[1],))
    _norm.batch_norm2d_grad(dy, x, mean, inv_std, w, has_w, b, has_b, dx, dw, db, bool(relu))
