"""Numba kernels of batch normalisation with the batch's statistics; one prange task per channel.

Sums in float64 over the channel's N planes, as the reference; the variance in two passes (the mean
first), so that it does not cancel for values far from zero. With a fused ReLU y is computed from the
statistics as stored, which the gradient recomputes with the same arithmetic for the mask.
"""
import numpy as np
from numba import njit, prange

from ._numba_config import PARALLEL


@njit(inline="always")
def _normalized(x, m, scale, shift):
    """The forward's y before the ReLU, from the statistics as stored: the gradient recomputes it for the mask."""
    return (np.float64(x) - m) * scale + shift


@njit(**PARALLEL)
def batch_norm2d(x, w, b, has_w, has_b, y, mean, inv_std, eps, relu):
    N, C, H, W = x.shape
    M = N * H * W
    for c in prange(C):
        s = 0.0
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    s += np.float64(x[n, c, i, j])
        m = s / M
        q = 0.0
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    d = np.float64(x[n, c, i, j]) - m
                    q += d * d
        inv = 1.0 / np.sqrt(q / M + eps)
        mean[c], inv_std[c] = m, inv
        if relu:   # y as the gradient recomputes it for the mask: from the statistics as stored
            m, inv = np.float64(mean[c]), np.float64(inv_std[c])
        scale = inv * w[c] if has_w else inv
        shift = b[c] if has_b else 0.0
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    v = _normalized(x[n, c, i, j], m, scale, shift)
                    y[n, c, i, j] = 0.0 if relu and v <= 0 else v


@njit(**PARALLEL)
def batch_norm2d_grad(dy, x, mean, inv_std, w, has_w, b, has_b, dx, dw, db, relu):
    N, C, H, W = x.shape
    M = N * H * W
    for c in prange(C):
        m, inv = np.float64(mean[c]), np.float64(inv_std[c])
        scale = inv * w[c] if has_w else inv
        shift = b[c] if has_b else 0.0
        s1 = 0.0
        s2 = 0.0
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    g = np.float64(dy[n, c, i, j])
                    if relu and _normalized(x[n, c, i, j], m, scale, shift) <= 0:
                        g = 0.0
                    s1 += g
                    s2 += g * (np.float64(x[n, c, i, j]) - m) * inv
        db[c], dw[c] = s1, s2
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    g = np.float64(dy[n, c, i, j])
                    if relu and _normalized(x[n, c, i, j], m, scale, shift) <= 0:
                        g = 0.0
                    x_hat = (np.float64(x[n, c, i, j]) - m) * inv
                    dx[n, c, i, j] = scale * (g - s1 / M - x_hat * (s2 / M))
