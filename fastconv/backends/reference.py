"""The NumPy reference: the living definition of every op, and the oracle the fast kernels are tested against.

One einsum (or one plain loop) per op, a formula in each docstring, no speed tricks. Same function
table as every backend: inputs are validated and contiguous, outputs preallocated by ops.py.
Notation: stride s, padding (top, left) p, dilation d, groups G; channels of group g are
c ∈ [g·C_in/G, (g+1)·C_in/G), o ∈ [g·C_out/G, (g+1)·C_out/G).
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


def conv2d(x, w, b, y, stride, pad, dilation, groups):
    """y[n,o,i,j] = b[o] + Σ_{c∈g(o),a,b} w[o,c,a,b] · x[n,c, i·s_h + a·d_h − p_h, j·s_w + b·d_w − p_w]."""
    win = _windows(x, pad, y.shape[2:], w.shape[2:], stride, dilation)
    out = np.einsum("ngchwab,gocab->ngohw", _grouped(win, groups), _grouped(w, groups, 0))
    y[...] = out.reshape(y.shape)
    if b is not None:
        y += b[None, :, None, None]


def conv2d_input_grad(dy, w, dx, stride, pad, dilation, groups):
    """dx[n,c,h,w] = Σ_{o,i,j,a,b : h = i·s_h + a·d_h − p_h, w = j·s_w + b·d_w − p_w} w[o,c,a,b] · dy[n,o,i,j]
    (the adjoint of conv2d in x: for stride 1 a full correlation of dy with the rotated kernel)."""
    H_out, W_out = dy.shape[2:]
    kH, kW = w.shape[2:]
    ext = _extent((H_out, W_out), (kH, kW), stride, dilation)
    N, C, H, W = dx.shape
    dxp = np.zeros((N, C, max(ext[0], pad[0] + H), max(ext[1], pad[1] + W)), dx.dtype)
    dyg, wg = _grouped(dy, groups), _grouped(w, groups, 0)
    for a in range(kH):
        for b in range(kW):
            rows = slice(a * dilation[0], a * dilation[0] + stride[0] * (H_out - 1) + 1, stride[0])
            cols = slice(b * dilation[1], b * dilation[1] + stride[1] * (W_out - 1) + 1, stride[1])
            contrib = np.einsum("ngohw,goc->ngchw", dyg, wg[..., a, b])
            dxp[:, :, rows, cols] += contrib.reshape(N, C, H_out, W_out)
    dx[...] = dxp[:, :, pad[0]:pad[0] + H, pad[1]:pad[1] + W]


def conv2d_weight_grad(x, dy, dw, stride, pad, dilation, groups):
    """dw[o,c,a,b] = Σ_{n,i,j} dy[n,o,i,j] · x[n,c, i·s_h + a·d_h − p_h, j·s_w + b·d_w − p_w]
    (a valid correlation of the input with the output delta)."""
    win = _windows(x, pad, dy.shape[2:], dw.shape[2:], stride, dilation)
    out = np.einsum("ngohw,ngchwab->gocab", _grouped(dy, groups), _grouped(win, groups))
    dw[...] = out.reshape(dw.shape)


def max_pool2d(x, y, switches, kernel, stride, pad):
    """y[n,c,i,j] = max over the window of x padded with −∞; switches = flat index h·W + w of the first
    maximum in row-major window order (NaN counts as the maximum, so it propagates)."""
    N, C, H, W = x.shape
    H_out, W_out = y.shape[2:]
    win = _windows(x, pad, (H_out, W_out), kernel, stride, (1, 1), fill=-np.inf)
    flat = win.reshape(N, C, H_out, W_out, kernel[0] * kernel[1])
    k = np.argmax(flat, axis=-1)
    y[...] = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    rows = np.arange(H_out)[:, None] * stride[0] - pad[0] + k // kernel[1]
    cols = np.arange(W_out)[None, :] * stride[1] - pad[1] + k % kernel[1]
    switches[...] = rows * W + cols


def max_unpool2d(y, switches, out):
    """out[n,c].flat[switches[n,c,i,j]] += y[n,c,i,j]; zero elsewhere (so it is also max_pool2d's backward)."""
    N, C = y.shape[:2]
    flat = out.reshape(N * C, -1)
    flat[...] = 0
    planes = np.repeat(np.arange(N * C), y[0, 0].size)
    np.add.at(flat, (planes, switches.reshape(-1)), y.reshape(-1))
