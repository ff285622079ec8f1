"""Asymmetric padding ((top, bottom), (left, right)) and 'causal' padding, on every backend.

The kernels take only (top, left) and the output size, so the outside truth here is the same op with
padding 0 on an input padded explicitly with np.pad (and, for the gradients, that op's gradient cropped
back to the unpadded input).
"""
import numpy as np
import pytest

import fastconv as fc
from fastconv import nn
from _helpers import assert_close, randn
from nn_helpers import check_grads, numeric_grad

DTYPES = [np.float32, np.float64]

# (x shape, weight shape, stride, dilation, groups, ((top, bottom), (left, right)))
DENSE = [
    ((2, 3, 7, 9), (4, 3, 3, 3), 1, 1, 1, ((2, 0), (0, 1))),
    ((1, 2, 6, 11), (3, 2, 2, 3), (2, 1), 1, 1, ((0, 3), (4, 0))),
    ((2, 4, 8, 8), (4, 2, 3, 2), 1, (2, 3), 2, ((1, 2), (3, 0))),
    ((1, 8, 9, 16), (8, 1, 3, 3), 1, 1, 8, ((0, 2), (1, 1))),     # depthwise, full-width rows: in-place reads
    ((1, 8, 9, 16), (8, 1, 5, 5), 1, 1, 8, ((4, 0), (2, 2))),
    ((1, 8, 9, 16), (8, 1, 3, 3), 1, 1, 8, ((1, 1), (2, 0))),
    ((2, 3, 1, 12), (5, 3, 1, 2), 1, (1, 4), 1, ((0, 0), (4, 0))),  # a causal dilated 1-D layer
    ((1, 16, 12, 12), (16, 16, 3, 3), 1, 1, 1, ((0, 2), (2, 0))),   # winograd/implicit-GEMM sized
    ((1, 3, 5, 5), (2, 3, 2, 2), 3, 1, 1, ((5, 0), (0, 6))),        # more padding than kernel: zero windows
]
LOCAL = [
    ((2, 3, 7, 9), (3, 2), 3, 1, ((2, 0), (0, 1))),
    ((1, 2, 6, 11), (2, 3), 2, (2, 1), ((0, 3), (4, 0))),
    ((2, 2, 1, 10), (1, 3), 4, 1, ((0, 0), (2, 0))),
]


