"""Receptive fields and invariance.

- receptive_field: the theoretical receptive field of every layer — its size, the stride (jump) between
  neighbouring units in input pixels, and the offset of unit (0, 0)'s field (negative: it starts in the
  padding) — from the stack's kernel sizes, strides, paddings and dilations:
  r_out = r_in + (k_eff − 1)·j_in, j_out = j_in·s, start_out = start_in − pad·j_in, k_eff = d·(k − 1) + 1.
- effective_receptive_field: |∂a_centre/∂x| of a central unit, averaged over inputs (Luo et al. 2016).
- invariance: Zeiler & Fergus 2014 Fig. 5 — distance between the feature vectors of an image and of its
  translated / rotated / scaled copies, per layer, and the class probability, as functions of the amount.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V
from .. import nn
from . import _core


def _geometry(layer):
    """(kernel, stride, dilation, padding spec) of a layer that slides a window; None for pointwise layers;
    'global' for layers that see their whole input (Flatten, Linear)."""
    if isinstance(layer, (nn.Conv2d, nn.TiledConv2d, nn.LocallyConnected2d)):
        return (V.pair("kernel_size", layer.config["kernel_size"], 1), V.pair("stride", layer.stride, 1),
                V.pair("dilation", getattr(layer, "dilation", 1), 1), layer.padding)
    if isinstance(layer, nn.MaxPool2d):
        k = V.pair("kernel_size", layer.kernel_size, 1)
        s = k if layer.stride is None else V.pair("stride", layer.stride, 1)
        return (k, s, V.pair("dilation", layer.dilation, 1), layer.padding)
    if isinstance(layer, (nn.Flatten, nn.Linear)):
        return "global"
    return None


def _out_size(layer, geo, hw):
    if isinstance(layer, nn.MaxPool2d):
        g = V.pool_geometry((1, 1) + hw, layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode,
                            layer.dilation)
        return (g.H_out, g.W_out)
    k, s, d, p = geo
    pt, pb, pl, pr = V.conv_padding(p, hw, k, s, d)
    return (V.conv_out(hw[0], pt, pb, k[0], s[0], d[0]), V.conv_out(hw[1], pl, pr, k[1], s[1], d[1]))


@_core.takes_model
def receptive_field(model, layer=None, input_size=None):
    """Theoretical receptive field of every layer up to `layer` (default: all), as a list of dicts:
    name, type, size (r_h, r_w) in input pixels, stride (j_h, j_w), offset (top-left input pixel of unit
    (0, 0)'s field; may be negative), output_size (when input_size (H, W) is given; needed for 'same'
    padding with stride > 1), global (True from the first Flatten/Linear on: the field is the image)."""
    stop = len(model) - 1 if layer is None else _core.layer_index(model, layer)
    r, j, start = np.ones(2, int), np.ones(2, int), np.zeros(2, int)
    hw = None if input_size is None else V.pair("input_size", input_size, 1)
    is_global, rows = False, []
    for i, (name, lay) in enumerate(model.named_layers()[:stop + 1]):
        geo = _geometry(lay)
        if geo == "global":
            is_global = True
        elif geo is not None and not is_global:
            k, s, d, p = geo
            if isinstance(p, str) and hw is None:
                if p.lower() == "same" and max(s) > 1:
                    raise ValueError(f"receptive_field: layer '{name}' uses padding='same' with stride {s}; "
                                     "pass input_size=(H, W)")
            pads = V.conv_padding(p, (10 ** 6, 10 ** 6) if hw is None else hw, k, s, d)
            k_eff = np.array([d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1])
            start = start - np.array([pads[0], pads[2]]) * j
            r = r + (k_eff - 1) * j
            j = j * np.array(s)
            if hw is not None:
                hw = _out_size(lay, geo, hw)
        if is_global and input_size is not None:
            r, start = np.array(V.pair("input_size", input_size, 1)), np.zeros(2, int)
        rows.append(dict(name=name, type=type(lay).__name__, size=tuple(int(v) for v in r),
                         stride=tuple(int(v) for v in j), offset=tuple(int(v) for v in start),
                         output_size=None if hw is None or is_global else tuple(hw), **{"global": is_global}))
    return rows


def unit_window(rf, position):
    """(top, left, height, width) of the input window seen by the unit at `position` (i, j)."""
    i, j = position
    return (rf["offset"][0] + i * rf["stride"][0], rf["offset"][1] + j * rf["stride"][1]) + rf["size"]


@_core.takes_model
def infer_input_shape(model, max_size=512):
    """(C, H, W) of the square images the model takes, from its layers: C from the first layer with
    `in_channels`, H = W the smallest size whose flattened features match the first Linear (or a
    LocallyConnected2d's input_size). Raises ValueError when the layers do not determine it."""
    layers = [lay for _, lay in model.named_layers()]
    C = next((lay.in_channels for lay in layers if hasattr(lay, "in_channels")), None)
    if C is None:
        raise ValueError("cannot infer the input shape (no convolution layer first); pass input_shape=(C, H, W)")
    first_local = layers[0] if isinstance(layers[0], nn.LocallyConnected2d) else None
    if first_local is not None:
        return (C,) + first_local.input_size
    for n in range(1, max_size + 1):
        hw, ch = (n, n), C
        try:
            for lay in layers:
                geo = _geometry(lay)
                if isinstance(lay, nn.Flatten):
                    continue
                if geo == "global":
                    if lay.in_features == ch * hw[0] * hw[1]:
                        return (C, n, n)
                    break
                if geo is not None:
                    hw = _out_size(lay, geo, hw)
                    ch = getattr(lay, "out_channels", ch)
        except ValueError:
            continue
    raise ValueError("cannot infer the input shape from the layers; pass input_shape=(C, H, W)")


@_core.takes_model
def effective_receptive_field(model, layer, x=None, input_shape=None, n=16, channel=None, seed=0):
    """Effective receptive field map (H, W): mean over inputs of Σ_c |∂a/∂x| for the central unit of
    `layer` (summed over channels, or one `channel`). x: the inputs (default: n standard-normal images)."""
    if x is None:
        shape = input_shape or infer_input_shape(model)
        x = np.random.default_rng(seed).standard_normal((n,) + tuple(shape))
    x = _core.as_batch(model, x)
    with _core.evaluating(model):
        a = _core.forward_to(model, x, layer)
        dy = np.zeros_like(a)
        centre = tuple(s // 2 for s in a.shape[2:])
        sel = slice(None) if channel is None else channel
        dy[(slice(None), sel) + centre] = 1
        dx = _core.backward_from(model, dy, layer, "gradient")
    return np.abs(dx).sum(axis=1).mean(axis=0)


# -- invariance ----------------------------------------------------------------------------------
def transform_images(x, kind, m):
    """x (N, C, H, W) translated right by m pixels ('translate'), down ('translate_v'), rotated by m
    degrees ('rotate') or scaled by factor m about the centre ('scale'); bilinear, zero fill."""
    from scipy import ndimage
    if callable(kind):
        return np.asarray(kind(x, m), dtype=x.dtype)
    if kind == "translate":
        return ndimage.shift(x, (0, 0, 0, m), order=1, mode="constant")
    if kind == "translate_v":
        return ndimage.shift(x, (0, 0, m, 0), order=1, mode="constant")
    if kind == "rotate":
        return ndimage.rotate(x, m, axes=(2, 3), reshape=False, order=1, mode="constant")
    if kind == "scale":
        H, W = x.shape[2:]
        c = np.array([(H - 1) / 2, (W - 1) / 2])
        matrix = np.diag([1, 1, 1 / m, 1 / m])
        offset = np.concatenate([[0, 0], c - c / m])
        return ndimage.affine_transform(x, matrix, offset=offset, order=1, mode="constant")
    raise ValueError(f"transform: expected 'translate', 'translate_v', 'rotate', 'scale' or a callable, got {kind!r}")


@_core.takes_model
def invariance(model, x, transform, magnitudes, layers, target=None):
    """Feature invariance curves: for each magnitude m, the Euclidean distance between the feature vectors
    (flattened activations) of each image and of transform(image, m), for each layer, and the probability
    of `target` (default: each image's predicted class) on the transformed image.

    Returns {'magnitudes': (M,), 'distance': {layer name: (N, M)}, 'probability': (N, M)}."""
    x = _core.as_batch(model, x)
    magnitudes = np.asarray(magnitudes, dtype=float)
    names = [_core.layer_name(model, lay) for lay in layers]
    with _core.evaluating(model):
        base = {name: _core.forward_to(model, x, name).reshape(len(x), -1).copy() for name in names}
        t = model.forward(x).argmax(axis=1) if target is None else _core.targets(target, len(x))
        dist = {name: np.zeros((len(x), len(magnitudes))) for name in names}
        prob = np.zeros((len(x), len(magnitudes)))
        for k, m in enumerate(magnitudes):
            xt = _core.as_batch(model, transform_images(x, transform, m))
            for name in names:
                f = _core.forward_to(model, xt, name).reshape(len(x), -1)
                dist[name][:, k] = np.linalg.norm(f - base[name], axis=1)
            prob[:, k] = _core.softmax(model.forward(xt))[np.arange(len(x)), t]
    return {"magnitudes": magnitudes, "distance": dist, "probability": prob}
