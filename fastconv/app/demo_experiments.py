"""The two experiment sections of `fastconv demo`: architecture selection (Zeiler & Fergus §4.1) and
adversarial examples. Each takes the demo's context and report, computes, draws and captions; the
captions state what the numbers computed here show."""
from __future__ import annotations

import numpy as np

from ..vis import architecture, attack, backprop, features
from ..vis import image as I
from ..vis.spectrum import BANDS, DEAD_NORM, DEAD_RATE


def _same_size(a, size):
    """Images (..., h, w) zero-padded (centred) to size × size, so two variants share one pixel scale."""
    pads = [(0, 0)] * (a.ndim - 2) + [((size - n) // 2, size - n - (size - n) // 2) for n in a.shape[-2:]]
    return np.pad(a, pads)


def _bank_rows(results):
    """Tiles, tile labels and row labels: per variant, a row of first-layer filters, a row of their spectra."""
    size = max(v.model[0].weight.shape[-1] for v in results.values())
    tiles, labels, row_labels = [], [], []
    for name, v in results.items():
        spec = np.log1p(v.spectrum.power2d / max(v.spectrum.power2d.max(), 1e-300) * 1e3)   # log, 30 dB range
        w = v.model[0].weight
        tiles += [I.gray(f, "symmetric") for f in _same_size(w if w.shape[1] == 3 else w[:, :1], size)]
        tiles += [I.colorize(I.normalize(p, "minmax", 0, spec.max()), "magma") for p in spec]
        labels += ["dead" if d else "" for d in v.spectrum.dead] + [""] * len(spec)
        row_labels += [f"{name}: filters", f"{name}: spectra"]
    return tiles, labels, row_labels, len(spec)


def _deconv_rows(results, x, k, channels):
    """Per variant: the layer (second ReLU) and (channels, k, C, H, W) whole-image deconvnet projections of
    each channel's k strongest activations over x."""
    out = {}
    for name, v in results.items():
        layer = list(v.aliasing)[-1]
        top = features.top_activations(v.model, x, layer, k=k, channels=channels)
        out[name] = (layer, np.stack([backprop.deconvnet(v.model, x[top.indices[c]], layer, ch, top.positions[c])
                                      for c, ch in enumerate(channels)]))
    return out


def architecture_section(c, rep):
    split = c.load(32)
    epochs = 1 if c.fast else 8
    n = 300 if c.fast else 3000   # all of the digits; a bounded share of a large set such as CIFAR-10
    train = type(split.train)(split.train.x[:n], split.train.y[:n])
    res = architecture.architecture_selection(train, split.test, epochs=epochs, seed=c.seed)
    names = list(res)
    tiles, tile_labels, row_labels, ncols = _bank_rows(res)
    rep.figure(I.save_grid(c.path("arch_filters"), tiles, ncols=ncols, normalize_by=None, labels=tile_labels,
                           row_labels=row_labels, tile_px=40, pad=3,
                           title="first-layer filters (same pixel scale) and their power spectra (zero frequency "
                                 "centred, log scale)"),
               "Architecture selection: first-layer filters and spectra",
               f"Two seed CNNs differing only in the first layer ({names[0]} vs {names[1]}, both trained "
               f"{epochs} epoch(s) on {len(train.x)} training images at {train.x.shape[2]}×{train.x.shape[3]}): the "
               "filters (grey = 0) and filter_spectrum's |F|² on a 32×32 grid; 'dead' marks filters with norm < "
               f"{DEAD_NORM:.0%} of the layer's largest or positive in < {DEAD_RATE:.1%} of the outputs on 64 test "
               "images.")
    radial, bands = {}, {}
    for name, v in res.items():
        live = v.spectrum.power[~v.spectrum.dead] if (~v.spectrum.dead).any() else v.spectrum.power
        radial[name] = live / np.maximum(live.sum(axis=1, keepdims=True), 1e-300)
        bands[name] = v.spectrum.band_energy[~v.spectrum.dead] if (~v.spectrum.dead).any() else v.spectrum.band_energy
    rep.figure(I.save_plots(c.path("arch_spectra"), [
        dict(x=res[names[0]].spectrum.frequency, series=radial, logy=True, title="radial power (live filters)",
             xlabel="frequency / Nyquist", ylabel="share of power per ring"),
        dict(x=np.arange(len(BANDS)), series=bands, title="energy per band (0 low, 1 mid, 2 high)",
             xlabel="band", ylabel="share of filter energy", ylim=(0, 1))], ncols=2),
        "Architecture selection: radial spectra and band energies",
        "filter_spectrum(model, '0'): left, the radially averaged power of each live first-layer filter "
        "(normalised to sum 1); right, the share of each filter's energy below 1/3 of Nyquist, between 1/3 and "
        "2/3, and above; mean ± std over the live filters.")
    sub = split.train.x[:200 if c.fast else 600]
    k = 4 if c.fast else 6
    channels = list(range(6))
    projections = _deconv_rows(res, sub, k, channels)
    tiles = np.concatenate([p for _, p in projections.values()], axis=1)
    layers = {n: lay for n, (lay, _) in projections.items()}
    rep.figure(I.save_grid(c.path("arch_deconv"), [I.gray(t, "symmetric") for row in tiles for t in row],
                           ncols=tiles.shape[1], normalize_by=None, tile_px=48, pad=3,
                           row_labels=[f"ch {ch}" for ch in channels],
                           title=" | ".join(f"{n}: layer '{lay}'" for n, lay in layers.items())),
               "Architecture selection: second-layer deconvnet projections",
               f"For channels 0-5 of each variant's second convolution (after its ReLU): deconvnet(model, x, layer, "
               f"channel) of the {k} strongest activations over {len(sub)} training images (top_activations), "
               "the whole 32×32 image, grey = 0; left the first variant, right the second.")
    header, rows = architecture.table(res)
    rep.table(header, rows, "architecture_selection: " + architecture.summary(res) + " Band columns: median "
              "energy share over the live filters; aliasing: vis.aliasing, the energy of the features of a "
              "1-pixel-shifted input that a band-limited shift of the features does not explain (0 = none).")


def _attack_tiles(x, res, t, model_pred):
    tiles, labels = [], []
    for n in range(len(x)):
        d = res.delta[n]
        tiles += [x[n], I.gray(d, "symmetric"), np.clip(x[n] + d, 0, 1)]
        rel = np.linalg.norm(d) / np.linalg.norm(x[n])
        labels += [f"pred {model_pred[n]}", f"|dx|/|x| {rel:.2f}", f"pred {res.prediction[n]} (t {t[n]})"]
    return tiles, labels


def _attack_row(name, x, t, res):
    """[name, success rate, median ‖Δx‖₂/‖x‖₂ over the successes]."""
    ok = res.prediction == t
    ratio = np.linalg.norm(res.delta.reshape(len(x), -1), axis=1) / np.linalg.norm(x.reshape(len(x), -1), axis=1)
    return [name, f"{ok.mean():.3f}", f"{np.median(ratio[ok]):.3f}" if ok.any() else "-"]


def adversarial_section(c, rep):
    n_img = 3
    x = c.test.x[:n_img]
    pred = c.pred_of(x)
    K = len(c.class_names)
    targets = np.array([[(p + s) % K for s in (1, K // 2, K - 2)] for p in pred])      # three targets per image
    xs, ts = np.repeat(x, 3, axis=0), targets.ravel()
    res = attack.adversarial(c.model, xs, ts, norm="l2", lower=0, upper=1)
    tiles, labels = _attack_tiles(xs, res, ts, np.repeat(pred, 3))
    rep.figure(I.save_grid(c.path("adversarial"), tiles, ncols=9, labels=labels, normalize_by=None, tile_px=64,
                           pad=4, title="per target: original | perturbation (magnified, grey = 0) | adversarial"),
               "Adversarial examples", "adversarial(model, x, target, norm='l2', lower=0, upper=1): the smallest "
               "Δx found by targeted DeepFool steps (+ bisection) for three targets per test image; the "
               "perturbation is scaled to full contrast, so it looks far larger than it is — |dx|/|x| says how "
               "large it is.")
    n = 20 if c.fast else 60
    xx = c.test.x[:n]
    p = c.pred_of(xx)
    idx = np.repeat(np.arange(n), K - 1)
    tt = np.array([t for i in range(n) for t in range(K) if t != p[i]])
    x, rows = xx[idx], []
    for norm in ("l2", "linf"):
        rows.append(_attack_row(f"adversarial, {norm}", x, tt,
                                attack.adversarial(c.model, x, tt, norm=norm, lower=0, upper=1)))
    for eps in (0.1, 0.3):
        rows.append(_attack_row(f"fgsm, targeted, ε={eps}", x, tt,
                                attack.fgsm(c.model, x, tt, eps, targeted=True, lower=0, upper=1)))
    rep.table(["attack", "success", "median ‖Δx‖₂/‖x‖₂ (successes)"], rows,
              f"Every (image, other class) pair of the first {n} test images ({len(tt)} pairs), pixels kept in "
              "[0, 1]: how often the model ends up predicting the target, and how large the perturbation is "
              "relative to the image.")
