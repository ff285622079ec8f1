"""`fastconv demo`: train the seed CNN, checkpoint every epoch, run every visualization method and write
an HTML report (index.html + figures/*.png)."""
from __future__ import annotations

import os
import time

import numpy as np

from .. import nn
from ..vis import _core, backprop, embedding, features, perturbation, receptive, synthesis
from ..vis import image as I
from ..vis.report import Report
from . import demo_experiments
from .datasets import load


class _Stages:
    """The overall progress bar: one tick per report stage."""

    def __init__(self, names, enabled):
        self.bar = _core.progress(total=len(names), desc="report", enabled=enabled) if enabled else None
        self.times = {}

    def __call__(self, name, fn, *args):
        if self.bar is not None:
            self.bar.set_description(f"report: {name}")
        start = time.perf_counter()
        out = fn(*args)
        self.times[name] = time.perf_counter() - start
        if self.bar is not None:
            self.bar.update(1)
        return out

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_demo(out="fastconv-report", data="digits", data_dir=None, data_path=None, epochs=6, fast=False, seed=0,
             progress=True, image_size=16):
    """Train, visualise, write `out`/index.html; returns the report path."""
    start = time.perf_counter()
    split, class_names = load(data, data_dir=data_dir, data_path=data_path, image_size=image_size)
    train, test = split.train, split.test
    if fast:
        train = type(train)(train.x[:300], train.y[:300])
    figs = os.path.join(out, "figures")
    os.makedirs(figs, exist_ok=True)
    C, H, W = train.x.shape[1:]
    model = nn.models.seed_cnn(C, split.num_classes, (H, W), rng=seed)
    ckpt_dir = os.path.join(out, "checkpoints")
    hist = nn.fit(model, train, test, epochs=epochs, batch_size=32, optimizer=nn.Adam(model, lr=2e-3),
                  seed=seed, checkpoint_dir=ckpt_dir, progress=progress)
    checkpoints = [os.path.join(ckpt_dir, f) for f in sorted(os.listdir(ckpt_dir)) if f.endswith(".npz")]
    ctx = _Context(model, train, test, class_names, figs, fast, checkpoints, seed,
                   lambda size: load(data, data_dir=data_dir, data_path=data_path, image_size=size)[0])
    rep = Report("fastconv visualization report",
                 f"seed CNN {[type(lay).__name__ for lay in model]} trained {epochs} epoch(s) on {data} "
                 f"({len(train.x)} images {C}×{H}×{W}); test accuracy {hist['val_acc'][-1]:.3f}. Every figure is "
                 "computed by fastconv.vis from the model's named layers (forward, backward, and the ReLU "
                 "backward rules); tiles are normalised one by one unless a caption says otherwise.")
    stages = [("filters and activations", _filters), ("backward rules", _rules), ("saliency", _saliency),
              ("deconvnet", _deconvnet), ("occlusion", _occlusion), ("class models", _class_models),
              ("deep dream", _deep_dream), ("neural style", _style), ("t-SNE", _tsne),
              ("feature evolution", _evolution), ("receptive fields", _receptive), ("invariance", _invariance),
              ("architecture selection", demo_experiments.architecture_section),
              ("adversarial examples", demo_experiments.adversarial_section)]
    run = _Stages([s for s, _ in stages], progress)
    for name, fn in stages:
        rep.section(name[0].upper() + name[1:])
        run(name, fn, ctx, rep)
    run.close()
    path = rep.write(os.path.join(out, "index.html"))
    took = ", ".join(f"{k} {v:.1f}s" for k, v in run.times.items())
    print(f"report: {path} ({len(rep.figures())} figures, {time.perf_counter() - start:.0f} s; {took})")
    return path


