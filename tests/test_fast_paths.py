"""The C++ backend's special paths, each against the NumPy reference on shapes chosen to enter it and
on its edge cases: tiled conv by phases (polyphase input copy, or every phase a strided dense conv;
negative phase padding), the register-blocked direct correlation (single plane, depthwise),
unshared conv in batch-major layout, vectorised switch pooling (stride phases, clipped rows, padding
vectors), the single-plane path and small calls on one thread."""
import numpy as np
import pytest

import fastconv as fc
from _helpers import assert_close, num_threads

pytestmark = pytest.mark.skipif("cpp" not in fc.available_backends(), reason="cpp backend not built")
DTYPES = [np.float32, np.float64]


def _tiled(op, xs, C_out, k, s, p, grid, dtype, rng):
    x = rng.standard_normal(xs).astype(dtype)
    probe = fc.conv2d(x, np.zeros((C_out, xs[1], k, k), dtype), stride=s, padding=p, backend="numpy")
    if op == "unshared_conv2d":
        grid = probe.shape[2:]
    w = rng.standard_normal(tuple(grid) + (C_out, xs[1], k, k)).astype(dtype)
    b_shape = (C_out,) + probe.shape[2:] if op == "unshared_conv2d" else (C_out,)
    return x, w, rng.standard_normal(b_shape).astype(dtype), rng.standard_normal(probe.shape).astype(dtype)


def _check_tiled(op, case, dtype, rng):
    xs, C_out, k, s, p, grid = case
    x, w, b, dy = _tiled(op, xs, C_out, k, s, p, grid, dtype, rng)
    kw = dict(stride=s, padding=p)
    fwd, dgrad, wgrad = (getattr(fc, op + sfx) for sfx in ("", "_input_grad", "_weight_grad"))
    assert_close(fwd(x, w, b, backend="cpp", **kw), fwd(x, w, b, backend="numpy", **kw), dtype)
    assert_close(dgrad(dy, w, x.shape, backend="cpp", **kw), dgrad(dy, w, x.shape, backend="numpy", **kw), dtype)
    assert_close(wgrad(x, dy, w.shape, backend="cpp", **kw), wgrad(x, dy, w.shape, backend="numpy", **kw), dtype)


