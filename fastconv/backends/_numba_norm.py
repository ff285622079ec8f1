"""Numba kernels of batch normalisation with the batch's statistics; one prange task per channel.

Sums in float64 over the channel's N planes, as the reference; the variance in two passes (the mean
first), so that it does not cancel for values far from zero.
"""
import numpy as np
from numba import njit, prange

from ._numba_config import PARALLEL


@njit(**PARALLEL)
def batch_norm2d(x, w, b, has_w, has_b, y, mean, inv_std, eps):
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
        scale = inv * w[c] if has_w else inv
        shift = b[c] if has_b else 0.0
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    y[n, c, i, j] = (np.float64(x[n, c, i, j]) - m) * scale + shift


@njit(**PARALLEL)
def batch_norm2d_grad(dy, x, mean, inv_std, w, has_w, dx, dw, db):
    N, C, H, W = x.shape
    M = N * H * W
    for c in prange(C):
        m, inv = np.float64(mean[c]), np.float64(inv_std[c])
        s1 = 0.0
        s2 = 0.0
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    g = np.float64(dy[n, c, i, j])
                    s1 += g
                    s2 += g * (np.float64(x[n, c, i, j]) - m) * inv
        db[c], dw[c] = s1, s2
        scale = inv * w[c] if has_w else inv
        for n in range(N):
            for i in range(H):
                for j in range(W):
                    x_hat = (np.float64(x[n, c, i, j]) - m) * inv
                    dx[n, c, i, j] = scale * (np.float64(dy[n, c, i, j]) - s1 / M - x_hat * (s2 / M))
