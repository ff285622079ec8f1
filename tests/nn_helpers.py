"""Helpers for the fastconv.nn tests: a tiny network holding every layer type, and gradient checks."""
import numpy as np

from fastconv import nn


def every_layer_net(dtype=np.float64, rng=0, dropout=0.5):
    """(2, 8, 8) input -> 3 logits through Conv2d, ReLU, MaxPool2d, TiledConv2d, LocallyConnected2d,
    Flatten, Dropout and Linear."""
    kw = dict(dtype=dtype, rng=np.random.default_rng(rng))
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, **kw), nn.ReLU(), nn.MaxPool2d(2),                 # -> (3, 4, 4)
        nn.TiledConv2d(3, 3, 3, tile=2, padding=1, **kw), nn.ReLU(),                    # -> (3, 4, 4)
        nn.LocallyConnected2d(3, 2, 3, input_size=4, padding=1, **kw), nn.ReLU(),       # -> (2, 4, 4)
        nn.MaxPool2d(2, stride=1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(18, 3, **kw))


def loss_and_grads(model, x, y):
    """Loss, dL/dx and {param name: grad copy} after one forward/backward."""
    loss_fn = nn.SoftmaxCrossEntropy()
    loss = loss_fn(model(x), y)
    dx = model.backward(loss_fn.backward())
    return loss, dx, {name: g.copy() for name, _, g in model.parameters()}


def numeric_grad(f, a, index, eps=1e-6):
    """Central difference of scalar f() in a[index] (a modified in place and restored)."""
    old = a[index]
    a[index] = old + eps
    up = f()
    a[index] = old - eps
    down = f()
    a[index] = old
    return (up - down) / (2 * eps)


def check_grads(model, x, y, per_param=12, seed=0, tol=1e-6, before_forward=None):
    """Compare backprop with central differences at `per_param` random entries of x and of every parameter,
    and along one random direction in all parameters at once (|diff| <= tol·|grad| + 1e-9, the
    1e-9 being central-difference round-off). before_forward() runs before every forward pass (e.g. to
    reseed a Dropout so each pass draws the same mask). Returns the largest relative error (scale floored at 1e-3)."""
    rng = np.random.default_rng(seed)
    loss_fn = nn.SoftmaxCrossEntropy()
    hook = before_forward or (lambda: None)

    def f():
        hook()
        return loss_fn(model(x), y)
    hook()
    _, dx, grads = loss_and_grads(model, x, y)
    worst = 0.0
    for name, value in [("x", x)] + [(n, v) for n, v, _ in model.parameters()]:
        g = dx if name == "x" else grads[name]
        for flat in rng.choice(value.size, min(per_param, value.size), replace=False):
            idx = np.unravel_index(flat, value.shape)
            num = numeric_grad(f, value, idx)
            diff = abs(num - g[idx])
            assert diff <= tol * max(abs(num), abs(g[idx])) + 1e-9, f"{name}{idx}: numeric {num}, backprop {g[idx]}"
            worst = max(worst, diff / max(abs(num), abs(g[idx]), 1e-3))
    params = [v for _, v, _ in model.parameters()]
    direction = [rng.standard_normal(v.shape) for v in params]
    eps = 1e-6

    def shifted(sign):
        for v, d in zip(params, direction):
            v += sign * eps * d
        out = f()
        for v, d in zip(params, direction):
            v -= sign * eps * d
        return out
    num = (shifted(1) - shifted(-1)) / (2 * eps)
    ana = sum(float(np.sum(grads[n] * d)) for (n, _, _), d in zip(model.parameters(), direction))
    err = abs(num - ana) / max(abs(num), abs(ana))
    assert err < tol, f"directional derivative: numeric {num}, backprop {ana}"
    return max(worst, err)


def pool_cnn(channels=(1, 4, 6), side=12, classes=3, rng=0, dtype=np.float64):
    """conv3-relu-pool2 twice, then a linear layer: the small eval-mode CNN the vis tests probe."""
    kw = dict(dtype=dtype, rng=np.random.default_rng(rng))
    c0, c1, c2 = channels
    return nn.Sequential(nn.Conv2d(c0, c1, 3, padding=1, **kw), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(c1, c2, 3, padding=1, **kw), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(c2 * (side // 4) ** 2, classes, **kw)).eval()
