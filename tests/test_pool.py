"""max_pool2d with switches and max_unpool2d: PyTorch's index convention, ties to the first maximum,
-inf padding, ceil_mode, NaN; unpooling is the finite-difference gradient of pooling."""
import numpy as np
import pytest

import fastconv as fc
from _helpers import (assert_close, distinct, naive_max_pool2d, naive_max_unpool2d, noncontiguous, pool_out,
                      randn)
from shapes import DTYPES, POOL_CASES

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

CASE = pytest.mark.parametrize("case", POOL_CASES, ids=[c["id"] for c in POOL_CASES])
DTYPE = pytest.mark.parametrize("dtype", DTYPES)
FILL = pytest.mark.parametrize("fill", ["randn", "ties", "constant", "-inf", "nan"])
POOL_ARGS = ("kernel_size", "stride", "padding", "ceil_mode")


def _args(case):
    return {k: case[k] for k in POOL_ARGS}


def _x(fill, shape, dtype, rng):
    if fill == "randn":
        return randn(rng, shape, dtype)
    if fill == "ties":  # a handful of levels: most windows hold several copies of their maximum
        return rng.integers(-2, 2, shape).astype(dtype)
    if fill == "constant":
        return np.full(shape, 0.5, dtype)
    x = randn(rng, shape, dtype)
    if fill == "nan":  # a few NaNs (the first in a window wins) among -inf and ties
        u = rng.random(shape)
        x[u < 0.3] = -np.inf
        x[u > 0.97] = np.nan
        return x
    x[rng.random(shape) < 0.8] = -np.inf  # mostly -inf: windows whose real elements are all -inf tie with the padding
    return x


# ---------------------------------------------------------------- every fast backend vs the reference
@CASE
@DTYPE
@FILL
def test_max_pool2d(backend, case, dtype, fill, rng):
    x = _x(fill, case["x"], dtype, rng)
    y, sw = fc.max_pool2d(x, **_args(case), backend=backend)
    y_ref, sw_ref = fc.max_pool2d(x, **_args(case), backend="numpy")
    assert y.dtype == x.dtype and sw.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(sw, sw_ref)


@CASE
@DTYPE
def test_max_unpool2d(backend, case, dtype, rng):
    x = _x("ties", case["x"], dtype, rng)
    _, sw = fc.max_pool2d(x, **_args(case), backend="numpy")
    dy = randn(rng, sw.shape, dtype)
    out = fc.max_unpool2d(dy, sw, x.shape, backend=backend)
    assert_close(out, fc.max_unpool2d(dy.astype(np.float64), sw, x.shape, backend="numpy"), dtype)


# ---------------------------------------------------------------- every backend vs outside truth
@CASE
@FILL
def test_max_pool2d_vs_naive_loop(any_backend, case, fill, rng):
    """Switches are PyTorch's flat h*W + w, the first maximum among real elements in row-major order."""
    x = _x(fill, case["x"], np.float64, rng)
    y, sw = fc.max_pool2d(x, **_args(case), backend=any_backend)
    y_ref, sw_ref = naive_max_pool2d(x, **_args(case))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(sw, sw_ref)
    N, C, H, W = x.shape
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(N, C, H * W), sw.reshape(N, C, -1), 2), y.reshape(N, C, -1))


def test_constant_input_picks_first_real_element(any_backend):
    x = np.ones((1, 1, 4, 4))
    _, sw = fc.max_pool2d(x, 2, backend=any_backend)
    np.testing.assert_array_equal(sw[0, 0], [[0, 2], [8, 10]])
    _, sw = fc.max_pool2d(x, 3, 2, 1, backend=any_backend)  # windows start in the padding
    np.testing.assert_array_equal(sw[0, 0], [[0, 1], [4, 5]])


@DTYPE
def test_planted_ties_go_to_first_maximum(any_backend, dtype):
    x = np.zeros((1, 2, 4, 4), dtype)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = x[0, 0, 1, 1] = 3  # window (0,0): first in row-major order is (0,1)
    x[0, 0, 2, 3] = x[0, 0, 3, 2] = 5                  # window (1,1): (2,3) before (3,2)
    x[0, 1] = -1
    x[0, 1, 1, 1] = x[0, 1, 1, 2] = 7                  # overlapping windows k3 s1: shared tie
    y, sw = fc.max_pool2d(x, 2, backend=any_backend)
    np.testing.assert_array_equal(sw[0, 0], [[1, 2], [8, 11]])
    np.testing.assert_array_equal(y[0, 0], [[3, 0], [0, 5]])
    y, sw = fc.max_pool2d(x[:, 1:], 3, 1, backend=any_backend)
    np.testing.assert_array_equal(sw[0, 0], [[5, 5], [5, 5]])
    np.testing.assert_array_equal(y[0, 0], [[7, 7], [7, 7]])


