"""Cross-checks against torch.nn.functional: conv2d and its autograd gradients, conv_transpose2d,
max_pool2d indices (PyTorch's convention) and max_unpool2d, on every available backend."""
import numpy as np
import pytest

import fastconv as fc
from _helpers import assert_close, distinct, randn
from shapes import CONV_ARGS, CONV_CASES, DTYPES, POOL_CASES, TRANSPOSE_CASES

torch = pytest.importorskip("torch")
F = torch.nn.functional
from torch_helpers import torch_conv2d  # noqa: E402  (needs torch)

DTYPE = pytest.mark.parametrize("dtype", DTYPES)


def _t(a, grad=False):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


@pytest.mark.parametrize("case", CONV_CASES, ids=[c["id"] for c in CONV_CASES])
@DTYPE
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_conv2d_and_grads_vs_torch_autograd(any_backend, case, dtype, rng):
    args = {k: case[k] for k in CONV_ARGS}
    x, w, b = randn(rng, case["x"], dtype), randn(rng, case["w"], dtype), randn(rng, case["w"][:1], dtype)
    xt, wt, bt = _t(x, True), _t(w, True), _t(b, True)
    yt = torch_conv2d(xt, wt, bt, **args)
    y = fc.conv2d(x, w, b, **args, backend=any_backend)
    assert_close(y, yt.detach().numpy(), dtype)
    dy = randn(rng, y.shape, dtype)
    yt.backward(_t(dy))
    assert_close(fc.conv2d_input_grad(dy, w, x.shape, **args, backend=any_backend), xt.grad.numpy(), dtype)
    assert_close(fc.conv2d_weight_grad(x, dy, w.shape, **args, backend=any_backend), wt.grad.numpy(), dtype)


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=[c["id"] for c in TRANSPOSE_CASES])
@DTYPE
def test_conv_transpose2d_vs_torch(any_backend, case, dtype, rng):
    keys = ("stride", "padding", "output_padding", "dilation", "groups")
    args = {k: case[k] for k in keys}
    x, w = randn(rng, case["x"], dtype), randn(rng, case["w"], dtype)
    b = randn(rng, (case["w"][1] * case["groups"],), dtype)
    y = fc.conv_transpose2d(x, w, b, **args, backend=any_backend)
    assert_close(y, F.conv_transpose2d(_t(x), _t(w), _t(b), **args).numpy(), dtype)


@pytest.mark.parametrize("case", POOL_CASES, ids=[c["id"] for c in POOL_CASES])
@pytest.mark.parametrize("fill", ["distinct", "ties", "-inf"])
def test_max_pool2d_indices_vs_torch(any_backend, case, fill, rng):
    args = {k: case[k] for k in ("kernel_size", "stride", "padding", "ceil_mode")}
    if fill == "distinct":
        x = distinct(rng, case["x"])
    elif fill == "ties":
        x = rng.integers(-2, 2, case["x"]).astype(np.float64)
    else:
        x = rng.standard_normal(case["x"])
        x[rng.random(x.shape) < 0.8] = -np.inf
    y, sw = fc.max_pool2d(x, **args, backend=any_backend)
    yt, it = F.max_pool2d(_t(x), return_indices=True, **args)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(sw, it.numpy())


NON_OVERLAPPING = [c for c in POOL_CASES
                   if all(s >= k for s, k in zip(*[(v, v) if isinstance(v, int) else v
                                                   for v in (c["stride"] or c["kernel_size"], c["kernel_size"])]))]


@pytest.mark.parametrize("case", NON_OVERLAPPING, ids=[c["id"] for c in NON_OVERLAPPING])
@DTYPE
def test_max_unpool2d_vs_torch(any_backend, case, dtype, rng):
    args = {k: case[k] for k in ("kernel_size", "stride", "padding", "ceil_mode")}
    x = distinct(rng, case["x"], dtype)
    y, sw = fc.max_pool2d(x, **args, backend=any_backend)
    out = fc.max_unpool2d(y, sw, x.shape, backend=any_backend)
    yt, it = F.max_pool2d(_t(x), return_indices=True, **args)
    expected = F.max_unpool2d(yt, it, args["kernel_size"], args["stride"], args["padding"], output_size=x.shape[2:])
    assert_close(out, expected.numpy(), dtype)


def test_max_unpool2d_accepts_torch_indices(any_backend, rng):
    """Switches interoperate: indices from torch unpool here exactly as torch's MaxUnpool2d does."""
    x = distinct(rng, (2, 3, 6, 8))
    yt, it = F.max_pool2d(_t(x), 2, return_indices=True)
    out = fc.max_unpool2d(yt.numpy(), it.numpy(), x.shape, backend=any_backend)
    np.testing.assert_array_equal(out, torch.nn.MaxUnpool2d(2)(yt, it, output_size=x.shape).numpy())