def _padded(x, pad):
    (pt, pb), (pl, pr) = pad
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def _crop(a, pad, hw):
    (pt, _), (pl, _) = pad
    return a[:, :, pt:pt + hw[0], pl:pl + hw[1]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", DENSE, ids=[f"dense{i}" for i in range(len(DENSE))])
def test_conv2d_asymmetric_padding_equals_explicit_pad(any_backend, dtype, case):
    x_shape, w_shape, stride, dilation, groups, pad = case
    rng = np.random.default_rng(1)
    x, w, b = randn(rng, x_shape, dtype), randn(rng, w_shape, dtype), randn(rng, w_shape[:1], dtype)
    geo = dict(stride=stride, dilation=dilation, groups=groups, backend=any_backend)
    ref = dict(stride=stride, dilation=dilation, groups=groups, backend="numpy")
    xp = _padded(x, pad)
    y_ref = fc.conv2d(xp, w, b, padding=0, **ref)
    y = fc.conv2d(x, w, b, padding=pad, **geo)
    assert_close(y, y_ref, dtype)
    dy = randn(rng, y.shape, dtype)
    dx = fc.conv2d_input_grad(dy, w, x.shape, padding=pad, **geo)
    assert_close(dx, _crop(fc.conv2d_input_grad(dy, w, xp.shape, padding=0, **ref), pad, x.shape[2:]), dtype)
    dw = fc.conv2d_weight_grad(x, dy, w.shape, padding=pad, **geo)
    assert_close(dw, fc.conv2d_weight_grad(xp, dy, w.shape, padding=0, **ref), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["tiled_conv2d", "unshared_conv2d"])
@pytest.mark.parametrize("case", LOCAL, ids=[f"local{i}" for i in range(len(LOCAL))])
def test_tiled_convs_asymmetric_padding_equal_explicit_pad(any_backend, dtype, op, case):
    x_shape, k, C_out, stride, pad = case
    rng = np.random.default_rng(2)
    x = randn(rng, x_shape, dtype)
    xp = _padded(x, pad)
    H_out = (xp.shape[2] - k[0]) // fc._validate.pair("stride", stride, 1)[0] + 1
    W_out = (xp.shape[3] - k[1]) // fc._validate.pair("stride", stride, 1)[1] + 1
    grid = (2, 2) if op == "tiled_conv2d" else (H_out, W_out)
    w = randn(rng, grid + (C_out, x_shape[1]) + k, dtype)
    b = randn(rng, (C_out,) if op == "tiled_conv2d" else (C_out, H_out, W_out), dtype)
    f, fi, fw = (getattr(fc, op + s) for s in ("", "_input_grad", "_weight_grad"))
    y = f(x, w, b, stride=stride, padding=pad, backend=any_backend)
    assert_close(y, f(xp, w, b, stride=stride, padding=0, backend="numpy"), dtype)
    dy = randn(rng, y.shape, dtype)
    dx = fi(dy, w, x.shape, stride=stride, padding=pad, backend=any_backend)
    assert_close(dx, _crop(fi(dy, w, xp.shape, stride=stride, padding=0, backend="numpy"), pad, x.shape[2:]), dtype)
    dw = fw(x, dy, w.shape, stride=stride, padding=pad, backend=any_backend)
    assert_close(dw, fw(xp, dy, w.shape, stride=stride, padding=0, backend="numpy"), dtype)


def test_causal_padding_is_left_only_along_the_width(any_backend):
    x = randn(np.random.default_rng(3), (1, 2, 3, 10), np.float64)
    w = randn(np.random.default_rng(4), (3, 2, 1, 3), np.float64)
    y = fc.conv2d(x, w, padding="causal", dilation=(1, 2), backend=any_backend)
    assert y.shape == (1, 3, 3, 10)
    assert_close(y, fc.conv2d(x, w, padding=((0, 0), (4, 0)), dilation=(1, 2), backend="numpy"), np.float64)
    assert fc.conv2d(x, w[:, :, :1].repeat(2, 2), padding="CAUSAL").shape == (1, 3, 2, 10)  # no height padding


BAD = [((1, 2), (3,)), ((1, 2), 3), (1, (2, 3)), ((-1, 0), (0, 0)), ((1, 2), (3, 4), (5, 6)), "cause",
       ((1, 2, 3), (0, 0)), [(0, 1), [2]]]


@pytest.mark.parametrize("padding", BAD, ids=[repr(p) for p in BAD])
def test_bad_padding_forms_raise_value_error_naming_padding(padding):
    x, w = np.zeros((1, 2, 6, 6)), np.zeros((3, 2, 3, 3))
    calls = [lambda: fc.conv2d(x, w, padding=padding),
             lambda: fc.conv2d_input_grad(np.zeros((1, 3, 4, 4)), w, x.shape, padding=padding),
             lambda: fc.conv2d_weight_grad(x, np.zeros((1, 3, 4, 4)), w.shape, padding=padding),
             lambda: fc.tiled_conv2d(x, np.zeros((1, 1, 3, 2, 3, 3)), padding=padding),
             lambda: fc.unshared_conv2d(x, np.zeros((4, 4, 3, 2, 3, 3)), padding=padding),
             lambda: nn.Conv2d(2, 3, 3, padding=padding)(x.astype(np.float32))]
    for call in calls:
        with pytest.raises(ValueError, match="padding"):
            call()


def test_conv_transpose2d_refuses_asymmetric_padding():
    for padding in [((1, 0), (0, 1)), "causal"]:
        with pytest.raises(ValueError, match="padding"):
            fc.conv_transpose2d(np.zeros((1, 2, 4, 4)), np.zeros((2, 3, 3, 3)), padding=padding)


# -- a WaveNet-style causal dilated stack ---------------------------------------------------------
DILATIONS = (1, 2, 4, 8)


def causal_stack(channels=3, dtype=np.float64, rng=0):
    """Conv2d(kernel (1, 2), dilation (1, d), padding='causal') + ReLU for d = 1, 2, 4, 8: the receptive
    field is 16 time steps, all of them at or before the output's own step."""
    kw = dict(dtype=dtype, rng=np.random.default_rng(rng))
    layers = []
    for i, d in enumerate(DILATIONS):
        layers += [nn.Conv2d(1 if i == 0 else channels, channels, (1, 2), dilation=(1, d), padding="causal", **kw),
                   nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def left_padded_reference(model, x):
    """The same stack through conv2d on explicitly left-padded inputs (padding 0), numpy backend."""
    a = x
    for layer in model:
        if isinstance(layer, nn.Conv2d):
            d = layer.dilation[1]
            a = fc.conv2d(np.pad(a, ((0, 0), (0, 0), (0, 0), (d, 0))), layer.weight, layer.bias,
                          dilation=(1, d), backend="numpy")
        else:
            a = np.maximum(a, 0)
    return a


def test_causal_dilated_stack_equals_left_padded_reference(any_backend):
    model = causal_stack()
    x = np.random.default_rng(5).standard_normal((2, 1, 1, 40))
    with fc.use_backend(any_backend):
        y = model(x)
    assert y.shape == (2, 3, 1, 40)
    assert_close(y, left_padded_reference(model, x), np.float64)


def test_causal_stack_output_at_t_depends_on_no_later_input():
    model = causal_stack()
    T = 32
    x = np.random.default_rng(6).standard_normal((1, 1, 1, T))
    y = model(x)
    for t in (0, 5, 15, 20, T - 1):
        bumped = x.copy()
        bumped[..., t] += 10.0
        changed = np.nonzero(np.any(model(bumped) != y, axis=(0, 1, 2)))[0]
        assert changed.size and changed.min() >= t, (t, changed)     # nothing before t moves
        assert changed.max() <= t + 15                                # receptive field: 1 + 1 + 2 + 4 + 8


def test_causal_stack_gradients_pass_finite_differences():
    model = causal_stack(channels=2)
    head = nn.Sequential(*model, nn.Flatten(), nn.Linear(2 * 20, 3, dtype=np.float64,
                                                         rng=np.random.default_rng(7))).eval()
    x = np.random.default_rng(8).standard_normal((3, 1, 1, 20))
    check_grads(head, x, np.array([0, 2, 1]), per_param=6)


@pytest.mark.parametrize("padding", ["causal", ((2, 0), (0, 3))])
def test_op_gradients_with_one_sided_padding_pass_finite_differences(any_backend, padding):
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((1, 2, 5, 7)), rng.standard_normal((2, 2, 2, 3))
    geo = dict(padding=padding, dilation=(1, 2), backend=any_backend)
    r = rng.standard_normal(fc.conv2d(x, w, **geo).shape)
    loss = lambda: float(np.sum(r * fc.conv2d(x, w, **geo)))
    dx = fc.conv2d_input_grad(r, w, x.shape, **geo)
    dw = fc.conv2d_weight_grad(x, r, w.shape, **geo)
    for a, g in ((x, dx), (w, dw)):
        for flat in rng.choice(a.size, 10, replace=False):
            idx = np.unravel_index(flat, a.shape)
            assert abs(numeric_grad(loss, a, idx) - g[idx]) < 1e-7


def test_layers_take_asymmetric_padding_and_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    kw = dict(dtype=np.float64, rng=rng)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=((2, 0), (1, 0)), **kw), nn.ReLU(),
                          nn.TiledConv2d(3, 2, 2, tile=2, padding="causal", **kw),
                          nn.LocallyConnected2d(2, 2, (1, 2), input_size=(4, 5), padding=((0, 0), (1, 0)), **kw),
                          nn.Conv2d(2, 2, (1, 2), padding="causal", dilation=(1, 2), **kw)).eval()
    x = rng.standard_normal((2, 2, 5, 6))
    y = model(x)
    assert y.shape == (2, 2, 4, 5)
    with torch.no_grad():
        y_t = nn.to_torch(model)(torch.tensor(x)).numpy()
    assert_close(y, y_t, np.float64)