class _Context:
    def __init__(self, model, train, test, class_names, figs, fast, checkpoints, seed, load):
        self.model, self.train, self.test, self.class_names = model, train, test, class_names
        self.load = load   # size -> the demo's data split at that image size (digits are resampled)
        self.figs, self.fast, self.checkpoints, self.seed = figs, fast, checkpoints, seed
        self.names = [n for n, _ in model.named_layers()]
        kinds = [type(lay).__name__ for lay in model]
        pools = [n for n, k in zip(self.names, kinds) if k == "MaxPool2d"]
        relus = [n for n, k in zip(self.names, kinds) if k == "ReLU"]
        self.low, self.high = pools[0], pools[-1]           # first and last pooled maps
        self.relu_low, self.relu_high = relus[0], relus[-1]
        self.last = self.names[-1]
        rng = np.random.default_rng(seed)
        self.pick = rng.choice(len(test.x), 8, replace=False)
        self.x, self.y = test.x[self.pick], test.y[self.pick]
        self.pred = nn.predict(model, self.x).argmax(axis=1)
        self.mean = float(train.x.mean())

    def pred_of(self, x):
        return nn.predict(self.model, x).argmax(axis=1)

    def path(self, name):
        return os.path.join(self.figs, name + ".png")

    def label(self, n):
        return f"{self.class_names[self.y[n]]}→{self.class_names[self.pred[n]]}"


def _filters(c, rep):
    w = features.filters(c.model)
    rep.figure(I.save_grid(c.path("filters"), w if w.shape[1] in (1, 3) else w[:, :1], ncols=8, mode="symmetric",
                           labels=[str(i) for i in range(len(w))], tile_px=48),
               "First-layer filters", f"filters(model): the {len(w)} weight kernels of layer '0' "
               f"{tuple(w.shape[1:])}, each normalised symmetrically (grey = 0, white positive, black negative).")
    a = features.activations(c.model, c.x[:4], c.relu_low)
    tiles = [t for n in range(4) for t in [c.x[n]] + list(a[n, :, None])]
    rep.figure(I.save_grid(c.path("activations"), tiles, ncols=a.shape[1] + 1, tile_px=40, pad=3,
                           row_labels=[c.label(n) for n in range(4)],
                           title=f"input, then the {a.shape[1]} maps of layer '{c.relu_low}'"),
               "Activations", f"activations(model, x, '{c.relu_low}'): the rectified feature maps of the first "
               "convolution for four test images (row label: true→predicted class).")


def _rules(c, rep):
    x, t = c.x[:6], c.pred[:6]
    cols = {"gradient": backprop.class_gradient(c.model, x, t, "gradient"),
            "deconvnet": backprop.class_gradient(c.model, x, t, "deconvnet"),
            "guided": backprop.class_gradient(c.model, x, t, "guided")}
    tiles = np.stack([x[:, :1] if x.shape[1] != 3 else x] + [v if x.shape[1] == 3 else v[:, :1]
                                                              for v in cols.values()], axis=1)
    rep.figure(I.save_grid(c.path("rules"), tiles, mode="symmetric", row_labels=[c.label(n) for n in range(6)],
                           title="input | gradient | deconvnet | guided", pad=4),
               "The three backward rules side by side",
               "The same backward pass from the predicted class's logit, differing only in the ReLU rule: "
               "gradient dy·[x>0] (Simonyan), deconvnet dy·[dy>0] (Zeiler & Fergus), guided dy·[x>0]·[dy>0] "
               "(Springenberg); signed, grey = 0.")


def _saliency(c, rep):
    s = backprop.saliency(c.model, c.x, c.pred)
    g = backprop.guided_backprop(c.model, c.x, c.pred)
    tiles = [t for n in range(len(c.x)) for t in (I.gray(c.x[n]), I.colorize(I.normalize(s[n]), "inferno"),
                                                   I.overlay(c.x[n], s[n]), I.gray(g[n], "symmetric"))]
    rep.figure(I.save_grid(c.path("saliency"), tiles, ncols=8, tile_px=64, normalize_by=None,
                           labels=[k if k != "img" else c.label(n) for n in range(len(c.x))
                                   for k in ("img", "saliency", "overlay", "guided")]),
               "Saliency and guided backprop", "saliency(model, x, predicted class): max over channels of "
               "|∂S_c/∂x| of the unnormalised score (Simonyan et al. 2014), as a map and overlaid on the image; "
               "gbp: guided_backprop(model, x, class) (Springenberg et al. 2015).")


