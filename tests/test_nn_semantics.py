"""fastconv.nn layers against torch.nn on PyTorch's semantics: padding_mode, ConvTranspose2d's constructor and
weight layout, MaxPool2d's dilation, unbatched (C, H, W) input — forward, dx and parameter gradients."""
import numpy as np
import pytest

import fastconv.nn as fnn

torch = pytest.importorskip("torch")
from torch_helpers import one_torch_thread  # noqa: E402,F401  (the fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _copy_params(layer, module):
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.weight))
        if layer.bias is not None:
            module.bias.copy_(torch.from_numpy(layer.bias))


def _compare(layer, module, x, rng):
    """forward, backward (dx) and the parameter gradients of layer and module on x (batched or not)."""
    tx = torch.from_numpy(x).requires_grad_()
    ty = module(tx)
    y = layer(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-10)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), atol=1e-10)
    for name in ("weight", "bias"):
        if getattr(layer, name, None) is not None:
            np.testing.assert_allclose(getattr(layer, name + "_grad"), getattr(module, name).grad.numpy(), atol=1e-10)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("unbatched", [False, True])
def test_conv2d_padding_mode(mode, unbatched, rng):
    args = (3, 4, (3, 2), (2, 1), (1, 2), 1, 1, True, mode)   # torch's positional order, padding_mode last
    layer, module = fnn.Conv2d(*args, dtype=np.float64), torch.nn.Conv2d(*args).double()
    _copy_params(layer, module)
    x = rng.standard_normal((3, 7, 6) if unbatched else (2, 3, 7, 6))
    _compare(layer, module, x, rng)


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_tiled_and_locally_connected_padding_mode_equal_conv2d(mode, rng):
    conv = fnn.Conv2d(2, 3, 3, 1, 1, padding_mode=mode, dtype=np.float64)
    tiled = fnn.TiledConv2d(2, 3, 3, (1, 1), 1, 1, True, mode, dtype=np.float64)
    local = fnn.LocallyConnected2d(2, 3, 3, (5, 6), 1, 1, True, mode, dtype=np.float64)
    tiled.weight[...] = conv.weight
    local.weight[...] = conv.weight
    tiled.bias[...] = conv.bias
    local.bias[...] = conv.bias[:, None, None]
    x, dy = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((2, 3, 5, 6))
    y, dx = conv(x), conv.backward(dy)
    for layer in (tiled, local):
        np.testing.assert_allclose(layer(x), y, atol=1e-12)
        np.testing.assert_allclose(layer.backward(dy), dx, atol=1e-12)
        np.testing.assert_allclose(layer.weight_grad.sum(axis=(0, 1)), conv.weight_grad, atol=1e-12)


@pytest.mark.parametrize("args", [(4, 6, 3), (4, 6, (3, 2), 2, 1, 1), (4, 6, 3, (2, 3), (1, 0), (1, 2), 2, True, (2, 1)),
                                  (2, 4, 2, 3, 0, 2, 1, False, 2)], ids=str)
@pytest.mark.parametrize("unbatched", [False, True])
def test_conv_transpose2d_matches_torch(args, unbatched, rng):
    # torch.nn.ConvTranspose2d(in, out, kernel, stride, padding, output_padding, groups, bias, dilation)
    layer, module = fnn.ConvTranspose2d(*args, dtype=np.float64), torch.nn.ConvTranspose2d(*args).double()
    assert layer.weight.shape == tuple(module.weight.shape)
    _copy_params(layer, module)
    x = rng.standard_normal((args[0], 5, 4) if unbatched else (2, args[0], 5, 4))
    _compare(layer, module, x, rng)


@pytest.mark.parametrize("args", [dict(kernel_size=3, stride=2, padding=1, dilation=2),
                                  dict(kernel_size=(2, 3), stride=1, dilation=(3, 1), ceil_mode=True),
                                  dict(kernel_size=3, stride=2, ceil_mode=True)], ids=str)
@pytest.mark.parametrize("unbatched", [False, True])
def test_max_pool2d_dilation_and_unbatched(args, unbatched, rng):
    layer, module = fnn.MaxPool2d(**args), torch.nn.MaxPool2d(**args)
    x = rng.standard_normal((3, 9, 8) if unbatched else (2, 3, 9, 8))
    _compare(layer, module, x, rng)


def test_unbatched_avg_pool(rng):
    x = rng.standard_normal((3, 6, 7))
    _compare(fnn.AvgPool2d(3, 2, 1), torch.nn.AvgPool2d(3, 2, 1), x, rng)


def test_from_torch_and_back_keep_padding_mode_and_dilation(rng):
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"),
                                torch.nn.MaxPool2d(2, 1, dilation=2)).double()
    ours = fnn.from_torch(model)
    assert ours[0].padding_mode == "circular" and ours[1].dilation == 2
    x = rng.standard_normal((1, 2, 8, 8))
    np.testing.assert_allclose(ours(x), model(torch.from_numpy(x)).detach().numpy(), atol=1e-10)
    back = fnn.to_torch(ours)
    assert back[0].padding_mode == "circular" and back[1].dilation == 2
