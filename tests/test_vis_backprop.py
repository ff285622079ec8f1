"""fastconv.vis backward projections: hand-computable deconvnet, finite-difference saliency, the three ReLU
rules against each other, and agreement with Captum (Saliency, GuidedBackprop, NeuronDeconvolution)."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import nn, vis
from nn_helpers import pool_cnn

pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks")


def tiny_net():
    """One 2×2 conv (hand weights) + ReLU + 2×2 max-pool, on 1×5×5 inputs -> (1, 2, 2)."""
    conv = nn.Conv2d(1, 1, 2, dtype=np.float64)
    conv.weight[...] = [[[[1.0, -2.0], [0.5, 3.0]]]]
    conv.bias[...] = -0.25
    return nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2))


def small_cnn(rng=0, dtype=np.float64):
    return pool_cnn((2, 4, 5), 8, rng=rng, dtype=dtype)


def test_deconvnet_and_switches_by_hand():
    x = np.random.default_rng(1).standard_normal((1, 1, 5, 5))
    model = tiny_net()
    w, b = model[0].weight[0, 0], model[0].bias[0]
    # forward by hand: valid 2x2 correlation, ReLU, 2x2 max-pool with its switch
    y = np.array([[np.sum(x[0, 0, i:i + 2, j:j + 2] * w) + b for j in range(4)] for i in range(4)])
    r = np.maximum(y, 0)
    pooled = r.reshape(2, 2, 2, 2).max(axis=(1, 3))
    a = vis.activations(model, x, "2")
    np.testing.assert_allclose(a[0, 0], pooled, rtol=1e-12)
    for (pi, pj) in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        window = r[2 * pi:2 * pi + 2, 2 * pj:2 * pj + 2]
        si, sj = np.unravel_index(window.argmax(), (2, 2))
        si, sj = 2 * pi + si, 2 * pj + sj
        assert model[2].switches[0, 0, pi, pj] == si * 4 + sj        # switches: flat index in the 4×4 plane
        v = pooled[pi, pj]
        expected = np.zeros((5, 5))
        if v > 0:   # unpool to the switch, rectify (v > 0 passes), filter with the transposed filter
            expected[si:si + 2, sj:sj + 2] = v * w
        got = vis.deconvnet(model, x, "2", 0, position=(pi, pj))
        np.testing.assert_allclose(got[0, 0], expected, rtol=1e-12, atol=1e-15)
    # default position: the channel's maximum; projection starts from its value, not from 1
    top = np.unravel_index(pooled.argmax(), (2, 2))
    np.testing.assert_array_equal(vis.deconvnet(model, x, 2, 0), vis.deconvnet(model, x, "2", 0, position=top))
    unit = vis.project(model, x, "2", 0, rule="deconvnet", seed="one")
    np.testing.assert_allclose(vis.deconvnet(model, x, "2", 0), pooled.max() * unit, rtol=1e-12)


def test_deconvnet_rectifies_the_backward_signal_not_the_forward_input():
    # a negative filter: the signal coming back through the second ReLU is negative in places where the
    # forward input was positive: the deconvnet zeroes it, backprop keeps it
    model = small_cnn(3)
    x = np.random.default_rng(4).standard_normal((3, 2, 8, 8))
    dec = vis.deconvnet(model, x, "5", 1)
    grad = vis.project(model, x, "5", 1, rule="gradient")
    assert dec.shape == x.shape and np.abs(dec).max() > 0
    assert not np.allclose(dec, grad)


def test_saliency_is_finite_difference_of_the_score():
    model = small_cnn(0)
    x = np.random.default_rng(0).standard_normal((2, 2, 8, 8))
    target = np.array([2, 0])
    sal = vis.saliency(model, x, target)
    grad = vis.gradient(model, x, target)
    assert sal.shape == (2, 8, 8)
    np.testing.assert_allclose(sal, np.abs(grad).max(axis=1))
    eps = 1e-6
    rng = np.random.default_rng(1)
    for _ in range(12):
        n, c, i, j = rng.integers(2), rng.integers(2), rng.integers(8), rng.integers(8)
        xp, xm = x.copy(), x.copy()
        xp[n, c, i, j] += eps
        xm[n, c, i, j] -= eps
        num = (model(xp)[n, target[n]] - model(xm)[n, target[n]]) / (2 * eps)
        assert abs(num - grad[n, c, i, j]) <= 1e-6 * max(1, abs(num))


def test_the_three_rules_differ_only_at_the_relu():
    """Conv -> ReLU -> Flatten -> Linear: the signal reaching the ReLU (dy) is the same under every rule, so
    the three projections are conv2d_input_grad of dy·[x>0], dy·[dy>0] and dy·[x>0]·[dy>0]."""
    kw = dict(dtype=np.float64, rng=np.random.default_rng(5))
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, **kw), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4, **kw))
    x = np.random.default_rng(6).standard_normal((2, 1, 6, 6))
    t = np.array([1, 3])
    pre = model.forward(x, until=0)
    dy = model[3].weight[t].reshape(2, 3, 6, 6)
    conv = model[0]

    def back(d):
        return fc.conv2d_input_grad(d, conv.weight, x.shape, padding=1)
    np.testing.assert_allclose(vis.gradient(model, x, t), back(dy * (pre > 0)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(vis.class_gradient(model, x, t, "deconvnet"), back(dy * (dy > 0)), rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(vis.guided_backprop(model, x, t), back(dy * (pre > 0) * (dy > 0)), rtol=1e-12,
                               atol=1e-14)
    # and they do differ here
    assert not np.allclose(vis.gradient(model, x, t), vis.guided_backprop(model, x, t))
    assert not np.allclose(vis.guided_backprop(model, x, t), vis.class_gradient(model, x, t, "deconvnet"))
    # the model's ReLUs are back on the gradient rule afterwards, and the model is not modified
    assert model[1].backward_rule == "gradient"


def test_layer_by_name_index_or_object_and_errors():
    model = small_cnn(1)
    x = np.random.default_rng(2).standard_normal((2, 2, 8, 8))
    ref = vis.deconvnet(model, x, "4", 2)
    np.testing.assert_array_equal(vis.deconvnet(model, x, 4, 2), ref)
    np.testing.assert_array_equal(vis.deconvnet(model, x, model[4], 2), ref)
    np.testing.assert_array_equal(vis.deconvnet(model, x, -4, 2), ref)
    with pytest.raises(ValueError, match="not a layer"):
        vis.deconvnet(model, x, "nope", 0)
    with pytest.raises(ValueError, match="target"):
        vis.saliency(model, x, [0, 1, 2])
    # float32 input to a float64 model is cast; the result has the model's dtype and the input's shape
    assert vis.guided_backprop(model, x.astype(np.float32), 1).shape == x.shape


# -- agreement with Captum (torch hooks on non-in-place nn.ReLU modules) -------------------------
def _torch_pair(seed=0):
    torch = pytest.importorskip("torch")
    model = small_cnn(seed)
    tm = nn.to_torch(model).eval()
    assert all(not getattr(m, "inplace", False) for m in tm.modules())
    x = np.random.default_rng(seed + 10).standard_normal((3, 2, 8, 8))
    return torch, model, tm, x


def test_saliency_and_guided_backprop_match_captum():
    torch, model, tm, x = _torch_pair(0)
    attr = pytest.importorskip("captum.attr")
    t = [0, 2, 1]
    xt = torch.tensor(x, requires_grad=True)
    sal = attr.Saliency(tm).attribute(xt, target=t, abs=True).detach().numpy()
    np.testing.assert_allclose(vis.saliency(model, x, t), sal.max(axis=1), rtol=1e-10, atol=1e-12)
    gbp = attr.GuidedBackprop(tm).attribute(torch.tensor(x, requires_grad=True), target=t).detach().numpy()
    np.testing.assert_allclose(vis.guided_backprop(model, x, t), gbp, rtol=1e-10, atol=1e-12)
    dec = attr.Deconvolution(tm).attribute(torch.tensor(x, requires_grad=True), target=t).detach().numpy()
    np.testing.assert_allclose(vis.class_gradient(model, x, t, "deconvnet"), dec, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layer", ["2", "5"])
def test_deconvnet_is_captum_neuron_deconvolution_times_the_activation(layer):
    torch, model, tm, x = _torch_pair(1)
    attr = pytest.importorskip("captum.attr")
    a = vis.activations(model, x, layer)
    channel = 1
    got = vis.deconvnet(model, x, layer, channel)
    for n in range(len(x)):
        i, j = np.unravel_index(a[n, channel].argmax(), a.shape[2:])
        nd = attr.NeuronDeconvolution(tm, tm[int(layer)])
        ref = nd.attribute(torch.tensor(x[n:n + 1], requires_grad=True), neuron_selector=(channel, int(i), int(j)))
        np.testing.assert_allclose(got[n], a[n, channel, i, j] * ref.detach().numpy()[0], rtol=1e-10, atol=1e-12)
    # guided backprop from a unit: Captum's NeuronGuidedBackprop (seeded with 1)
    gb = vis.guided_backprop(model, x[:1], (layer, channel))
    i, j = np.unravel_index(a[0, channel].argmax(), a.shape[2:])
    ref = attr.NeuronGuidedBackprop(tm, tm[int(layer)]).attribute(torch.tensor(x[:1], requires_grad=True),
                                                                  neuron_selector=(channel, int(i), int(j)))
    np.testing.assert_allclose(gb, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
