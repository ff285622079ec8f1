"""Dense convolution: every backend vs the NumPy reference over the shared sweep, and the reference
itself vs outside truth (an independent naive loop, finite differences, the rot180 identity)."""
import numpy as np
import pytest

import fastconv as fc
from _helpers import assert_close, central_diff, naive_conv2d, noncontiguous, randn
from shapes import CONV_ARGS, CONV_CASES, DTYPES, TRANSPOSE_CASES

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

CASE = pytest.mark.parametrize("case", CONV_CASES, ids=[c["id"] for c in CONV_CASES])
TCASE = pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=[c["id"] for c in TRANSPOSE_CASES])
DTYPE = pytest.mark.parametrize("dtype", DTYPES)


def _args(case, keys=CONV_ARGS):
    return {k: case[k] for k in keys}


def _inputs(case, dtype, rng):
    x, w = randn(rng, case["x"], dtype), randn(rng, case["w"], dtype)
    y_shape = fc.conv2d(x, w, **_args(case), backend="numpy").shape
    return x, w, randn(rng, (case["w"][0],), dtype), randn(rng, y_shape, dtype)


def _f64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


# ---------------------------------------------------------------- every fast backend vs the reference
@CASE
@DTYPE
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_conv2d(backend, case, dtype, with_bias, rng):
    x, w, b, _ = _inputs(case, dtype, rng)
    b = b if with_bias else None
    y = fc.conv2d(x, w, b, **_args(case), backend=backend)
    expected = fc.conv2d(*_f64(x, w, b), **_args(case), backend="numpy")
    assert_close(y, expected, dtype)


@CASE
@DTYPE
def test_conv2d_input_grad(backend, case, dtype, rng):
    x, w, _, dy = _inputs(case, dtype, rng)
    dx = fc.conv2d_input_grad(dy, w, x.shape, **_args(case), backend=backend)
    expected = fc.conv2d_input_grad(*_f64(dy, w), x.shape, **_args(case), backend="numpy")
    assert_close(dx, expected, dtype)


@CASE
@DTYPE
def test_conv2d_weight_grad(backend, case, dtype, rng):
    x, w, _, dy = _inputs(case, dtype, rng)
    dw = fc.conv2d_weight_grad(x, dy, w.shape, **_args(case), backend=backend)
    expected = fc.conv2d_weight_grad(*_f64(x, dy), w.shape, **_args(case), backend="numpy")
    assert_close(dw, expected, dtype)


@TCASE
@DTYPE
def test_conv_transpose2d(backend, case, dtype, rng):
    x, w, b = randn(rng, case["x"], dtype), randn(rng, case["w"], dtype), randn(rng, (case["w"][1] * case["groups"],), dtype)
    keys = ("stride", "padding", "output_padding", "dilation", "groups")
    y = fc.conv_transpose2d(x, w, b, **_args(case, keys), backend=backend)
    expected = fc.conv_transpose2d(*_f64(x, w, b), **_args(case, keys), backend="numpy")
    assert_close(y, expected, dtype)


@pytest.mark.parametrize("case", [c for c in CONV_CASES if c["id"] in
                                  ("groups2", "same-stride2-asym", "dilation-asym-stride2", "pad-pair")],
                         ids=lambda c: c["id"])
@DTYPE
def test_noncontiguous_inputs(any_backend, case, dtype, rng):
    """Transposed / strided views give exactly what their contiguous copies give."""
    x, w, b, dy = _inputs(case, dtype, rng)
    xv, wv, bv, dyv = map(noncontiguous, (x, w, b, dy))
    kw = dict(_args(case), backend=any_backend)

    def same(a, b):  # threads may sum in another order, so not bit-for-bit: to the dtype's tolerance
        assert_close(a, b, dtype)

    same(fc.conv2d(xv, wv, bv, **kw), fc.conv2d(x, w, b, **kw))
    same(fc.conv2d_input_grad(dyv, wv, x.shape, **kw), fc.conv2d_input_grad(dy, w, x.shape, **kw))
    same(fc.conv2d_weight_grad(xv, dyv, w.shape, **kw), fc.conv2d_weight_grad(x, dy, w.shape, **kw))
    # conv_transpose2d takes the forward weight layout (C_in of its input = C_out of the conv)
    kw.pop("padding")
    same(fc.conv_transpose2d(dyv, wv, None, **kw), fc.conv_transpose2d(dy, w, None, **kw))
    # a Fortran-ordered input and a negatively strided weight
    same(fc.conv2d(np.asfortranarray(x), w[:, :, ::-1, ::-1], **_args(case), backend=any_backend),
         fc.conv2d(x, w[:, :, ::-1, ::-1].copy(), **_args(case), backend=any_backend))


