"""The 'numba' backend against the NumPy reference, op by op.

tests/test_conv2d.py, test_pool.py and test_plane.py already sweep the dense ops over every fast backend
(numba included); this file covers every op at least once, and in depth what is numba-specific: the
tiled and unshared kernels (one kernel serves both, T = (H_out, W_out) being unshared), the forward's row
blocks and row phases, the 4×4 microkernel's partial blocks, the stride-1 input-grad path (a forward conv
with the rotated kernel), dtype preservation, determinism across thread counts, and set_num_threads.
"""
import numpy as np
import pytest

pytest.importorskip("numba")

import fastconv as fc  # noqa: E402
from fastconv import backends  # noqa: E402

try:
    NB = backends.load("numba")
except RuntimeError as e:  # numba is installed but the backend failed to import: that is a bug here
    pytest.fail(f"numba is installed but the backend does not import: {e}", pytrace=False)

DTYPES = (np.float64, np.float32)
RTOL = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-10}


def close(actual, expected):
    """Same dtype and shape as the reference; values within the dtype's tolerance (scaled by max |expected|)."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    tol = RTOL[expected.dtype]
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def both(op, *args, **kw):
    """(numba result, numpy result) of fc.<op>."""
    f = getattr(fc, op)
    return f(*args, backend="numba", **kw), f(*args, backend="numpy", **kw)


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# --- dense conv2d: a few cases that hit the microkernel's partial blocks and both input-grad paths --------
DENSE = [
    # id, x shape, w shape, kwargs
    ("3x3-pad1", (2, 3, 7, 6), (5, 3, 3, 3), dict(padding=1)),          # C_out = 5: partial 4-block
    ("stride2-dil2", (1, 4, 11, 13), (6, 4, 3, 2), dict(stride=2, dilation=2, padding=(1, 2))),
    ("groups2-same", (2, 4, 8, 7), (6, 2, 3, 3), dict(padding="same", groups=2)),
    ("depthwise-full", (1, 3, 5, 7), (3, 1, 2, 3), dict(padding="full", groups=3)),
    ("pad-gt-kernel", (2, 2, 4, 3), (3, 2, 2, 2), dict(padding=4)),     # negative pad in the dx path
    ("kernel-eq-input", (3, 2, 5, 4), (2, 2, 5, 4), {}),
    ("1x1-prime", (1, 7, 13, 11), (3, 7, 1, 1), {}),
    # the forward's row blocks: W_out 20 -> rows 32 apart, 8 per task: blocks of 8, 8 and 7 rows
    ("row-blocks", (2, 3, 23, 20), (5, 3, 3, 3), dict(padding=1)),
    ("wide-row", (1, 2, 4, 300), (3, 2, 2, 3), dict(padding=(0, 1))),  # W_out 300 > RB: one row per task
    # row stride 3 with dilation 2: taps in different row phases; 14 output rows in blocks of 8 and 6
    ("stride3-dil2-blocks", (1, 2, 40, 40), (3, 2, 3, 3), dict(stride=(3, 2), dilation=2, padding=(2, 1))),
    ("same-stride2", (1, 2, 9, 10), (4, 2, 4, 3), dict(stride=2, padding="same")),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("xs, ws, kw", [c[1:] for c in DENSE], ids=[c[0] for c in DENSE])
def test_conv2d_family(rng, xs, ws, kw, dtype):
    x, w, b = randn(rng, xs, dtype), randn(rng, ws, dtype), randn(rng, ws[:1], dtype)
    y_nb, y_ref = both("conv2d", x, w, b, **kw)
    close(y_nb, y_ref)
    close(*both("conv2d", x, w, **kw))                  # no bias
    dy = randn(rng, y_ref.shape, dtype)
    close(*both("conv2d_input_grad", dy, w, xs, **kw))
    close(*both("conv2d_weight_grad", x, dy, ws, **kw))


def test_derived_ops_run_on_numba(rng):
    x, w = randn(rng, (2, 4, 5, 6), np.float64), randn(rng, (4, 3, 3, 3), np.float64)
    close(*both("conv_transpose2d", x, w, stride=2, padding=1, output_padding=1))
    img, k = randn(rng, (9, 8), np.float32), randn(rng, (3, 4), np.float32)
    for mode in ("full", "same", "valid"):
        close(*both("convolve2d", img, k, mode))
        close(*both("correlate2d", img, k, mode))


# --- tiled and unshared ----------------------------------------------------------------------------------
TILED = [
    # id, x shape, (T_h, T_w, C_out, kH, kW), stride, padding
    ("T2x3-nondividing", (2, 3, 7, 8), (2, 3, 4, 3, 3), 1, 1),          # 7x8 output, periods 2 and 3
    ("T3x2-stride2", (1, 2, 9, 11), (3, 2, 5, 3, 2), 2, (1, 0)),
    ("T1x1-pad-gt-kernel", (2, 2, 4, 5), (1, 1, 3, 2, 2), 1, 3),
    ("T-gt-output", (1, 2, 4, 4), (5, 6, 2, 3, 3), 1, 0),               # tiles beyond the output get dw = 0
    ("kernel-eq-input", (2, 3, 5, 4), (2, 1, 2, 5, 4), 1, 0),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("xs, ts, stride, padding", [c[1:] for c in TILED], ids=[c[0] for c in TILED])
def test_tiled_conv2d_family(rng, xs, ts, stride, padding, dtype):
    T_h, T_w, C_out, kH, kW = ts
    ws = (T_h, T_w, C_out, xs[1], kH, kW)
    x, w, b = randn(rng, xs, dtype), randn(rng, ws, dtype), randn(rng, (C_out,), dtype)
    kw = dict(stride=stride, padding=padding)
    y_nb, y_ref = both("tiled_conv2d", x, w, b, **kw)
    close(y_nb, y_ref)
    close(*both("tiled_conv2d", x, w, **kw))
    dy = randn(rng, y_ref.shape, dtype)
    close(*both("tiled_conv2d_input_grad", dy, w, xs, **kw))
    dw_nb, dw_ref = both("tiled_conv2d_weight_grad", x, dy, ws, **kw)
    close(dw_nb, dw_ref)
    H_out, W_out = y_ref.shape[2:]
    assert not dw_nb[H_out:].any() and not dw_nb[:, W_out:].any()   # unused tiles are zero, not garbage


UNSHARED = [
    # id, x shape, (C_out, kH, kW), stride, padding
    ("3x3-pad1", (2, 3, 6, 7), (4, 3, 3), 1, 1),
    ("stride2-asym", (1, 2, 9, 8), (3, 2, 3), (2, 1), (0, 2)),
    ("pad-gt-kernel", (2, 1, 3, 4), (2, 2, 2), 1, 3),
    ("1x1", (3, 5, 4, 3), (2, 1, 1), 1, 0),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("xs, ks, stride, padding", [c[1:] for c in UNSHARED], ids=[c[0] for c in UNSHARED])
def test_unshared_conv2d_family(rng, xs, ks, stride, padding, dtype):
    C_out, kH, kW = ks
    x = randn(rng, xs, dtype)
    kw = dict(stride=stride, padding=padding)
    H_out, W_out = fc.conv2d(x, np.zeros((C_out, xs[1], kH, kW), dtype), backend="numpy", **kw).shape[2:]
    ws = (H_out, W_out, C_out, xs[1], kH, kW)
    w, b = randn(rng, ws, dtype), randn(rng, (C_out, H_out, W_out), dtype)
    y_nb, y_ref = both("unshared_conv2d", x, w, b, **kw)
    close(y_nb, y_ref)
    close(*both("unshared_conv2d", x, w, **kw))
    dy = randn(rng, y_ref.shape, dtype)
    close(*both("unshared_conv2d_input_grad", dy, w, xs, **kw))
    close(*both("unshared_conv2d_weight_grad", x, dy, ws, **kw))


def test_tiled_special_cases_match_conv2d_and_unshared(rng):
    x = randn(rng, (2, 3, 7, 6), np.float32)
    w = randn(rng, (4, 3, 3, 3), np.float32)
    b = randn(rng, (4,), np.float32)
    kw = dict(stride=1, padding=1)
    # T = (1, 1) is conv2d
    y = fc.tiled_conv2d(x, w[None, None], b, backend="numba", **kw)
    close(y, fc.conv2d(x, w, b, backend="numba", **kw))
    dy = randn(rng, y.shape, np.float32)
    close(fc.tiled_conv2d_input_grad(dy, w[None, None], x.shape, backend="numba", **kw),
          fc.conv2d_input_grad(dy, w, x.shape, backend="numba", **kw))
    close(fc.tiled_conv2d_weight_grad(x, dy, (1, 1) + w.shape, backend="numba", **kw)[0, 0],
          fc.conv2d_weight_grad(x, dy, w.shape, backend="numba", **kw))
    # T = (H_out, W_out) is unshared (bias broadcast over positions)
    wu = randn(rng, (7, 6, 4, 3, 3, 3), np.float32)
    close(fc.tiled_conv2d(x, wu, b, backend="numba", **kw),
          fc.unshared_conv2d(x, wu, np.broadcast_to(b[:, None, None], (4, 7, 6)), backend="numba", **kw))
    close(fc.tiled_conv2d_weight_grad(x, dy, wu.shape, backend="numba", **kw),
          fc.unshared_conv2d_weight_grad(x, dy, wu.shape, backend="numba", **kw))


# --- pooling ---------------------------------------------------------------------------------------------
POOL = [
    # id, x shape, kernel, stride, padding, ceil_mode
    ("2x2", (2, 3, 6, 8), 2, None, 0, False),
    ("overlap-3s2-pad1-ceil", (1, 2, 8, 7), 3, 2, 1, True),
    ("asym-ceil", (2, 1, 7, 9), (3, 2), (2, 3), (1, 1), True),
    ("kernel-eq-input", (1, 2, 5, 4), (5, 4), 1, 0, False),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("xs, k, s, p, ceil", [c[1:] for c in POOL], ids=[c[0] for c in POOL])
def test_max_pool2d_and_unpool(rng, xs, k, s, p, ceil, dtype):
    x = randn(rng, xs, dtype)
    x[..., 1, :] = x[..., 0, :]                          # ties between rows: the first must win
    (y_nb, sw_nb), (y_ref, sw_ref) = both("max_pool2d", x, k, s, p, ceil_mode=ceil)
    close(y_nb, y_ref)
    assert sw_nb.dtype == np.int64
    np.testing.assert_array_equal(sw_nb, sw_ref)
    close(*both("max_unpool2d", y_ref, sw_ref, xs))      # overlapping windows accumulate


def test_max_pool2d_nan_inf_and_ties():
    x = np.zeros((1, 1, 4, 4))                          # all ties: the first element of each window
    x[0, 0, 2, 3] = np.nan                               # NaN wins its window and propagates
    x[0, 0, 0, 2] = -np.inf
    x[0, 0, 0, 3] = -np.inf
    x[0, 0, 1, 2:] = -np.inf                             # a window of only −inf names its first element
    (y, sw), (y_ref, sw_ref) = both("max_pool2d", x, 2, 2, 0)
    np.testing.assert_array_equal(sw, sw_ref)
    np.testing.assert_array_equal(y, y_ref)
    assert sw[0, 0, 0, 1] == 2 and y[0, 0, 0, 1] == -np.inf
    assert np.isnan(y[0, 0, 1, 1]) and sw[0, 0, 1, 1] == 11
    (y, sw), (y_ref, sw_ref) = both("max_pool2d", x, 3, 1, 1)   # padding is skipped, never chosen
    np.testing.assert_array_equal(sw, sw_ref)
    np.testing.assert_array_equal(y, y_ref)


# --- numba-specific: overwrite semantics, determinism, threads ---------------------------------------------
def test_kernels_overwrite_their_output(rng):
    """The backend functions fill preallocated outputs; garbage already there must not leak in."""
    x, w = randn(rng, (2, 3, 6, 5), np.float64), randn(rng, (4, 3, 3, 3), np.float64)
    y = np.full((2, 4, 4, 3), np.nan)
    NB.conv2d(x, w, None, y, (1, 1), (0, 0), (1, 1), 1)
    close(y, fc.conv2d(x, w, backend="numpy"))
    dx = np.full(x.shape, np.nan)
    NB.conv2d_input_grad(y, w, dx, (1, 1), (0, 0), (1, 1), 1)
    close(dx, fc.conv2d_input_grad(y, w, x.shape, backend="numpy"))
    wt = randn(rng, (2, 2, 4, 3, 3, 3), np.float64)
    dw = np.full(wt.shape, np.nan)
    NB.tiled_conv2d_weight_grad(x, y, dw, (1, 1), (0, 0))
    close(dw, fc.tiled_conv2d_weight_grad(x, y, wt.shape, backend="numpy"))
    out = np.full(x.shape, np.nan)
    yp, sw = fc.max_pool2d(x, 2, backend="numpy")
    NB.max_unpool2d(yp, sw, out)
    close(out, fc.max_unpool2d(yp, sw, x.shape, backend="numpy"))


def test_deterministic_across_thread_counts(rng):
    import numba
    x, w = randn(rng, (3, 4, 9, 9), np.float32), randn(rng, (8, 4, 3, 3), np.float32)
    dy = randn(rng, (3, 8, 5, 5), np.float32)
    kw = dict(stride=2, padding=1)
    old = numba.get_num_threads()
    results = []
    try:
        for n in (1, old):
            NB.set_num_threads(n)
            assert numba.get_num_threads() == n
            results.append([fc.conv2d(x, w, backend="numba", **kw),
                            fc.conv2d_input_grad(dy, w, x.shape, backend="numba", **kw),
                            fc.conv2d_weight_grad(x, dy, w.shape, backend="numba", **kw)])
    finally:
        NB.set_num_threads(old)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_set_num_threads_clamps():
    import numba
    old = numba.get_num_threads()
    try:
        NB.set_num_threads(10 ** 6)
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
        NB.set_num_threads(1)
        assert numba.get_num_threads() == 1
    finally:
        NB.set_num_threads(old)


def test_every_op_in_the_table():
    assert all(callable(getattr(NB, op)) for op in backends.OPS)
