"""fastconv.vis.spectrum: filter spectra, band energies and dead filters on synthetic filters; the aliasing
measure on linear layers of growing stride."""
import numpy as np
import pytest

from fastconv import nn, vis


def _bank(dtype=np.float64):
    """Layer '0' holds a Gaussian blob (low frequencies), a checkerboard (the highest) and zeros."""
    i, j = np.mgrid[:7, :7] - 3
    blob = np.exp(-(i ** 2 + j ** 2) / (2 * 2.0 ** 2))
    checker = (-1.0) ** (i + j)
    model = nn.Sequential(nn.Conv2d(1, 3, 7, padding=3, dtype=dtype, rng=0), nn.ReLU())
    model[0].weight[:] = np.stack([blob, checker, np.zeros((7, 7))])[:, None]
    model[0].bias[:] = 0
    return model


def test_filter_spectrum_puts_energy_in_the_right_band_and_finds_the_dead_filter():
    s = vis.filter_spectrum(_bank())
    assert s.band_energy.shape == (3, 3)
    low, mid, high = vis.spectrum.BANDS.index("low"), vis.spectrum.BANDS.index("mid"), vis.spectrum.BANDS.index("high")
    assert s.band_energy[0, low] > 0.9                          # the blob
    assert s.band_energy[1, high] > 0.9                         # the checkerboard
    np.testing.assert_array_equal(s.band_energy[2], 0)          # zeros: no energy anywhere
    np.testing.assert_allclose(s.band_energy[:2].sum(axis=1), 1)
    np.testing.assert_array_equal(s.dead, [False, False, True])
    # Parseval: the energy on the padded grid is n²·‖w‖²; the radial profile peaks where the band says
    n = s.power2d.shape[-1]
    np.testing.assert_allclose(s.power2d.sum(axis=(1, 2)), n * n * s.norm ** 2)
    assert s.frequency[np.argmax(s.power[0])] < 1 / 3 < 2 / 3 < s.frequency[np.argmax(s.power[1])]


def test_activation_rate_marks_filters_that_never_fire():
    model = _bank()
    model[0].bias[:] = [0.0, -100.0, 0.0]                      # the checkerboard never gets above zero
    x = np.random.default_rng(0).uniform(0, 1, (4, 1, 10, 10))
    s = vis.filter_spectrum(model, "0", x)
    assert s.activation_rate[0] > 0.9 and s.activation_rate[1] == 0
    np.testing.assert_array_equal(s.dead, [False, True, True])


def _linear(stride, rng=1):
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=stride, padding=1, dtype=np.float64, rng=rng))


def test_aliasing_is_zero_for_a_stride_1_linear_layer_and_grows_with_the_stride():
    x = np.random.default_rng(2).standard_normal((3, 2, 16, 16))
    a1 = vis.aliasing(_linear(1), 0, x)
    assert a1.stride == (1, 1) and a1.error < 1e-24
    errors = [vis.aliasing(_linear(s), 0, x).error for s in (1, 2, 4, 8)]
    assert errors[0] < 1e-24 < errors[1] < errors[2] < errors[3], errors
    relu_pool = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=1), nn.ReLU(), nn.MaxPool2d(2))
    assert vis.aliasing(relu_pool, 1, x).error < 1e-24          # ReLU keeps shift-equivariance ...
    a = vis.aliasing(relu_pool, 2, x)                           # ... pooling with stride 2 does not
    assert a.stride == (2, 2) and a.error > 1e-3 and len(a.per_axis) == 2


def test_aliasing_is_zero_for_band_limited_maps_at_any_stride():
    """A smooth input (frequencies below the subsampled Nyquist) through a 1×1 conv: stride s loses nothing."""
    i = np.arange(16)
    wave = np.cos(2 * np.pi * i / 16 + 0.3)[:, None] * np.sin(2 * np.pi * i / 16 + 1.1)[None, :]
    model = nn.Sequential(nn.Conv2d(1, 2, 1, stride=4, dtype=np.float64, rng=0))
    model[0].bias[:] = 0
    assert vis.aliasing(model, 0, wave[None, None]).error < 1e-20


def test_aliasing_needs_sizes_divisible_by_the_stride():
    with pytest.raises(ValueError, match="divisible"):
        vis.aliasing(_linear(4), 0, np.zeros((1, 2, 10, 10)))


# -- architecture selection ----------------------------------------------------------------------
def test_architecture_selection_measures_each_variant_and_says_what_it_found():
    from fastconv import data
    from fastconv.vis import architecture
    split = data.synthetic(n=160, num_classes=3, size=16, seed=0)
    variants = {"7×7 stride 4": dict(first_kernel=7, first_stride=4), "3×3 stride 2": dict(first_kernel=3,
                                                                                           first_stride=2)}
    res = vis.architecture_selection(split.train, split.test, variants, epochs=1, channels=(4, 6), probe=16)
    assert list(res) == list(variants)
    for name, v in res.items():
        assert 0 <= v.accuracy <= 1 and v.spectrum.band_energy.shape == (4, 3)
        assert v.model[0].weight.shape[-1] == variants[name]["first_kernel"]
        assert v.model[0].stride == variants[name]["first_stride"]
        assert [a.stride[0] for a in v.aliasing.values()] == [variants[name]["first_stride"],
                                                              2 * variants[name]["first_stride"]]
    header, rows = architecture.table(res)
    assert len(rows) == 2 and all(len(r) == len(header) for r in rows)
    text = architecture.summary(res)
    a, b = res["7×7 stride 4"], res["3×3 stride 2"]
    assert f"{b.accuracy:.3f} vs {a.accuracy:.3f}" in text                        # the numbers, computed
    assert f"({int(b.spectrum.dead.sum())} vs {int(a.spectrum.dead.sum())})" in text
    assert text.startswith("On this data the 3×3 stride 2 variant has")
