"""The NumPy reference: the living definition of every op, and the oracle the fast kernels are tested against.

One einsum (or one plain loop) per op, a formula in each docstring, no speed tricks. Same function
table as every backend: inputs are validated and contiguous, outputs preallocated by ops.py.
Notation: stride s, padding (top, left) p, dilation d, groups G; channels of group g are
c ∈ [g·C_in/G, (g+1)·C_in/G), o ∈ [g·C_out/G, (g+1)·C_out/G). The convolutions sum over taps inside the
input only: padding contributes nothing, not 0 × w (NaN for a NaN or infinite w), as in PyTorch's oneDNN path.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _padded(x, pad, extent, fill=0.0):
    """x placed at offset pad in a (N, C, *extent) array of `fill`; what no window reads is cropped."""
    N, C, H, W = x.shape
    xp = np.full((N, C) + tuple(extent), fill, x.dtype)
    h = max(0, min(H, extent[0] - pad[0]))
    w = max(0, min(W, extent[1] - pad[1]))
    xp[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + w] = x[:, :, :h, :w]
    return xp


def _extent(out_hw, k_hw, stride, dilation):
    return tuple((o - 1) * s + d * (k - 1) + 1 for o, k, s, d in zip(out_hw, k_hw, stride, dilation))


def _windows(x, pad, out_hw, k_hw, stride, dilation, fill=0.0):
    """(N, C, H_out, W_out, kH, kW) view: windows[n,c,i,j,a,b] = x[n, c, i·s_h + a·d_h − p_h, j·s_w + b·d_w − p_w]."""
    xp = _padded(x, pad, _extent(out_hw, k_hw, stride, dilation), fill)
    spans = tuple(d * (k - 1) + 1 for k, d in zip(k_hw, dilation))
    v = sliding_window_view(xp, spans, axis=(2, 3))
    return v[:, :, ::stride[0], ::stride[1], ::dilation[0], ::dilation[1]][:, :, :out_hw[0], :out_hw[1]]


def _grouped(a, groups, axis=1):
    """Split channel axis `axis` into (groups, channels per group)."""
    s = a.shape
    return a.reshape(s[:axis] + (groups, s[axis] // groups) + s[axis + 1:])


def _span(t, out, n, s, p, d):
    """The outputs i ∈ [0, out) whose tap t reads inside an input of size n (0 ≤ i·s + t·d − p < n), as
    (slice of outputs, slice of the inputs they read), or None when there are none."""
    off = t * d - p
    lo, hi = max(0, -(off // s)), min(out, (n - 1 - off) // s + 1)
    return (slice(lo, hi), slice(lo * s + off, (hi - 1) * s + off + 1, s)) if lo < hi else None


def _taps(k_hw, out_hw, in_hw, stride, pad, dilation):
    """Per kernel tap (a, b) that reads the input somewhere: a, b, the (rows, cols) of the output rectangle
    whose tap lands inside the input, and the (rows, cols) of the input it reads there."""
    for a in range(k_hw[0]):
        rows = _span(a, out_hw[0], in_hw[0], stride[0], pad[0], dilation[0])
        for b in range(k_hw[1]):
            cols = _span(b, out_hw[1], in_hw[1], stride[1], pad[1], dilation[1])
            if rows and cols:
                yield a, b, (rows[0], cols[0]), (rows[1], cols[1])


def conv2d(x, w, b, y, stride, pad, dilation, groups, algorithm="auto"):
    """y[n,o,i,j] = b[o] + Σ over taps inside the input of w[o,c,a,b] · x[n,c,h,v], c ∈ g(o),
    h = i·s_h + a·d_h − p_h ∈ [0, H), v = j·s_w + b·d_w − p_w ∈ [0, W)."""
    xg, wg = _grouped(x, groups), _grouped(w, groups, 0)
    out = np.zeros(_grouped(y, groups).shape, y.dtype)
    for a, bb, (i, j), (h, v) in _taps(w.shape[2:], y.shape[2:], x.shape[2:], stride, pad, dilation):
        out[..., i, j] += np.einsum("ngchw,goc->ngohw", xg[..., h, v], wg[..., a, bb])
    y[...] = out.reshape(y.shape)
    if b is not None:
        y += b[None, :, None, None]


def conv2d_input_grad(dy, w, dx, stride, pad, dilation, groups, algorithm="auto"):
    """dx[n,c,h,v] = Σ over taps inside the input of w[o,c,a,b] · dy[n,o,i,j], o ∈ g(c),
    h = i·s_h + a·d_h − p_h, v = j·s_w + b·d_w − p_w (the adjoint of conv2d in x)."""
    dyg, wg = _grouped(dy, groups), _grouped(w, groups, 0)
    out = np.zeros(_grouped(dx, groups).shape, dx.dtype)
    for a, b, (i, j), (h, v) in _taps(w.shape[2:], dy.shape[2:], dx.shape[2:], stride, pad, dilation):
        # the contribution of all of dy, cropped: einsum on the contiguous dy is faster than on its window
        out[..., h, v] += np.einsum("ngohw,goc->ngchw", dyg, wg[..., a, b])[..., i, j]
    dx[...] = out.reshape(dx.shape)


def conv2d_weight_grad(x, dy, dw, stride, pad, dilation, groups, algorithm="auto"):
    """dw[o,c,a,b] = Σ_{n,i,j} over taps inside the input of dy[n,o,i,j] · x[n,c,h,v],
    h = i·s_h + a·d_h − p_h, v = j·s_w + b·d_w − p_w (a correlation of the input with the output delta)."""
    xg, dyg = _grouped(x, groups), _grouped(dy, groups)
    out = np.zeros(_grouped(dw, groups, 0).shape, dw.dtype)
    for a, b, (i, j), (h, v) in _taps(dw.shape[2:], dy.shape[2:], x.shape[2:], stride, pad, dilation):
        out[..., a, b] = np.einsum("ngohw,ngchw->goc", dyg[..., i, j], xg[..., h, v])
    dw[...] = out.reshape(dw.shape)


def max_pool2d(x, y, switches, kernel, stride, pad, dilation):
    """y[n,c,i,j] = max_{a,b} x[n,c, i·s_h + a·d_h − p_h, j·s_w + b·d_w − p_w] over x padded with −∞;
    switches = flat index h·W + w of the first maximum in row-major window order (NaN counts as the
    maximum, so it propagates)."""
    N, C, H, W = x.shape
    H_out, W_out = y.shape[2:]
    win = _windows(x, pad, (H_out, W_out), kernel, stride, dilation, fill=-np.inf)
    flat = win.reshape(N, C, H_out, W_out, kernel[0] * kernel[1])
    k = np.argmax(flat, axis=-1)
    # A window whose real elements are all −∞ ties with its padding; the switch must name a real element
    # (the first one, as PyTorch does), never a padded position outside the plane.
    real = _windows(np.ones(x.shape, bool), pad, (H_out, W_out), kernel, stride, dilation, fill=False)
    real = real.reshape(flat.shape)
    k = np.where(np.take_along_axis(real, k[..., None], axis=-1)[..., 0], k, np.argmax(real, axis=-1))
    y[...] = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    rows = np.arange(H_out)[:, None] * stride[0] - pad[0] + k // kernel[1] * dilation[0]
    cols = np.arange(W_out)[None, :] * stride[1] - pad[1] + k % kernel[1] * dilation[1]
    switches[...] = rows * W + cols


def max_unpool2d(y, switches, out):
    """out[n,c].flat[switches[n,c,i,j]] += y[n,c,i,j]; zero elsewhere (so it is also max_pool2d's backward).
    Returns how many switches lie outside the plane (those are skipped)."""
    N, C = y.shape[:2]
    flat = out.reshape(N * C, -1)
    flat[...] = 0
    planes = np.repeat(np.arange(N * C), y[0, 0].size)
    k = switches.reshape(-1)
    inside = (k >= 0) & (k < flat.shape[1])
    np.add.at(flat, (planes[inside], k[inside]), y.reshape(-1)[inside])
    return int(k.size - np.count_nonzero(inside))


def unshared_conv2d(x, w, b, y, stride, pad):
    """y[n,o,i,j] = b[o,i,j] + Σ over taps inside the input of w[i,j,o,c,a,b] · x[n,c,h,v],
    h = i·s_h + a − p_h, v = j·s_w + b − p_w (locally connected: every output position has its own kernel)."""
    y[...] = 0
    for a, bb, (i, j), (h, v) in _taps(w.shape[4:], y.shape[2:], x.shape[2:], stride, pad, (1, 1)):
        y[..., i, j] += np.einsum("nchw,hwoc->nohw", x[..., h, v], w[i, j, ..., a, bb])
    if b is not None:
        y += b[None]


def unshared_conv2d_input_grad(dy, w, dx, stride, pad):
    """dx[n,c,h,v] = Σ over taps inside the input of w[i,j,o,c,a,b] · dy[n,o,i,j],
    h = i·s_h + a − p_h, v = j·s_w + b − p_w."""
    dx[...] = 0
    for a, b, (i, j), (h, v) in _taps(w.shape[4:], dy.shape[2:], dx.shape[2:], stride, pad, (1, 1)):
        dx[..., h, v] += np.einsum("nohw,hwoc->nchw", dy[..., i, j], w[i, j, ..., a, b])


def unshared_conv2d_weight_grad(x, dy, dw, stride, pad):
    """dw[i,j,o,c,a,b] = Σ_n dy[n,o,i,j] · x[n,c, i·s_h + a − p_h, j·s_w + b − p_w] where that tap is inside
    the input, else 0."""
    dw[...] = 0
    for a, b, (i, j), (h, v) in _taps(dw.shape[4:], dy.shape[2:], x.shape[2:], stride, pad, (1, 1)):
        dw[i, j, ..., a, b] = np.einsum("nohw,nchw->hwoc", dy[..., i, j], x[..., h, v])


def _tile_grid(w, out_hw):
    """The (H_out, W_out, ...) kernel grid of a tiled weight: grid[i, j] = w[i % T_h, j % T_w]."""
    rows = np.arange(out_hw[0]) % w.shape[0]
    cols = np.arange(out_hw[1]) % w.shape[1]
    return w[rows][:, cols]


def tiled_conv2d(x, w, b, y, stride, pad):
    """y[n,o,i,j] = b[o] + Σ_{c,a,b} w[i mod T_h, j mod T_w, o,c,a,b] · x[n,c, i·s_h + a − p_h, j·s_w + b − p_w]
    (Le et al. 2010: T_h·T_w kernels cycled over output positions; T = (1, 1) is conv2d)."""
    unshared_conv2d(x, _tile_grid(w, y.shape[2:]), None, y, stride, pad)
    if b is not None:
        y += b[None, :, None, None]


def tiled_conv2d_input_grad(dy, w, dx, stride, pad):
    """The adjoint of tiled_conv2d in x: unshared_conv2d_input_grad with the tiled kernel grid."""
    unshared_conv2d_input_grad(dy, _tile_grid(w, dy.shape[2:]), dx, stride, pad)


def tiled_conv2d_weight_grad(x, dy, dw, stride, pad):
    """dw[t_h,t_w] = Σ over output positions (i, j) ≡ (t_h, t_w) mod T of the unshared weight gradient."""
    H_out, W_out = dy.shape[2:]
    full = np.zeros((H_out, W_out) + dw.shape[2:], dw.dtype)
    unshared_conv2d_weight_grad(x, dy, full, stride, pad)
    dw[...] = 0
    for th in range(min(dw.shape[0], H_out)):
        for tw in range(min(dw.shape[1], W_out)):
            dw[th, tw] = full[th::dw.shape[0], tw::dw.shape[1]].sum(axis=(0, 1))


def _normalized(x, mean, inv_std, w, b):
    """(x − mean)·inv_std·w + b in float64, from the statistics as stored: the forward's y, which the gradient
    recomputes for the fused ReLU's mask."""
    scale = inv_std.astype(np.float64) if w is None else inv_std.astype(np.float64) * w
    v = (x.astype(np.float64) - mean[:, None, None]) * scale[:, None, None]
    return v if b is None else v + b[:, None, None]


def batch_norm2d(x, w, b, y, mean, inv_std, eps, relu):
    """Batch normalisation with the batch's statistics, per channel c over its N·H·W values:
    mean[c] = E[x], inv_std[c] = 1 / sqrt(E[(x − mean)²] + eps) (biased variance),
    y = (x − mean)·inv_std·w + b (w = 1, b = 0 when absent), then max(y, 0) with relu (NaN stays NaN).
    In float64; with relu y comes from the statistics as stored (rounded), as the gradient recomputes it."""
    x64 = x.astype(np.float64)
    m = x64.mean(axis=(0, 2, 3))
    inv = 1.0 / np.sqrt(((x64 - m[:, None, None]) ** 2).mean(axis=(0, 2, 3)) + eps)
    mean[...], inv_std[...] = m, inv
    if relu:
        v = _normalized(x, mean, inv_std, w, b)
        y[...] = np.where(v <= 0, 0.0, v)
    else:
        y[...] = _normalized(x, m, inv, w, b)


def batch_norm2d_grad(dy, x, mean, inv_std, w, b, dx, dw, db, relu):
    """The gradient of batch_norm2d, x_hat = (x − mean)·inv_std, M = N·H·W, sums over (n, h, w):
    db = Σ g, dw = Σ g·x_hat, dx = w·inv_std·(g − db/M − x_hat·dw/M) (the statistics depend on x too), with
    g = dy, or with relu dy zeroed where the forward's y was <= 0 (not at NaN, as torch's threshold_backward)."""
    dy64 = dy.astype(np.float64)
    if relu:
        dy64 = np.where(_normalized(x, mean, inv_std, w, b) <= 0, 0.0, dy64)
    x_hat = (x - mean[:, None, None]).astype(np.float64) * inv_std[:, None, None]
    M = x.size // x.shape[1]
    db[...] = s1 = dy64.sum(axis=(0, 2, 3))
    dw[...] = s2 = (dy64 * x_hat).sum(axis=(0, 2, 3))
    scale = inv_std if w is None else inv_std * w
    dx[...] = scale[:, None, None] * (dy64 - s1[:, None, None] / M - x_hat * (s2 / M)[:, None, None])
