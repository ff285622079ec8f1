"""Numba kernels for max pooling with switches and unpooling; one prange task per (n, c) plane.

Compiled without fastmath: comparisons must be exact so that NaN propagates (the first NaN in
row-major window order wins, as np.argmax) and ties go to the first maximum.
"""
from numba import njit, prange

from ._numba_config import EXACT


@njit(**EXACT)
def max_pool2d(x, y, switches, kh, kw, sh, sw, ph, pw, dil_h, dil_w):
    """y[n,c,i,j] = max of the window (taps a·dil apart; padding −∞, i.e. skipped); switches = flat h·W + w of
    its first maximum."""
    N, C, H, W = x.shape
    H_out, W_out = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t % C
        for i in range(H_out):
            h0 = i * sh - ph
            hlo = h0 + (max(-h0, 0) + dil_h - 1) // dil_h * dil_h   # the first tap inside the plane
            hhi = min(h0 + (kh - 1) * dil_h + 1, H)
            for j in range(W_out):
                w0 = j * sw - pw
                wlo = w0 + (max(-w0, 0) + dil_w - 1) // dil_w * dil_w
                whi = min(w0 + (kw - 1) * dil_w + 1, W)
                best = x[n, c, min(hlo, H - 1), min(wlo, W - 1)]   # windows always hold a real element
                idx = min(hlo, H - 1) * W + min(wlo, W - 1)
                for h in range(hlo, hhi, dil_h):
                    for w_ in range(wlo, whi, dil_w):
                        v = x[n, c, h, w_]
                        if v > best or (v != v and best == best):   # NaN beats any number, once
                            best = v
                            idx = h * W + w_
                y[n, c, i, j] = best
                switches[n, c, i, j] = idx


@njit(**EXACT)
def max_unpool2d(y, switches, out):
    """out[n,c].flat[switches[n,c,i,j]] += y[n,c,i,j], zero elsewhere; planes are independent tasks.
    Returns how many switches lie outside the plane (those are skipped)."""
    N, C, H_out, W_out = y.shape
    Wo = out.shape[3]
    plane = out.shape[2] * Wo
    skipped = 0
    for t in prange(N * C):
        n = t // C
        c = t % C
        out[n, c] = 0
        for i in range(H_out):
            for j in range(W_out):
                s = switches[n, c, i, j]
                if 0 <= s < plane:
                    out[n, c, s // Wo, s % Wo] += y[n, c, i, j]
                else:
                    skipped += 1
    return skipped