# ---------------------------------------------------------------- the reference vs outside truth
NAIVE_CASES = [c for c in CONV_CASES
               if np.prod(c["x"][:1]) * np.prod(c["w"]) * np.prod(c["x"][2:]) <= 30000]


@pytest.mark.parametrize("case", NAIVE_CASES, ids=[c["id"] for c in NAIVE_CASES])
def test_conv2d_vs_naive_loop(any_backend, case, rng):
    x, w, b, _ = _inputs(case, np.float64, rng)
    y = fc.conv2d(x, w, b, **_args(case), backend=any_backend)
    assert_close(y, naive_conv2d(x, w, b, **_args(case)), np.float64)


FD_GEOMETRIES = [
    dict(x=(2, 2, 5, 6), w=(3, 2, 3, 3), stride=1, padding=1, dilation=1, groups=1),
    dict(x=(1, 2, 7, 6), w=(2, 2, 3, 2), stride=2, padding=(1, 0), dilation=1, groups=1),
    dict(x=(1, 2, 7, 7), w=(2, 2, 2, 3), stride=1, padding=0, dilation=2, groups=1),
    dict(x=(2, 4, 5, 5), w=(4, 2, 3, 3), stride=1, padding=1, dilation=1, groups=2),
    dict(x=(1, 2, 6, 5), w=(3, 2, 3, 2), stride=1, padding="same", dilation=1, groups=1),
    dict(x=(1, 2, 7, 6), w=(2, 1, 3, 3), stride=2, padding="same", dilation=2, groups=2),
]


@pytest.mark.parametrize("geo", FD_GEOMETRIES, ids=lambda g: f"s{g['stride']}-p{g['padding']}-d{g['dilation']}-g{g['groups']}")
def test_grads_vs_finite_differences(any_backend, geo, rng):
    """Both gradients of L = <conv2d(x, w), dy> by central differences (float64)."""
    args = {k: geo[k] for k in CONV_ARGS}
    x, w = rng.standard_normal(geo["x"]), rng.standard_normal(geo["w"])
    dy = rng.standard_normal(fc.conv2d(x, w, **args, backend="numpy").shape)

    def loss():
        return float(np.sum(fc.conv2d(x, w, **args, backend=any_backend) * dy))

    dx = fc.conv2d_input_grad(dy, w, x.shape, **args, backend=any_backend)
    dw = fc.conv2d_weight_grad(x, dy, w.shape, **args, backend=any_backend)
    np.testing.assert_allclose(dx, central_diff(loss, x), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(dw, central_diff(loss, w), rtol=1e-7, atol=1e-8)
    assert np.abs(dx).max() > 0 and np.abs(dw).max() > 0


@pytest.mark.parametrize("shapes", [((2, 3, 6, 7), (4, 3, 3, 3), 0), ((1, 2, 5, 5), (3, 2, 3, 3), 1),
                                    ((2, 1, 6, 4), (2, 1, 3, 2), (2, 1)), ((1, 3, 4, 4), (2, 3, 1, 1), 0),
                                    ((1, 2, 5, 6), (2, 2, 4, 4), (3, 0))],
                         ids=["k3-p0", "k3-p1", "k3x2-p2x1", "k1", "k4-p3x0"])
@DTYPE
def test_input_grad_is_full_correlation_with_rot180_kernel(any_backend, shapes, dtype, rng):
    """stride 1, dilation 1: dx = conv2d(dy, w^T rotated by 180°, padding = k - 1 - p)."""
    x_shape, w_shape, p = shapes
    ph, pw = (p, p) if isinstance(p, int) else p
    w = randn(rng, w_shape, dtype)
    y_shape = fc.conv2d(np.zeros(x_shape, dtype), w, padding=p, backend="numpy").shape
    dy = randn(rng, y_shape, dtype)
    dx = fc.conv2d_input_grad(dy, w, x_shape, padding=p, backend=any_backend)
    w_rot = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    kH, kW = w_shape[2:]
    expected = fc.conv2d(dy.astype(np.float64), w_rot.astype(np.float64), padding=(kH - 1 - ph, kW - 1 - pw),
                         backend="numpy")
    assert_close(dx, expected, dtype)
    assert_close(fc.conv2d(dy, w_rot, padding=(kH - 1 - ph, kW - 1 - pw), backend=any_backend), expected, dtype)


@pytest.mark.parametrize("case", [c for c in TRANSPOSE_CASES if c["output_padding"] == 0], ids=lambda c: c["id"])
def test_conv_transpose2d_is_input_grad(any_backend, case, rng):
    """Without output_padding, conv_transpose2d(x, w) is conv2d_input_grad(x, w) (plus the bias)."""
    x, w = rng.standard_normal(case["x"]), rng.standard_normal(case["w"])
    b = rng.standard_normal(case["w"][1] * case["groups"])
    keys = ("stride", "padding", "dilation", "groups")
    y = fc.conv_transpose2d(x, w, b, **_args(case, keys), backend=any_backend)
    dx = fc.conv2d_input_grad(x, w, (x.shape[0],) + y.shape[1:], **_args(case, keys), backend=any_backend)
    assert_close(y, dx + b[None, :, None, None], np.float64)
    # and the forward conv2d of that output shape gives back x's shape: the two ops are adjoint
    z = rng.standard_normal(y.shape)
    lhs = np.sum(fc.conv2d(z, w, **_args(case, keys), backend=any_backend) * x)
    np.testing.assert_allclose(lhs, np.sum(z * (y - b[None, :, None, None])), rtol=1e-10)


@DTYPE
def test_nan_and_inf_propagate(any_backend, dtype, rng):
    x = np.abs(randn(rng, (1, 2, 6, 6), dtype)) + 1
    w = np.abs(randn(rng, (2, 2, 3, 3), dtype)) + 1
    x[0, 0, 0, 0] = np.nan
    x[0, 1, 5, 5] = np.inf
    y = fc.conv2d(x, w, padding=1, backend=any_backend)
    nan = np.zeros((6, 6), bool)
    nan[:2, :2] = True
    inf = np.zeros((6, 6), bool)
    inf[4:, 4:] = True
    for o in range(2):
        assert np.isnan(y[0, o][nan]).all()
        assert np.isposinf(y[0, o][inf]).all()
        assert np.isfinite(y[0, o][~nan & ~inf]).all()
    dw = fc.conv2d_weight_grad(x, np.ones_like(y), w.shape, padding=1, backend=any_backend)
    assert np.isnan(dw[:, 0]).any() and not np.isnan(dw[:, 1]).any() and np.isposinf(dw[:, 1]).any()


# ---------------------------------------------------------------- property tests over random geometry
@st.composite
def conv_geometries(draw):
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kH, kW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                             st.sampled_from(["valid", "same", "full"])))
    if padding == "same":
        stride = draw(st.sampled_from([stride, (1, 1)]))
    hw = []
    for i, (k, d) in enumerate(zip((kH, kW), dilation)):
        span = d * (k - 1) + 1
        p = 0 if padding in ("valid",) else (span - 1 if padding == "full" else
                                               0 if padding == "same" else (padding if isinstance(padding, int) else padding[i]))
        hw.append(draw(st.integers(max(1, span - 2 * p), max(1, span - 2 * p) + 6)))
    N = draw(st.integers(1, 2))
    return dict(x=(N, groups * cg, *hw), w=(groups * og, cg, kH, kW), stride=stride, padding=padding,
                dilation=dilation, groups=groups, dtype=draw(st.sampled_from(DTYPES)), seed=draw(st.integers(0, 2**16)))


