"""Plumbing shared by the visualization methods: naming layers, running a model up to a layer and
backwards from it, seeding a backward pass, and batching.

Models with nested containers (an imported torchvision net's `features`) are seen through their flat view
(`takes_model`), where a layer is named by its path, "features.3", as torch names it.
Methods only ever call the model's layers (`model.forward(x, until=layer)`, `model.backward(dy,
from_layer=layer)` and the ReLU backward rules of `fastconv.nn.backward_rule`), never kernels.
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np

from .. import nn


def takes_model(method):
    """The method runs on the flat view of its first argument, the model (nn.Sequential.flat)."""
    @functools.wraps(method)
    def on_flat_view(model, *args, **kwargs):
        return method(model.flat() if isinstance(model, nn.Sequential) else model, *args, **kwargs)
    return on_flat_view


def layer_index(model, layer) -> int:
    """Position of `layer` in `model`: a name ("3", "features.3"), an index (3, -1) or the layer object. The
    name of a nested container ("features") stands for its last layer, whose output is the container's."""
    if layer is None:
        raise ValueError("layer: expected a layer name, an index or a layer, got None")
    if isinstance(layer, (np.integer,)):
        layer = int(layer)
    try:
        return model.index(layer)
    except (KeyError, IndexError, StopIteration):
        inside = [i for i, (name, _) in enumerate(model.named_layers()) if name.startswith(f"{layer}.")] \
            if isinstance(layer, str) else []
        if inside:
            return inside[-1]
        raise ValueError(f"layer: {layer!r} is not a layer of the model; layers: "
                         f"{[name for name, _ in model.named_layers()]}") from None


def layer_name(model, layer) -> str:
    return model.named_layers()[layer_index(model, layer)][0]


def model_dtype(model):
    return model.dtype or np.dtype(np.float32)


def as_batch(model, x) -> np.ndarray:
    """x as a contiguous NCHW batch of the model's dtype (a single CHW image gets a batch axis)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"x: expected a float array, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"x: expected an NCHW batch (N, C, H, W), got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=model_dtype(model))


def targets(target, n: int) -> np.ndarray:
    """A class index per sample: an int broadcasts, a sequence must have one entry per sample."""
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"target: expected a class index (int) or one per sample, got {target!r}")
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.shape != (n,):
        raise ValueError(f"target: expected an int or {n} class indices, got shape {t.shape}")
    return t.astype(np.int64)


@contextlib.contextmanager
def evaluating(model):
    """Eval mode (Dropout off) for the block, the model's mode restored afterwards."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def forward_to(model, x, layer):
    """Activations of `layer` for the batch x (the layers before it keep their caches for backward)."""
    return model.forward(x, until=layer_index(model, layer))


def backward_from(model, dy, layer, rule="gradient"):
    """Project dy, a signal at `layer`'s output, back to the input under one ReLU backward rule."""
    with nn.backward_rule(model, rule):
        return model.backward(dy, from_layer=layer_index(model, layer))


def backward_multi(model, seeds: dict):
    """Backward pass with signals injected at several layers: seeds {layer index: dL/d(output)}.
    Used by neural style, whose loss reads several layers at once."""
    top = max(seeds)
    layers = [layer for _, layer in model.named_layers()]
    dy = np.zeros_like(seeds[top])
    for i in range(top, -1, -1):
        if i in seeds:
            dy = dy + seeds[i]
        dy = layers[i].backward(dy)
    return dy


def channel_argmax(a, channel):
    """For each sample, (value, index tuple) of the strongest activation of `channel` in a (N, C, ...)."""
    plane = a[:, channel].reshape(len(a), -1)
    flat = plane.argmax(axis=1)
    pos = np.stack(np.unravel_index(flat, a.shape[2:]), axis=1) if a.ndim > 2 else np.zeros((len(a), 0), int)
    return plane[np.arange(len(a)), flat], pos


def one_activation(a, channel, position=None):
    """The deconvnet's seed: zeros except one activation per sample, kept at its own value.

    channel: an int or one per sample; position: None (the channel's maximum), an (i, j) pair for every
    sample or an (N, 2) array. Returns (seed, positions (N, 2))."""
    N = len(a)
    ch = np.broadcast_to(np.asarray(channel, dtype=np.int64), (N,))
    if position is None:
        pos = np.stack([channel_argmax(a[n:n + 1], ch[n])[1][0] for n in range(N)]) if a.ndim > 2 \
            else np.zeros((N, 0), np.int64)
    else:
        pos = np.broadcast_to(np.asarray(position, dtype=np.int64).reshape(-1, a.ndim - 2), (N, a.ndim - 2))
    seed = np.zeros_like(a)
    for n in range(N):
        idx = (n, ch[n]) + tuple(pos[n])
        seed[idx] = a[idx]
    return seed, pos


def chunks(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def progress(iterable=None, total=None, desc=None, enabled=False):
    """tqdm over iterable when enabled and tqdm is installed, else the iterable itself."""
    if enabled:
        try:
            from tqdm.auto import tqdm
            return tqdm(iterable, total=total, desc=desc, leave=False)
        except ImportError:
            pass
    return iterable
