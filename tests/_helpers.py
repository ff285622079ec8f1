"""Test helpers: tolerances, input makers, and independent naive implementations (outside truth).

The naive loops here share no code with fastconv: padding words, output sizes and the switch rule are
re-derived from the API text (and PyTorch's max-pool arithmetic), one scalar at a time. (`num_threads` is
the one helper that touches fastconv: it scopes the thread bound.)
"""
import contextlib
import itertools
import os
import subprocess
import sys

import numpy as np

import fastconv as fc

# The directory holding the fastconv these tests import (site-packages, or a source tree built in place).
FASTCONV_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))


def run_python(*args, env=None, timeout=120):
    """This Python on `args`, run from FASTCONV_PARENT so that the child imports the fastconv the tests
    import (run from a checkout, `python -c` would import its unbuilt source tree instead)."""
    return subprocess.run([sys.executable, *args], cwd=FASTCONV_PARENT, env=env, capture_output=True, text=True,
                          timeout=timeout)

RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def assert_close(actual, expected, dtype):
    """actual has `dtype`; equals expected to rtol and atol = rtol·max(1, max|expected|) for that dtype."""
    dtype = np.dtype(dtype)
    assert isinstance(actual, np.ndarray), type(actual)
    assert actual.dtype == dtype, f"result dtype {actual.dtype}, expected {dtype}"
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(finite.max()) if finite.size else 1.0)
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def central_diff(f, a, eps=1e-3):
    """Central differences of scalar f() in every element of a (modified in place and restored)."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        fp = f()
        a[idx] = old - eps
        fm = f()
        a[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def distinct(rng, shape, dtype=np.float64):
    """Values with no ties, spaced 1 apart (finite differences of max-pool stay inside one branch)."""
    size = int(np.prod(shape))
    return (rng.permutation(size) - size / 2).reshape(shape).astype(dtype)


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv_pads(padding, hw, k, stride, dilation):
    """(top, bottom, left, right) from the API text: 'same' gives ceil(n/s) outputs, extra pad bottom/right."""
    out = []
    for n, kk, s, d, i in zip(hw, k, pair(stride), pair(dilation), (0, 1)):
        span = d * (kk - 1) + 1
        if padding == "valid":
            out += [0, 0]
        elif padding == "full":
            out += [span - 1, span - 1]
        elif padding == "same":
            n_out = -(-n // s)
            total = max(0, (n_out - 1) * s + span - n)
            out += [total // 2, total - total // 2]
        else:
            p = pair(padding)[i]
            out += [p, p]
    return tuple(out)


def naive_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """The API's formula, one multiply-add at a time, in float64."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    N, C, H, W = x.shape
    C_out, Cg, kH, kW = w.shape
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    pt, pb, pl, pr = conv_pads(padding, (H, W), (kH, kW), stride, dilation)
    H_out = (H + pt + pb - dh * (kH - 1) - 1) // sh + 1
    W_out = (W + pl + pr - dw * (kW - 1) - 1) // sw + 1
    y = np.zeros((N, C_out, H_out, W_out))
    O_g = C_out // groups
    for n, o, i, j in itertools.product(range(N), range(C_out), range(H_out), range(W_out)):
        g = o // O_g
        acc = 0.0 if b is None else float(b[o])
        for c, a, bb in itertools.product(range(Cg), range(kH), range(kW)):
            h, ww = i * sh + a * dh - pt, j * sw + bb * dw - pl
            if 0 <= h < H and 0 <= ww < W:
                acc += w[o, c, a, bb] * x[n, g * Cg + c, h, ww]
        y[n, o, i, j] = acc
    return y


def pool_out(n, k, s, p, ceil_mode):
    """PyTorch's pooling_output_shape (dilation 1)."""
    num = n + 2 * p - k + ((s - 1) if ceil_mode else 0)
    o = num // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def naive_max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Scan each window's real elements in row-major order; keep the first maximum (a NaN beats everything,
    the first NaN wins). Padding is -inf, so it never wins: switches always name a real element."""
    N, C, H, W = x.shape
    kh, kw = pair(kernel_size)
    sh, sw = pair(kernel_size if stride is None else stride)
    ph, pw = pair(padding)
    H_out, W_out = pool_out(H, kh, sh, ph, ceil_mode), pool_out(W, kw, sw, pw, ceil_mode)
    y = np.empty((N, C, H_out, W_out), x.dtype)
    sw_ = np.empty(y.shape, np.int64)
    for n, c, i, j in itertools.product(range(N), range(C), range(H_out), range(W_out)):
        best, arg = None, None
        for a, bb in itertools.product(range(kh), range(kw)):
            h, w = i * sh - ph + a, j * sw - pw + bb
            if not (0 <= h < H and 0 <= w < W):
                continue
            v = x[n, c, h, w]
            if best is None or (not np.isnan(best) and (v > best or np.isnan(v))):
                best, arg = v, h * W + w
        y[n, c, i, j], sw_[n, c, i, j] = best, arg
    return y, sw_


def naive_max_unpool2d(y, switches, output_size):
    out = np.zeros(output_size, y.dtype)
    for n, c, i, j in itertools.product(*map(range, y.shape)):
        out[n, c].flat[switches[n, c, i, j]] += y[n, c, i, j]
    return out


def noncontiguous(a):
    """The same values as a view that is not C-contiguous: a transposed copy transposed back, then sliced
    out of a larger array with steps, so both strides and order differ from `a`."""
    a = np.asarray(a)
    big = np.zeros(tuple(2 * s for s in a.shape)[::-1], a.dtype)
    view = big.T[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    assert not view.flags.c_contiguous or a.size <= 1
    np.testing.assert_array_equal(view, a)
    return view


@contextlib.contextmanager
def num_threads(n):
    """Run the block with fc.set_num_threads(n), then restore the previous bound."""
    old = fc.get_num_threads()
    fc.set_num_threads(n)
    try:
        yield
    finally:
        fc.set_num_threads(old)