def test_padding_is_minus_infinity(any_backend, rng):
    x = -1 - np.abs(rng.standard_normal((2, 2, 5, 6)))  # all negative: zero padding would win
    y, sw = fc.max_pool2d(x, 3, 2, 1, backend=any_backend)
    assert (y < 0).all()
    assert sw.min() >= 0 and sw.max() < 30
    y_ref, sw_ref = naive_max_pool2d(x, 3, 2, 1)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(sw, sw_ref)


@pytest.mark.parametrize("hw,k,s,p", [((7, 7), 2, 2, 0), ((8, 6), 3, 2, 1), ((5, 9), (2, 3), (2, 3), (1, 0)),
                                      ((10, 10), 3, 3, 1)])
def test_ceil_mode(any_backend, hw, k, s, p, rng):
    x = distinct(rng, (1, 2) + hw)
    y_floor, _ = fc.max_pool2d(x, k, s, p, backend=any_backend)
    y, sw = fc.max_pool2d(x, k, s, p, ceil_mode=True, backend=any_backend)
    kk, ss, pp = [(v, v) if isinstance(v, int) else v for v in (k, s, p)]
    assert y.shape[2:] == tuple(pool_out(n, a, b, c, True) for n, a, b, c in zip(hw, kk, ss, pp))
    assert y_floor.shape[2:] == tuple(pool_out(n, a, b, c, False) for n, a, b, c in zip(hw, kk, ss, pp))
    assert y.shape[2] >= y_floor.shape[2] and y.shape[3] >= y_floor.shape[3]
    np.testing.assert_array_equal(y[:, :, :y_floor.shape[2], :y_floor.shape[3]], y_floor)
    y_ref, sw_ref = naive_max_pool2d(x, k, s, p, ceil_mode=True)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(sw, sw_ref)


@DTYPE
def test_nan_propagates(any_backend, dtype, rng):
    x = randn(rng, (1, 1, 4, 6), dtype)
    x[0, 0, 1, 3] = np.nan
    y, sw = fc.max_pool2d(x, 2, backend=any_backend)
    assert np.isnan(y[0, 0, 0, 1]) and sw[0, 0, 0, 1] == 1 * 6 + 3
    assert np.isfinite(np.delete(y.ravel(), 1)).all()
    y, sw = fc.max_pool2d(x, 3, 1, 1, backend=any_backend)  # every window covering (1, 3)
    covered = np.zeros((4, 6), bool)
    covered[0:3, 2:5] = True
    assert np.isnan(y[0, 0][covered]).all() and (sw[0, 0][covered] == 9).all()
    assert np.isfinite(y[0, 0][~covered]).all()


POOL_FD = [dict(x=(1, 2, 7, 7), kernel_size=3, stride=2, padding=0, ceil_mode=False),
           dict(x=(2, 1, 8, 6), kernel_size=3, stride=2, padding=1, ceil_mode=True),
           dict(x=(1, 2, 6, 8), kernel_size=(2, 3), stride=1, padding=(1, 1), ceil_mode=False),
           dict(x=(1, 1, 6, 6), kernel_size=2, stride=2, padding=0, ceil_mode=False)]


@pytest.mark.parametrize("geo", POOL_FD, ids=["k3s2", "k3s2p1-ceil", "k2x3s1p1", "k2s2"])
def test_unpool_is_finite_difference_gradient(any_backend, geo, rng):
    """max_unpool2d(dy, switches, x.shape) = d<max_pool2d(x)[0], dy>/dx, overlapping windows included."""
    x = distinct(rng, geo["x"])
    args = {k: geo[k] for k in POOL_ARGS}
    y, sw = fc.max_pool2d(x, **args, backend=any_backend)
    dy = rng.standard_normal(y.shape)
    dx = fc.max_unpool2d(dy, sw, x.shape, backend=any_backend)
    eps, fd = 1e-3, np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        fp = np.sum(fc.max_pool2d(x, **args, backend="numpy")[0] * dy)
        x[idx] = old - eps
        fm = np.sum(fc.max_pool2d(x, **args, backend="numpy")[0] * dy)
        x[idx] = old
        fd[idx] = (fp - fm) / (2 * eps)
    np.testing.assert_allclose(dx, fd, rtol=1e-9, atol=1e-9)
    assert np.abs(dx).max() > 0


