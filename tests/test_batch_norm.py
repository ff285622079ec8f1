"""batch_norm2d and batch_norm2d_grad (batch statistics), with and without the fused ReLU: the reference against
an independent naive loop and central differences, every backend against the reference over a sweep of shapes
and both dtypes, the fused ReLU's mask against each backend's own forward, the kernels' independence of the
thread count, NaN, non-contiguous inputs and the argument errors."""
import numpy as np
import pytest

import fastconv as fc
from _helpers import central_diff, num_threads
from shapes import NORM_SHAPES

BACKENDS = fc.available_backends()
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def naive(x, w, b, eps):
    """One channel at a time in plain Python floats: mean, biased variance, y."""
    N, C, H, W = x.shape
    y, mean, inv_std = np.empty(x.shape), np.empty(C), np.empty(C)
    for c in range(C):
        vals = [float(v) for v in x[:, c].ravel()]
        m = sum(vals) / len(vals)
        var = sum((v - m) ** 2 for v in vals) / len(vals)
        mean[c], inv_std[c] = m, 1 / np.sqrt(var + eps)
        y[:, c] = (x[:, c] - m) * inv_std[c] * (1 if w is None else w[c]) + (0 if b is None else b[c])
    return y, mean, inv_std


def _inputs(rng, shape, dtype, offset=0.0):
    C = shape[1]
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 3, (1, C, 1, 1)) + offset).astype(dtype)
    return x, rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype), \
        rng.standard_normal(shape).astype(dtype)


def _close(got, want, dtype, scale):
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale)


@pytest.mark.parametrize("affine", [True, False])
def test_reference_equals_a_naive_loop(affine, rng):
    x, w, b, _ = _inputs(rng, (3, 4, 5, 2), np.float64, offset=2.0)
    w, b = (w, b) if affine else (None, None)
    got = fc.batch_norm2d(x, w, b, eps=1e-3, backend="numpy")
    for g, want in zip(got, naive(x, w, b, 1e-3)):
        np.testing.assert_allclose(g, want, rtol=1e-13, atol=1e-13)