def _check_dense(xs, C_out, k, s, p, d, groups, dtype, threads, rng):
    """conv2d and both gradients on the cpp backend against the float64 reference, on `threads` threads."""
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((C_out, xs[1] // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(C_out).astype(dtype)
    kw_ = dict(stride=s, padding=p, dilation=d, groups=groups)
    ref = lambda f, *a: f(*(v.astype(np.float64) if isinstance(v, np.ndarray) else v for v in a), **kw_, backend="numpy")
    y = ref(fc.conv2d, x, w, b)
    dy = rng.standard_normal(y.shape).astype(dtype)
    with num_threads(threads):
        assert_close(fc.conv2d(x, w, b, **kw_, backend="cpp"), y, dtype)
        assert_close(fc.conv2d_input_grad(dy, w, x.shape, **kw_, backend="cpp"), ref(fc.conv2d_input_grad, dy, w, x.shape), dtype)
        assert_close(fc.conv2d_weight_grad(x, dy, w.shape, **kw_, backend="cpp"), ref(fc.conv2d_weight_grad, x, dy, w.shape), dtype)


# Tiled shapes whose phases have >= 16 positions (polyphase copy, per-phase weight-grad GEMMs): uneven
# phases, strides, padding larger than a phase offset (negative phase padding), 'same', tile 1 x T.
TILED = [
    ((2, 3, 16, 16), 4, 3, 1, 1, (2, 2)),
    ((3, 2, 19, 13), 5, 3, 1, 0, (2, 3)),
    ((2, 4, 23, 21), 3, 5, 2, 2, (2, 2)),
    ((1, 1, 20, 20), 2, 3, 1, "same", (1, 2)),
    ((2, 3, 30, 12), 6, 2, (2, 1), (0, 1), (3, 1)),
    ((2, 16, 16, 16), 16, 3, 1, 1, (2, 2)),
    ((1, 2, 11, 13), 3, 3, 1, 4, (2, 2)),
    ((1, 1, 9, 9), 2, 9, 1, 4, (2, 2)),
    ((2, 3, 40, 37), 4, 4, 3, 2, (2, 2)),
    ((1, 2, 29, 31), 3, 5, (1, 2), (3, 1), (3, 2)),
]


# 1 thread and 8: how the polyphase passes and the per-phase weight-grad GEMMs split their tasks
# depends on the thread count.
@pytest.mark.parametrize("threads", [1, 8])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TILED, ids=[str(i) for i in range(len(TILED))])
def test_tiled_phases(case, dtype, threads, rng):
    with num_threads(threads):
        _check_tiled("tiled_conv2d", case, dtype, rng)


# Tiled conv with lane-varying weights (tiled_implicit.cpp): tile widths 1, 2, 4, 8, 16 (those dividing the
# vector width take the path; 16 in float64 and 3 do not), tile heights 1..3 with rows of one class per
# register tile, a partial last vector, one image (row blocks per task), K over one 512-deep block,
# stride 2 (forward only) and padding beyond the kernel (input gradient falls back).
LANE = [
    ((2, 3, 16, 16), 4, 3, 1, 1, (2, 2)),
    ((1, 5, 29, 29), 7, 3, 1, 1, (3, 4)),
    ((2, 2, 20, 32), 3, 5, 1, 2, (1, 8)),
    ((1, 3, 18, 18), 5, 3, 1, 0, (2, 16)),
    ((2, 4, 20, 63), 6, 3, 2, 1, (2, 1)),
    ((1, 60, 14, 14), 5, 3, 1, 1, (2, 2)),
    ((1, 2, 12, 12), 3, 3, 1, 3, (2, 2)),
    ((1, 2, 16, 16), 3, 3, 1, 1, (1, 3)),
    ((1, 130, 10, 16), 4, 3, 1, 1, (2, 2)),  # K = 1170: two K blocks
]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LANE, ids=[str(i) for i in range(len(LANE))])
def test_tiled_lane_weights(case, dtype, threads, rng):
    with num_threads(threads):
        _check_tiled("tiled_conv2d", case, dtype, rng)


# Switch pooling: stride 1..3, kernels wider than the stride, padding, outputs not a multiple of the
# vector width, ties (integer-valued inputs) and NaN.
POOL = [((2, 3, 32, 32), 2, 2, 0), ((2, 3, 32, 32), 3, 2, 1), ((1, 2, 37, 41), 3, 1, 1), ((2, 2, 17, 50), 3, 3, 0),
        ((1, 1, 9, 70), (2, 3), (1, 2), (1, 1)), ((1, 2, 5, 5), 5, 1, 2), ((1, 1, 40, 3), 2, 1, 0)]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL, ids=[str(i) for i in range(len(POOL))])
def test_pool_paths(case, dtype, ties, rng):
    xs, k, s, p = case
    x = rng.standard_normal(xs)
    x = (np.round(x * 2) if ties else x).astype(dtype)
    if not ties:
        x.flat[rng.integers(0, x.size, 3)] = np.nan
    y, sw = fc.max_pool2d(x, k, s, p, backend="cpp")
    y_ref, sw_ref = fc.max_pool2d(x, k, s, p, backend="numpy")
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(sw, sw_ref)
    out = fc.max_unpool2d(y_ref, sw_ref, x.shape, backend="cpp")
    np.testing.assert_array_equal(np.nan_to_num(out), np.nan_to_num(fc.max_unpool2d(y_ref, sw_ref, x.shape, backend="numpy")))