@CASE
def test_unpool_vs_naive_scatter(any_backend, case, rng):
    x = _x("ties", case["x"], np.float64, rng)
    _, sw = fc.max_pool2d(x, **_args(case), backend="numpy")
    dy = rng.standard_normal(sw.shape)
    assert_close(fc.max_unpool2d(dy, sw, x.shape, backend=any_backend), naive_max_unpool2d(dy, sw, x.shape), np.float64)


def test_unpool_accumulates_overlaps(any_backend):
    dy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    sw = np.full((1, 1, 2, 2), 4, np.int64)
    out = fc.max_unpool2d(dy, sw, (1, 1, 3, 3), backend=any_backend)
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 10
    np.testing.assert_array_equal(out, expected)


@DTYPE
def test_unpool_kernel_skips_and_counts_switches_outside_the_plane(any_backend, dtype):
    """The range check rides on the kernel's scatter: switches outside the plane are counted, never written
    through, and the others still land (max_unpool2d raises on a nonzero count)."""
    y = np.arange(1, 9, dtype=dtype).reshape(1, 2, 2, 2)
    sw = np.array([[[0, 9], [-1, 4]], [[8, 2**40], [3, -2**62]]], np.int64)[None]
    out = np.full((1, 2, 3, 3), np.nan, dtype)
    assert fc.backends.load(any_backend).max_unpool2d(y, sw, out) == 4
    expected = np.zeros((2, 9), dtype)
    expected[0, 0], expected[0, 4], expected[1, 8], expected[1, 3] = 1, 4, 5, 7
    np.testing.assert_array_equal(out.reshape(2, 9), expected)


@DTYPE
def test_noncontiguous(any_backend, dtype, rng):
    x = _x("ties", (2, 3, 7, 8), dtype, rng)
    y, sw = fc.max_pool2d(x, 3, 2, 1, backend=any_backend)
    yv, swv = fc.max_pool2d(noncontiguous(x), 3, 2, 1, backend=any_backend)
    np.testing.assert_array_equal(yv, y)
    np.testing.assert_array_equal(swv, sw)
    dy = randn(rng, y.shape, dtype)
    np.testing.assert_array_equal(fc.max_unpool2d(noncontiguous(dy), noncontiguous(sw), x.shape, backend=any_backend),
                                  fc.max_unpool2d(dy, sw, x.shape, backend=any_backend))


# ---------------------------------------------------------------- property tests
@st.composite
def pool_geometries(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    hw = tuple(draw(st.integers(max(1, kk - 2 * pp), kk + 7)) for kk, pp in zip(k, p))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + hw
    return dict(x=shape, kernel_size=k, stride=draw(st.sampled_from([s, None])), padding=p,
                ceil_mode=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)),
                fill=draw(st.sampled_from(["randn", "ties"])), seed=draw(st.integers(0, 2**16)))


@given(geo=pool_geometries())
def test_property_pool_matches_reference(backend, geo):
    rng = np.random.default_rng(geo["seed"])
    x = _x(geo["fill"], geo["x"], geo["dtype"], rng)
    args = {k: geo[k] for k in POOL_ARGS}
    y, sw = fc.max_pool2d(x, **args, backend=backend)
    y_ref, sw_ref = fc.max_pool2d(x, **args, backend="numpy")
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(sw, sw_ref)
    dy = randn(rng, y.shape, geo["dtype"])
    assert_close(fc.max_unpool2d(dy, sw, x.shape, backend=backend),
                 fc.max_unpool2d(dy.astype(np.float64), sw, x.shape, backend="numpy"), geo["dtype"])


@given(geo=pool_geometries())
def test_property_reference_vs_naive_loop(geo):
    rng = np.random.default_rng(geo["seed"])
    x = _x(geo["fill"], geo["x"], geo["dtype"], rng)
    args = {k: geo[k] for k in POOL_ARGS}
    y, sw = fc.max_pool2d(x, **args, backend="numpy")
    y_ref, sw_ref = naive_max_pool2d(x, **args)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(sw, sw_ref)