def test_reference_relu_equals_a_naive_loop_then_max(rng):
    x, w, b, _ = _inputs(rng, (3, 4, 5, 2), np.float64, offset=2.0)
    y, mean, inv_std = fc.batch_norm2d(x, w, b, eps=1e-3, relu=True, backend="numpy")
    want = naive(x, w, b, 1e-3)
    assert (y == 0).any() and (y > 0).any()
    for g, ref in zip((y, mean, inv_std), (np.maximum(want[0], 0),) + want[1:]):
        np.testing.assert_allclose(g, ref, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("relu", [False, True])
def test_reference_grad_equals_central_differences(relu, rng):
    """dx, dweight, dbias of L = Σ dy·y, the statistics differentiated too (and the ReLU after them)."""
    x, w, b, dy = _inputs(rng, (2, 3, 3, 2), np.float64)
    loss = lambda: float((fc.batch_norm2d(x, w, b, relu=relu, backend="numpy")[0] * dy).sum())  # noqa: E731
    _, mean, inv_std = fc.batch_norm2d(x, w, b, backend="numpy")
    dx, dw, db = fc.batch_norm2d_grad(dy, x, mean, inv_std, w, b, relu=relu, backend="numpy")
    for got, a in ((dx, x), (dw, w), (db, b)):
        np.testing.assert_allclose(got, central_diff(loss, a, 1e-6), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_backends_equal_the_reference(shape, dtype, backend, relu, rng):
    """Values offset from zero by 20 of their spreads: the variance must not cancel in float32. The fused ReLU's
    forward normalises with the statistics as stored (rounded), as its gradient recomputes it, so its values
    are not offset; where the value before the ReLU is within rounding of 0 a backend may decide either way,
    so dy is zero there and the mask cannot change the gradient."""
    x, w, b, dy = _inputs(rng, shape, dtype, offset=0.0 if relu else 20.0)
    for ww, bb in ((w, b), (None, None)):
        x64, w64, b64 = (None if a is None else a.astype(np.float64) for a in (x, ww, bb))
        want = fc.batch_norm2d(x64, w64, b64, relu=relu, backend="numpy")
        y, mean, inv_std = fc.batch_norm2d(x, ww, bb, relu=relu, backend=backend)
        for got, ref in zip((y, mean, inv_std), want):
            _close(got, ref, dtype, float(np.abs(ref).max()))
        if relu:
            pre = fc.batch_norm2d(x64, w64, b64, backend="numpy")[0]
            dy = np.where(np.abs(pre) < 1e-4 * np.abs(pre).max(), 0, dy).astype(dtype)
        # The gradient at the same (rounded) statistics, scaled by what dx is made of: w·inv_std·|dy|.
        args64 = [a.astype(np.float64) for a in (dy, x, mean, inv_std)]
        ref = fc.batch_norm2d_grad(*args64, w64, b64, relu=relu, backend="numpy")
        got = fc.batch_norm2d_grad(dy, x, mean, inv_std, ww, bb, relu=relu, backend=backend)
        M = x.size // x.shape[1]
        dx_scale = float(np.abs(dy).max() * inv_std.max() * (1 if ww is None else np.abs(ww).max()))
        for g, r, scale in zip(got, ref, (dx_scale, M * np.abs(dy).max(), M * np.abs(dy).max())):
            _close(g, r, dtype, scale)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_grad_masks_exactly_where_the_forward_gave_zero(dtype, backend, rng):
    """Each backend recomputes the forward's value for the mask: the fused gradient is exactly the plain one of
    dy zeroed where its own forward's y <= 0, also for values at the channel's mean (a value before the ReLU
    within rounding of 0) and for channels without weight and bias."""
    _, w, b, dy = _inputs(rng, (4, 6, 5, 5), dtype)
    d = rng.standard_normal((2, 6, 5, 5))
    d[:, :, ::2, ::3] = 0   # values at the mean: channel means are 3 up to the rounding of x
    x = (3 + np.concatenate([d, -d])).astype(dtype)
    b[::2] = 0
    for ww, bb in ((w, b), (None, None)):
        y, mean, inv_std = fc.batch_norm2d(x, ww, bb, relu=True, backend=backend)
        fused = fc.batch_norm2d_grad(dy, x, mean, inv_std, ww, bb, relu=True, backend=backend)
        masked = np.where(y <= 0, 0, dy).astype(dtype)
        for got, want in zip(fused, fc.batch_norm2d_grad(masked, x, mean, inv_std, ww, backend=backend)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", [(8, 96, 4, 4), (3, 5, 40, 40), (16, 300, 2, 2)])
def test_cpp_results_do_not_depend_on_the_thread_count(shape, relu, rng):
    if "cpp" not in BACKENDS:
        pytest.skip("cpp backend unavailable")
    x, w, b, dy = _inputs(rng, shape, np.float32, offset=1.0)
    runs = []
    for n in (1, 2, 3):
        with num_threads(n):
            y, mean, inv_std = fc.batch_norm2d(x, w, b, relu=relu, backend="cpp")
            runs.append((y, mean, inv_std) + fc.batch_norm2d_grad(dy, x, mean, inv_std, w, b, relu=relu, backend="cpp"))
    for run in runs[1:]:
        for a, b_ in zip(run, runs[0]):
            assert np.array_equal(a, b_)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_stays_in_its_channel(backend, relu, rng):
    """The fused ReLU keeps NaN (as torch's relu) and passes dy where y is NaN (as its backward)."""
    x, w, b, dy = _inputs(rng, (2, 3, 4, 4), np.float32)
    x[1, 1, 2, 3] = np.nan
    y, mean, inv_std = fc.batch_norm2d(x, w, b, relu=relu, backend=backend)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all() and np.isnan(mean[1])
    dx = fc.batch_norm2d_grad(dy, x, mean, inv_std, w, b, relu=relu, backend=backend)[0]
    assert np.isnan(dx[:, 1]).all() and np.isfinite(dx[:, [0, 2]]).all()


def test_non_contiguous_inputs(rng):
    x, w, b, dy = _inputs(rng, (3, 4, 6, 5), np.float64)
    xt, dyt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2), dy[:, :, :, ::-1].copy()[:, :, :, ::-1]
    assert not xt.flags.c_contiguous and not dyt.flags.c_contiguous
    y, mean, inv_std = fc.batch_norm2d(xt, w[::-1][::-1], b)
    np.testing.assert_array_equal(y, fc.batch_norm2d(x, w, b)[0])
    np.testing.assert_array_equal(fc.batch_norm2d_grad(dyt, xt, mean, inv_std, w)[0],
                                  fc.batch_norm2d_grad(dy, x, mean, inv_std, w)[0])


def test_empty_batch_and_empty_channels():
    y, mean, inv_std = fc.batch_norm2d(np.zeros((0, 3, 4, 4), np.float32))
    assert y.shape == (0, 3, 4, 4) and np.isnan(mean).all() and np.isnan(inv_std).all()
    y, mean, _ = fc.batch_norm2d(np.zeros((2, 0, 4, 4)))
    assert y.shape == (2, 0, 4, 4) and mean.shape == (0,)
    dx, dw, db = fc.batch_norm2d_grad(np.zeros((0, 3, 2, 2)), np.zeros((0, 3, 2, 2)), np.zeros(3), np.ones(3))
    assert dx.shape == (0, 3, 2, 2) and (dw == 0).all() and (db == 0).all()


@pytest.mark.parametrize("call, error, match", [
    (lambda x: fc.batch_norm2d(x[0]), ValueError, r"^x: expected a 4-D array \(N, C, H, W\), got shape \(3, 4, 4\)"),
    (lambda x: fc.batch_norm2d(x[:1, :, :1, :1]), ValueError, r"^x: expected more than one value per channel"),
    (lambda x: fc.batch_norm2d(x, np.ones(4, np.float32)), ValueError,
     r"^weight: expected shape \(3,\) \(one value per channel\), got \(4,\)"),
    (lambda x: fc.batch_norm2d(x, None, np.ones(3)), TypeError, r"^bias: dtype float64 differs from the input's"),
    (lambda x: fc.batch_norm2d(x, eps=-1), ValueError, r"^eps: expected a number >= 0, got -1.0"),
    (lambda x: fc.batch_norm2d(x.astype(np.int32)), TypeError, r"^x: expected dtype float32 or float64, got int32"),
    (lambda x: fc.batch_norm2d_grad(x[:, :, :2], x, np.zeros(3, np.float32), np.ones(3, np.float32)), ValueError,
     r"^dy: expected shape \(2, 3, 4, 4\) \(same as x\), got \(2, 3, 2, 4\)"),
    (lambda x: fc.batch_norm2d_grad(x, x, np.zeros(2, np.float32), np.ones(3, np.float32)), ValueError,
     r"^mean: expected shape \(3,\)"),
    (lambda x: fc.batch_norm2d_grad(x, x, np.zeros(3, np.float32), np.ones(3, np.float32), None, np.ones(2, np.float32),
                                    relu=True), ValueError, r"^bias: expected shape \(3,\) \(one value per channel\)"),
])
def test_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call(np.ones((2, 3, 4, 4), np.float32))
