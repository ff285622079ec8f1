"""Numba kernels for dense conv2d and its two gradients (the 'numba' backend).

All three are im2col ("windows", as in the reference) followed by a register-blocked product: the
gradients by a 4×4 dot-product microkernel, _dot4x4, whose reduction loop LLVM vectorizes (fastmath
reassoc); the forward by outer products vectorized over output positions. Each prange task owns the
outputs it writes, so results are deterministic and race-free:
  conv2d             tasks (n, group, block of PB output positions)  -> y[n, group's o, positions]
  conv2d_input_grad  stride 1: conv2d of dy with the rotated kernel; otherwise
                     tasks (n, group, block of CB input channels)     -> dx[n, those c]
  conv2d_weight_grad tasks (group, block of 4 rows k = (c, a, b))     -> dw[group's o, those k]
Accumulation is in the array dtype; `z` is a zero of that dtype (it fixes the accumulators' type).
"""
import numpy as np
from numba import njit, prange

from ._numba_config import PARALLEL, SERIAL

PB = 256  # output positions per conv2d task (its accumulators and im2col rows stay in L1/L2)
CB = 4    # input channels per conv2d_input_grad task


@njit(**SERIAL)
def _valid(off, s, n_in, n_out):
    """[lo, hi): the outputs i with 0 <= i·s + off < n_in, clipped to [0, n_out)."""
    lo = 0 if off >= 0 else (-off + s - 1) // s
    hi = min((n_in - 1 - off) // s + 1, n_out)
    return lo, max(hi, lo)


@njit(**SERIAL)
def _dot4x4(A, a0, a1, a2, a3, offA, B, b0, b1, b2, b3, offB, L, z):
    """The 16 dot products A[a_u, offA + t] · B[b_v, offB + t] over t < L, as a flat tuple (u-major).
    16 scalar accumulators: 8 loads feed 16 FMAs per step, which is what makes this fast."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = z
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = z
    for t in range(L):
        p0 = A[a0, offA + t]
        p1 = A[a1, offA + t]
        p2 = A[a2, offA + t]
        p3 = A[a3, offA + t]
        q0 = B[b0, offB + t]
        q1 = B[b1, offB + t]
        q2 = B[b2, offB + t]
        q3 = B[b3, offB + t]
        s00 += p0 * q0; s01 += p0 * q1; s02 += p0 * q2; s03 += p0 * q3
        s10 += p1 * q0; s11 += p1 * q1; s12 += p1 * q2; s13 += p1 * q3
        s20 += p2 * q0; s21 += p2 * q1; s22 += p2 * q2; s23 += p2 * q3
        s30 += p3 * q0; s31 += p3 * q1; s32 += p3 * q2; s33 += p3 * q3
    return (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33)


@njit(**SERIAL)
def _im2colT_rows(x, n, c0, C_g, kH, kW, sh, sw, ph, pw, dh, dw, p0, p1, W_out, colsT):
    """colsT[(c, a, b), p − p0] = x[n, c0 + c, i·s_h + a·d_h − p_h, j·s_w + b·d_w − p_w] (0 outside), p = i·W_out + j,
    one output row's run of positions at a time; the valid column range of each b is computed once, so the
    copy loop carries no bounds checks (with few input channels this gather costs as much as the arithmetic)."""
    H, W = x.shape[2], x.shape[3]
    for b in range(kW):
        lo, hi = _valid(b * dw - pw, sw, W, W_out)   # the columns j that read inside x: same for every row
        for c in range(C_g):
            for a in range(kH):
                k = (c * kH + a) * kW + b
                row = colsT[k]
                p = p0
                while p < p1:
                    i = p // W_out
                    j0 = p - i * W_out
                    j1 = min(W_out, j0 + p1 - p)
                    q = p - p0 - j0                   # row[q + j] holds output column j
                    h = i * sh + a * dh - ph
                    if h < 0 or h >= H:
                        row[q + j0:q + j1] = 0
                    else:
                        jl = min(max(j0, lo), j1)
                        jh = max(min(j1, hi), jl)
                        row[q + j0:q + jl] = 0
                        xr = x[n, c0 + c, h]
                        off = b * dw - pw
                        for j in range(jl, jh):
                            row[q + j] = xr[j * sw + off]
                        row[q + jh:q + j1] = 0
                    p += j1 - j0


@njit(**PARALLEL)
def conv2d(x, w, b, has_b, y, sh, sw, ph, pw, dh, dw, G, z):
    """x (N, C_in, H, W), w (C_out, C_in/G, kH, kW), b (C_out,) if has_b -> y (N, C_out, H_out, W_out).
    Each block of 4 output rows is a sum of outer products w[o, k] ⊗ colsT[k, :], vectorized over PB
    output positions, 4 k per pass over the accumulators: no dot product pays a horizontal sum, which
    with a short K (a first layer's few dozen) cost as much as the arithmetic."""
    N = x.shape[0]
    C_out, C_g, kH, kW = w.shape
    W_out = y.shape[3]
    P = y.shape[2] * W_out
    K = C_g * kH * kW
    K4 = (K + 3) // 4 * 4
    O_g = C_out // G
    wm = np.zeros((C_out + 3, K4), w.dtype)    # zero rows/columns past C_out and K
    wm[:C_out, :K] = w.reshape(C_out, K)
    ym = y.reshape(N, C_out, P)
    nblk = (P + PB - 1) // PB
    for t in prange(N * G * nblk):
        n = t // (G * nblk)
        g = (t // nblk) % G
        p0 = (t % nblk) * PB
        np_ = min(PB, P - p0)
        colsT = np.zeros((K4, PB), x.dtype)
        _im2colT_rows(x, n, g * C_g, C_g, kH, kW, sh, sw, ph, pw, dh, dw, p0, p0 + np_, W_out, colsT)
        acc = np.empty((4, PB), x.dtype)
        for ob in range(g * O_g, (g + 1) * O_g, 4):
            for u in range(4):
                bias = b[min(ob + u, C_out - 1)] if has_b else z
                for p in range(PB):
                    acc[u, p] = bias
            for k in range(0, K4, 4):
                w00 = wm[ob, k]; w01 = wm[ob, k + 1]; w02 = wm[ob, k + 2]; w03 = wm[ob, k + 3]
                w10 = wm[ob + 1, k]; w11 = wm[ob + 1, k + 1]; w12 = wm[ob + 1, k + 2]; w13 = wm[ob + 1, k + 3]
                w20 = wm[ob + 2, k]; w21 = wm[ob + 2, k + 1]; w22 = wm[ob + 2, k + 2]; w23 = wm[ob + 2, k + 3]
                w30 = wm[ob + 3, k]; w31 = wm[ob + 3, k + 1]; w32 = wm[ob + 3, k + 2]; w33 = wm[ob + 3, k + 3]
                for p in range(PB):
                    v0 = colsT[k, p]
                    v1 = colsT[k + 1, p]
                    v2 = colsT[k + 2, p]
                    v3 = colsT[k + 3, p]
                    acc[0, p] += w00 * v0 + w01 * v1 + w02 * v2 + w03 * v3
                    acc[1, p] += w10 * v0 + w11 * v1 + w12 * v2 + w13 * v3
                    acc[2, p] += w20 * v0 + w21 * v1 + w22 * v2 + w23 * v3
                    acc[3, p] += w30 * v0 + w31 * v1 + w32 * v2 + w33 * v3
            for u in range(min(4, (g + 1) * O_g - ob)):
                for p in range(np_):
                    ym[n, ob + u, p0 + p] = acc[u, p]


@njit(**PARALLEL)
def _input_grad_strided(dy, w, dx, sh, sw, ph, pw, dh, dw, G, z):
    """conv2d_input_grad for any stride.
    dcols[(c, a, b), p] = Σ_o w[o, c, a, b] · dy[n, o, p] (a dot over o), then col2im adds them into dx."""
    N, C_out, H_out, W_out = dy.shape
    C_g, kH, kW = w.shape[1], w.shape[2], w.shape[3]
    H, W = dx.shape[2], dx.shape[3]
    P = H_out * W_out
    KK = kH * kW
    K = C_g * KK
    O_g = C_out // G
    wm = w.reshape(C_out, K)
    dym = dy.reshape(N, C_out, P)
    wT = np.empty((G, K, O_g), w.dtype)           # wT[g, k, o] = w[g·O_g + o, k]: o contiguous
    for g in prange(G):
        for k in range(K):
            for o in range(O_g):
                wT[g, k, o] = wm[g * O_g + o, k]
    dyT = np.empty((N, P, C_out), dy.dtype)       # dyT[n, p, o] = dy[n, o, p]
    for n in prange(N):
        for o in range(C_out):
            for p in range(P):
                dyT[n, p, o] = dym[n, o, p]
    nb = (C_g + CB - 1) // CB
    for t in prange(N * G * nb):
        n = t // (G * nb)
        g = (t // nb) % G
        c0 = (t % nb) * CB
        c1 = min(c0 + CB, C_g)
        kn = (c1 - c0) * KK
        k0 = c0 * KK
        dcol = np.empty((kn, P), dy.dtype)
        wTg = wT[g]
        dyTn = dyT[n]
        for kb in range(0, kn, 4):
            for pb in range(0, P, 4):
                acc = _dot4x4(wTg, k0 + kb, k0 + min(kb + 1, kn - 1), k0 + min(kb + 2, kn - 1),
                              k0 + min(kb + 3, kn - 1), 0, dyTn, pb, min(pb + 1, P - 1), min(pb + 2, P - 1),
                              min(pb + 3, P - 1), g * O_g, O_g, z)
                for u in range(min(4, kn - kb)):
                    for v in range(min(4, P - pb)):
                        dcol[kb + u, pb + v] = acc[4 * u + v]
        for c in range(c0, c1):                     # col2im: this task owns the planes dx[n, c0:c1]
            ci = g * C_g + c
            dx[n, ci] = 0
            for a in range(kH):
                offh = a * dh - ph
                ilo, ihi = _valid(offh, sh, H, H_out)
                for bb in range(kW):
                    offw = bb * dw - pw
                    jlo, jhi = _valid(offw, sw, W, W_out)
                    k = (c - c0) * KK + a * kW + bb
                    for i in range(ilo, ihi):
                        for j in range(jlo, jhi):
                            dx[n, ci, i * sh + offh, j * sw + offw] += dcol[k, i * W_out + j]


@njit(**SERIAL)
def _rotate_transpose(w, G, wt):
    """wt[g·C_g + c, o, a, b] = w[g·O_g + o, c, kH−1−a, kW−1−b]: the kernel of conv2d_input_grad as a conv2d."""
    C_out, C_g, kH, kW = w.shape
    O_g = C_out // G
    for t in range(G * C_g):
        g = t // C_g
        c = t % C_g
        for o in range(O_g):
            for a in range(kH):
                for b in range(kW):
                    wt[t, o, a, b] = w[g * O_g + o, c, kH - 1 - a, kW - 1 - b]


def conv2d_input_grad(dy, w, dx, sh, sw, ph, pw, dh, dw, G, z):
    """dy (N, C_out, H_out, W_out), w (C_out, C_in/G, kH, kW) -> dx (N, C_in, H, W). Plain Python: picks a kernel.
    For stride 1 it is conv2d of dy with the kernel rotated 180° and transposed per group, padding
    d·(k−1) − p (possibly negative: im2col only bounds-checks), which runs at forward speed."""
    if sh != 1 or sw != 1:
        _input_grad_strided(dy, w, dx, sh, sw, ph, pw, dh, dw, G, z)
        return
    C_out, C_g, kH, kW = w.shape
    wt = np.empty((C_g * G, C_out // G, kH, kW), w.dtype)    # scratch, like the kernels' im2col buffers
    _rotate_transpose(w, G, wt)
    conv2d(dy, wt, np.zeros(1, dy.dtype), False, dx, 1, 1, dh * (kH - 1) - ph, dw * (kW - 1) - pw, dh, dw, G, z)


@njit(**PARALLEL)
def conv2d_weight_grad(x, dy, dw_, sh, sw, ph, pw, dh, dw, G, z):
    """x (N, C_in, H, W), dy (N, C_out, H_out, W_out) -> dw_ (C_out, C_in/G, kH, kW).
    dw[o, k] = Σ_n Σ_p dy[n, o, p] · colT[k, p] with colT the im2col rows k = (c, a, b) of x[n]."""
    N, C_in, H, W = x.shape
    C_out, H_out, W_out = dy.shape[1], dy.shape[2], dy.shape[3]
    C_g, kH, kW = dw_.shape[1], dw_.shape[2], dw_.shape[3]
    P = H_out * W_out
    KK = kH * kW
    K = C_g * KK
    O_g = C_out // G
    dwm = dw_.reshape(C_out, K)
    dym = dy.reshape(N, C_out, P)
    nb = (K + 3) // 4
    for t in prange(G * nb):
        g = t // nb
        k0 = (t % nb) * 4
        kn = min(4, K - k0)
        colT = np.zeros((kn, P), x.dtype)
        for o in range(g * O_g, (g + 1) * O_g):
            for u in range(kn):
                dwm[o, k0 + u] = 0
        for n in range(N):
            for u in range(kn):
                c = (k0 + u) // KK
                a = (k0 + u - c * KK) // kW
                bb = (k0 + u) % kW
                offh = a * dh - ph
                offw = bb * dw - pw
                ilo, ihi = _valid(offh, sh, H, H_out)
                jlo, jhi = _valid(offw, sw, W, W_out)
                for i in range(ilo, ihi):           # entries outside stay 0 from np.zeros
                    for j in range(jlo, jhi):
                        colT[u, i * W_out + j] = x[n, g * C_g + c, i * sh + offh, j * sw + offw]
            o_last = (g + 1) * O_g - 1
            dyn = dym[n]
            for ob in range(g * O_g, o_last + 1, 4):
                acc = _dot4x4(dyn, ob, min(ob + 1, o_last), min(ob + 2, o_last), min(ob + 3, o_last), 0,
                              colT, 0, min(1, kn - 1), min(2, kn - 1), min(3, kn - 1), 0, P, z)
                for u in range(min(4, o_last + 1 - ob)):
                    for v in range(kn):
                        dwm[ob + u, k0 + v] += acc[4 * u + v]
