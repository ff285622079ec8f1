"""save / load a model as one .npz (architecture JSON + weights), and weight exchange with PyTorch.

The .npz holds "__architecture__" (a JSON string: layer types and constructor arguments, nested for
Sequential), "__dtype__", and one array per parameter under its state-dict name ("0.weight"). It loads
without pickle, and treats the file as untrusted: every failure is one `ModelFileError` (a ValueError)
saying what is wrong, nesting is bounded, and the model is built with placeholder parameters whose
names and shapes are checked against the arrays' headers before any array is read, so a file cannot
make `load` allocate more than the arrays it holds. Writes are atomic (a temporary file in the target
directory, then os.replace) and get the usual permissions (the umask's).
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from . import conv, layers, norm, pooling
from .base import Layer, jsonable, placeholder_params
from .sequential import Sequential

FORMAT_VERSION = 1
MAX_NESTING = 64          # Sequential levels in a model file (and twice that in its JSON)
MAX_ARCHITECTURE_BYTES = 1 << 20


class ModelFileError(ValueError):
    """A file that `load` cannot read as a fastconv model: truncated, corrupted, not an .npz, a missing or
    extra entry, bad JSON, too deep a nesting, or arrays that disagree with the architecture."""
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
    if not isinstance(spec, dict):
        raise ValueError(f"a layer must be described by an object, got {type(spec).__name__}")
    cls = LAYER_TYPES.get(spec.get("type"))
    if cls is None:
        raise ValueError(f"unknown layer type {spec.get('type')!r} in architecture; known: {sorted(LAYER_TYPES)}")
    if cls is Sequential:
        return Sequential(*[(n, build(sub, dtype)) for n, sub in spec["layers"]])
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["config"].items()}
    layer = cls(**config)
    return layer.astype(dtype) if layer.dtype is not None else layer


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def atomic_write(path, write) -> None:
    """Call write(file_object) on a temporary file next to `path`, then atomically rename it to `path`
    (which keeps the old file whole if anything fails). The file gets 0o666 less the umask, as open() would
    give it (mkstemp's are 0o600)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
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
    """The model saved at `path`, with its weights (bit-exact) and dtype; in eval mode. FileNotFoundError
    if there is no such file; ModelFileError (a ValueError) naming what is wrong for anything else."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as z:
            return _load(z)
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    # zipfile raises NotImplementedError for a corrupted version or compression field
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError, RecursionError,
            NotImplementedError) as e:
        raise ModelFileError(f"{path}: not a readable fastconv model file ({type(e).__name__}: {e})") from e


def _headers(z) -> dict:
    """{entry: (shape, dtype, ZipInfo)} of the .npy members, from their headers alone."""
    out = {}
    for info in z.infolist():
        if not info.filename.endswith(".npy"):
            raise ModelFileError(f"unexpected member {info.filename!r} (an .npz holds only .npy files)")
        with z.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(version,
                                                                          np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            if dtype.hasobject:
                raise ModelFileError(f"{info.filename!r} holds Python objects (pickles are never loaded)")
            if int(np.prod(shape, dtype=object)) * dtype.itemsize > info.file_size:
                raise ModelFileError(f"{info.filename!r} declares shape {shape} of {dtype}, more than its "
                                     f"{info.file_size} bytes hold")
        out[info.filename[:-4]] = (tuple(shape), dtype, info)
    return out


def _read(z, info):
    with z.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _depth(spec, level=0) -> int:
    if level > MAX_NESTING:
        raise ModelFileError(f"the architecture nests more than {MAX_NESTING} levels")
    if isinstance(spec, dict) and isinstance(spec.get("layers"), list):
        return max([level] + [_depth(sub[1], level + 1) for sub in spec["layers"]
                              if isinstance(sub, list) and len(sub) == 2])
    return level


def _load(z) -> Layer:
    headers = _headers(z)
    for entry in ("__architecture__", "__dtype__"):
        if entry not in headers:
            raise ModelFileError(f"no {entry!r} entry: not a fastconv model file")
        shape, dtype, info = headers.pop(entry)
        if shape != () or dtype.kind != "U" or info.file_size > MAX_ARCHITECTURE_BYTES:
            raise ModelFileError(f"{entry!r} must be a string of at most {MAX_ARCHITECTURE_BYTES} bytes")
    text = str(_read(z, z.getinfo("__architecture__.npy")))
    if text.count("[") + text.count("{") > 0 and _max_brackets(text) > 2 * MAX_NESTING + 8:
        raise ModelFileError(f"the architecture nests more than {MAX_NESTING} levels")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelFileError(f"the architecture is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or "model" not in meta:
        raise ModelFileError("the architecture has no 'model' entry")
    _depth(meta["model"])
    try:
        dtype = np.dtype(str(_read(z, z.getinfo("__dtype__.npy"))))
        with placeholder_params():
            model = build(meta["model"], dtype)
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"the architecture does not describe a model ({type(e).__name__}: {e})") from None
    own = dict(model.state())
    missing, unexpected = sorted(set(own) - set(headers)), sorted(set(headers) - set(own))
    if missing or unexpected:
        raise ModelFileError(f"parameters do not match the model: missing {missing}, unexpected {unexpected}")
    for name, value in own.items():
        if headers[name][0] != value.shape:
            raise ModelFileError(f"'{name}' has shape {headers[name][0]}, the architecture says {value.shape}")
    arrays = {name: _read(z, headers[name][2]) for name in own}
    _copy_params(model, arrays, "the file")
    return model.eval()


def _max_brackets(text: str) -> int:
    """Deepest nesting of [ and { in a JSON text (strings skipped), without parsing it."""
    depth = most = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (not escaped and ch == "\\"), in_string and (escaped or ch != '"')
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            most = max(most, depth)
        elif ch in "]}":
            depth -= 1
    return most


def _copy_params(model, arrays, source):
    owners = {name: (layer, attr) for name, layer, attr in _param_slots(model)}
    missing, unexpected = sorted(set(owners) - set(arrays)), sorted(set(arrays) - set(owners))
    if missing or unexpected:
        raise KeyError(f"{source}: parameters do not match the model: missing {missing}, unexpected {unexpected}")
    for name, (layer, attr) in owners.items():
        value, new = getattr(layer, attr), np.asarray(arrays[name])
        if new.shape != value.shape:
            raise ValueError(f"{source}: '{name}' has shape {new.shape}, the model expects {value.shape}")
        if value.flags.writeable:  # in place: optimizers may hold the arrays
            value[...] = new
        else:                      # a placeholder of load(): the file's array takes its place
            setattr(layer, attr, np.array(new, dtype=value.dtype))
    model.zero_grad()


def _param_slots(layer, prefix=""):
    """(state-dict name, owning layer, attribute) of every parameter present and every buffer."""
    if isinstance(layer, Sequential):
        for name, sub in layer.named_layers():
            yield from _param_slots(sub, f"{prefix}{name}.")
        return
    for attr in layer.param_names + layer.buffer_names:
        if getattr(layer, attr, None) is not None:
            yield prefix + attr, layer, attr


def from_torch(state_dict, model=None, *, fold_batch_norm=False):
    """With `model`: copy a PyTorch state dict (or a torch module's) into `model` in place (keys "<layer>.weight",
    "<layer>.bias", BatchNorm's buffers; torch tensors or NumPy arrays, cast to the model's dtype; tiled and
    locally connected layers use identical layouts) and return it. Without: build the fastconv.nn model
    equivalent to the torch.nn.Module `state_dict` (Sequential containers, chains traced with torch.fx; see
    fastconv.nn._from_torch), weights copied; with fold_batch_norm=True (an eval-mode module), each
    BatchNorm2d after a conv is folded into it (see fastconv.nn.fold_batch_norm)."""
    if model is None:
        from ._from_torch import from_torch_module
        from .norm import fold_batch_norm as fold
        imported = from_torch_module(state_dict)
        return fold(imported) if fold_batch_norm else imported
    if fold_batch_norm:
        raise ValueError("fold_batch_norm: only when importing a module (model=None); fold the model with "
                         "fastconv.nn.fold_batch_norm(model) after loading")
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
