"""`fastconv visualize`: one fastconv.vis method on a saved model and test images of a named dataset,
written as a PNG (or printed, for receptive fields)."""
from __future__ import annotations

import numpy as np

from .. import nn
from ..vis import backprop, embedding, features, perturbation, receptive, synthesis
from ..vis import image as I
from .datasets import load

METHODS = ("filters", "activations", "saliency", "guided", "deconvnet", "occlusion", "top", "class_model",
           "deep_dream", "tsne", "receptive_field", "erf")


def run_visualize(model_path, method, out, data="digits", data_dir=None, data_path=None, image_size=16,
                  indices=(0, 1, 2, 3), layer=None, channel=0, target=None, window=4, stride=1, steps=100, k=9):
    """Run one method on a saved model and write a PNG (or print a table); returns the output path."""
    model = nn.load(model_path)
    split, class_names = load(data, data_dir=data_dir, data_path=data_path, image_size=image_size)
    x = split.test.x[list(indices)]
    t = split.test.y[list(indices)] if target is None else np.full(len(x), int(target))
    layer = layer if layer is not None else next(n for n, lay in reversed(model.named_layers())
                                                 if isinstance(lay, nn.MaxPool2d))
    if method == "filters":
        w = features.filters(model)
        tiles, kw = (w if w.shape[1] in (1, 3) else w[:, :1]), dict(mode="symmetric")
    elif method == "activations":
        a = features.activations(model, x, layer)
        tiles, kw = a.reshape((-1, 1) + a.shape[2:]), dict(ncols=a.shape[1])
    elif method == "saliency":
        tiles, kw = backprop.saliency(model, x, t), dict(cmap="inferno", ncols=len(x))
    elif method == "guided":
        tiles, kw = backprop.guided_backprop(model, x, t), dict(mode="symmetric", ncols=len(x))
    elif method == "deconvnet":
        tiles, kw = backprop.deconvnet(model, x, layer, channel), dict(mode="symmetric", ncols=len(x))
    elif method == "occlusion":
        tiles, kw = perturbation.occlusion(model, x, t, window, stride), dict(cmap="viridis", ncols=len(x))
    elif method == "top":
        top = features.top_activations(model, split.train, layer, k=k)
        tiles, kw = np.concatenate([top.projections, top.patches], axis=1), dict(mode="symmetric")
    elif method == "class_model":
        tiles = synthesis.class_model(model, range(split.num_classes), steps=steps, l2=1e-2, blur_every=4,
                                      input_shape=x.shape[1:])
        kw = dict(labels=class_names)
    elif method == "deep_dream":
        tiles, kw = synthesis.deep_dream(model, x, layer, steps=steps // 10 or 1, octaves=2), dict(ncols=len(x))
    elif method == "tsne":
        pts = embedding.tsne(model, split.test.x, layer=None)
        return I.save_scatter(out, pts, split.test.y, thumbnails=split.test.x, class_names=class_names)
    elif method == "receptive_field":
        for r in receptive.receptive_field(model, input_size=x.shape[2:]):
            print(f"{r['name']:>4} {r['type']:<20} size {r['size']} stride {r['stride']} offset {r['offset']}")
        return None
    elif method == "erf":
        tiles, kw = [receptive.effective_receptive_field(model, layer, input_shape=x.shape[1:])], dict(cmap="magma")
    else:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    return I.save_grid(out, tiles, **kw)
