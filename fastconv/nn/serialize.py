"""save / load a model as one .npz (architecture JSON + weights), and weight exchange with PyTorch.

The .npz holds "__architecture__" (a JSON string: layer types and constructor arguments, nested for
Sequential), "__dtype__", and one array per parameter under its state-dict name ("0.weight"). It loads
without pickle. Writes are atomic: a temporary file in the target directory, then os.replace.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from . import conv, layers, norm, pooling
from .base import Layer, jsonable
from .sequential import Sequential

FORMAT_VERSION = 1
LAYER_TYPES = {cls.__name__: cls for cls in (
    conv.Conv2d, conv.TiledConv2d, conv.LocallyConnected2d, conv.ConvTranspose2d, layers.Linear, layers.MaxPool2d,
    layers.ReLU, layers.Flatten, layers.Dropout, norm.BatchNorm2d, norm.LocalResponseNorm, norm.Softmax,
    pooling.AvgPool2d, pooling.AdaptiveAvgPool2d, Sequential)}


def architecture(layer: Layer) -> dict:
    """JSON-able description that `build` turns back into an (untrained) layer of the same shape."""
    name = type(layer).__name__
    if name not in LAYER_TYPES:
        raise TypeError(f"cannot serialise layer type {name}; known: {sorted(LAYER_TYPES)}")
    if isinstance(layer, Sequential):
        return {"type": name, "layers": [[n, architecture(sub)] for n, sub in layer.named_layers()]}
    return {"type": name, "config": {k: jsonable(v) for k, v in layer.config.items()}}


def build(spec: dict, dtype=np.float32) -> Layer:
    cls = LAYER_TYPES.get(spec.get("type"))
    if cls is None:
        raise ValueError(f"unknown layer type {spec.get('type')!r} in architecture; known: {sorted(LAYER_TYPES)}")
    if cls is Sequential:
        return Sequential(*[(n, build(sub, dtype)) for n, sub in spec["layers"]])
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["config"].items()}
    layer = cls(**config)
    return layer.astype(dtype) if layer.dtype is not None else layer


def atomic_write(path, write) -> None:
    """Call write(file_object) on a temporary file next to `path`, then atomically rename it to `path`."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(model: Layer, path) -> None:
    """Write architecture and weights to `path` (.npz), atomically."""
    arrays = dict(model.state())
    arrays["__architecture__"] = np.array(json.dumps({"format": FORMAT_VERSION, "model": architecture(model)}))
    arrays["__dtype__"] = np.array(str(model.dtype or np.dtype(np.float32)))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path) -> Layer:
    """The model saved at `path`, with its weights (bit-exact) and dtype; in eval mode."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a fastconv model file ({e})") from e
    if "__architecture__" not in data:
        raise ValueError(f"{path}: not a fastconv model file (no '__architecture__' entry)")
    meta = json.loads(str(data.pop("__architecture__")))
    dtype = np.dtype(str(data.pop("__dtype__", "float32")))
    model = build(meta["model"], dtype)
    _copy_params(model, data, path)
    return model.eval()


def _copy_params(model, arrays, source):
    own = dict(model.state())
    missing, unexpected = sorted(set(own) - set(arrays)), sorted(set(arrays) - set(own))
    if missing or unexpected:
        raise KeyError(f"{source}: parameters do not match the model: missing {missing}, unexpected {unexpected}")
    for name, value in own.items():
        new = np.asarray(arrays[name])
        if new.shape != value.shape:
            raise ValueError(f"{source}: '{name}' has shape {new.shape}, the model expects {value.shape}")
        value[...] = new
    model.zero_grad()


def from_torch(state_dict, model=None):
    """With `model`: copy a PyTorch state dict (or a torch module's) into `model` in place (keys "<layer>.weight",
    "<layer>.bias", BatchNorm's buffers; torch tensors or NumPy arrays, cast to the model's dtype; tiled and
    locally connected layers use identical layouts) and return it. Without: build the fastconv.nn model
    equivalent to the torch.nn.Module `state_dict` (Sequential containers, chains traced with torch.fx; see
    fastconv.nn._from_torch), weights copied."""
    if model is None:
        from ._from_torch import from_torch_module
        return from_torch_module(state_dict)
    if hasattr(state_dict, "state_dict") and callable(state_dict.state_dict):
        state_dict = state_dict.state_dict()
    arrays = {}
    for key, value in state_dict.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        arrays[key] = np.asarray(value)
    _copy_params(model, arrays, "state_dict")
    return model


def to_torch(model):
    """An equivalent torch.nn.Sequential (float64 if the model is), with the weights copied."""
    from . import _torch
    return _torch.to_torch(model)
