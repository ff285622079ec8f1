"""`fastconv visualize --torch-model FILE --images DIR`: the Zeiler & Fergus / Simonyan / Springenberg
figures for a saved PyTorch model on a folder of photos, written as PNGs and one HTML page.

The model is imported with fastconv.nn.from_torch (BatchNorm folded into the convs) and runs on fastconv's
kernels; torch is needed only to read the file. Each photo is resized to the input size and normalised with
ImageNet's statistics (the models of the literature were trained so); the target class is the model's own
top prediction. An application, like the demo: it lives beside the CLI, not in the library.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .. import data, nn
from ..nn.base import placeholder_params
from ..vis import backprop, features, perturbation
from ..vis import image as I
from ..vis.report import Report

METHODS = ("deconvnet", "guided", "saliency", "occlusion")
ARCHS = ("alexnet", "zeiler_fergus") + tuple(f"{v}{bn}" for v in nn.models.VGG_CONFIGS for bn in ("", "_bn"))


def load_torch_model(path, arch=None):
    """A saved torch model as an eval-mode fastconv.nn model: a torch.save'd module (unpickled: only for
    files you trust), or a state dict (read with weights_only=True) for the architecture `arch`."""
    import torch
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:   # a pickled module is not plain tensors: unpickle it in full
        saved = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(saved, torch.nn.Module):
        return nn.from_torch(saved.eval(), fold_batch_norm=True)
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: expected a torch.save'd nn.Module or a state dict, got {type(saved).__name__}")
    if arch not in ARCHS:
        raise ValueError(f"{path} holds a state dict: --arch must name its architecture, one of {', '.join(ARCHS)}"
                         f" (got {arch!r})")
    last = [k for k in saved if k.endswith(".weight")][-1]
    dtype = np.float64 if saved[last].dtype == torch.float64 else np.float32
    build = (lambda **kw: nn.models.vgg(arch.removesuffix("_bn"), arch.endswith("_bn"), **kw)) \
        if arch.startswith("vgg") else getattr(nn.models, arch)
    with placeholder_params():   # no random init: the state dict's arrays replace the placeholders
        model = build(num_classes=saved[last].shape[0], dtype=dtype)
    return nn.fold_batch_norm(nn.from_torch(saved, model).eval())


def _photo(x, mean, std):
    """A normalised (3, H, W) photo back in [0, 1] for display."""
    return np.clip(x * np.reshape(std, (3, 1, 1)) + np.reshape(mean, (3, 1, 1)), 0, 1)


def run(torch_model, images, out, methods=METHODS, *, arch=None, size=224, layer=None, channels=4, window=None,
        stride=None):
    """Write OUT/<method>.png for each method and OUT/index.html; returns the page's path.

    layer: the deconvnet's layer (default: the last max-pool, named as torch names it, e.g. "features.20");
    channels: its strongest channels projected per photo; window, stride: the occluder (default 2/7 of the
    size, and the stride giving 5 positions a side)."""
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"method: expected some of {METHODS}, got {sorted(unknown)}")
    start = time.perf_counter()
    model = load_torch_model(torch_model, arch)
    mean, std = data.NORMALIZATIONS["imagenet"]
    x = data.load_images(images, size, mean, std, dtype=model.dtype)
    names = [os.path.relpath(f, images) for f in data.list_images(images)[0]]
    target = model(x).argmax(axis=1)
    layer = layer or next(n for n, lay in reversed(model.flat().named_layers()) if isinstance(lay, nn.MaxPool2d))
    photos = [_photo(p, mean, std) for p in x]
    rep = Report(f"{os.path.basename(os.fspath(torch_model))} on {len(x)} photos",
                 f"{len(x)} photos under {os.fspath(images)}, resized to {size}×{size}, ImageNet-normalised; "
                 f"the target of each is the model's top class (" +
                 ", ".join(f"{n}: {t}" for n, t in zip(names, target)) + ").")
    os.makedirs(out, exist_ok=True)
    w = max(size * 2 // 7, 1)   # the default occluder: 5×5 overlapping positions that tile the photo
    figures = {"deconvnet": _deconvnet, "guided": _guided, "saliency": _saliency, "occlusion": _occlusion}
    for method in methods:
        title, caption, tiles, kw = figures[method](model, x, target, photos, layer=layer, channels=channels,
                                                    window=window or w, stride=stride or (size - w) // 4 or 1)
        png = I.save_grid(os.path.join(out, f"{method}.png"), tiles, ncols=len(tiles) // len(x), normalize_by=None,
                          row_labels=names, tile_px=size, **kw)
        rep.section(title).figure(png, title, caption)
    rep.text(f"Computed with fastconv in {time.perf_counter() - start:.1f} s.")
    return rep.write(os.path.join(out, "index.html"))


def _deconvnet(model, x, target, photos, *, layer, channels, **_):
    a = features.activations(model, x, layer)
    strongest = np.argsort(-a.reshape(*a.shape[:2], -1).max(-1), axis=1)[:, :channels]   # (N, channels)
    proj = [backprop.deconvnet(model, x, layer, strongest[:, i]) for i in range(strongest.shape[1])]
    tiles, labels = [], []
    for n, photo in enumerate(photos):
        tiles += [photo] + [I.normalize(p[n], "symmetric") for p in proj]
        labels += ["photo"] + [f"channel {c}" for c in strongest[n]]
    return (f"Deconvnet projections of layer '{layer}'",
            f"Zeiler & Fergus's deconvnet: the strongest activation of each of the {strongest.shape[1]} strongest "
            f"channels of '{layer}' in the photo, projected to the pixels through the pooling switches, rectified "
            "and the transposed filters (grey = 0).", tiles, dict(labels=labels))


def _guided(model, x, target, photos, **_):
    g = backprop.guided_backprop(model, x, target)
    return ("Guided backpropagation", "Springenberg et al.'s guided backpropagation of the top class's logit "
            "(grey = 0).", [t for n, p in enumerate(photos) for t in (p, I.normalize(g[n], "symmetric"))],
            dict(labels=[lab for t in target for lab in ("photo", f"class {t}")]))


def _saliency(model, x, target, photos, **_):
    s = backprop.saliency(model, x, target)
    return ("Saliency", "Simonyan et al.'s image-specific class saliency: max over colour channels of "
            "|∂ logit / ∂ pixel| (bright: large).", [t for n, p in enumerate(photos)
                                                     for t in (p, I.colorize(I.normalize(s[n]), "inferno"))], {})


def _occlusion(model, x, target, photos, *, window, stride, **_):
    drop = perturbation.occlusion(model, x, target, window, stride, per_pixel=True)
    return ("Occlusion", f"Zeiler & Fergus's occlusion: a {window}×{window} grey (zero after normalisation) "
            f"square slid with stride {stride}; the colour is the mean drop of the top class's probability over "
            "the squares covering each pixel (red: the class needs that part).",
            [t for n, p in enumerate(photos) for t in (p, I.overlay(p, drop[n], cmap="jet"))], {})