@given(geo=conv_geometries())
def test_property_conv2d_and_grads_match_reference(backend, geo):
    rng = np.random.default_rng(geo["seed"])
    dtype, args = geo["dtype"], {k: geo[k] for k in CONV_ARGS}
    x, w, b = randn(rng, geo["x"], dtype), randn(rng, geo["w"], dtype), randn(rng, geo["w"][:1], dtype)
    y64 = fc.conv2d(*_f64(x, w, b), **args, backend="numpy")
    assert_close(fc.conv2d(x, w, b, **args, backend=backend), y64, dtype)
    dy = randn(rng, y64.shape, dtype)
    assert_close(fc.conv2d_input_grad(dy, w, x.shape, **args, backend=backend),
                 fc.conv2d_input_grad(*_f64(dy, w), x.shape, **args, backend="numpy"), dtype)
    assert_close(fc.conv2d_weight_grad(x, dy, w.shape, **args, backend=backend),
                 fc.conv2d_weight_grad(*_f64(x, dy), w.shape, **args, backend="numpy"), dtype)


@given(geo=conv_geometries())
def test_property_reference_vs_naive_loop(geo):
    rng = np.random.default_rng(geo["seed"])
    args = {k: geo[k] for k in CONV_ARGS}
    x, w = rng.standard_normal(geo["x"]), rng.standard_normal(geo["w"])
    y = fc.conv2d(x, w, **args, backend="numpy")
    assert_close(y, naive_conv2d(x, w, **args), np.float64)
    # the adjoint identity <conv2d(x), dy> = <x, input_grad(dy)> = <w, weight_grad(x, dy)>
    dy = rng.standard_normal(y.shape)
    ip = np.sum(y * dy)
    np.testing.assert_allclose(np.sum(x * fc.conv2d_input_grad(dy, w, x.shape, **args, backend="numpy")), ip,
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.sum(w * fc.conv2d_weight_grad(x, dy, w.shape, **args, backend="numpy")), ip,
                               rtol=1e-9, atol=1e-9)
