"""Architecture selection by visualization (Zeiler & Fergus 2014, §4.1): AlexNet's 11×11 stride-4 first
layer showed filters of extreme frequencies, dead filters and aliased second-layer features; 7×7 with
stride 2 fixed them and gained accuracy. architecture_selection trains seed-CNN variants that differ only in
the first layer and measures each of those symptoms, so the comparison can be repeated on any data.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import nn
from .spectrum import BANDS, Aliasing, FilterSpectrum, aliasing, filter_spectrum

# Scaled to 32×32 digits: a large filter with a large stride against a smaller one with stride 2.
VARIANTS = {"9×9 stride 4": dict(first_kernel=9, first_stride=4),
            "5×5 stride 2": dict(first_kernel=5, first_stride=2)}


class Variant(NamedTuple):
    model: object             # the trained fastconv.nn.Sequential
    accuracy: float           # test accuracy
    spectrum: FilterSpectrum  # of the first layer, dead filters judged on `probe` test images too
    aliasing: dict            # {layer name: Aliasing} for the first and the second ReLU
    history: dict             # nn.fit's history


def _relus(model):
    return [name for name, lay in model.named_layers() if isinstance(lay, nn.ReLU)]


def architecture_selection(train, test, variants=None, *, epochs=6, channels=(16, 32), kernel_size=5,
                           batch_size=32, lr=2e-3, probe=64, spectrum_size=32, seed=0, progress=False):
    """Train one nn.models.seed_cnn per entry of `variants` ({name: seed_cnn keyword arguments}, default
    VARIANTS: 9×9 stride 4 vs 5×5 stride 2 in the first layer, everything else equal, same seed) with Adam
    for `epochs` on `train` ((x, y) or a Dataset), then measure on `test`: the accuracy, the first layer's
    filter_spectrum on a spectrum_size² grid (dead filters also by activation rate on the first `probe`
    test images) and the aliasing
    measure at the first and second ReLU on those images. Returns {name: Variant}."""
    x_train, y_train = train if isinstance(train, tuple) else (train.x, train.y)
    x_test, y_test = test if isinstance(test, tuple) else (test.x, test.y)
    C, H, W = x_train.shape[1:]
    classes = int(max(np.max(y_test), np.max(y_train))) + 1
    out = {}
    for name, kw in (variants or VARIANTS).items():
        model = nn.models.seed_cnn(C, classes, (H, W), channels=channels, kernel_size=kernel_size, rng=seed, **kw)
        hist = nn.fit(model, (x_train, y_train), epochs=epochs, batch_size=batch_size, optimizer=nn.Adam(model, lr=lr),
                      seed=seed, progress=progress)
        _, acc = nn.evaluate(model, (x_test, y_test))
        xs = x_test[:probe]
        relus = _relus(model)[:2]
        out[name] = Variant(model, acc, filter_spectrum(model, 0, xs, size=spectrum_size),
                            {layer: aliasing(model, layer, xs) for layer in relus}, hist)
    return out


def live_band_shares(spectrum):
    """Median (over the filters that are not dead) share of the energy in each band."""
    live = spectrum.band_energy[~spectrum.dead]
    return np.median(live, axis=0) if len(live) else np.zeros(len(BANDS))


def table(results):
    """Rows (one per variant) of the numbers the comparison rests on, and their header."""
    first = next(iter(results.values()))
    header = (["variant", "test accuracy", "dead filters"] + [f"{b} band" for b in BANDS]
              + [f"aliasing at ReLU {i + 1} (stride)" for i in range(len(first.aliasing))])
    rows = []
    for name, v in results.items():
        rows.append([name, f"{v.accuracy:.3f}", f"{int(v.spectrum.dead.sum())}/{len(v.spectrum.dead)}"]
                    + [f"{s:.2f}" for s in live_band_shares(v.spectrum)]
                    + [f"{a.error:.2e} ({a.stride[0]})" for a in v.aliasing.values()])
    return header, rows


def _compare(new, old, what, fmt, same, words=("more", "less")):
    """'more what (new vs old)', or 'about the same what' when |new − old| <= same."""
    if abs(new - old) <= same:
        return f"about the same {what} ({fmt.format(new)} vs {fmt.format(old)})"
    return f"{words[0] if new > old else words[1]} {what} ({fmt.format(new)} vs {fmt.format(old)})"


def summary(results):
    """One paragraph saying what the numbers show, comparing the last variant with the first."""
    (name_a, a), (name_b, b) = list(results.items())[0], list(results.items())[-1]
    mid = [float(live_band_shares(v.spectrum)[BANDS.index("mid")]) for v in (b, a)]
    layers = list(a.aliasing)
    alias = [v.aliasing[layers[-1]].error for v in (b, a)]
    parts = [_compare(b.accuracy, a.accuracy, "test accuracy", "{:.3f}", 1e-3, ("higher", "lower")),
             _compare(int(b.spectrum.dead.sum()), int(a.spectrum.dead.sum()), "dead first-layer filters", "{}", 0),
             _compare(mid[0], mid[1], "mid-band energy (median share, live filters)", "{:.2f}", 0.01),
             _compare(alias[0], alias[1], f"aliasing at layer '{layers[-1]}'", "{:.2e}", 0.02 * max(alias))]
    less_alias, better = alias[0] < alias[1] - 0.02 * max(alias), b.accuracy > a.accuracy + 1e-3
    agree = {(True, True): "less aliasing and higher accuracy, as Zeiler & Fergus found on ImageNet",
             (True, False): "less aliasing, as Zeiler & Fergus found, but no accuracy gain here",
             (False, True): "an accuracy gain, but not the reduced aliasing Zeiler & Fergus report",
             (False, False): "neither of Zeiler & Fergus's ImageNet findings carries over here"}[(less_alias, better)]
    return (f"On this data the {name_b} variant has " + ", ".join(parts[:-1]) + f" and {parts[-1]} than the "
            f"{name_a} variant: {agree}.")
