"""fastconv.vis.occlusion: the Zeiler & Fergus maps by hand, the per-pixel mode against Captum's Occlusion,
and a trained model's map finding a planted discriminative patch."""
import numpy as np
import pytest

from fastconv import nn, vis
from nn_helpers import pool_cnn
from fastconv.vis._core import softmax

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def small_cnn(rng=0):
    return pool_cnn((1, 4, 4), 12, rng=rng)


def test_occlusion_map_and_feature_map_by_hand():
    model = small_cnn()
    x = np.random.default_rng(0).random((2, 1, 12, 12))
    t = np.array([1, 2])
    maps, feats = vis.occlusion(model, x, t, window=4, stride=3, fill=0.5, layer="5", chunk_size=5)
    assert maps.shape == feats.shape == (2, 3, 3)
    strongest = vis.activations(model, x, "5").reshape(2, 4, -1).max(axis=2).argmax(axis=1)
    for n in range(2):
        for a, i in enumerate(range(0, 9, 3)):
            for b, j in enumerate(range(0, 9, 3)):
                xo = x[n:n + 1].copy()
                xo[..., i:i + 4, j:j + 4] = 0.5
                assert maps[n, a, b] == pytest.approx(softmax(model(xo))[0, t[n]], rel=1e-12)
                act = vis.activations(model, xo, "5")[0, strongest[n]].sum()
                assert feats[n, a, b] == pytest.approx(act, rel=1e-12)
    # the chunk size is a memory knob only
    np.testing.assert_allclose(vis.occlusion(model, x, t, 4, 3, fill=0.5, chunk_size=1), maps, rtol=1e-12)


def test_per_pixel_occlusion_matches_captum():
    torch = pytest.importorskip("torch")
    attr = pytest.importorskip("captum.attr")
    model = small_cnn(1)
    tm = nn.to_torch(model).eval()
    x = np.random.default_rng(1).random((2, 1, 12, 12))
    t = [0, 2]
    for score, fwd in [("logit", tm), ("prob", lambda z: torch.softmax(tm(z), dim=1))]:
        ref = attr.Occlusion(fwd).attribute(torch.tensor(x), target=t, sliding_window_shapes=(1, 4, 4),
                                            strides=(1, 2, 2), baselines=0.0).numpy()
        got = vis.occlusion(model, x, t, window=4, stride=2, per_pixel=True, score=score)
        np.testing.assert_allclose(got, ref[:, 0], rtol=1e-6, atol=1e-8)   # Captum averages in lower precision


def _patch_data(n, rng, size=12, patch=3):
    """Noise images; class 1 carries a bright patch at a random place, class 0 does not."""
    x = 0.3 * rng.random((n, 1, size, size))
    y = rng.integers(0, 2, n)
    where = rng.integers(0, size - patch + 1, (n, 2))
    for k in np.flatnonzero(y == 1):
        i, j = where[k]
        x[k, 0, i:i + patch, j:j + patch] = 1.0
    return x.astype(np.float32), y, where


def test_occlusion_finds_a_planted_patch():
    rng = np.random.default_rng(0)
    x, y, _ = _patch_data(400, rng)
    model = nn.models.seed_cnn(1, 2, 12, channels=(4, 8), kernel_size=3, rng=0)
    nn.fit(model, (x, y), epochs=6, batch_size=32, seed=0, progress=False)
    xt, yt, where = _patch_data(60, np.random.default_rng(1))
    pos = np.flatnonzero(yt == 1)
    assert nn.evaluate(model, (xt, yt))[1] > 0.9
    maps = vis.occlusion(model, xt[pos], 1, window=3, stride=1)
    found = np.stack(np.unravel_index(maps.reshape(len(pos), -1).argmin(axis=1), maps.shape[1:]), axis=1)
    hits = np.abs(found - where[pos]).max(axis=1) <= 1
    assert hits.mean() >= 0.9, (found, where[pos])
    # occluding the patch costs the class probability; occluding elsewhere barely does
    assert np.median(maps.reshape(len(pos), -1).min(axis=1)) < 0.5 < np.median(maps.reshape(len(pos), -1).max(axis=1))
