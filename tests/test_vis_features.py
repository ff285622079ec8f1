"""fastconv.vis features, receptive fields, invariance, t-SNE and feature evolution; the nn hooks they use
(Sequential.forward(x, until=...) / backward(dy, from_layer=...))."""
import numpy as np
import pytest

from fastconv import nn, vis
from nn_helpers import pool_cnn
from fastconv.vis.features import crop


def small_cnn(rng=0):
    return pool_cnn((1, 4, 6), 12, rng=rng)


def test_forward_until_and_backward_from_layer():
    model = small_cnn()
    x = np.random.default_rng(0).standard_normal((2, 1, 12, 12))
    a = model.forward(x, until="4")
    manual = x
    for layer in list(model)[:5]:
        manual = layer.forward(manual)
    np.testing.assert_array_equal(a, manual)
    dy = np.random.default_rng(1).standard_normal(a.shape)
    dx = model.backward(dy, from_layer=4)
    for layer in reversed(list(model)[:5]):
        dy = layer.backward(dy)
    np.testing.assert_array_equal(dx, dy)


def test_filters_and_activations():
    model = small_cnn()
    np.testing.assert_array_equal(vis.filters(model), model[0].weight)
    np.testing.assert_array_equal(vis.filters(model, "3"), model[3].weight)
    tiled = nn.Sequential(nn.TiledConv2d(1, 2, 3, tile=2, dtype=np.float64, rng=0))
    assert vis.filters(tiled).shape == (8, 1, 3, 3)
    with pytest.raises(ValueError):
        vis.filters(model, "1")
    x = np.random.default_rng(0).standard_normal((3, 1, 12, 12))
    np.testing.assert_array_equal(vis.activations(model, x, "2"), model.forward(x, until=2))


def test_top_activations_brute_force():
    model = small_cnn(1)
    x = np.random.default_rng(2).random((50, 1, 12, 12))
    top = vis.top_activations(model, (x, np.zeros(50, int)), "5", k=4, channels=[0, 3], batch_size=16)
    a = vis.activations(model, x, "5")                      # (50, 6, 3, 3)
    rf = vis.receptive_field(model, "5", input_size=(12, 12))[-1]
    assert rf["size"] == (10, 10) and rf["stride"] == (4, 4) and rf["offset"] == (-3, -3)
    for c, ch in enumerate([0, 3]):
        per_image = a[:, ch].reshape(50, -1).max(axis=1)
        order = np.argsort(-per_image, kind="stable")[:4]
        np.testing.assert_array_equal(top.indices[c], order)             # one per image, strongest first
        np.testing.assert_allclose(top.values[c], per_image[order])
        for r, n in enumerate(order):
            i, j = top.positions[c, r]
            assert a[n, ch, i, j] == per_image[n]
            win = (-3 + 4 * i, -3 + 4 * j, 10, 10)
            np.testing.assert_array_equal(top.windows[c, r], win)
            np.testing.assert_array_equal(top.patches[c, r], crop(x[n], win))
            proj = vis.deconvnet(model, x[n:n + 1], "5", ch)[0]
            np.testing.assert_allclose(top.projections[c, r], crop(proj, win))
            # the projection lives inside the receptive field: nothing outside the window
            outside = proj.copy()
            t, l = max(win[0], 0), max(win[1], 0)
            outside[:, t:win[0] + 10, l:win[1] + 10] = 0
            assert np.abs(outside).max() == 0


def test_receptive_field_regular_dilated_pooled():
    def conv(d=1, s=1, p=1):
        return nn.Conv2d(1, 1, 3, stride=s, padding=p, dilation=d, dtype=np.float64, rng=0)
    regular = nn.Sequential(conv(), conv(), conv())
    dilated = nn.Sequential(conv(1), conv(2, p=2), conv(4, p=4))
    pooled = nn.Sequential(conv(), nn.MaxPool2d(2), conv(), nn.ReLU(), conv(s=2, p=0))
    assert [r["size"][0] for r in vis.receptive_field(regular)] == [3, 5, 7]
    assert [r["size"][0] for r in vis.receptive_field(dilated)] == [3, 7, 15]
    rows = vis.receptive_field(pooled, input_size=(20, 20))
    assert [r["size"][0] for r in rows] == [3, 4, 8, 8, 12]
    assert [r["stride"][0] for r in rows] == [1, 2, 2, 2, 4]
    assert [r["offset"][0] for r in rows] == [-1, -1, -3, -3, -3]
    assert [r["output_size"] for r in rows] == [(20, 20), (10, 10), (10, 10), (10, 10), (4, 4)]
    # the effective receptive field is nonzero only inside the theoretical one
    for model in (regular, dilated):
        erf = vis.effective_receptive_field(model, -1, input_shape=(1, 31, 31), n=4)
        rf = vis.receptive_field(model)[-1]["size"][0]
        rows_nz = np.flatnonzero(erf.sum(axis=1) > 0)
        assert rows_nz.max() - rows_nz.min() + 1 == rf
    assert vis.infer_input_shape(small_cnn()) == (1, 12, 12)


def test_invariance_curves():
    model = small_cnn()
    x = np.random.default_rng(3).random((4, 1, 12, 12))
    for kind, mags, zero in [("translate", [-2, 0, 2], 1), ("rotate", [-30, 0, 30], 1),
                             ("scale", [0.8, 1.0, 1.25], 1)]:
        res = vis.invariance(model, x, kind, mags, ["2", "5", "7"])
        assert set(res["distance"]) == {"2", "5", "7"} and res["probability"].shape == (4, 3)
        for d in res["distance"].values():
            assert np.allclose(d[:, zero], 0, atol=1e-9) and np.all(d[:, [0, 2]] > 0)
        probs = vis.activations(model, x, "7")
        p = np.exp(probs - probs.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        np.testing.assert_allclose(res["probability"][:, zero], p.max(axis=1))
    # integer translation is a plain shift
    shifted = vis.receptive.transform_images(x, "translate", 2)
    np.testing.assert_allclose(shifted[..., 2:], x[..., :-2], atol=1e-12)


def test_tsne_and_feature_evolution(tmp_path):
    pytest.importorskip("sklearn")
    model = small_cnn()
    x = np.random.default_rng(4).random((40, 1, 12, 12))
    emb = vis.tsne(model, x, perplexity=10)
    assert emb.shape == (40, 2) and np.isfinite(emb).all()
    assert vis.codes(model, x).shape == (40, 54)            # penultimate = Flatten output
    paths = []
    for e in range(2):
        m = small_cnn(e)
        paths.append(str(tmp_path / f"epoch_{e}.npz"))
        nn.save(m, paths[-1])
    proj, idx = vis.feature_evolution(paths, x, "5", [0, 2])
    assert proj.shape == (2, 2, 1, 12, 12)
    for e, p in enumerate(paths):
        m = nn.load(p)
        a = vis.activations(m, x, "5").reshape(40, 6, -1).max(axis=2)
        for c, ch in enumerate([0, 2]):
            n = a[:, ch].argmax()
            assert idx[e, c] == n
            np.testing.assert_allclose(proj[e, c], vis.deconvnet(m, x[n:n + 1], "5", ch)[0])
