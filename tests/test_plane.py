"""convolve2d / correlate2d: equal to scipy.signal (zero boundary) on every backend, in every mode."""
import numpy as np
import pytest

import fastconv as fc
from _helpers import assert_close, noncontiguous, randn
from shapes import DTYPES, PLANE_CASES

signal = pytest.importorskip("scipy.signal")

CASE = pytest.mark.parametrize("case", PLANE_CASES, ids=[c["id"] for c in PLANE_CASES])
MODE = pytest.mark.parametrize("mode", ["full", "valid", "same"])
OP = pytest.mark.parametrize("op", ["convolve2d", "correlate2d"])
DTYPE = pytest.mark.parametrize("dtype", DTYPES)


def _scipy_ok(case, mode):
    """scipy's 'valid' needs one array at least as large as the other in every dimension."""
    (H, W), (kH, kW) = case["image"], case["kernel"]
    return mode != "valid" or (H >= kH and W >= kW) or (kH >= H and kW >= W)


@CASE
@MODE
@OP
@DTYPE
def test_matches_scipy(any_backend, op, case, mode, dtype, rng):
    if not _scipy_ok(case, mode):
        pytest.skip("scipy rejects this shape pair in 'valid' mode")
    image, kernel = randn(rng, case["image"], dtype), randn(rng, case["kernel"], dtype)
    out = getattr(fc, op)(image, kernel, mode, backend=any_backend)
    expected = getattr(signal, op)(image.astype(np.float64), kernel.astype(np.float64), mode)
    assert_close(out, expected, dtype)


@CASE
@MODE
@OP
@DTYPE
def test_matches_reference(backend, op, case, mode, dtype, rng):
    image, kernel = randn(rng, case["image"], dtype), randn(rng, case["kernel"], dtype)
    out = getattr(fc, op)(image, kernel, mode, backend=backend)
    assert_close(out, getattr(fc, op)(image.astype(np.float64), kernel.astype(np.float64), mode, backend="numpy"), dtype)


@OP
@MODE
def test_noncontiguous(any_backend, op, mode, rng):
    image, kernel = rng.standard_normal((9, 7)), rng.standard_normal((3, 4))
    f = getattr(fc, op)
    expected = f(image, kernel, mode, backend=any_backend)
    assert_close(f(noncontiguous(image), noncontiguous(kernel), mode, backend=any_backend), expected, np.float64)
    assert_close(f(np.asfortranarray(image), kernel[::-1, ::-1][::-1, ::-1], mode, backend=any_backend), expected,
                 np.float64)


def test_default_mode_is_full(any_backend, rng):
    image, kernel = rng.standard_normal((5, 6)), rng.standard_normal((2, 3))
    assert_close(fc.convolve2d(image, kernel, backend=any_backend), signal.convolve2d(image, kernel), np.float64)
    assert_close(fc.correlate2d(image, kernel, backend=any_backend), signal.correlate2d(image, kernel), np.float64)


def test_convolve_is_correlate_with_rotated_kernel(any_backend, rng):
    image, kernel = rng.standard_normal((6, 8)), rng.standard_normal((3, 2))
    for mode in ("full", "valid"):
        assert_close(fc.convolve2d(image, kernel, mode, backend=any_backend),
                     fc.correlate2d(image, kernel[::-1, ::-1], mode, backend="numpy"), np.float64)


@OP
def test_valid_mode_rejects_crossed_shapes(op):
    with pytest.raises(ValueError, match="kernel"):
        getattr(fc, op)(np.zeros((3, 6)), np.zeros((5, 2)), "valid")
