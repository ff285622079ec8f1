"""Padding by extending the input (PyTorch's padding_mode, scipy's boundary) and its adjoint.

The kernels only ever pad with zeros, and only implicitly. Every other padding is an explicit gather:
padded row r of a plane is input row src[r], for an index map per axis. The gradient of that gather is the
scatter-add of the padded gradient back through the same map (`fold`), so conv2d_input_grad stays exact
through any padding mode.
"""
from __future__ import annotations

import numpy as np

# PyTorch's padding_mode names, plus scipy's 'symmetric' (the edge repeated: scipy.signal's boundary='symm').
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_SOURCES = {
    "reflect": lambda i, n: np.abs(n - 1 - np.abs(n - 1 - i)),     # mirror about the edge, edge not repeated
    "replicate": lambda i, n: np.clip(i, 0, n - 1),
    "circular": lambda i, n: i % n,
    "symmetric": lambda i, n: np.where(i % (2 * n) < n, i % (2 * n), 2 * n - 1 - i % (2 * n)),
}


def check_mode(padding_mode) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode: expected one of {list(PADDING_MODES)}, got {padding_mode!r}")
    return padding_mode


def source(mode: str, n: int, before: int, after: int, name: str = "padding") -> np.ndarray:
    """src[r] = the input index that padded index r (0 <= r < before + n + after) reads."""
    if mode == "reflect" and max(before, after) >= n:
        raise ValueError(f"{name}: 'reflect' padding must be smaller than the input size {n}, got "
                         f"({before}, {after}) (as PyTorch)")
    return _SOURCES[mode](np.arange(-before, n + after), n)


def pad(x: np.ndarray, pads, mode: str, name: str = "padding") -> np.ndarray:
    """x (..., H, W) extended by pads (top, bottom, left, right) in `mode`, a new C-contiguous array."""
    H, W = x.shape[-2:]
    rows = source(mode, H, pads[0], pads[1], name)
    cols = source(mode, W, pads[2], pads[3], name)
    return np.ascontiguousarray(x[..., rows[:, None], cols[None, :]])


def fold(dxp: np.ndarray, pads, mode: str, hw) -> np.ndarray:
    """The adjoint of pad: dx (..., H, W) with every padded position's gradient added to its source."""
    rows = source(mode, hw[0], pads[0], pads[1])
    cols = source(mode, hw[1], pads[2], pads[3])
    dx = np.zeros(dxp.shape[:-2] + (hw[0], dxp.shape[-1]), dxp.dtype)
    np.add.at(dx, (..., rows, slice(None)), dxp)
    out = np.zeros(dxp.shape[:-2] + tuple(hw), dxp.dtype)
    np.add.at(out, (..., slice(None), cols), dx)
    return out
