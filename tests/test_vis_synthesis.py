"""fastconv.vis.synthesis: class models and DeepDream climb their objectives; neural style lowers its style
loss; the Gram-matrix style gradient is the derivative of the style loss."""
import numpy as np
import pytest

from fastconv import data, nn, vis
from fastconv.vis import synthesis


@pytest.fixture(scope="module")
def trained():
    split = data.synthetic(n=240, num_classes=3, size=8, seed=0)
    model = nn.models.seed_cnn(1, 3, 8, channels=(4, 8), kernel_size=3, rng=0)
    nn.fit(model, split.train, epochs=15, batch_size=16, optimizer=nn.Adam(model, lr=3e-3), seed=0, progress=False)
    assert nn.evaluate(model, split.test)[1] > 0.9
    return model.astype(np.float64), split


def test_class_model_objective_increases(trained):
    model, _ = trained
    img, hist = vis.class_model(model, [0, 1, 2], steps=40, lr=0.1, l2=1e-2, return_history=True)
    assert img.shape == (3, 1, 8, 8) and hist.shape == (40, 3)
    assert np.mean(np.diff(hist, axis=0) > 0) > 0.9         # plain gradient ascent: (almost) every step climbs
    assert np.all(hist[-1] > hist[0] + 1)
    # the image is the target class's: the model classifies each as its target
    assert list(model(img).argmax(axis=1)) == [0, 1, 2]
    # with the regularisers (blur every 4 steps, clipping small pixels) the score still rises overall
    img2, hist2 = vis.class_model(model, 1, steps=40, lr=0.1, l2=1e-2, blur_every=4, blur_sigma=0.5,
                                  clip_percentile=20, return_history=True)
    assert hist2[-1, 0] > hist2[0, 0] + 1
    assert np.mean(img2 == 0) >= 0.2 - 1e-9                 # ≥ 20% of the pixels clipped to 0
    # seeded, and zero-init possible
    np.testing.assert_array_equal(vis.class_model(model, 1, steps=3, seed=5), vis.class_model(model, 1, steps=3, seed=5))
    assert vis.class_model(model, 1, steps=1, init_std=0.0, input_shape=(1, 8, 8)).shape == (1, 1, 8, 8)


def test_deep_dream_objective_increases(trained):
    model, split = trained
    x = split.test.x[:2].astype(np.float64)
    out, hist = vis.deep_dream(model, x, "4", steps=15, lr=0.01, octaves=1, jitter=0, return_history=True)
    assert out.shape == x.shape and hist.shape == (15, 2)
    assert np.all(np.diff(hist, axis=0) > 0)                 # ½‖a‖² increases at every step
    a0 = vis.activations(model, x, "4")
    a1 = vis.activations(model, out, "4")
    assert np.all(np.sum(a1 ** 2, axis=(1, 2, 3)) > np.sum(a0 ** 2, axis=(1, 2, 3)))
    # octaves and jitter: runs at the smaller scales first and still ends higher than it started
    out2, hist2 = vis.deep_dream(model, x, "1", steps=5, lr=0.01, octaves=3, octave_scale=1.3, jitter=1,
                                 return_history=True)
    assert out2.shape == x.shape and len(hist2) == 15
    assert np.sum(vis.activations(model, out2, "1") ** 2) > np.sum(vis.activations(model, x, "1") ** 2)


def test_style_gradient_is_the_derivative_of_the_style_loss():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 3, 4, 5))
    A = synthesis.gram(rng.standard_normal((1, 3, 4, 5)))
    loss, grad = synthesis._style_terms(a, A)
    F = a.reshape(3, 20)
    assert loss == pytest.approx(np.sum((F @ F.T - A[0]) ** 2) / (4 * 9 * 400))
    eps = 1e-6
    for idx in [(0, 0, 1, 2), (0, 2, 3, 4), (0, 1, 0, 0)]:
        ap, am = a.copy(), a.copy()
        ap[idx] += eps
        am[idx] -= eps
        num = (synthesis._style_terms(ap, A)[0] - synthesis._style_terms(am, A)[0]) / (2 * eps)
        assert grad[idx] == pytest.approx(num, rel=1e-6, abs=1e-10)


@pytest.mark.parametrize("method", ["lbfgs", "adam"])
def test_neural_style_lowers_the_style_loss(trained, method):
    model, split = trained
    content = split.test.x[:1].astype(np.float64)
    i, j = np.mgrid[:8, :8]
    style = (0.5 + 0.5 * np.sin((i + j) * 2.0))[None, None]
    out, hist = vis.neural_style(model, content, style, ["4"], ["1", "4"], content_weight=1.0, style_weight=1e3,
                                 steps=30, method=method, lr=0.02, return_history=True)
    assert out.shape == content.shape
    assert hist["style"][-1] < 0.5 * hist["style"][0]
    assert hist["content"][0] == pytest.approx(0.0)          # started from the content image
    assert hist["total"][-1] < hist["total"][0]
