"""What the units of a layer respond to: filters, activations, the dataset's strongest activations with
their input patches and deconvnet projections (Zeiler & Fergus 2014, Fig. 2), and how the strongest
projections evolve over training (Fig. 4)."""
from __future__ import annotations

import os
from functools import partial
from typing import NamedTuple

import numpy as np

from .. import nn
from . import _core, _stream
from .backprop import deconvnet
from .receptive import receptive_field, unit_window


@_core.takes_model
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


@_core.takes_model
def activations(model, x, layer):
    """The output of `layer` for the batch x (eval mode), e.g. (N, C, H', W') feature maps."""
    x = _core.as_batch(model, x)
    with _core.evaluating(model):
        return _core.forward_to(model, x, layer).copy()


class TopActivations(NamedTuple):
    channels: np.ndarray     # (K,) the channels
    values: np.ndarray       # (K, k) strongest activation per channel, descending, one per image
    indices: np.ndarray      # (K, k) index of that image in the dataset
    positions: np.ndarray    # (K, k, 2) its (i, j) in the feature map ((K, k, 0) for flat layers)
    windows: np.ndarray      # (K, k, 4) (top, left, height, width) receptive-field window in the image
    patches: np.ndarray      # (K, k, C, h, w) input patches (zero outside the image)
    projections: np.ndarray  # (K, k, C, h, w) deconvnet projections, cropped to the same windows