def _deconvnet(c, rep):
    for layer in (c.low, c.high):
        nch = c.model.forward(c.x[:1], until=layer).shape[1]
        channels = list(range(min(nch, 8 if c.fast else 12)))
        top = features.top_activations(c.model, c.train, layer, k=6 if c.fast else 9, channels=channels)
        k = top.patches.shape[1]
        rf = receptive.receptive_field(c.model, layer, input_size=c.x.shape[2:])[-1]
        rep.figure(I.save_top_grid(c.path(f"deconvnet_{layer}"), top, layer, tile_px=48, pad=3),
                   f"Deconvnet: top activations of layer '{layer}'",
                   f"top_activations(model, train set, '{layer}', k={k}): for each channel the {k} strongest "
                   f"activations over the training set (one per image); left: their deconvnet projections "
                   f"(unpool by switches, rectify, transposed filters; seeded with the activation), right: the "
                   f"input patches under the {rf['size'][0]}×{rf['size'][1]} receptive field (black where it leaves the "
                   "image). Row label: the channel and its strongest activation.")


def _occlusion(c, rep):
    x, t = c.x[:4], c.y[:4]
    win = max(2, c.x.shape[2] // 3)
    maps, feats = perturbation.occlusion(c.model, x, t, win, 1, fill=c.mean, layer=c.high)
    pix = perturbation.occlusion(c.model, x, t, win, 1, fill=c.mean, per_pixel=True)
    tiles = []
    for n in range(len(x)):
        tiles += [I.normalize(x[n]), I.colorize(I.normalize(maps[n], "minmax", 0, 1), "viridis"),
                  I.colorize(I.normalize(feats[n]), "viridis"), I.overlay(x[n], np.maximum(pix[n], 0))]
    rep.figure(I.save_grid(c.path("occlusion"), tiles, ncols=4, normalize_by=None, tile_px=96,
                           labels=[s for n in range(len(x)) for s in
                                   (c.label(n), f"p(true) {maps[n].min():.2f}-{maps[n].max():.2f}",
                                    f"'{c.high}' strongest map", "mean drop")]),
               "Occlusion sensitivity", f"occlusion(model, x, true class, window {win}, stride 1, fill = data "
               f"mean): per occluder position the probability of the true class (0 = dark, 1 = yellow), the total "
               f"activation of layer '{c.high}''s strongest feature map, and (per_pixel=True, Captum's Occlusion) "
               "the mean probability drop per pixel, overlaid.")


def _class_models(c, rep):
    steps = 30 if c.fast else 200
    shape = c.x.shape[1:]
    plain = synthesis.class_model(c.model, range(len(c.class_names)), steps=steps, lr=0.1, l2=1e-2,
                                  input_shape=shape, seed=c.seed)
    reg = synthesis.class_model(c.model, range(len(c.class_names)), steps=steps, lr=0.1, l2=1e-2, blur_every=4,
                                blur_sigma=0.5, clip_percentile=20, input_shape=shape, seed=c.seed)
    k = len(c.class_names)
    rep.figure(I.save_grid(c.path("class_models"), np.stack([plain, reg]), row_labels=["L2", "L2+blur+clip"],
                           labels=c.class_names * 2, tile_px=64),
               "Class models", f"class_model(model, c, steps={steps}, lr=0.1, l2=0.01): gradient ascent on the "
               f"unnormalised score S_c − λ‖x‖² from a small random image (Simonyan et al. 2014), one per class; "
               "second row adds Gaussian blur (σ 0.5, every 4 steps) and clipping of the 20% smallest-norm pixels "
               f"(Yosinski et al. 2015). {k} classes.")


def _deep_dream(c, rep):
    x = c.x[:3]
    rows, labels = [x], ["input"]
    for layer in (c.relu_low, c.relu_high):
        rows.append(synthesis.deep_dream(c.model, x, layer, steps=6 if c.fast else 12, lr=0.03, octaves=2,
                                         jitter=1, seed=c.seed))
        labels.append(f"layer '{layer}'")
    tiles = np.stack(rows, axis=1)
    rep.figure(I.save_grid(c.path("deep_dream"), tiles, labels=labels * len(x), tile_px=96),
               "DeepDream", "deep_dream(model, image, layer, octaves=2, jitter=1): gradient ascent on ½‖a‖² of "
               "the layer (seed dy = a), steps normalised by mean |g|, random jitter, two octaves; columns: "
               "input, dreamed at an early and a late layer.")


def _style_image(shape, seed):
    """A texture for the style: diagonal stripes with blobs (no external images needed)."""
    C, H, W = shape
    i, j = np.mgrid[:H, :W]
    stripes = 0.5 + 0.5 * np.sin((i + j) * 2 * np.pi / 5)
    img = np.broadcast_to(stripes, (C, H, W)).copy()
    if C == 3:
        img[1] = 0.5 + 0.5 * np.cos(i * 2 * np.pi / 7)
    return img[None].astype(np.float32)


def _style(c, rep):
    content = c.x[:1]
    style = _style_image(content.shape[1:], c.seed)
    out, hist = synthesis.neural_style(c.model, content, style, [c.relu_high], [c.relu_low, c.relu_high],
                                       content_weight=1.0, style_weight=1e4, steps=40 if c.fast else 120,
                                       bounds=(0, 1), return_history=True)
    rep.figure(I.save_grid(c.path("neural_style"), [content[0], style[0], out[0]], ncols=3,
                           labels=["content", "style", "result"], tile_px=128, normalize_by=None),
               "Neural style", f"neural_style(content, style, content layer '{c.relu_high}', style layers "
               f"'{c.relu_low}','{c.relu_high}'): Gatys et al. 2015 — content loss on activations + 1e4 × style "
               f"loss on Gram matrices /(4N²M²), L-BFGS on the pixels from the content image, {len(hist['total'])} "
               f"evaluations; style loss {hist['style'][0]:.3g} → {hist['style'][-1]:.3g}.")


def _tsne(c, rep):
    n = 100 if c.fast else len(c.test.x)
    x, y = c.test.x[:n], c.test.y[:n]
    pts = embedding.tsne(c.model, x, seed=c.seed)
    layer = c.names[-2]
    rep.figure(I.save_scatter(c.path("tsne"), pts, y, thumbnails=x, class_names=c.class_names,
                              title=f"t-SNE of layer '{layer}' codes, {n} test images"),
               "t-SNE of the penultimate codes", f"tsne(model, test set): scikit-learn t-SNE (PCA to 50 first) of "
               f"the {len(embedding.codes(c.model, x[:1]).ravel())}-d output of layer '{layer}', coloured by true "
               "class, with a thumbnail every 8th point.")


def _evolution(c, rep):
    ckpts = c.checkpoints
    channels = list(range(8))
    sub = c.train.x[:300]
    proj, idx = features.feature_evolution(ckpts, sub, c.high, channels)
    rep.figure(I.save_grid(c.path("feature_evolution"), proj, mode="symmetric", tile_px=48, pad=3,
                           row_labels=[f"epoch {e + 1}" for e in range(len(ckpts))],
                           title=f"layer '{c.high}', channels {channels[0]}-{channels[-1]}"),
               "Feature evolution during training", f"feature_evolution(checkpoints, 300 training images, "
               f"'{c.high}', channels 0-7): at each epoch's checkpoint, the deconvnet projection of each channel's "
               "strongest activation over the images (Zeiler & Fergus Fig. 4).")


def _stacks(C=1):
    """Three 6-layer stacks for the receptive-field figure: regular 3×3, dilated 3×3 (1, 2, 4, ...), 3×3 + pool."""
    def conv(d=1):
        layer = nn.Conv2d(C, C, 3, padding=d, dilation=d, dtype=np.float64, rng=0)
        layer.weight[...] = 1.0 / 9
        layer.bias[...] = 0
        return layer
    regular = nn.Sequential(*[m for _ in range(6) for m in (conv(), nn.ReLU())])
    dilated = nn.Sequential(*[m for d in (1, 2, 4, 8, 1, 1) for m in (conv(d), nn.ReLU())])
    pooled = nn.Sequential(*[m for k in range(3) for m in (conv(), nn.ReLU(), conv(), nn.MaxPool2d(2))])
    return {"regular 3×3 ×6": regular, "dilated 3×3, d=1,2,4,8,1,1": dilated, "pooled (3×3, 3×3, pool 2) ×3": pooled}


def _receptive(c, rep):
    rows = receptive.receptive_field(c.model, input_size=c.x.shape[2:])
    rep.table(["layer", "type", "RF size", "stride", "offset", "output"],
              [(r["name"], r["type"], "×".join(map(str, r["size"])) + (" (all)" if r["global"] else ""),
                r["stride"][0], r["offset"][0], r["output_size"] or "") for r in rows],
              "receptive_field(model): theoretical receptive field (input pixels), stride between units and "
              "offset of unit (0,0)'s field, per layer of the trained model.")
    size = 64
    panels, tiles, labels = [], [], []
    series = {}
    for name, stack in _stacks().items():
        rf = receptive.receptive_field(stack, input_size=(size, size))
        convs = [r for r in rf if r["type"] == "Conv2d"]
        series[name] = [r["size"][0] for r in convs]
        erf = receptive.effective_receptive_field(stack, -1, input_shape=(1, size, size), n=8)
        top, left, h, w = receptive.unit_window(rf[-1], tuple(s // 2 for s in rf[-1]["output_size"]))
        tiles.append(I.colorize(I.normalize(erf), "magma"))
        labels.append(f"{name.split(' ')[0]}: RF {h}")
    L = max(len(v) for v in series.values())
    panels.append(dict(x=np.arange(1, L + 1), series={k: v + [np.nan] * (L - len(v)) for k, v in series.items()},
                       title="theoretical RF size", xlabel="conv layer", ylabel="pixels"))
    I.save_plots(c.path("rf_growth"), panels, ncols=1)
    rep.figure(c.path("rf_growth"), "Receptive-field growth", "receptive_field(stack): RF size after each "
               "conv layer of a regular 3×3 stack (+2 per layer), a dilated one (+2d) and one pooling every two "
               "convs (the jump doubles after each pool).")
    trained = [receptive.effective_receptive_field(c.model, lay, input_shape=c.x.shape[1:], n=16)
               for lay in (c.relu_low, c.high)]
    tiles += [I.colorize(I.normalize(e), "magma") for e in trained]
    labels += [f"trained '{c.relu_low}'", f"trained '{c.high}'"]
    rep.figure(I.save_grid(c.path("erf"), tiles, ncols=len(tiles), labels=labels, normalize_by=None, tile_px=128),
               "Effective receptive fields", "effective_receptive_field(model, layer): mean over random inputs of "
               "Σ_c |∂a_centre/∂x| for the central unit (Luo et al. 2016) — for the three 64×64 stacks above "
               "(uniform 3×3 weights) and for two layers of the trained model (16 test-size noise images).")


def _invariance(c, rep):
    x = c.test.x[:10 if c.fast else 50]
    layers = [c.low, c.high, c.last]
    specs = [("translate", np.arange(-4, 5), "shift (pixels)"), ("rotate", np.arange(-60, 61, 15), "degrees"),
             ("scale", np.linspace(0.6, 1.4, 9), "scale factor")]
    panels = []
    for kind, mags, unit in specs:
        res = receptive.invariance(c.model, x, kind, mags, layers, target=c.test.y[:len(x)])
        base = {lay: np.linalg.norm(features.activations(c.model, x, lay).reshape(len(x), -1), axis=1).mean()
                for lay in layers}
        panels.append(dict(x=mags, series={f"layer '{k}'": v / base[k] for k, v in res["distance"].items()},
                           title=f"{kind}: feature distance", xlabel=unit, ylabel="‖f(x)−f(T x)‖ / mean ‖f(x)‖"))
        panels.append(dict(x=mags, series={"p(true class)": res["probability"]}, title=f"{kind}: probability",
                           xlabel=unit, ylabel="probability", ylim=(-0.02, 1.02)))
    rep.figure(I.save_plots(c.path("invariance"), panels, ncols=2),
               "Feature invariance", f"invariance(model, x, transform, magnitudes, layers): Zeiler & Fergus Fig. 5 "
               f"— Euclidean distance between the feature vectors of {len(x)} test images and their translated / "
               "rotated / scaled copies at three layers (divided by the mean feature norm so they share an axis; "
               "mean ± std), and the probability of the true class.")