# -- the compiled kernels' special paths, with one-sided padding ---------------------------------------------
def _one_sided(p):
    """Two asymmetric variants of a symmetric padding p: more after than before, and everything on one side."""
    ph, pw = (p, p) if isinstance(p, int) else p
    return [((ph, ph + 1), (max(pw - 1, 0), pw + 2)), ((0, ph + pw), (ph + pw, 0))]


def _fast_path_cases():
    from test_fast_paths import LANE, TILED
    return [(xs, C_out, k, s, pad, grid) for xs, C_out, k, s, p, grid in TILED + LANE if not isinstance(p, str)
            for pad in _one_sided(p)]


FAST_PATHS = _fast_path_cases()


@pytest.mark.parametrize("op", ["tiled_conv2d", "unshared_conv2d", "conv2d"])
@pytest.mark.parametrize("case", FAST_PATHS, ids=[str(i) for i in range(len(FAST_PATHS))])
def test_special_paths_with_one_sided_padding(backend, op, case):
    """The shapes that enter the C++ kernels' polyphase, lane-weight, register-blocked and GEMM paths."""
    xs, C_out, k, s, pad, grid = case
    rng = np.random.default_rng(11)
    dtype = np.float32
    x = randn(rng, xs, dtype)
    xp = _padded(x, pad)
    s2 = fc._validate.pair("stride", s, 1)
    out_hw = ((xp.shape[2] - k) // s2[0] + 1, (xp.shape[3] - k) // s2[1] + 1)
    if op == "conv2d":
        w, b = randn(rng, (C_out, xs[1], k, k), dtype), randn(rng, (C_out,), dtype)
    else:
        w = randn(rng, (tuple(grid) if op == "tiled_conv2d" else out_hw) + (C_out, xs[1], k, k), dtype)
        b = randn(rng, (C_out,) if op == "tiled_conv2d" else (C_out,) + out_hw, dtype)
    f, fi, fw = (getattr(fc, op + sfx) for sfx in ("", "_input_grad", "_weight_grad"))
    y = f(x, w, b, stride=s, padding=pad, backend=backend)
    assert_close(y, f(xp, w, b, stride=s, padding=0, backend="numpy"), dtype)
    dy = randn(rng, y.shape, dtype)
    dx = fi(dy, w, x.shape, stride=s, padding=pad, backend=backend)
    assert_close(dx, _crop(fi(dy, w, xp.shape, stride=s, padding=0, backend="numpy"), pad, xs[2:]), dtype)
    dw = fw(x, dy, w.shape, stride=s, padding=pad, backend=backend)
    assert_close(dw, fw(xp, dy, w.shape, stride=s, padding=0, backend="numpy"), dtype)


def test_saved_models_keep_their_padding(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, (1, 3), padding="causal", dilation=(1, 2), dtype=np.float64, rng=0),
                          nn.Conv2d(2, 2, 3, padding=((2, 0), (0, 2)), dtype=np.float64, rng=1))
    x = np.random.default_rng(13).standard_normal((1, 1, 5, 9))
    nn.save(model, tmp_path / "m.npz")
    np.testing.assert_array_equal(nn.load(tmp_path / "m.npz")(x), model(x))
    from fastconv.vis import receptive_field
    rf = receptive_field(model)
    assert rf[0]["offset"] == (0, -4) and rf[1]["offset"] == (-2, -4) and rf[1]["size"] == (3, 7)
