"""The ops against PyTorch on the inputs its semantics define beyond plain NCHW batches: unbatched (C, H, W)
inputs, empty batches, ceil_mode windows clipped at the far edge (kernels larger than the input included),
max-pool dilation, unpooling without accumulation and padding_mode — values, switches and gradients, on every
backend."""
import numpy as np
import pytest

import fastconv as fc

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
from torch_helpers import one_torch_thread  # noqa: E402,F401  (the fixture)

MODES = ("reflect", "replicate", "circular")


def T(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def torch_grads(f, arrays, dy):
    """f(*tensors) and the gradients of <f, dy> with respect to each array."""
    ts = [T(a).requires_grad_() for a in arrays]
    out = f(*ts)
    out.backward(T(dy))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


def test_unbatched_conv2d_and_its_gradients(any_backend, rng):
    x, w, b = rng.standard_normal((3, 7, 6)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    geo = dict(stride=(2, 1), padding=1, dilation=(1, 2))
    y = fc.conv2d(x, w, b, **geo, backend=any_backend)
    dy = rng.standard_normal(y.shape)
    ty, (tdx, tdw, _) = torch_grads(lambda x, w, b: F.conv2d(x, w, b, **geo), (x, w, b), dy)
    assert y.shape == ty.shape == (4, 4, 6)
    np.testing.assert_allclose(y, ty, atol=1e-12)
    np.testing.assert_allclose(fc.conv2d_input_grad(dy, w, x.shape, **geo, backend=any_backend), tdx, atol=1e-12)
    np.testing.assert_allclose(fc.conv2d_weight_grad(x, dy, w.shape, **geo, backend=any_backend), tdw, atol=1e-12)


def test_unbatched_conv_transpose2d(any_backend, rng):
    x, w = rng.standard_normal((4, 3, 5)), rng.standard_normal((4, 2, 3, 3))
    y = fc.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, backend=any_backend)
    np.testing.assert_allclose(y, F.conv_transpose2d(T(x), T(w), stride=2, padding=1, output_padding=1), atol=1e-12)


def test_unbatched_pool_and_unpool(any_backend, rng):
    x = rng.standard_normal((3, 8, 7))
    y, sw = fc.max_pool2d(x, 2, backend=any_backend)
    ty, tsw = F.max_pool2d(T(x), 2, return_indices=True)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(sw, tsw)
    out = fc.max_unpool2d(y, sw, x.shape, backend=any_backend)
    np.testing.assert_array_equal(out, F.max_unpool2d(ty, tsw, 2, output_size=x.shape[1:]))


@pytest.mark.parametrize("op", ["tiled_conv2d", "unshared_conv2d"])
def test_unbatched_tiled_and_unshared_are_a_batch_of_one(any_backend, op, rng):
    x = rng.standard_normal((2, 6, 5))
    w = rng.standard_normal((2, 2, 3, 2, 3, 3) if op == "tiled_conv2d" else (6, 5, 3, 2, 3, 3))
    y = getattr(fc, op)(x, w, padding=1, backend=any_backend)
    np.testing.assert_allclose(y, getattr(fc, op)(x[None], w, padding=1, backend="numpy")[0], atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = getattr(fc, op + "_input_grad")(dy, w, x.shape, padding=1, backend=any_backend)
    np.testing.assert_allclose(dx, getattr(fc, op + "_input_grad")(dy[None], w, (1,) + x.shape, padding=1)[0],
                               atol=1e-12)
    dw = getattr(fc, op + "_weight_grad")(x, dy, w.shape, padding=1, backend=any_backend)
    np.testing.assert_allclose(dw, getattr(fc, op + "_weight_grad")(x[None], dy[None], w.shape, padding=1),
                               atol=1e-12)


def test_empty_batch(any_backend):
    x, w = np.zeros((0, 3, 7, 6)), np.ones((4, 3, 3, 3))
    y = fc.conv2d(x, w, np.ones(4), padding=1, backend=any_backend)
    assert y.shape == tuple(F.conv2d(T(x), T(w), padding=1).shape) == (0, 4, 7, 6)
    assert fc.conv2d_input_grad(y, w, x.shape, padding=1, backend=any_backend).shape == x.shape
    dw = fc.conv2d_weight_grad(x, y, w.shape, padding=1, backend=any_backend)
    assert dw.shape == w.shape and not dw.any()
    wt = np.ones((3, 2, 3, 3))
    assert fc.conv_transpose2d(x, wt, stride=2, backend=any_backend).shape == \
        tuple(F.conv_transpose2d(T(x), T(wt), stride=2).shape)
    yp, sw = fc.max_pool2d(x, 3, 2, 1, ceil_mode=True, backend=any_backend)
    assert yp.shape == sw.shape == tuple(F.max_pool2d(T(x), 3, 2, 1, ceil_mode=True).shape)
    assert fc.max_unpool2d(yp, sw, x.shape, backend=any_backend).shape == x.shape
    wl = np.ones((2, 2, 4, 3, 3, 3))
    assert fc.tiled_conv2d(x, wl, backend=any_backend).shape == (0, 4, 5, 4)
    assert not fc.tiled_conv2d_weight_grad(x, np.zeros((0, 4, 5, 4)), wl.shape, backend=any_backend).any()


def test_empty_channels_and_planes_are_refused_in_python():
    # PyTorch refuses these too; the message names the argument instead of reaching a kernel.
    with pytest.raises(ValueError, match=r"^x: expected non-empty \(C, H, W\)"):
        fc.max_pool2d(np.zeros((1, 0, 4, 4)), 2, backend="cpp" if "cpp" in fc.available_backends() else None)
    with pytest.raises(ValueError, match=r"^y: expected non-empty"):
        fc.max_unpool2d(np.zeros((1, 2, 0, 2)), np.zeros((1, 2, 0, 2), np.int64), (1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"^x/weight: empty dimensions other than the batch"):
        fc.conv2d(np.zeros((1, 0, 4, 4)), np.zeros((2, 0, 3, 3)))


# (H, W, kernel, stride, padding, dilation): last windows that start inside the input and reach past it,
# kernels larger than the input, dilated windows whose taps straddle the edge.
CEIL_CASES = [(2, 2, 3, 2, 0, 1), (2, 2, 5, 4, 0, 1), (2, 3, 3, 3, 1, 1), (5, 5, 4, 3, 1, 1), (7, 6, 3, 2, 1, 2),
              (4, 9, (3, 2), (2, 4), (1, 0), (1, 3)), (3, 3, 2, 2, 1, 2), (1, 5, (2, 3), 2, (1, 1), 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CEIL_CASES, ids=str)
def test_ceil_mode_windows_are_clipped_as_in_torch(any_backend, case, dtype, rng):
    H, W, k, s, p, d = case
    x = rng.standard_normal((2, 3, H, W)).astype(dtype)
    y, sw = fc.max_pool2d(x, k, s, p, d, ceil_mode=True, backend=any_backend)
    ty, tsw = F.max_pool2d(T(x), k, s, p, d, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(sw, tsw)


def test_ceil_mode_without_an_output_is_refused_as_in_torch():
    with pytest.raises(RuntimeError):
        F.max_pool2d(torch.zeros(1, 1, 1, 1), 3, 2, ceil_mode=True)
    with pytest.raises(ValueError, match=r"^kernel_size: \(3, 3\) \(dilated\) is larger"):
        fc.max_pool2d(np.zeros((1, 1, 1, 1)), 3, 2, ceil_mode=True)


# (kernel, stride, padding, dilation, ceil_mode) on odd planes
DILATED = [(2, 1, 0, 2, False), (3, 2, 1, 2, False), (5, 1, 2, 3, True), ((2, 3), (1, 2), (1, 0), (3, 1), False),
           (3, 3, 1, (2, 1), True), (1, 1, 0, 4, False)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", DILATED, ids=str)
def test_max_pool2d_dilation_values_switches_and_gradient(any_backend, case, dtype, rng):
    k, s, p, d, ceil = case
    x = rng.standard_normal((2, 3, 11, 9)).astype(dtype)
    x[0, 0, 4:7, 3:6] = 1.0   # ties: the first maximum in row-major window order wins, as in torch
    y, sw = fc.max_pool2d(x, k, s, p, d, ceil_mode=ceil, backend=any_backend)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty, (tdx,) = torch_grads(lambda t: F.max_pool2d(t, k, s, p, d, ceil_mode=ceil), (x,), dy)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(sw, F.max_pool2d(T(x), k, s, p, d, ceil_mode=ceil, return_indices=True)[1])
    np.testing.assert_allclose(fc.max_unpool2d(dy, sw, x.shape, backend=any_backend), tdx, rtol=1e-6, atol=1e-6)


def test_dilation_runs_on_window_scan_and_phase_split_says_why_not(rng):
    if "cpp" not in fc.available_backends():
        pytest.skip("the cpp backend is not built")
    x = rng.standard_normal((1, 2, 9, 9))
    with fc.use_kernel("max_pool2d__window_scan"):
        y, sw = fc.max_pool2d(x, 3, 1, 1, 2, backend="cpp")
    np.testing.assert_array_equal(sw, fc.max_pool2d(x, 3, 1, 1, 2, backend="numpy")[1])
    assert fc.kernel_for("max_pool2d", x, 3, 1, 1, 2).name == "max_pool2d__window_scan"
    with pytest.raises(ValueError, match="dilation 1"), fc.use_kernel("max_pool2d__phase_split"):
        fc.max_pool2d(x, 3, 1, 1, 2, backend="cpp")


def test_unpool_without_accumulation_is_torch_max_unpool(any_backend, rng):
    x = rng.standard_normal((2, 3, 7, 8))
    x[1, 2] = 0.5          # a constant plane: every window picks the same few switches
    _, sw = fc.max_pool2d(x, 3, 1, 1, backend=any_backend)
    y = rng.standard_normal(sw.shape)   # distinct values per duplicate show which one is kept
    out = fc.max_unpool2d(y, sw, x.shape, accumulate=False, backend=any_backend)
    np.testing.assert_array_equal(out, F.max_unpool2d(T(y), T(sw), 3, 1, 1, output_size=x.shape[2:]))
    summed = fc.max_unpool2d(y, sw, x.shape, backend=any_backend)
    assert not np.allclose(out, summed)   # the case does have duplicates


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", [1, (2, 0), ((1, 2), (0, 3)), "same"], ids=str)
def test_conv2d_padding_mode_and_gradients(any_backend, mode, padding, rng):
    x, w, b = rng.standard_normal((2, 2, 6, 7)), rng.standard_normal((3, 2, 3, 2)), rng.standard_normal(3)
    geo = dict(padding=padding, padding_mode=mode)
    y = fc.conv2d(x, w, b, **geo, backend=any_backend)
    (t, bo), (le, r) = ((padding, padding), (padding, padding)) if isinstance(padding, int) else \
        padding if isinstance(padding[0], tuple) else ((padding[0],) * 2, (padding[1],) * 2)
    if padding == "same":
        (t, bo), (le, r) = (1, 1), (0, 1)
    dy = rng.standard_normal(y.shape)
    ty, (tdx, tdw) = torch_grads(lambda x, w: F.conv2d(F.pad(x, (le, r, t, bo), mode=mode), w, T(b)), (x, w), dy)
    np.testing.assert_allclose(y, ty, atol=1e-12)
    np.testing.assert_allclose(fc.conv2d_input_grad(dy, w, x.shape, **geo, backend=any_backend), tdx, atol=1e-12)
    np.testing.assert_allclose(fc.conv2d_weight_grad(x, dy, w.shape, **geo, backend=any_backend), tdw, atol=1e-12)


def test_padding_mode_gradient_by_finite_differences(rng):
    x, w = rng.standard_normal((1, 1, 4, 3)), rng.standard_normal((1, 1, 3, 3))
    dy = rng.standard_normal((1, 1, 4, 3))
    dx = fc.conv2d_input_grad(dy, w, x.shape, padding=1, padding_mode="reflect")
    eps, num = 1e-6, np.empty_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        num[i] = ((fc.conv2d(x + e, w, padding=1, padding_mode="reflect") -
                   fc.conv2d(x - e, w, padding=1, padding_mode="reflect")) * dy).sum() / (2 * eps)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", MODES)
def test_tiled_and_unshared_padding_mode_equal_conv2d_with_shared_kernels(any_backend, mode, rng):
    x, w = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((3, 2, 3, 3))
    geo = dict(stride=2, padding=(1, 2), padding_mode=mode)
    y = fc.conv2d(x, w, **geo, backend="numpy")
    dy = rng.standard_normal(y.shape)
    dx = fc.conv2d_input_grad(dy, w, x.shape, **geo, backend="numpy")
    dw = fc.conv2d_weight_grad(x, dy, w.shape, **geo, backend="numpy")
    for op, grid in (("tiled_conv2d", (1, 1)), ("unshared_conv2d", y.shape[2:])):
        wl = np.broadcast_to(w, grid + w.shape).copy()
        np.testing.assert_allclose(getattr(fc, op)(x, wl, **geo, backend=any_backend), y, atol=1e-12)
        np.testing.assert_allclose(getattr(fc, op + "_input_grad")(dy, wl, x.shape, **geo, backend=any_backend), dx,
                                   atol=1e-12)
        dwl = getattr(fc, op + "_weight_grad")(x, dy, wl.shape, **geo, backend=any_backend)
        np.testing.assert_allclose(dwl.sum(axis=(0, 1)), dw, atol=1e-12)


def test_bad_padding_mode_and_reflect_too_wide():
    with pytest.raises(ValueError, match=r"^padding_mode: expected one of"):
        fc.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), padding=1, padding_mode="mirror")
    with pytest.raises(ValueError, match=r"^padding: 'reflect' padding must be smaller than the input size 4"):
        fc.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), padding=4, padding_mode="reflect")
