"""fastconv.nn layers: gradients, initialisation, naming, ReLU backward rules, errors."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import nn
from nn_helpers import check_grads, every_layer_net, loss_and_grads

RNG = np.random.default_rng(1)
X = RNG.standard_normal((2, 2, 8, 8))
Y = np.array([0, 2])


@pytest.mark.parametrize("backend", sorted({"numpy", fc.get_backend()}))
def test_gradcheck_every_layer_type(backend):
    """Finite differences through Conv2d, ReLU, MaxPool2d, TiledConv2d, LocallyConnected2d, Flatten,
    Dropout (eval) and Linear, in float64."""
    model = every_layer_net().eval()
    assert {type(layer).__name__ for layer in model} >= {"Conv2d", "ReLU", "MaxPool2d", "TiledConv2d",
                                                        "LocallyConnected2d", "Flatten", "Dropout", "Linear"}
    with fc.use_backend(backend):
        assert check_grads(model, X.copy(), Y) < 1e-6


def test_gradcheck_dropout_with_fixed_mask():
    """Dropout in training mode, its mask fixed by reseeding its generator before every forward pass."""
    model = every_layer_net(dropout=0.4).train()
    drop = model[9]

    def reseed():
        drop.rng = np.random.default_rng(7)
    reseed()
    model(X)
    mask = drop.mask
    assert mask is not None and 0 < np.count_nonzero(mask) < mask.size
    with fc.use_backend("numpy"):
        assert check_grads(model, X.copy(), Y, before_forward=reseed) < 1e-6
    assert np.array_equal(drop.mask, mask)


def test_init_matches_pytorch_bounds_and_is_seeded():
    conv = nn.Conv2d(4, 6, 3, groups=2, rng=0)
    fan_in = 2 * 9
    assert conv.weight.shape == (6, 2, 3, 3) and conv.bias.shape == (6,)
    assert conv.weight.dtype == np.float32
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(conv.weight).max() <= bound and np.abs(conv.bias).max() <= bound
    big = nn.Linear(400, 300, rng=1)
    assert abs(big.weight.std() - (1 / np.sqrt(400)) / np.sqrt(3)) < 1e-3   # U(-b, b) has std b/sqrt(3)
    assert np.array_equal(nn.Conv2d(4, 6, 3, groups=2, rng=0).weight, conv.weight)
    nn.manual_seed(3)
    a = nn.models.seed_cnn(1, 10, 8)
    nn.manual_seed(3)
    b = nn.models.seed_cnn(1, 10, 8)
    for (na, va, _), (nb, vb, _) in zip(a.parameters(), b.parameters()):
        assert na == nb and np.array_equal(va, vb)
    tiled = nn.TiledConv2d(3, 5, (3, 2), tile=(2, 3), bias=False)
    assert tiled.weight.shape == (2, 3, 5, 3, 3, 2) and tiled.bias is None
    local = nn.LocallyConnected2d(3, 5, 3, input_size=(6, 7), stride=2, padding=1)
    assert local.weight.shape == (3, 4, 5, 3, 3, 3) and local.bias.shape == (5, 3, 4)
    assert np.abs(local.weight).max() <= 1 / np.sqrt(27)


def test_sequential_names_indexing_and_parameters():
    model = every_layer_net()
    assert [n for n, _ in model.named_layers()] == [str(i) for i in range(11)]
    assert model[0] is model["0"] and isinstance(model[-1], nn.Linear) and len(model) == 11
    names = [n for n, _, _ in model.parameters()]
    assert names == ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight", "5.bias", "10.weight", "10.bias"]
    named = nn.Sequential(("conv", nn.Conv2d(1, 2, 3)), ("act", nn.ReLU()))
    assert named["conv"] is named[0] and [n for n, _, _ in named.parameters()] == ["conv.weight", "conv.bias"]
    with pytest.raises(KeyError, match="no layer named 'nope'"):
        named["nope"]
    with pytest.raises(ValueError, match="unique"):
        nn.Sequential(("a", nn.ReLU()), ("a", nn.ReLU()))
    assert model.eval().training is False and all(not layer.training for layer in model)
    assert model.train().training and model[9].training
    assert model(X).shape == (2, 3) and model.forward(X).shape == (2, 3)


def test_backward_fills_grads_and_overwrites():
    model = every_layer_net().eval()
    _, dx, g1 = loss_and_grads(model, X, Y)
    assert dx.shape == X.shape
    refs = {n: g for n, _, g in model.parameters()}
    _, _, g2 = loss_and_grads(model, X, Y)
    for name, grad in g1.items():
        np.testing.assert_array_equal(g2[name], grad)          # overwritten, not accumulated
    for name, _, grad in model.parameters():
        assert grad is refs[name]                               # in place: optimizers' references stay valid
    model.zero_grad()
    assert all(not g.any() for _, _, g in model.parameters())


def test_astype_and_dtype_errors():
    model = every_layer_net(dtype=np.float32)
    assert model.dtype == np.float32
    with pytest.raises(TypeError, match=r"layer '0' \(Conv2d\).*float64.*float32"):
        model(X)
    model.astype(np.float64)
    assert all(v.dtype == np.float64 and g.dtype == np.float64 for _, v, g in model.parameters())
    assert model(X).dtype == np.float64
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.Linear(2, 2, dtype=np.int32)


def test_wrong_input_shape_names_layer_and_shapes():
    model = nn.models.seed_cnn(1, 10, 16)
    x8 = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"layer '7' \(Linear\) with input shape \(2, 128\).*\(N, 512\)"):
        model(x8)
    with pytest.raises(ValueError, match=r"layer '0' \(Conv2d\) with input shape \(2, 3, 16, 16\).*\(N, 1, H, W\)"):
        model(np.zeros((2, 3, 16, 16), np.float32))
    local = nn.models.seed_cnn(1, 10, 16, variant="local")
    with pytest.raises(ValueError, match=r"layer '3' \(LocallyConnected2d\).*\(2, 16, 4, 4\).*\(N, 16, 8, 8\)"):
        local(x8)
    with pytest.raises(ValueError, match=r"layer '0' \(Conv2d\) with input shape \(16, 16\)"):
        model(np.zeros((16, 16), np.float32))   # (C, H, W) is PyTorch's unbatched input: accepted
    tiny = nn.Sequential(nn.Conv2d(1, 1, 5))
    with pytest.raises(ValueError, match=r"layer '0' \(Conv2d\) with input shape \(1, 1, 3, 3\)"):
        tiny(np.zeros((1, 1, 3, 3), np.float32))                 # error raised by the op, wrapped
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Conv2d(1, 1, 3).backward(np.zeros((1, 1, 1, 1), np.float32))


def test_relu_backward_rules_and_context_manager():
    relu = nn.ReLU()
    x = np.array([[-1.0, 2.0, 3.0, -4.0]])
    dy = np.array([[5.0, -6.0, 7.0, 8.0]])
    assert np.array_equal(relu(x), [[0, 2, 3, 0]])
    expected = {"gradient": [[0, -6, 7, 0]], "deconvnet": [[5, 0, 7, 8]], "guided": [[0, 0, 7, 0]]}
    for rule, want in expected.items():
        relu.backward_rule = rule
        assert np.array_equal(relu.backward(dy), want), rule
    relu.backward_rule = lambda x, dy: dy * 2
    assert np.array_equal(relu.backward(dy), dy * 2)
    relu.backward_rule = "nope"
    with pytest.raises(ValueError, match="backward_rule"):
        relu.backward(dy)

    model = every_layer_net().eval()
    model[4].backward_rule = "deconvnet"       # a per-layer choice survives the block
    with nn.backward_rule(model, "guided"):
        assert all(layer.backward_rule == "guided" for layer in model if isinstance(layer, nn.ReLU))
        _, dx_guided, _ = loss_and_grads(model, X, Y)
    assert model[1].backward_rule == "gradient" and model[4].backward_rule == "deconvnet"
    assert nn.ReLU().backward_rule == "gradient"
    with pytest.raises(ValueError, match="rule"):
        with nn.backward_rule(model, "bogus"):
            pass


def test_maxpool_keeps_switches_and_backward_is_unpool():
    pool = nn.MaxPool2d(2)
    x = RNG.standard_normal((2, 3, 6, 6))
    y = pool(x)
    y_ref, sw = fc.max_pool2d(x, 2)
    assert np.array_equal(y, y_ref) and np.array_equal(pool.switches, sw)
    dy = RNG.standard_normal(y.shape)
    assert np.array_equal(pool.backward(dy), fc.max_unpool2d(dy, sw, x.shape))


def test_dropout_train_eval():
    x = np.ones((200, 50), np.float32)
    drop = nn.Dropout(0.25, rng=0)
    y = drop(x)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)} and abs((y == 0).mean() - 0.25) < 0.02
    assert np.array_equal(drop.backward(x), drop.mask)
    drop.eval()
    assert drop(x) is x or np.array_equal(drop(x), x)
    assert np.array_equal(drop.backward(x), x)
    assert not nn.Dropout(1.0).train()(x).any()
    with pytest.raises(ValueError, match="p"):
        nn.Dropout(1.5)


def test_linear_and_flatten():
    lin = nn.Linear(4, 3, rng=0, dtype=np.float64)
    x = RNG.standard_normal((5, 4))
    np.testing.assert_allclose(lin(x), x @ lin.weight.T + lin.bias)
    dy = RNG.standard_normal((5, 3))
    np.testing.assert_allclose(lin.backward(dy), dy @ lin.weight)
    np.testing.assert_allclose(lin.weight_grad, dy.T @ x)
    np.testing.assert_allclose(lin.bias_grad, dy.sum(0))
    flat = nn.Flatten()
    assert flat(np.zeros((2, 3, 4, 5))).shape == (2, 60)
    assert flat.backward(np.zeros((2, 60))).shape == (2, 3, 4, 5)


def test_softmax_cross_entropy():
    z = RNG.standard_normal((4, 5))
    y = np.array([0, 4, 2, 2])
    loss_fn = nn.SoftmaxCrossEntropy()
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert np.isclose(loss_fn(z, y), -np.log(p[np.arange(4), y]).mean())
    onehot = np.eye(5)[y]
    np.testing.assert_allclose(loss_fn.backward(), (p - onehot) / 4)
    assert np.isfinite(loss_fn(np.array([[1000.0, -1000.0]]), np.array([1])))
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 5\).*\[0, 7\]"):
        loss_fn(z, np.array([0, 7, 1, 1]))
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 5\)"):
        loss_fn(z, np.array([0, -1, 1, 1]))
    with pytest.raises(ValueError, match=r"labels: expected shape \(4,\)"):
        loss_fn(z, np.array([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        loss_fn(z, np.array([0.5, 1, 1, 1]))


@pytest.mark.parametrize("variant", ["conv", "local", "tiled"])
@pytest.mark.parametrize("size", [8, 16, 32])
def test_seed_cnn_shapes(variant, size):
    model = nn.models.seed_cnn(3, 7, size, variant=variant, channels=(4, 6))
    kinds = [type(layer).__name__ for layer in model]
    assert kinds[3] == {"conv": "Conv2d", "local": "LocallyConnected2d", "tiled": "TiledConv2d"}[variant]
    assert kinds[-1] == "Linear" and kinds.count("MaxPool2d") == 2
    with fc.use_backend("numpy"):
        assert model(np.zeros((2, 3, size, size), np.float32)).shape == (2, 7)