# Unshared conv (batch-major path): batches above and below one 32-image vector block, odd batch
# splits between threads, padding beyond the kernel, strides, rectangular kernels' positions.
UNSHARED = [
    ((64, 4, 8, 8), 5, 3, 1, 1, None),
    ((37, 3, 9, 7), 4, 3, 2, 2, None),
    ((1, 2, 6, 6), 3, 2, 1, 0, None),
    ((9, 1, 10, 5), 2, 4, (1, 2), (3, 0), None),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", UNSHARED, ids=[str(i) for i in range(len(UNSHARED))])
def test_unshared_batch_major(case, dtype, rng):
    _check_tiled("unshared_conv2d", case, dtype, rng)


# Implicit GEMM (implicit_conv.cpp): output widths whose last vector is partial (13, 29, 30; 7 in float64),
# strides (phase-split copy), dilation, asymmetric 'same' padding, groups, C_out not a multiple of the
# 8-row tile, K over one 256-deep block (C_g·kH·kW = 288, 320), odd vector counts, one image (row blocks
# per task) and the input gradient taken as the forward conv of dy (stride 1, C_in/g >= 16), on 1 and 3
# threads; the row layout (whole vectors per output row) and the flat one.
IMPLICIT = [
    # x shape, C_out, k, stride, padding, dilation, groups
    ((2, 3, 32, 32), 32, 5, 1, 2, 1, 1),
    ((1, 5, 15, 13), 13, 3, 1, 1, 1, 1),
    ((2, 32, 16, 16), 20, 3, 1, 1, 1, 1),
    ((1, 16, 29, 30), 17, 3, 1, 2, 2, 1),
    ((2, 3, 61, 60), 8, 7, 2, 3, 1, 1),
    ((1, 4, 31, 45), 9, (3, 5), (2, 3), (1, 2), (2, 1), 1),
    ((2, 32, 14, 16), 16, (4, 2), 1, "same", 1, 2),
    ((1, 20, 7, 16), 5, (1, 16), 1, (0, 7), 1, 1),
    ((3, 64, 9, 15), 64, (1, 5), 1, (0, 1), (1, 2), 4),
    ((1, 2, 40, 35), 3, 5, (3, 1), 0, 1, 1),
    # flat layout (vectors over the flattened plane, stores split across two rows): widths 56, 20, 21
    # (stride 2), 40 (dilation 2, C_in = 16 so the input gradient takes it too), 9 in float64
    ((2, 8, 20, 56), 12, 3, 1, 1, 1, 1),
    ((1, 6, 23, 20), 9, 3, 1, 1, 1, 1),
    ((2, 4, 41, 41), 5, 3, 2, 1, 1, 1),
    ((1, 16, 12, 40), 16, 3, 1, 2, 2, 1),
    ((2, 3, 9, 9), 4, 3, 1, 1, 1, 1),
    # taps skipped where a tile's rows read only padding: the valid range starting inside the first or a
    # later K block (which then initialises the tile), and rows that read nothing but padding; K over one
    # block (FASTCONV_IMPLICIT_KC): 1296 and 1568 in two blocks, one kernel row in range per output row
    ((1, 64, 6, 16), 8, 3, 1, 1, 1, 1),
    ((1, 144, 6, 16), 8, 3, 1, 1, 1, 1),
    ((1, 32, 1, 16), 5, 7, 1, (6, 3), 1, 1),
    ((2, 24, 1, 16), 5, 7, 1, 3, 1, 1),
    ((1, 2, 3, 16), 3, 2, 1, 3, 1, 1),
]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", IMPLICIT, ids=[str(i) for i in range(len(IMPLICIT))])
def test_implicit_gemm(case, dtype, threads, rng):
    _check_dense(*case, dtype, threads, rng)


# Dense weight grad (conv2d.cpp): column parts of dW per task, position slices when dW has few columns
# (K = C_in/g·kH·kW under a few slivers: S1/S6-like first layers), items split inside and across images
# (HW_out above and below one item of 1024 positions), K and C_out not multiples of the tile, prime
# sizes, padding beyond the kernel, kernel = input, stride/dilation, groups, pointwise, N = 1.
WGRAD = [
    # x shape, C_out, k, stride, padding, dilation, groups
    ((4, 3, 32, 32), 32, 5, 1, 2, 1, 1),
    ((3, 3, 33, 31), 16, 7, 2, 3, 1, 1),
    ((1, 5, 17, 19), 7, 3, 1, 1, 1, 1),
    ((2, 13, 11, 13), 11, (3, 2), (2, 1), (4, 3), (1, 2), 1),
    ((2, 40, 9, 9), 37, 3, 1, 1, 2, 1),
    ((2, 6, 7, 7), 8, 7, 1, 0, 1, 2),
    ((3, 8, 5, 5), 12, 3, 1, 5, 1, 4),
    ((2, 24, 16, 20), 40, 1, 1, 0, 1, 1),
    ((1, 3, 23, 29), 5, 2, 3, 0, 1, 1),
    ((2, 3, 45, 47), 9, 3, 1, 1, 1, 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", WGRAD, ids=[str(i) for i in range(len(WGRAD))])
def test_weight_grad_paths(case, dtype, rng):
    xs, C_out, k, s, p, d, g = case
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((C_out, xs[1] // g, kh, kw)).astype(dtype)
    kw_ = dict(stride=s, padding=p, dilation=d, groups=g)
    dy = rng.standard_normal(fc.conv2d(x, w, **kw_, backend="numpy").shape).astype(dtype)
    want = fc.conv2d_weight_grad(x.astype(np.float64), dy.astype(np.float64), w.shape, **kw_, backend="numpy")
    assert_close(fc.conv2d_weight_grad(x, dy, w.shape, **kw_, backend="cpp"), want, dtype)


@pytest.mark.parametrize("case", [WGRAD[0], WGRAD[4]], ids=["slices", "parts"])
def test_weight_grad_thread_independent(case, rng):
    """dw is bit-identical for 1, 2 and 3 threads (slices depend on the problem only)."""
    xs, C_out, k, s, p, d, g = case
    x = rng.standard_normal(xs).astype(np.float32)
    w_shape = (C_out, xs[1] // g, k, k)
    kw_ = dict(stride=s, padding=p, dilation=d, groups=g)
    dy = rng.standard_normal(fc.conv2d(x, np.zeros(w_shape, np.float32), **kw_, backend="numpy").shape).astype(np.float32)
    outs = []
    for t in (1, 2, 3):
        with num_threads(t):
            outs.append(fc.conv2d_weight_grad(x, dy, w_shape, **kw_, backend="cpp"))
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


@pytest.mark.parametrize("xs, C_out", [((8, 96, 2, 2), 160), ((4, 64, 4, 4), 24), ((2, 40, 4, 4), 300)],
                         ids=["rows", "columns", "wide-dw"])
def test_pointwise_folded_is_thread_independent(xs, C_out, rng):
    """The batch-folded 1x1 kernels (forced: 'auto' may take another at narrow vectors) split rows or columns
    of their GEMMs by the thread count: every op is bit-identical for 1, 2 and 3 threads."""
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal((C_out, xs[1], 1, 1)).astype(np.float32)
    dy = rng.standard_normal((xs[0], C_out) + xs[2:]).astype(np.float32)
    calls = {"conv2d": lambda: fc.conv2d(x, w, backend="cpp"),
             "conv2d_input_grad": lambda: fc.conv2d_input_grad(dy, w, xs, backend="cpp"),
             "conv2d_weight_grad": lambda: fc.conv2d_weight_grad(x, dy, w.shape, backend="cpp")}
    for op, call in calls.items():
        outs = []
        for t in (1, 2, 3):
            with num_threads(t), fc.use_kernel(op + "__pointwise_folded"):
                outs.append(call())
        np.testing.assert_array_equal(outs[0], outs[1])
        np.testing.assert_array_equal(outs[0], outs[2])
    assert_close(outs[0], fc.conv2d_weight_grad(x.astype(np.float64), dy.astype(np.float64), w.shape,
                                                backend="numpy"), np.float32)


@pytest.mark.parametrize("op, w_shape", [("conv2d_weight_grad", (3, 64, 3, 3)),
                                         ("tiled_conv2d_weight_grad", (2, 2, 3, 64, 3, 3))])
def test_weight_grad_image_chunks(op, w_shape, rng):
    """Input copies over 64 MiB (20 images of 64 x 128 x 128) are built a chunk of images at a time (dense
    conv, and tiled conv with every phase one GEMM over the chunk): the result still matches the
    reference and is bit-identical for 1 and 3 threads."""
    x = rng.standard_normal((20, 64, 128, 128)).astype(np.float32)
    dy = rng.standard_normal((20, 3, 128, 128)).astype(np.float32)
    f = getattr(fc, op)
    outs = []
    for t in (1, 3):
        with num_threads(t):
            outs.append(f(x, dy, w_shape, padding=1, backend="cpp"))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert_close(outs[0], f(x, dy, w_shape, padding=1, backend="numpy"), np.float32)


# The register-blocked direct correlation (direct.h) of a single plane: sizes around the 4-row block and
# the 4-vector column block (odd, prime, one row/column), kernel = input, kernel larger than the input
# in 'same'/'full', even kernels; run on 1 thread (one task per plane) and 3 (bands of rows).
PLANE = [((512, 512), (9, 9)), ((37, 71), (5, 3)), ((1, 1), (1, 1)), ((7, 7), (7, 7)), ((3, 5), (6, 8)),
         ((97, 131), (2, 4)), ((5, 200), (1, 9)), ((67, 17), (11, 1)), ((40, 64), (3, 3))]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("case", PLANE, ids=[str(i) for i in range(len(PLANE))])
def test_plane_direct(case, mode, dtype, threads, rng):
    (H, W), (kh, kw) = case
    if mode == "valid" and (kh > H or kw > W):
        pytest.skip("'valid' needs the kernel to fit")
    image, kernel = rng.standard_normal((H, W)).astype(dtype), rng.standard_normal((kh, kw)).astype(dtype)
    with num_threads(threads):
        for op in (fc.correlate2d, fc.convolve2d):
            want = op(image.astype(np.float64), kernel.astype(np.float64), mode, backend="numpy")
            assert_close(op(image, kernel, mode, backend="cpp"), want, dtype)


# Depthwise (one input channel per group) at stride 1 enters the direct kernel in the forward and the
# input gradient (strided columns the phase-split forward, last cases): padding > kernel, dilation along columns only (rows dilated fall back), N = 1,
# channel multipliers 1..3, fewer planes than threads; 3x3 and 5x5 at dilation 1 (the aligned-row kernel).
DEPTHWISE = [((1, 1, 33, 45), 1, 5, 1, 2, 1), ((2, 3, 17, 19), 3, 3, 1, 4, 1), ((1, 2, 9, 31), 6, 3, 1, 1, (1, 2)),
             ((3, 4, 12, 12), 8, 3, 1, 0, (2, 1)), ((2, 5, 32, 32), 5, (3, 5), 1, (1, 2), 1),
             ((1, 1, 6, 6), 3, 7, 1, 3, 1), ((2, 3, 20, 20), 3, 3, 2, 1, 1),
             # 3x3 and 5x5 take the aligned-row kernel: whole column blocks and a partial one, multipliers 1, 2
             ((2, 3, 21, 37), 3, 5, 1, 2, 1), ((1, 2, 9, 70), 2, 3, 1, 1, 1), ((2, 2, 15, 40), 4, 3, 1, 1, 1),
             ((3, 2, 7, 16), 2, 3, 1, 0, 1),
             # 3x3 and 5x5 'same' columns on rows of whole vectors (widths of 16, 32, 48 and 80 are whole
             # vectors for every vector width) read the plane in place: column blocks with a real or a zero
             # neighbour on either side, padded rows above and below skipped, rows padded unlike columns
             ((2, 3, 13, 80), 3, 3, 1, 1, 1), ((1, 2, 11, 48), 2, 5, 1, 2, 1), ((2, 2, 9, 32), 4, 3, 1, (2, 1), 1),
             ((1, 3, 10, 16), 3, 3, 1, (0, 1), 1),
             # strided columns split the padded plane into column phases (outputs rows of 16 or more, a vector
             # at every width): strides 2, 3 and (1, 2), column dilation 2 (one phase, or all three), N = 1
             ((2, 3, 9, 40), 3, 3, 2, 1, 1), ((1, 2, 7, 50), 4, 3, 3, 1, 2), ((2, 2, 6, 37), 2, 5, (1, 2), 2, 1),
             ((1, 1, 5, 70), 1, (2, 3), 2, (0, 1), (1, 2))]


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", DEPTHWISE, ids=[str(i) for i in range(len(DEPTHWISE))])
def test_depthwise_direct(case, dtype, threads, rng):
    _check_dense(*case, groups=case[0][1], dtype=dtype, threads=threads, rng=rng)


# Depthwise weight gradient at stride 1 (vector accumulator per tap): the 3x3 row-walking kernel and the
# tap-block kernel (kernels of 1..25 taps, more than one block), output widths below, at and around the
# vector width (partial last vectors), dilation in both axes, padding beyond the kernel, multipliers 1..3,
# N = 1, prime sizes; strided shapes still take the dot-product path.
DW_WGRAD = [
    # x shape, C_out, k, stride, padding, dilation
    ((1, 3, 7, 5), 3, 3, 1, 1, 1), ((2, 4, 17, 16), 8, 3, 1, 1, 1), ((3, 2, 13, 33), 6, 3, 1, 2, (2, 3)),
    ((1, 5, 31, 37), 5, 5, 1, 2, 1), ((2, 3, 11, 19), 9, (2, 7), 1, (0, 3), 1), ((1, 2, 8, 40), 2, 1, 1, 0, 1),
    ((2, 2, 9, 9), 4, (1, 13), 1, (0, 6), 1), ((1, 1, 5, 3), 1, 5, 1, 4, 1), ((2, 3, 23, 29), 3, 3, 2, 1, 1),
    ((1, 2, 19, 21), 2, 3, (1, 2), 1, 1),
    # 3x3 at column dilation 1: the aligned-row kernel, rows of whole vectors plus a partial one
    ((2, 3, 12, 37), 3, 3, 1, 1, 1), ((1, 2, 11, 20), 4, 3, 1, 2, (2, 1)),
    # 3x3 'same' columns on rows of whole vectors: x read in place (zero vectors past its edges, padded rows skipped)
    ((2, 3, 13, 80), 3, 3, 1, 1, 1), ((1, 2, 10, 32), 4, 3, 1, (2, 1), (2, 1)), ((2, 2, 9, 48), 2, 3, 1, (0, 1), 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", DW_WGRAD, ids=[str(i) for i in range(len(DW_WGRAD))])
def test_depthwise_weight_grad(case, dtype, rng):
    xs, C_out, k, s, p, d = case
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal(xs).astype(dtype)
    kw_ = dict(stride=s, padding=p, dilation=d, groups=xs[1])
    w_shape = (C_out, 1, kh, kw)
    dy = rng.standard_normal(fc.conv2d(x, np.zeros(w_shape, dtype), **kw_, backend="numpy").shape).astype(dtype)
    want = fc.conv2d_weight_grad(x.astype(np.float64), dy.astype(np.float64), w_shape, **kw_, backend="numpy")
    outs = []
    for t in (1, 2, 3):
        with num_threads(t):
            outs.append(fc.conv2d_weight_grad(x, dy, w_shape, **kw_, backend="cpp"))
    assert_close(outs[0], want, dtype)
    np.testing.assert_array_equal(outs[0], outs[1])  # parallel over channels only: thread-independent
    np.testing.assert_array_equal(outs[0], outs[2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, width", [(3, 21), (5, 21), (3, 32)])
def test_depthwise_weight_grad_nonfinite(k, width, dtype, rng):
    """inf / NaN in x reach exactly the taps whose windows read them: the dead lanes of a partial vector
    (which would read real columns past the output) must not turn an unread inf into NaN; nor may the
    zero columns past the edges of a plane read in place."""
    x = rng.standard_normal((2, 2, 9, width)).astype(dtype)
    x[0, 1, 3, width - 1] = np.inf   # last column: with padding 1 tap b = 0 never reads it
    x[1, 1, 8, 0] = -np.inf   # first column, last row
    x[1, 0, 4, 10] = np.nan
    kw_ = dict(padding=1, groups=2)
    w_shape = (2, 1, k, k)
    dy = rng.standard_normal(fc.conv2d(x, np.zeros(w_shape, dtype), **kw_, backend="numpy").shape).astype(dtype)
    with np.errstate(invalid="ignore"):
        want = fc.conv2d_weight_grad(x.astype(np.float64), dy.astype(np.float64), w_shape, **kw_, backend="numpy")
    got = fc.conv2d_weight_grad(x, dy, w_shape, **kw_, backend="cpp")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    assert_close(np.where(fin, got, 0), np.where(fin, want, 0), dtype)


# Switch pooling with the plane split once into stride phases: stride 2 with the window start on and
# off the phase grid (padding 0/1/2), rows that split into whole vectors and rows with a scalar tail
# (odd and prime widths, widths below one vector), strides 1 and 3, kernels wider than two strides,
# overlapping windows, ceil_mode (last windows clipped on the right), planes of one row or column, N = 1;
# inputs with ties, NaN and mostly -inf (windows whose real values are all -inf).
POOL2 = [((1, 2, 32, 32), 3, 2, 1), ((2, 1, 31, 33), 3, 2, 1), ((1, 3, 13, 67), 3, 2, 0), ((1, 1, 8, 64), 2, 2, 0),
         ((1, 2, 7, 97), 5, 2, 2), ((2, 1, 11, 5), 3, 2, 1), ((1, 1, 19, 71), 4, 3, 1), ((1, 2, 6, 50), 7, 3, 3),
         ((1, 1, 23, 29), 3, 1, 1), ((1, 1, 1, 40), (1, 3), 2, (0, 1)), ((1, 1, 40, 1), (3, 1), 2, (1, 0)),
         ((1, 1, 16, 130), (2, 5), (1, 2), (1, 2))]


@pytest.mark.parametrize("fill", ["randn", "ties", "nan", "-inf"])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL2, ids=[str(i) for i in range(len(POOL2))])
def test_pool_phase_split(case, dtype, ceil_mode, fill, rng):
    xs, k, s, p = case
    x = rng.standard_normal(xs)
    if fill == "ties":
        x = np.round(x)
    elif fill == "nan":
        x.flat[rng.integers(0, x.size, max(1, x.size // 20))] = np.nan
    elif fill == "-inf":
        x[rng.random(xs) < 0.8] = -np.inf
    x = x.astype(dtype)
    y, sw = fc.max_pool2d(x, k, s, p, ceil_mode=ceil_mode, backend="cpp")
    y_ref, sw_ref = fc.max_pool2d(x, k, s, p, ceil_mode=ceil_mode, backend="numpy")
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(sw, sw_ref)
    with num_threads(1):
        y1, sw1 = fc.max_pool2d(x, k, s, p, ceil_mode=ceil_mode, backend="cpp")
    np.testing.assert_array_equal(sw1, sw_ref)
    dy = rng.standard_normal(sw.shape).astype(dtype)
    out = fc.max_unpool2d(dy, sw_ref, x.shape, backend="cpp")
    assert_close(out, fc.max_unpool2d(dy.astype(np.float64), sw_ref, x.shape, backend="numpy"), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(64, 64), (31, 33)], ids=["whole-vector-planes", "odd-planes"])
def test_unpool_large_output_accumulates(hw, dtype, rng):
    """An output of 8 MiB or more (built plane by plane and streamed out past the caches), with planes
    a whole number of vectors long or not, overlapping windows (repeated switches add up) and N = 1."""
    planes = -(-(8 << 20) // (np.dtype(dtype).itemsize * hw[0] * hw[1]))
    x = np.round(rng.standard_normal((1, planes) + hw)).astype(dtype)
    y, sw = fc.max_pool2d(x, 3, 1, 1, backend="numpy")
    dy = rng.standard_normal(sw.shape).astype(dtype)
    out = fc.max_unpool2d(dy, sw, x.shape, backend="cpp")
    assert_close(out, fc.max_unpool2d(dy.astype(np.float64), sw, x.shape, backend="numpy"), dtype)
