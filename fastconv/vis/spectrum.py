"""Frequency content of filters and feature maps: the measurements behind Zeiler & Fergus's architecture
selection (first-layer filters mixing very high and very low frequencies, dead filters, and aliasing
from a large first-layer stride).

- filter_spectrum: each filter's radially averaged power spectrum, its energy shares in a low, a mid and a
  high frequency band, and which filters are dead.
- aliasing: how far a layer is from shift-equivariance — the feature maps of a one-pixel-shifted input
  against the feature maps shifted by the matching fraction of the layer's stride.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from . import _core
from .features import filters
from .receptive import receptive_field

BANDS = ("low", "mid", "high")
BAND_EDGES = (1 / 3, 2 / 3)   # in units of the Nyquist frequency (0.5 cycles/pixel)
DEAD_NORM = 0.01              # dead: ‖w‖ < DEAD_NORM · the layer's largest filter norm ...
DEAD_RATE = 0.001             # ... or (with x) positive in fewer than this fraction of its outputs


class FilterSpectrum(NamedTuple):
    frequency: np.ndarray        # (B,) radial frequency of each bin's centre, in units of Nyquist (√2 at the corner)
    power: np.ndarray            # (K, B) mean power |F|² per radial bin, summed over input channels
    power2d: np.ndarray          # (K, n, n) |F|² on the zero-padded n×n grid, zero frequency centred
    band_energy: np.ndarray      # (K, 3) share of each filter's energy in the low / mid / high band (0 for zeros)
    norm: np.ndarray             # (K,) ‖w‖₂ of each filter
    activation_rate: Optional[np.ndarray]   # (K,) fraction of positive outputs over x, when x is given
    dead: np.ndarray             # (K,) bool


def _radius(n):
    """|f| / Nyquist on an n×n FFT grid (fftshifted), in [0, √2]."""
    f = np.fft.fftshift(np.fft.fftfreq(n)) / 0.5
    return np.hypot(f[:, None], f[None, :])


@_core.takes_model
def filter_spectrum(model, layer=None, x=None, *, size=None, bins=None, band_edges=BAND_EDGES,
                    dead_norm=DEAD_NORM, dead_rate=DEAD_RATE):
    """Frequency content of the filters of a convolution layer (default: the first).

    Each filter w[k] (C_in, kH, kW) is zero-padded to size × size (default: the next power of two ≥ 2·max(kH,
    kW), at least 32), Fourier transformed per input channel, and its power |F|² summed over channels.
    Frequencies ρ are in units of the Nyquist frequency (0.5 cycles/pixel), so ρ = 1 on the axes' edges and
    √2 in the corners. `power` is the radial average of |F|² over `bins` rings of equal width in [0, √2];
    `band_energy` the share of the total energy (Parseval: ‖w‖²) at ρ < 1/3 (low), 1/3 ≤ ρ < 2/3 (mid) and
    ρ ≥ 2/3 (high) — `band_edges` moves the two cuts.
    Dead filters: ‖w[k]‖ < dead_norm · max_k ‖w[k]‖, or, when a batch x is given, the layer's output in
    channel k is > 0 for fewer than a dead_rate fraction of the positions and samples (a unit a following
    ReLU never lets through). Returns a FilterSpectrum."""
    w = filters(model, layer).astype(np.float64)                 # (K, C_in, kH, kW)
    K = len(w)
    n = size or max(32, 1 << int(np.ceil(np.log2(2 * max(w.shape[2:])))))
    F = np.fft.fftshift(np.fft.fft2(w, s=(n, n)), axes=(-2, -1))
    p2 = (np.abs(F) ** 2).sum(axis=1)                            # (K, n, n)
    rho = _radius(n)
    nb = bins or n // 2
    edges = np.linspace(0, np.sqrt(2) + 1e-9, nb + 1)
    ring = np.digitize(rho, edges) - 1
    counts = np.bincount(ring.ravel(), minlength=nb)
    power = np.stack([np.bincount(ring.ravel(), p.ravel(), minlength=nb) for p in p2]) / np.maximum(counts, 1)
    cuts = np.digitize(rho, band_edges)                           # 0 low, 1 mid, 2 high
    energy = np.stack([p2[:, cuts == b].sum(axis=1) for b in range(3)], axis=1)
    total = energy.sum(axis=1, keepdims=True)
    shares = np.divide(energy, total, out=np.zeros_like(energy), where=total > 0)
    norm = np.linalg.norm(w.reshape(K, -1), axis=1)
    dead = norm < dead_norm * max(norm.max(), 1e-300) if norm.max() > 0 else np.ones(K, bool)
    rate = None
    if x is not None:
        rate = _activation_rate(model, layer, x, K)
        dead = dead | (rate < dead_rate)
    return FilterSpectrum((edges[:-1] + edges[1:]) / 2, power, p2, shares, norm, rate, dead)


def _activation_rate(model, layer, x, K):
    """Fraction of positive outputs per channel of `layer` over the batch x."""
    x = _core.as_batch(model, x)
    with _core.evaluating(model):
        a = _core.forward_to(model, x, _conv_layer(model, layer))
    if a.shape[1] != K:
        raise ValueError(f"layer: activation rates need one output channel per filter, got {a.shape[1]} "
                         f"channels for {K} filters")
    return (a > 0).mean(axis=(0, 2, 3))


def _conv_layer(model, layer):
    if layer is not None:
        return layer
    return next(i for i, (_, lay) in enumerate(model.named_layers()) if getattr(lay, "weight", None) is not None)


class Aliasing(NamedTuple):
    error: float            # ‖f(T₁x) − S_{1/s} f(x)‖² / ‖f(x)‖², averaged over the two axes
    per_axis: tuple         # (height, width) errors
    stride: tuple           # (s_h, s_w): the layer's cumulative stride (input pixels per feature-map step)


@_core.takes_model
def aliasing(model, layer, x, *, shift=1):
    """How far `layer` is from shift-equivariance: the energy of the feature maps of a shifted input that a
    band-limited shift of the original feature maps does not explain.

    With s the layer's cumulative stride along an axis, T_δ the circular shift of the input by δ = `shift`
    pixels along that axis and S_{δ/s} the band-limited (Fourier) circular shift of the feature maps by δ/s
    positions, the error along that axis is

        A = ‖f(T_δ x) − S_{δ/s} f(x)‖² / ‖f(x)‖²,

    summed over the batch, channels and positions; `error` is the mean of the two axes. The layers up to
    `layer` see x extended periodically (wrap-padded by at least their receptive field, trimmed back), so
    f is computed as if every layer padded circularly and the comparison has no border effects: A = 0 for
    any stride-1 stack of shift-equivariant layers (conv, ReLU, stride-1 pooling), and with stride s > 1 it
    measures the aliasing of the subsampling — 0 only when the maps are band-limited below their new
    Nyquist frequency. Needs H and W divisible by s and layers that accept a larger input. Returns Aliasing."""
    x = _core.as_batch(model, x)
    H, W = x.shape[2:]
    rf = receptive_field(model, layer)[-1]
    s, r, off = rf["stride"], rf["size"], rf["offset"]
    if H % s[0] or W % s[1]:
        raise ValueError(f"x: the aliasing measure needs H, W divisible by the layer's stride {s}, got {(H, W)}")
    base = _periodic_features(model, layer, x, s, r, off)
    errs = []
    for axis in (2, 3):
        shifted = _periodic_features(model, layer, np.roll(x, shift, axis=axis), s, r, off)
        expect = _fourier_shift(base, shift / s[axis - 2], axis)
        errs.append(float(np.sum((shifted - expect) ** 2) / max(np.sum(base ** 2), 1e-300)))
    return Aliasing(float(np.mean(errs)), tuple(errs), tuple(s))


def _periodic_features(model, layer, x, s, r, off):
    """Features of `layer` for x extended periodically: wrap-pad by a multiple m of the stride that covers
    the receptive field, then keep the H/s × W/s units whose fields start inside the original image."""
    m = [int(np.ceil((ri + abs(oi)) / si)) * si for ri, oi, si in zip(r, off, s)]
    xp = np.pad(x, ((0, 0), (0, 0), (m[0], m[0]), (m[1], m[1])), mode="wrap")
    with _core.evaluating(model):
        try:
            a = _core.forward_to(model, xp, layer)
        except ValueError as e:
            raise ValueError(f"layer: the layers up to {layer!r} must accept a larger input for the aliasing "
                             f"measure ({e})") from None
    H, W = x.shape[2:]
    i0, j0 = m[0] // s[0], m[1] // s[1]
    return a[:, :, i0:i0 + H // s[0], j0:j0 + W // s[1]].astype(np.float64)


def _fourier_shift(a, delta, axis):
    """a circularly shifted by a (fractional) `delta` positions along `axis`, band-limited (sinc) interpolation."""
    if float(delta).is_integer():
        return np.roll(a, int(delta), axis=axis)   # whole positions: an exact roll, Nyquist bin included
    n = a.shape[axis]
    k = np.fft.fftfreq(n) * n
    if n % 2 == 0:
        k[n // 2] = 0   # the Nyquist bin has no direction: a fractional shift of it would make the result complex
    shape = [1] * a.ndim
    shape[axis] = n
    phase = np.exp(-2j * np.pi * k * delta / n).reshape(shape)
    return np.fft.ifft(np.fft.fft(a, axis=axis) * phase, axis=axis).real
