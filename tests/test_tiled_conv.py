"""Tiled and unshared (locally connected) convolution: every backend against the reference, the
identities that define them, finite-difference gradients, and bad weights."""
import numpy as np
import pytest

import fastconv as fc
from _helpers import assert_close
from shapes import TILED_CASES as LOCAL

IDS = [f"x{c[0]}-o{c[1]}-k{c[2]}-s{c[3]}-p{c[4]}-T{c[5]}" for c in LOCAL]


def _make(case, dtype, rng, unshared):
    xs, C_out, k, s, p, T = case
    x = rng.standard_normal(xs).astype(dtype)
    probe = fc.tiled_conv2d(x, np.zeros((1, 1, C_out, xs[1], k, k), dtype), stride=s, padding=p, backend="numpy")
    H_out, W_out = probe.shape[2:]
    grid = (H_out, W_out) if unshared else T
    w = rng.standard_normal(grid + (C_out, xs[1], k, k)).astype(dtype)
    b = rng.standard_normal((C_out, H_out, W_out) if unshared else (C_out,)).astype(dtype)
    dy = rng.standard_normal(probe.shape).astype(dtype)
    return x, w, b, dy, dict(stride=s, padding=p)


@pytest.mark.parametrize("op", ["tiled_conv2d", "unshared_conv2d"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", LOCAL, ids=IDS)
def test_matches_reference(backend, op, dtype, case, rng):
    x, w, b, dy, kw = _make(case, dtype, rng, op == "unshared_conv2d")
    fwd, dgrad, wgrad = (getattr(fc, op + sfx) for sfx in ("", "_input_grad", "_weight_grad"))
    y = fwd(x, w, b, backend=backend, **kw)
    assert y.dtype == dtype
    assert_close(y, fwd(x, w, b, backend="numpy", **kw), dtype)
    assert_close(dgrad(dy, w, x.shape, backend=backend, **kw), dgrad(dy, w, x.shape, backend="numpy", **kw), dtype)
    assert_close(wgrad(x, dy, w.shape, backend=backend, **kw), wgrad(x, dy, w.shape, backend="numpy", **kw), dtype)


@pytest.mark.parametrize("case", LOCAL, ids=IDS)
def test_tile_one_is_conv2d(any_backend, case, rng):
    x, w, b, dy, kw = _make(case, np.float64, rng, False)
    w1 = w[:1, :1]
    assert_close(fc.tiled_conv2d(x, w1, b, backend=any_backend, **kw), fc.conv2d(x, w1[0, 0], b, **kw), np.float64)
    assert_close(fc.tiled_conv2d_input_grad(dy, w1, x.shape, backend=any_backend, **kw),
                 fc.conv2d_input_grad(dy, w1[0, 0], x.shape, **kw), np.float64)
    assert_close(fc.tiled_conv2d_weight_grad(x, dy, w1.shape, backend=any_backend, **kw)[0, 0],
                 fc.conv2d_weight_grad(x, dy, w1.shape[2:], **kw), np.float64)


@pytest.mark.parametrize("case", LOCAL, ids=IDS)
def test_unshared_is_tiled_with_output_sized_grid(any_backend, case, rng):
    x, w, b, dy, kw = _make(case, np.float64, rng, True)
    bias = b[:, 0, 0].copy()
    b_full = np.broadcast_to(bias[:, None, None], b.shape)
    assert_close(fc.unshared_conv2d(x, w, b_full, backend=any_backend, **kw),
                 fc.tiled_conv2d(x, w, bias, backend=any_backend, **kw), np.float64)
    assert_close(fc.unshared_conv2d_weight_grad(x, dy, w.shape, backend=any_backend, **kw),
                 fc.tiled_conv2d_weight_grad(x, dy, w.shape, backend=any_backend, **kw), np.float64)


@pytest.mark.parametrize("op", ["tiled_conv2d", "unshared_conv2d"])
@pytest.mark.parametrize("case", [LOCAL[0], LOCAL[3], LOCAL[5]], ids=[IDS[0], IDS[3], IDS[5]])
def test_gradients_by_finite_differences(any_backend, op, case, rng):
    x, w, b, dy, kw = _make(case, np.float64, rng, op == "unshared_conv2d")
    fwd = getattr(fc, op)
    loss = lambda x_, w_: float(np.sum(fwd(x_, w_, b, backend=any_backend, **kw) * dy))  # noqa: E731
    dx = getattr(fc, op + "_input_grad")(dy, w, x.shape, backend=any_backend, **kw)
    dw = getattr(fc, op + "_weight_grad")(x, dy, w.shape, backend=any_backend, **kw)
    eps = 1e-6
    for arr, grad, is_x in ((x, dx, True), (w, dw, False)):
        for _ in range(6):
            idx = tuple(int(rng.integers(0, n)) for n in arr.shape)
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += eps
            minus[idx] -= eps
            num = (loss(plus, w) - loss(minus, w)) if is_x else (loss(x, plus) - loss(x, minus))
            assert abs(num / (2 * eps) - grad[idx]) < 1e-6 * max(1.0, abs(grad[idx]))


def test_unused_tiles_get_zero_gradient(any_backend, rng):
    x = rng.standard_normal((1, 2, 4, 4))
    w = rng.standard_normal((6, 1, 3, 2, 3, 3))  # only 2 output rows exist
    dy = rng.standard_normal((1, 3, 2, 2))
    dw = fc.tiled_conv2d_weight_grad(x, dy, w.shape, backend=any_backend)
    assert np.all(dw[2:] == 0) and np.any(dw[:2] != 0)


@pytest.mark.parametrize("op", ["tiled_conv2d", "unshared_conv2d"])
def test_bad_weights(op):
    x = np.zeros((2, 3, 6, 6))
    fwd = getattr(fc, op)
    with pytest.raises(ValueError, match="weight: expected a 6-D array"):
        fwd(x, np.zeros((4, 3, 3, 3)))
    grid = (4, 4) if op == "unshared_conv2d" else (2, 2)
    with pytest.raises(ValueError, match="weight: expected C_in = 3"):
        fwd(x, np.zeros(grid + (4, 2, 3, 3)))
    with pytest.raises(ValueError, match="bias"):
        fwd(x, np.zeros(grid + (4, 3, 3, 3)), np.zeros(5))
    with pytest.raises(TypeError, match="weight"):
        fwd(x, np.zeros(grid + (4, 3, 3, 3), np.int32))
    with pytest.raises(ValueError, match="dy"):
        getattr(fc, op + "_input_grad")(np.zeros((2, 4, 3, 3)), np.zeros(grid + (4, 3, 3, 3)), x.shape)
    with pytest.raises(ValueError, match="weight_shape"):
        getattr(fc, op + "_weight_grad")(x, np.zeros((2, 4, 4, 4)), (4, 3, 3, 3))


def test_unshared_grid_must_equal_output():
    with pytest.raises(ValueError, match=r"weight: the kernel grid must equal the output size: expected shape \(4, 4,"):
        fc.unshared_conv2d(np.zeros((1, 3, 6, 6)), np.zeros((2, 2, 4, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"bias: expected shape \(4, 4, 4\)"):
        fc.unshared_conv2d(np.zeros((1, 3, 6, 6)), np.zeros((4, 4, 4, 3, 3, 3)), np.zeros(4))


def test_non_contiguous_inputs(backend, rng):
    x = rng.standard_normal((3, 6, 7, 2)).transpose(0, 3, 1, 2)[:, :, ::1, ::2]
    w = np.asfortranarray(rng.standard_normal((2, 2, 4, 2, 3, 3)))
    assert_close(fc.tiled_conv2d(x, w, padding=1, backend=backend),
                 fc.tiled_conv2d(np.ascontiguousarray(x), np.ascontiguousarray(w), padding=1, backend="numpy"),
                 np.float64)
