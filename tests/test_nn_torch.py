"""fastconv.nn against PyTorch: forward, every gradient (float64), and optimizer trajectories (float32)."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import nn
from nn_helpers import every_layer_net, loss_and_grads

torch = pytest.importorskip("torch")
F = torch.nn.functional
from fastconv.nn import _torch as twins  # noqa: E402  (needs torch)
from torch_helpers import one_torch_thread  # noqa: E402,F401  (the fixture)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def torch_every_layer_net():
    """every_layer_net built independently in PyTorch (torch's own init), float64."""
    torch.manual_seed(0)
    u = lambda *s: (torch.rand(*s, dtype=torch.float64) - 0.5) * 0.6
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        twins.TorchTiledConv2d(u(2, 2, 3, 3, 3, 3), u(3), 3, 1, 1), torch.nn.ReLU(),
        twins.TorchLocallyConnected2d(u(4, 4, 2, 3, 3, 3), u(2, 4, 4), 3, 1, 1), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, stride=1), torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(18, 3),
    ).double()


def test_twins_agree_with_torch_conv2d():
    """The unfold-based tiled / locally connected twins reduce to torch's conv2d when weights are shared."""
    x = torch.rand(2, 3, 7, 6, dtype=torch.float64)
    w, b = torch.rand(4, 3, 3, 2, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
    ref = F.conv2d(x, w, b, stride=2, padding=1)
    tiled = twins.TorchTiledConv2d(w[None, None], b, (3, 2), 2, 1)
    H_out, W_out = ref.shape[2:]
    local = twins.TorchLocallyConnected2d(w.expand(H_out, W_out, *w.shape), b[:, None, None].expand(4, H_out, W_out),
                                          (3, 2), 2, 1)
    assert torch.allclose(tiled(x), ref, rtol=1e-12) and torch.allclose(local(x), ref, rtol=1e-12)


@pytest.mark.parametrize("backend", sorted({"numpy", fc.get_backend()}))
def test_logits_and_every_gradient_match_torch_float64(backend):
    tmodel = torch_every_layer_net().eval()
    model = nn.from_torch(tmodel.state_dict(), every_layer_net(dtype=np.float64)).eval()
    x = np.random.default_rng(0).standard_normal((4, 2, 8, 8))
    y = np.array([0, 2, 1, 2])
    xt = torch.tensor(x, requires_grad=True)
    logits_t = tmodel(xt)
    loss_t = F.cross_entropy(logits_t, torch.tensor(y))
    loss_t.backward()
    with fc.use_backend(backend):
        loss, dx, grads = loss_and_grads(model, x, y)
        logits = model(x)
    assert rel_err(logits, logits_t.detach().numpy()) < 1e-10
    assert abs(loss - loss_t.item()) / abs(loss_t.item()) < 1e-10
    assert rel_err(dx, xt.grad.numpy()) < 1e-10
    tparams = dict(tmodel.named_parameters())
    assert set(tparams) == set(grads)
    for name, grad in grads.items():
        assert rel_err(grad, tparams[name].grad.numpy()) < 1e-10, name


def test_to_torch_and_from_torch_round_trip():
    model = every_layer_net(dtype=np.float64).eval()
    tmodel = nn.to_torch(model)
    assert isinstance(tmodel, torch.nn.Sequential) and not tmodel.training
    x = np.random.default_rng(1).standard_normal((3, 2, 8, 8))
    with fc.use_backend("numpy"):
        assert rel_err(tmodel(torch.tensor(x)).detach().numpy(), model(x)) < 1e-12
    state = {k: v.numpy() for k, v in tmodel.state_dict().items()}      # numpy arrays work too
    other = nn.from_torch(state, every_layer_net(dtype=np.float64, rng=5))
    for (n1, v1, _), (n2, v2, _) in zip(model.parameters(), other.parameters()):
        assert n1 == n2 and np.array_equal(v1, v2)
    with pytest.raises(KeyError, match="missing"):
        nn.from_torch({"0.weight": state["0.weight"]}, every_layer_net())
    bad = dict(state, **{"0.bias": np.zeros(4)})
    with pytest.raises(ValueError, match=r"'0.bias' has shape \(4,\).*\(3,\)"):
        nn.from_torch(bad, every_layer_net())


OPTIMIZERS = {
    "sgd_momentum": (lambda p: nn.SGD(p, lr=0.05, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "sgd_nesterov_wd": (lambda p: nn.SGD(p, lr=0.05, momentum=0.8, weight_decay=1e-3, nesterov=True),
                        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, weight_decay=1e-3, nesterov=True)),
    "adam": (lambda p: nn.Adam(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    "adam_wd": (lambda p: nn.Adam(p, lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
                lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_20_steps_match_torch_float32(name):
    make_ours, make_torch = OPTIMIZERS[name]
    model = every_layer_net(dtype=np.float32, rng=3, dropout=0.0).train()
    tmodel = nn.to_torch(model)
    assert next(tmodel.parameters()).dtype == torch.float32
    opt, topt = make_ours(model), make_torch(tmodel.parameters())
    rng = np.random.default_rng(0)
    loss_fn = nn.SoftmaxCrossEntropy()
    losses, tlosses = [], []
    for _ in range(20):
        x = rng.standard_normal((8, 2, 8, 8)).astype(np.float32)
        y = rng.integers(0, 3, 8)
        losses.append(loss_fn(model(x), y))
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
        tloss = F.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(y))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        tlosses.append(tloss.item())
    assert losses[-1] != losses[0]
    assert rel_err(losses, tlosses) < 1e-4, (losses, tlosses)
    tparams = dict(tmodel.named_parameters())
    for pname, value, _ in model.parameters():
        assert rel_err(value, tparams[pname].detach().numpy()) < 1e-3, pname
