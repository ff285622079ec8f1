"""Perturbation methods. Occlusion sensitivity (Zeiler & Fergus 2014, §4.2): slide a grey (or zero) square over the image and
record, per occluder position, the probability of the target class — and the total activation of the
feature map that responds most strongly to the unoccluded image. Forward passes only, batched in chunks.

The per-pixel mode averages, for each pixel, the score drop score(x) − score(occluded x) over all the
windows covering it: the quantity Captum's `Occlusion.attribute` returns.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from .. import _validate as V
from . import _core, _stream


def _positions(size, window, stride):
    return np.arange(0, size - window + 1, stride)


@_core.takes_model
def occlusion(model, x, target, window, stride, fill=0.0, *, layer=None, per_pixel=False, score="prob",
              chunk_size=256, progress=False):
    """Occlusion maps for a batch x (N, C, H, W).

    window, stride: int or (h, w); the occluder takes positions 0, s, 2s, ... that fit inside the image.
    fill: the occluder's value — a scalar, or an array broadcastable to (C, H, W) (e.g. the per-channel
    data mean for a "grey" square, or a baseline image). score: 'prob' (softmax probability of `target`,
    Zeiler & Fergus) or 'logit'. chunk_size: occluded images per forward pass (the memory knob).

    x: a batch — or, streamed image by image with bounded memory, a Dask array chunked along N or an
    iterable of batches (target: an int, or one per image of the whole dataset).

    Returns (N, H_pos, W_pos) scores per occluder position; with per_pixel=True, (N, H, W): the mean drop
    of the score over the windows covering each pixel (0 where none does). With layer=L, also returns
    (N, H_pos, W_pos) total activation of L's strongest feature map (chosen on the unoccluded image).
    """
    data = _stream.images(x)
    if _stream.is_streamed(data):
        if np.ndim(target) and _stream.is_dask(data) and len(target) != len(data):
            raise ValueError(f"target: expected an int or {len(data)} class indices, got shape {np.shape(target)}")
        kw = dict(target=target, window=window, stride=stride, fill=fill, layer=layer, per_pixel=per_pixel,
                  score=score, chunk_size=chunk_size)
        return _stream.map_reduce(model, data, partial(_batch_occlusion, **kw), _stream.concat,
                                  batch_size=chunk_size, progress=progress, desc="occlusion")
    x = _core.as_batch(model, data)
    N, C, H, W = x.shape
    h, w = V.pair("window", window, 1)
    sh, sw = V.pair("stride", stride, 1)
    if h > H or w > W:
        raise ValueError(f"window: {(h, w)} is larger than the image {(H, W)}")
    if score not in ("prob", "logit"):
        raise ValueError(f"score: expected 'prob' or 'logit', got {score!r}")
    t = _core.targets(target, N)
    fill = np.broadcast_to(np.asarray(fill, dtype=x.dtype), (C, H, W))
    rows, cols = _positions(H, h, sh), _positions(W, w, sw)
    grid = [(i, j) for i in rows for j in cols]
    maps = np.zeros((N, len(grid)), x.dtype)
    feats = np.zeros((N, len(grid)), x.dtype) if layer is not None else None
    base = np.zeros(N, x.dtype)
    with _core.evaluating(model):
        for n in _core.progress(range(N), desc="occlusion", enabled=progress):
            s0, a0 = _scores(model, x[n:n + 1], t[n], score, layer)
            base[n] = s0[0]
            channel = None if layer is None else int(a0.reshape(a0.shape[1], -1).max(axis=1).argmax())
            for sl in _core.chunks(len(grid), chunk_size):
                batch = np.repeat(x[n:n + 1], sl.stop - sl.start, axis=0)
                for b, (i, j) in enumerate(grid[sl]):
                    batch[b, :, i:i + h, j:j + w] = fill[:, i:i + h, j:j + w]
                s, a = _scores(model, batch, t[n], score, layer)
                maps[n, sl] = s
                if layer is not None:
                    feats[n, sl] = a[:, channel].reshape(len(batch), -1).sum(axis=1)
    shape = (N, len(rows), len(cols))
    if per_pixel:
        drop = (base[:, None] - maps).reshape(shape)
        total = np.zeros((N, H, W), np.float64)
        count = np.zeros((H, W), np.float64)
        for a, i in enumerate(rows):
            for b, j in enumerate(cols):
                total[:, i:i + h, j:j + w] += drop[:, a, b, None, None]
                count[i:i + h, j:j + w] += 1
        out = (total / np.maximum(count, 1)).astype(x.dtype)
    else:
        out = maps.reshape(shape)
    return out if layer is None else (out, feats.reshape(shape))


def _batch_occlusion(model, x, start, *, target, **kw):
    """occlusion() on one batch of a streamed dataset: its slice of the per-image targets."""
    t = np.asarray(target)
    if t.ndim:
        if len(t) < start + len(x):
            raise ValueError(f"target: expected an int or one class index per image, got {len(t)} for a dataset "
                             f"of at least {start + len(x)} images")
        t = t[start:start + len(x)]
    return occlusion(model, x, t, **kw)


def _scores(model, batch, target, score, layer):
    """Score of `target` for each image of batch, and (if layer is given) that layer's activations."""
    if layer is None:
        logits, a = model.forward(batch), None
    else:
        idx = _core.layer_index(model, layer)
        a = model.forward(batch, until=idx)
        logits = a
        for _, rest in model.named_layers()[idx + 1:]:
            logits = rest.forward(logits)
        a = a.copy()
    s = _core.softmax(logits) if score == "prob" else logits
    return s[:, target], a