@_core.takes_model
def top_activations(model, data, layer, k=9, channels=None, batch_size=256, progress=False):
    """Over a whole dataset, in batches: for each channel of `layer`, the k strongest activations (at most
    one per image: each image's maximum; ties go to the lower dataset index), the input patch under each
    one's receptive field (computed from the layer stack) and its deconvnet projection.

    data: an array, (x, y) pair or Dataset — or, streamed with bounded memory, a Dask array chunked along
    N or an iterable of batches (see fastconv.vis._stream). Only the k winners per channel are projected:
    they are fetched by index from a Dask array (which reads the chunks that hold them again: carrying the
    candidates' images through the merge instead costs more memory than the bound allows); from an
    iterable, which cannot be read twice, their images are kept as it is read."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected a positive int, got {k!r}")
    x = _stream.images(data)
    keep = isinstance(x, _stream.Batches)
    sel = _stream.map_reduce(model, x, partial(_batch_top, layer=layer, channels=channels, k=int(k), keep=keep),
                             partial(_merge_top, k=int(k)), batch_size=batch_size, progress=progress,
                             desc="top activations")
    channels = sel.channels
    if keep:
        ids, stack = sel.images
        winners = stack[np.searchsorted(ids, sel.indices)]                    # (K, k, C, H, W)
    else:
        winners = _stream.take(x, sel.indices)
    H, W = winners.shape[-2:]
    rf = receptive_field(model, layer, input_size=(H, W))[-1]
    windows = np.array([[(0, 0, H, W) if rf["global"] else unit_window(rf, p) for p in row]
                        for row in sel.positions])
    patches, projections = [], []
    with _core.evaluating(model):
        for c, ch in enumerate(channels):
            xs = _core.as_batch(model, winners[c])
            proj = deconvnet(model, xs, layer, ch, position=sel.positions[c] if sel.positions.shape[-1] else None)
            patches.append([crop(img, win) for img, win in zip(xs, windows[c])])
            projections.append([crop(p, win) for p, win in zip(proj, windows[c])])
    return TopActivations(channels, sel.values, sel.indices, sel.positions, windows, np.array(patches),
                          np.array(projections))


class _Top(NamedTuple):
    """The k strongest images per channel of some part of the dataset (a top-k merges associatively)."""
    channels: np.ndarray    # (K,)
    values: np.ndarray      # (K, m), m <= k, descending, ties by index
    indices: np.ndarray     # (K, m) dataset indices
    positions: np.ndarray   # (K, m, d)
    images: tuple | None    # (ids, stack): the winners' sorted dataset indices and their images, streamed


def _batch_top(model, x, start, *, layer, channels, k, keep):
    """Each image's maximum per channel (value and position), then the batch's top-k per channel."""
    a = _core.forward_to(model, x, layer)
    C = a.shape[1]
    channels = np.arange(C) if channels is None else np.asarray(channels, dtype=np.int64).reshape(-1)
    if channels.size and (channels.min() < -C or channels.max() >= C):
        raise ValueError(f"channels: expected channel indices in [0, {C}) of layer {layer!r}, got {channels}")
    plane = a[:, channels].reshape(a.shape[0], len(channels), -1)             # (n, K, P)
    flat = plane.argmax(axis=2)
    vals = np.take_along_axis(plane, flat[..., None], 2)[..., 0].T           # (K, n)
    pos = np.stack(np.unravel_index(flat.T, a.shape[2:]), axis=-1) if a.ndim > 2 \
        else np.zeros(flat.T.shape + (0,), np.int64)
    idx = np.broadcast_to(start + np.arange(len(x)), vals.shape)
    top = _select(_Top(channels, vals, idx, pos, None), k)
    if keep:   # one contiguous copy (not one small array per image, which fragments the heap), so that
        ids = np.unique(top.indices)   # the batch itself can be freed
        top = top._replace(images=(ids, x[ids - start]))
    return top


def _select(top, k):
    """The k strongest per channel: descending value, ties to the lower dataset index (a stable sort of
    the whole dataset would give the same order, which makes the merge exact)."""
    order = np.lexsort((top.indices, -top.values), axis=-1)[:, :k]
    take = partial(np.take_along_axis, indices=order, axis=1)
    indices = take(top.indices)
    images = None
    if top.images is not None:
        ids = np.unique(indices)
        images = (ids, top.images[1][np.searchsorted(top.images[0], ids)])
    return _Top(top.channels, take(top.values), indices,
                np.take_along_axis(top.positions, order[..., None], axis=1), images)


def _merge_top(parts, k):
    images = None   # parts cover disjoint ranges of the dataset: their ids never repeat
    if parts[0].images is not None:
        ids, stack = (np.concatenate([p.images[j] for p in parts]) for j in (0, 1))
        order = np.argsort(ids, kind="stable")
        images = (ids[order], stack[order])
    return _select(_Top(parts[0].channels, *(np.concatenate([getattr(p, f) for p in parts], axis=1)
                                             for f in ("values", "indices", "positions")), images), k)


class ActivationStats(NamedTuple):
    mean: np.ndarray    # (C,) float64, over images and positions
    std: np.ndarray     # (C,) float64, population standard deviation (ddof 0)
    max: np.ndarray     # (C,) in the activations' dtype
    count: int          # values per channel (images × positions)


@_core.takes_model
def activation_stats(model, data, layer, batch_size=256, progress=False):
    """Mean, standard deviation and maximum of each channel of `layer` over a dataset (array, (x, y) pair,
    Dataset, Dask array or iterable of batches), merged batch by batch with Chan et al.'s update."""
    m = _stream.map_reduce(model, _stream.images(data), partial(_batch_moments, layer=layer), _merge_moments,
                           batch_size=batch_size, progress=progress, desc="activation statistics")
    return ActivationStats(m.mean, np.sqrt(m.m2 / m.count), m.max, m.count)


class _Moments(NamedTuple):
    count: int
    mean: np.ndarray   # (C,) float64
    m2: np.ndarray     # (C,) sum of squared deviations from the mean
    max: np.ndarray    # (C,)


def _batch_moments(model, x, start, *, layer):
    a = _core.forward_to(model, x, layer)
    v = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1).astype(np.float64)      # (C, n·P)
    mean = v.mean(axis=1)
    return _Moments(v.shape[1], mean, ((v - mean[:, None]) ** 2).sum(axis=1), v.max(axis=1).astype(a.dtype))


def _merge_moments(parts):
    """Chan, Golub & LeVeque's pairwise update: exact in exact arithmetic, stable in floating point."""
    n, mean, m2, mx = parts[0]
    for p in parts[1:]:
        total = n + p.count
        delta = p.mean - mean
        mean = mean + delta * (p.count / total)
        m2 = m2 + p.m2 + delta ** 2 * (n * p.count / total)
        mx, n = np.maximum(mx, p.max), total
    return _Moments(n, mean, m2, mx)


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
