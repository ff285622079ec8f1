"""Numba kernels for tiled and unshared (locally connected) convolution and their gradients.

One kernel per direction serves both ops: w is (T_h, T_w, C_out, C_in, kH, kW) and output position
(i, j) uses w[i mod T_h, j mod T_w]; unshared_conv2d is the case T = (H_out, W_out). Stride s, padding
(top, left) p, no dilation. Per output position the valid kernel rows/columns are computed once
(_window), so the inner loops have no bounds tests. prange tasks own what they write:
  tiled_forward      positions (i, j) -> y[:, :, i, j]
  tiled_input_grad   (n, c) planes    -> dx[n, c]
  tiled_weight_grad  (o, c) pairs     -> dw[:, :, o, c]
Accumulation is in the array dtype; `z` is a zero of that dtype.
"""
import numpy as np
from numba import njit, prange

from ._numba_config import PARALLEL, SERIAL
from ._numba_dense import _dot4x4   # shared microkernel: clear __pycache__ after editing it (see _numba_config)


@njit(**SERIAL)
def _window(i, s, p, k, n_in):
    """(h0, lo, hi): input row h0 + a = i·s + a − p is inside [0, n_in) exactly for a in [lo, hi)."""
    h0 = i * s - p
    lo = max(0, -h0)
    hi = min(k, n_in - h0)
    return h0, lo, max(hi, lo)


@njit(**PARALLEL)
def tiled_forward(x, w, b, has_b, y, sh, sw, ph, pw, z):
    """y[n,o,i,j] = Σ_{c,a,b} w[i%T_h, j%T_w, o,c,a,b] · x[n,c, i·s_h+a−p_h, j·s_w+b−p_w] + b[o, i%B_h, j%B_w]
    (b is (C_out, 1, 1) for tiled, (C_out, H_out, W_out) for unshared). Per output position (i, j) this is a
    small matrix product: the kernel (C_out, K) times the N windows (N, K), K = C_in·kH·kW, via _dot4x4."""
    N, C_in, H, W = x.shape
    T_h, T_w, C_out, _, kH, kW = w.shape
    H_out, W_out = y.shape[2], y.shape[3]
    B_h, B_w = b.shape[1], b.shape[2]
    K = C_in * kH * kW
    wm = w.reshape(T_h, T_w, C_out, K)
    for t in prange(H_out * W_out):
        i = t // W_out
        j = t % W_out
        h0, alo, ahi = _window(i, sh, ph, kH, H)
        w0, blo, bhi = _window(j, sw, pw, kW, W)
        cols = np.zeros((N, K), x.dtype)                 # the N windows at (i, j), zero outside x
        for n in range(N):
            for c in range(C_in):
                for a in range(alo, ahi):
                    for bb in range(blo, bhi):
                        cols[n, (c * kH + a) * kW + bb] = x[n, c, h0 + a, w0 + bb]
        wk = wm[i % T_h, j % T_w]                        # (C_out, K)
        for ob in range(0, C_out, 4):                    # a partial block repeats its last row
            for nb in range(0, N, 4):
                acc = _dot4x4(wk, ob, min(ob + 1, C_out - 1), min(ob + 2, C_out - 1), min(ob + 3, C_out - 1), 0,
                              cols, nb, min(nb + 1, N - 1), min(nb + 2, N - 1), min(nb + 3, N - 1), 0, K, z)
                for u in range(min(4, C_out - ob)):
                    bias = b[ob + u, i % B_h, j % B_w] if has_b else z
                    for v in range(min(4, N - nb)):
                        y[nb + v, ob + u, i, j] = acc[4 * u + v] + bias


@njit(**PARALLEL)
def tiled_input_grad(dy, w, dx, sh, sw, ph, pw):
    """dx[n,c,h,w] = Σ_{o,i,j,a,b : h = i·s_h+a−p_h, w = j·s_w+b−p_w} w[i%T_h, j%T_w, o,c,a,b] · dy[n,o,i,j]."""
    N, C_out, H_out, W_out = dy.shape
    T_h, T_w, _, _, kH, kW = w.shape
    C_in, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for t in prange(N * C_in):
        n = t // C_in
        c = t % C_in
        dx[n, c] = 0
        for i in range(H_out):
            h0, alo, ahi = _window(i, sh, ph, kH, H)
            for j in range(W_out):
                w0, blo, bhi = _window(j, sw, pw, kW, W)
                for o in range(C_out):
                    g = dy[n, o, i, j]
                    for a in range(alo, ahi):
                        for bb in range(blo, bhi):
                            dx[n, c, h0 + a, w0 + bb] += w[i % T_h, j % T_w, o, c, a, bb] * g


@njit(**PARALLEL)
def tiled_weight_grad(x, dy, dw, sh, sw, ph, pw):
    """dw[t_h,t_w,o,c,a,b] = Σ_{n, i≡t_h, j≡t_w} dy[n,o,i,j] · x[n,c, i·s_h+a−p_h, j·s_w+b−p_w]
    (zero for tiles no output position maps to)."""
    N, C_in, H, W = x.shape
    C_out, H_out, W_out = dy.shape[1], dy.shape[2], dy.shape[3]
    T_h, T_w, _, _, kH, kW = dw.shape
    for t in prange(C_out * C_in):
        o = t // C_in
        c = t % C_in
        dw[:, :, o, c] = 0
        for i in range(H_out):
            h0, alo, ahi = _window(i, sh, ph, kH, H)
            for j in range(W_out):
                w0, blo, bhi = _window(j, sw, pw, kW, W)
                dwk = dw[i % T_h, j % T_w, o, c]         # (kH, kW)
                for n in range(N):
                    g = dy[n, o, i, j]
                    for a in range(alo, ahi):
                        for bb in range(blo, bhi):
                            dwk[a, bb] += g * x[n, c, h0 + a, w0 + bb]
