"""convolve2d / correlate2d against scipy.signal: boundary, fillvalue, integer, boolean and complex inputs
(result values and dtypes), on every backend, and scipy's own documented examples."""
import numpy as np
import pytest

import fastconv as fc

signal = pytest.importorskip("scipy.signal")

OPS = {"convolve2d": signal.convolve2d, "correlate2d": signal.correlate2d}
BOUNDARIES = ("fill", "wrap", "symm")


def _check(op, image, kernel, *args, backend=None, exact=False):
    got = getattr(fc, op)(image, kernel, *args, backend=backend)
    want = OPS[op](image, kernel, *args)
    assert got.dtype == want.dtype
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        tol = 1e-4 if want.dtype in (np.float32, np.complex64) else 1e-10
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_boundary_and_fillvalue(any_backend, op, mode, boundary, dtype, rng):
    image = rng.standard_normal((7, 6)).astype(dtype)
    for kshape in [(3, 2), (4, 5), (1, 3)]:
        kernel = rng.standard_normal(kshape).astype(dtype)
        _check(op, image, kernel, mode, boundary, backend=any_backend)
        if boundary == "fill":
            _check(op, image, kernel, mode, boundary, 2.5, backend=any_backend)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_kernels_larger_than_the_image_and_valid_swaps(op, boundary, rng):
    small, large = rng.standard_normal((2, 3)), rng.standard_normal((5, 7))
    for mode in ("full", "same"):
        _check(op, small, large, mode, boundary)
    _check(op, small, large, "valid", boundary)   # scipy swaps the inputs; correlate2d then reverses


INT_TYPES = [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", INT_TYPES)
def test_integers_are_exact_in_scipys_dtype(op, dtype, rng):
    info = np.iinfo(dtype)
    image = rng.integers(info.min // 2, info.max // 2, (6, 5), endpoint=True).astype(dtype)  # sums overflow
    kernel = rng.integers(0, 7, (3, 2)).astype(dtype)
    for mode in ("full", "same", "valid"):
        for boundary in BOUNDARIES:
            _check(op, image, kernel, mode, boundary, exact=True)
    _check(op, image, kernel, "full", "fill", 3, exact=True)


def test_mixed_types_follow_numpy_promotion():
    a, k = np.arange(20).reshape(4, 5), np.array([[1, -2], [3, 4]])
    for ta, tk in [(np.uint8, np.int8), (np.int8, np.float32), (np.int64, np.complex64), (np.float32, np.float64),
                   (np.int16, np.int32)]:
        _check("convolve2d", a.astype(ta), k.astype(tk), "same")
    _check("correlate2d", [[1, 2], [3, 4]], [[1]], exact=True)   # Python ints: int64, as scipy


@pytest.mark.parametrize("op", OPS)
def test_booleans_follow_np_convolve(op, rng):
    # scipy refuses bool; np.convolve's rule: True where any product is.
    image, kernel = rng.random((6, 7)) > 0.7, rng.random((2, 3)) > 0.5
    got = getattr(fc, op)(image, kernel, "same", "wrap")
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, OPS[op](image.astype(int), kernel.astype(int), "same", "wrap") > 0)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex(any_backend, op, dtype, rng):
    image = (rng.standard_normal((6, 7)) + 1j * rng.standard_normal((6, 7))).astype(dtype)
    kernel = (rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))).astype(dtype)
    for mode in ("full", "same", "valid"):
        for boundary in BOUNDARIES:
            _check(op, image, kernel, mode, boundary, backend=any_backend)
    _check(op, image, kernel, "same", "fill", 1 - 2j, backend=any_backend)
    _check(op, image.real.copy(), kernel, "full", backend=any_backend)      # real with complex
    _check(op, kernel, image, "valid", backend=any_backend)                 # swapped: conjugation as scipy's


def test_fillvalue_and_boundary_errors():
    with pytest.raises(ValueError, match=r"^fillvalue: .* is complex but the result dtype is float64"):
        fc.convolve2d(np.ones((3, 3)), np.ones((2, 2)), fillvalue=1j)
    with pytest.raises(ValueError, match=r"^fillvalue: 300 does not fit the result dtype int8"):
        fc.convolve2d(np.ones((3, 3), np.int8), np.ones((2, 2), np.int8), fillvalue=300)
    with pytest.raises(ValueError, match=r"^boundary: expected 'fill', 'wrap' or 'symm'"):
        fc.correlate2d(np.ones((3, 3)), np.ones((2, 2)), boundary="reflect")
    with pytest.raises(TypeError, match=r"^image/kernel: expected bool, integer, float32/float64"):
        fc.correlate2d(np.ones((3, 3), np.float16), np.ones((2, 2), np.float16))


def test_scipy_documented_examples(any_backend):
    """The examples of scipy.signal.convolve2d's and correlate2d's docstrings, on a synthetic image in place
    of scipy.datasets.ascent (a download)."""
    yy, xx = np.mgrid[0:40, 0:50]
    ascent = (100 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + 2 * xx + yy).astype(np.float64)
    # convolve2d: the image gradient with a complex Scharr operator, symmetric boundary, 'same'
    scharr = np.array([[-3 - 3j, 0 - 10j, +3 - 3j],
                       [-10 + 0j, 0 + 0j, +10 + 0j],
                       [-3 + 3j, 0 + 10j, +3 + 3j]])
    _check("convolve2d", ascent, scharr, "same", "symm", backend=any_backend)
    # correlate2d: template matching, a template cut from the mean-removed image, symmetric boundary, 'same'
    face = ascent - ascent.mean()
    template = np.copy(face[30:36, 20:26]) - face[30:36, 20:26].mean()
    noisy = face + np.random.default_rng(0).standard_normal(face.shape) * 5
    _check("correlate2d", noisy, template, "same", "symm", backend=any_backend)
    corr = fc.correlate2d(noisy, template, boundary="symm", mode="same", backend=any_backend)
    assert np.unravel_index(np.argmax(corr), corr.shape) == np.unravel_index(
        np.argmax(signal.correlate2d(noisy, template, boundary="symm", mode="same")), corr.shape)
