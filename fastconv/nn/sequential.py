"""Sequential: an ordered, named stack of layers (itself a Layer, so stacks nest).

Layers are named "0", "1", ... as in PyTorch, or by the (name, layer) pairs given. `model[i]` and
`model["name"]` index it; parameters are named "<layer>.<param>" ("0.weight"), the keys of a PyTorch
state dict. An error raised inside a layer's forward pass is re-raised naming the layer and its input.
flat() lists the layers of nested containers under their paths ("features.3"), the names torch's
named_modules gives them; the visualizations work on that view.
"""
from __future__ import annotations

import numpy as np

from .base import Layer


class Sequential(Layer):
    def __init__(self, *layers):
        super().__init__()
        if layers and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in layers):
            pairs = list(layers)
        elif any(isinstance(p, tuple) for p in layers):
            raise TypeError("Sequential: pass either layers or (name, layer) pairs, not a mix")
        else:
            pairs = [(str(i), layer) for i, layer in enumerate(layers)]
        self._layers = {}
        for name, layer in pairs:
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: layer {name!r} is not a fastconv.nn layer: {layer!r}")
            # a dotted name is a path into nested containers, as in flat()
            if name in self._layers or not all(name.split(".")):
                raise ValueError(f"Sequential: layer names must be unique and non-empty (dots only between path "
                                 f"parts), got {name!r}")
            self._layers[name] = layer

    # -- container protocol -------------------------------------------------------------------
    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self._layers:
                raise KeyError(f"no layer named {key!r}; layers: {list(self._layers)}")
            return self._layers[key]
        return list(self._layers.values())[key]

    def __len__(self):
        return len(self._layers)

    def __iter__(self):
        return iter(self._layers.values())

    def named_layers(self):
        """[(name, layer), ...] in order."""
        return list(self._layers.items())

    def flat(self) -> "Sequential":
        """The same layer objects (shared, not copied) in one flat Sequential, a nested container's layers named
        by their path ("features.3"); self when nothing is nested. Running it runs the nested model."""
        if not any(isinstance(layer, Sequential) for layer in self):
            return self
        pairs = []
        for name, layer in self._layers.items():
            inner = layer.flat().named_layers() if isinstance(layer, Sequential) else [("", layer)]
            pairs += [(f"{name}.{sub}" if sub else name, lay) for sub, lay in inner]
        view = Sequential(*pairs)
        view.training = self.training
        return view

    def index(self, key) -> int:
        """Position of a layer given by name, index or identity."""
        names = list(self._layers)
        if isinstance(key, str):
            self[key]
            return names.index(key)
        if isinstance(key, Layer):
            return next(i for i, layer in enumerate(self._layers.values()) if layer is key)
        return range(len(names))[key]

    # -- forward / backward -------------------------------------------------------------------
    def forward(self, x, until=None):
        """The model's output; with `until` (a layer name, index or the layer itself), the output of that
        layer instead (the layers after it are not run): the intermediate activations visualization reads."""
        stop = None if until is None else self.index(until)
        for i, (name, layer) in enumerate(self._layers.items()):
            if stop is not None and i > stop:
                break
            try:
                x = layer.forward(x)
            except (ValueError, TypeError) as e:
                if getattr(e, "_fastconv_layer", None):   # already named by a nested Sequential
                    raise
                shape = getattr(x, "shape", None)
                err = type(e)(f"layer '{name}' ({type(layer).__name__}) with input shape {shape}: {e}")
                err._fastconv_layer = name
                raise err from e
        return x

    def backward(self, dy, from_layer=None):
        """dL/dx from dL/dy of the last forward pass; fills every layer's grads. With `from_layer` (a layer
        name, index or the layer itself), dy is the gradient at that layer's output and the backward pass
        starts there (pair it with forward(x, until=the same layer))."""
        layers = list(self._layers.values())
        start = len(layers) - 1 if from_layer is None else self.index(from_layer)
        for layer in reversed(layers[:start + 1]):
            dy = layer.backward(dy)
        return dy

    # -- parameters and modes -------------------------------------------------------------------
    def parameters(self):
        for lname, layer in self._layers.items():
            for pname, value, grad in layer.parameters():
                yield f"{lname}.{pname}", value, grad

    def buffers(self):
        for lname, layer in self._layers.items():
            for bname, value in layer.buffers():
                yield f"{lname}.{bname}", value

    def zero_grad(self):
        for layer in self:
            layer.zero_grad()

    def train(self, mode: bool = True):
        self.training = bool(mode)
        for layer in self:
            layer.train(mode)
        return self

    def astype(self, dtype):
        for layer in self:
            layer.astype(dtype)
        return self

    def state_dict(self) -> dict:
        """{"0.weight": copy, ...} — the PyTorch state-dict keys (parameters and buffers)."""
        return {name: value.copy() for name, value in self.state()}

    def load_state_dict(self, state: dict) -> None:
        """Copy arrays into the parameters and buffers in place (cast to their dtype); every key must match in
        name and shape."""
        own = {name for name, _ in self.state()}
        missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
        if missing or unexpected:
            raise KeyError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        for lname, layer in self._layers.items():
            for pname, value in list(layer.state()):
                new = np.asarray(state[f"{lname}.{pname}"])
                if new.shape != value.shape:
                    raise ValueError(f"layer '{lname}' ({type(layer).__name__}): {pname} expected shape "
                                     f"{value.shape}, got {new.shape}")
                value[...] = new   # in place: optimizers holding these arrays stay valid
            layer.zero_grad()

    def __repr__(self):
        lines = [f"  ({name}): {layer!r}".replace("\n", "\n  ") for name, layer in self._layers.items()]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
