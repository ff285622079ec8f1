"""What the units of a layer respond to: filters, activations, the dataset's strongest activations with
their input patches and deconvnet projections (Zeiler & Fergus 2014, Fig. 2), and how the strongest
projections evolve over training (Fig. 4)."""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from .. import nn
from . import _core
from .backprop import deconvnet
from .receptive import receptive_field, unit_window


def filters(model, layer=None):
    """The weights of a convolution layer (default: the first one) as images (K, C_in, kH, kW); tiled and
    locally connected weights are stacked over their tiles/positions (K = T_h·T_w·C_out)."""
    if layer is None:
        layer = next((i for i, (_, lay) in enumerate(model.named_layers())
                      if getattr(lay, "weight", None) is not None and lay.weight.ndim in (4, 6)), None)
        if layer is None:
            raise ValueError("filters: the model has no convolution layer")
    lay = model[_core.layer_index(model, layer)]
    w = getattr(lay, "weight", None)
    if w is None or w.ndim not in (4, 6):
        raise ValueError(f"filters: layer {layer!r} ({type(lay).__name__}) has no convolution weights")
    return w.reshape((-1,) + w.shape[-3:]).copy()


def activations(model, x, layer):
    """The output of `layer` for the batch x (eval mode), e.g. (N, C, H', W') feature maps."""
    x = _core.as_batch(model, x)
    with _core.evaluating(model):
        return _core.forward_to(model, x, layer).copy()


def _images(data):
    if hasattr(data, "x"):
        return np.asarray(data.x)
    if isinstance(data, tuple) and len(data) == 2:
        return np.asarray(data[0])
    return np.asarray(data)


class TopActivations(NamedTuple):
    channels: np.ndarray     # (K,) the channels
    values: np.ndarray       # (K, k) strongest activation per channel, descending, one per image
    indices: np.ndarray      # (K, k) index of that image in the dataset
    positions: np.ndarray    # (K, k, 2) its (i, j) in the feature map ((K, k, 0) for flat layers)
    windows: np.ndarray      # (K, k, 4) (top, left, height, width) receptive-field window in the image
    patches: np.ndarray      # (K, k, C, h, w) input patches (zero outside the image)
    projections: np.ndarray  # (K, k, C, h, w) deconvnet projections, cropped to the same windows


def top_activations(model, data, layer, k=9, channels=None, batch_size=256, progress=False):
    """Over a whole dataset (array, (x, y) pair or Dataset), in batches: for each channel of `layer`, the k
    strongest activations (at most one per image: each image's maximum), the input patch under each
    one's receptive field (computed from the layer stack) and its deconvnet projection."""
    x_all = _images(data)
    N = len(x_all)
    k = min(k, N)
    best_val, best_pos = [], []
    with _core.evaluating(model):
        for sl in _core.progress(list(_core.chunks(N, batch_size)), desc="top activations", enabled=progress):
            a = _core.forward_to(model, _core.as_batch(model, x_all[sl]), layer)
            plane = a.reshape(a.shape[0], a.shape[1], -1)
            flat = plane.argmax(axis=2)
            best_val.append(np.take_along_axis(plane, flat[..., None], 2)[..., 0])
            best_pos.append(np.stack(np.unravel_index(flat, a.shape[2:]), axis=-1) if a.ndim > 2
                            else np.zeros(flat.shape + (0,), np.int64))
    vals, pos = np.concatenate(best_val), np.concatenate(best_pos)      # (N, C), (N, C, 2)
    channels = np.arange(vals.shape[1]) if channels is None else np.asarray(channels, dtype=np.int64)
    order = np.argsort(-vals[:, channels], axis=0, kind="stable")[:k].T   # (K, k)
    values = np.take_along_axis(vals[:, channels].T, order, axis=1)
    positions = np.stack([pos[order[c], ch] for c, ch in enumerate(channels)])
    H, W = x_all.shape[2:]
    rf = receptive_field(model, layer, input_size=(H, W))[-1]
    windows = np.array([[(0, 0, H, W) if rf["global"] else unit_window(rf, p) for p in row] for row in positions])
    patches, projections = [], []
    for c, ch in enumerate(channels):
        xs = _core.as_batch(model, x_all[order[c]])
        proj = deconvnet(model, xs, layer, ch, position=positions[c] if positions.shape[-1] else None)
        patches.append([crop(img, win) for img, win in zip(xs, windows[c])])
        projections.append([crop(p, win) for p, win in zip(proj, windows[c])])
    return TopActivations(channels, values, order, positions, windows, np.array(patches), np.array(projections))


def crop(image, window):
    """image (C, H, W)[top:top+h, left:left+w], zero where the window leaves the image."""
    top, left, h, w = (int(v) for v in window)
    C, H, W = image.shape
    out = np.zeros((C, h, w), image.dtype)
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, H), min(left + w, W)
    if t1 > t0 and l1 > l0:
        out[:, t0 - top:t1 - top, l0 - left:l1 - left] = image[:, t0:t1, l0:l1]
    return out


def feature_evolution(checkpoints, x, layer, channels):
    """For each checkpoint (a model or a saved .npz path, in training order) and each channel of `layer`:
    the deconvnet projection of the channel's strongest activation over the images x. Returns
    (projections (E, K, C, H, W), image indices (E, K))."""
    projections, indices = [], []
    for ckpt in checkpoints:
        model = nn.load(ckpt) if isinstance(ckpt, (str, os.PathLike)) else ckpt
        xs = _core.as_batch(model, x)
        a = activations(model, xs, layer)
        strongest = a.reshape(a.shape[0], a.shape[1], -1).max(axis=2)   # (N, C)
        row, idx = [], []
        for ch in channels:
            n = int(strongest[:, ch].argmax())
            row.append(deconvnet(model, xs[n:n + 1], layer, ch)[0])
            idx.append(n)
        projections.append(row)
        indices.append(idx)
    return np.array(projections), np.array(indices)
