"""Numba kernels for dense conv2d and its two gradients (the 'numba' backend).

The forward is a sum of outer products over _shifted_rows, copies of the input rows that a block of
output rows reads, one per kernel column (kW copies, not im2col's kH·kW), vectorized over output
positions. The gradients are im2col ("windows", as in the reference) followed by a 4×4 dot-product
microkernel, _dot4x4, whose reduction loop LLVM vectorizes (fastmath reassoc). Each prange task owns the
outputs it writes, so results are deterministic and race-free:
  conv2d             tasks (n, group, block of R output rows)         -> y[n, group's o, those rows]
  conv2d_input_grad  stride 1: conv2d of dy with the rotated kernel; otherwise
                     tasks (n, group, block of CB input channels)     -> dx[n, those c]
  conv2d_weight_grad tasks (group, block of 4 rows k = (c, a, b))     -> dw[group's o, those k]
Accumulation is in the array dtype; `z` is a zero of that dtype (it fixes the accumulators' type).
"""
import numpy as np
from numba import njit, prange

from ._numba_config import PARALLEL, SERIAL

RB = 256  # output positions (R rows of Ws) per conv2d task: its accumulators and input rows stay in L1/L2
VW = 16   # Ws = W_out rounded up to a multiple of VW elements, so each output row starts a new vector
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
def _shifted_rows(x, n, c0, C_g, kW, sh, sw, ph, pw, dw, i0, W_out, Ws, Rph, xs):
    """xs[c·kW + b, (f·Rph + r)·Ws + j] = x[n, c0 + c, (i0 + r)·s_h + f − p_h, j·s_w + b·d_w − p_w] (0 outside x, and
    for j ≥ W_out): the input rows that output rows i0, i0 + 1, ... read, one copy per kernel column b shifted by
    that column's offset, and split by row phase f < s_h. Tap (c, a, b) of output row i then lies in row
    c·kW + b at phase (a·d_h) mod s_h, index i − i0 + (a·d_h) div s_h: consecutive output rows read one contiguous,
    vector-aligned run of xs (im2col would copy each input element kH times more, and a single padded copy
    would make every tap an unaligned load)."""
    H, W = x.shape[2], x.shape[3]
    for c in range(C_g):
        xc = x[n, c0 + c]
        for b in range(kW):
            off = b * dw - pw
            lo, hi = _valid(off, sw, W, W_out)         # the columns j that read inside x
            dst = xs[c * kW + b]
            for f in range(sh):
                for r in range(Rph):
                    h = (i0 + r) * sh + f - ph
                    q = (f * Rph + r) * Ws
                    if h < 0 or h >= H or hi == lo:
                        dst[q:q + Ws] = 0
                    else:
                        dst[q:q + lo] = 0
                        if sw == 1:                    # a contiguous copy, which LLVM vectorizes
                            dst[q + lo:q + hi] = xc[h, lo + off:hi + off]
                        else:
                            dst[q + lo:q + hi] = xc[h, lo * sw + off:(hi - 1) * sw + off + 1:sw]
                        dst[q + hi:q + Ws] = 0


@njit(**PARALLEL)
def conv2d(x, w, b, has_b, y, sh, sw, ph, pw, dh, dw, G, z):
    """x (N, C_in, H, W), w (C_out, C_in/G, kH, kW), b (C_out,) if has_b -> y (N, C_out, H_out, W_out).
    A task computes R output rows of 4 output channels at a time, laid out Ws = W_out rounded up to VW apart, as
    a sum of outer products w[o, k] ⊗ (tap k's run of _shifted_rows), 4 taps per pass over the accumulators,
    vectorized over the R·Ws positions: no dot product pays a horizontal sum, which with a short K (a first
    layer's few dozen) would cost as much as the arithmetic. The columns past W_out are computed and dropped."""
    N = x.shape[0]
    C_out, C_g, kH, kW = w.shape
    H_out, W_out = y.shape[2], y.shape[3]
    K = C_g * kH * kW
    K4 = (K + 3) // 4 * 4
    O_g = C_out // G
    Ws = (W_out + VW - 1) // VW * VW
    R = max(1, min(RB // Ws, H_out))              # output rows per task
    Rph = R + (dh * (kH - 1)) // sh               # rows per phase of the shifted copies
    L = R * Ws
    wm = np.zeros((C_out + 3, K4), w.dtype)       # zero rows/columns past C_out and K
    wm[:C_out, :K] = w.reshape(C_out, K)
    row = np.zeros(K4, np.int64)                  # tap k = (c, a, b) reads xs[row[k], start[k]:start[k] + L]
    start = np.zeros(K4, np.int64)
    for c in range(C_g):
        for a in range(kH):
            for bb in range(kW):
                k = (c * kH + a) * kW + bb
                row[k] = c * kW + bb
                start[k] = ((a * dh) % sh * Rph + (a * dh) // sh) * Ws
    nblk = (H_out + R - 1) // R
    for t in prange(N * G * nblk):
        n = t // (G * nblk)
        g = (t // nblk) % G
        i0 = (t % nblk) * R
        xs = np.empty((C_g * kW, sh * Rph * Ws), x.dtype)
        _shifted_rows(x, n, g * C_g, C_g, kW, sh, sw, ph, pw, dw, i0, W_out, Ws, Rph, xs)
        acc = np.empty((4, L), x.dtype)
        for ob in range(g * O_g, (g + 1) * O_g, 4):
            for u in range(4):
                acc[u] = b[min(ob + u, C_out - 1)] if has_b else z
            for k in range(0, K4, 4):
                w00 = wm[ob, k]; w01 = wm[ob, k + 1]; w02 = wm[ob, k + 2]; w03 = wm[ob, k + 3]
                w10 = wm[ob + 1, k]; w11 = wm[ob + 1, k + 1]; w12 = wm[ob + 1, k + 2]; w13 = wm[ob + 1, k + 3]
                w20 = wm[ob + 2, k]; w21 = wm[ob + 2, k + 1]; w22 = wm[ob + 2, k + 2]; w23 = wm[ob + 2, k + 3]
                w30 = wm[ob + 3, k]; w31 = wm[ob + 3, k + 1]; w32 = wm[ob + 3, k + 2]; w33 = wm[ob + 3, k + 3]
                # slices, not xs[r, s + p]: an index Numba cannot prove non-negative gets a wraparound
                # select, and that blocks vectorization
                x0 = xs[row[k], start[k]:start[k] + L]
                x1 = xs[row[k + 1], start[k + 1]:start[k + 1] + L]
                x2 = xs[row[k + 2], start[k + 2]:start[k + 2] + L]
                x3 = xs[row[k + 3], start[k + 3]:start[k + 3] + L]
                for p in range(L):
                    v0 = x0[p]
                    v1 = x1[p]
                    v2 = x2[p]
                    v3 = x3[p]
                    acc[0, p] += w00 * v0 + w01 * v1 + w02 * v2 + w03 * v3
                    acc[1, p] += w10 * v0 + w11 * v1 + w12 * v2 + w13 * v3
                    acc[2, p] += w20 * v0 + w21 * v1 + w22 * v2 + w23 * v3
                    acc[3, p] += w30 * v0 + w31 * v1 + w32 * v2 + w33 * v3
            for u in range(min(4, (g + 1) * O_g - ob)):
                for r in range(min(R, H_out - i0)):
                    y[n, ob + u, i0 + r] = acc[u, r * Ws:r * Ws + W_out]


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
