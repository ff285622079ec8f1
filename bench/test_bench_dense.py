"""pytest-benchmark suite: the C++ backend against the NumPy reference on dense conv (S1-S7), the single
plane (S8), switch pooling (P1) and unshared/tiled conv (U1, T1).

Run with `pytest bench/ --benchmark-only` (the default `pytest` run only collects tests/). Every case
first checks the timed backend against the reference on the same data, then times it. The reference
runs on a reduced batch (it is slow); throughput is reported normalised per image as GFLOP/s in
`extra_info`, so the two backends compare directly in one run:
`pytest bench/ --benchmark-only --benchmark-columns=min,mean --benchmark-group-by=param:case`.
"""
import numpy as np
import pytest

import fastconv as fc
from fastconv.benchmark.cases import dense_call
from bench.shapes import CONV_SHAPES, TILED_SHAPES, PLANE_SHAPES, POOL_SHAPES

REF_BATCH_DIVISOR = 8
CONV_CASES = list(CONV_SHAPES)  # S1-S7
POOL_CASES = list(POOL_SHAPES)
BACKENDS = ["cpp", "numpy"]


def _batch(shape, backend):
    return shape.N if backend != "numpy" else max(1, shape.N // REF_BATCH_DIVISOR)


def _rate(benchmark, amount):
    """amount / fastest time x 1e-9 (None when timing is disabled, e.g. --benchmark-disable)."""
    return round(amount / benchmark.stats.stats.min * 1e-9, 2) if benchmark.stats else None


def _assert_close(got, want):
    tol = 2e-4 if want.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["conv2d", "conv2d_input_grad", "conv2d_weight_grad"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv(benchmark, case, op, backend):
    if backend not in fc.available_backends():
        pytest.skip(f"backend {backend} unavailable")
    s = CONV_SHAPES[case]
    n = _batch(s, backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n,) + s.x_shape[1:], dtype=np.float32)
    w = rng.standard_normal(s.w_shape, dtype=np.float32)
    y_shape = (n, s.C_out) + s.out_hw()
    dy = rng.standard_normal(y_shape, dtype=np.float32)
    call = dense_call(op, s, x, w, dy)
    _assert_close(call(backend), call("numpy"))  # validate before timing
    benchmark.group = f"{case} {op}"
    benchmark(call, backend)
    benchmark.extra_info.update(batch=n, gflops=_rate(benchmark, s.flops(n)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["max_pool2d", "max_unpool2d"])
@pytest.mark.parametrize("case", POOL_CASES)
def test_pool(benchmark, case, op, backend):
    if backend not in fc.available_backends():
        pytest.skip(f"backend {backend} unavailable")
    p = POOL_SHAPES[case]
    n = _batch(p, backend)
    x = np.random.default_rng(0).standard_normal((n,) + p.x_shape[1:], dtype=np.float32)
    y, switches = fc.max_pool2d(x, p.kernel, p.stride, p.padding, backend="numpy")
    if op == "max_pool2d":
        def call(be):
            return fc.max_pool2d(x, p.kernel, p.stride, p.padding, backend=be)
        got, want = call(backend), call("numpy")
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    else:
        def call(be):
            return fc.max_unpool2d(y, switches, x.shape, backend=be)
        np.testing.assert_array_equal(call(backend), call("numpy"))
    benchmark.group = f"{case} {op}"
    benchmark(call, backend)
    elements = x.size if op == "max_pool2d" else y.size + x.size
    benchmark.extra_info.update(batch=n, gelem_per_s=_rate(benchmark, elements))


@pytest.mark.parametrize("backend", BACKENDS)
def test_plane(benchmark, backend):
    s = PLANE_SHAPES["S8"]
    rng = np.random.default_rng(0)
    image = rng.standard_normal((s.H, s.W), dtype=np.float32)
    kernel = rng.standard_normal((s.k, s.k), dtype=np.float32)
    _assert_close(fc.correlate2d(image, kernel, "valid", backend=backend),
                  fc.correlate2d(image, kernel, "valid", backend="numpy"))
    benchmark.group = "S8 correlate2d"
    benchmark(fc.correlate2d, image, kernel, "valid", backend=backend)
    benchmark.extra_info.update(gflops=_rate(benchmark, s.flops()))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix", ["", "_input_grad", "_weight_grad"])
@pytest.mark.parametrize("case", list(TILED_SHAPES))
def test_tiled(benchmark, case, suffix, backend):
    if backend not in fc.available_backends():
        pytest.skip(f"backend {backend} unavailable")
    s = TILED_SHAPES[case]
    n = _batch(s, backend)
    op = ("unshared_conv2d" if case == "U1" else "tiled_conv2d") + suffix
    grid = s.out_hw() if case == "U1" else (s.tile, s.tile)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n,) + s.x_shape[1:], dtype=np.float32)
    w = rng.standard_normal(grid + (s.C_out, s.C_in, s.k, s.k), dtype=np.float32)
    dy = rng.standard_normal(s.y_shape(n), dtype=np.float32)
    f, kw = getattr(fc, op), dict(stride=s.stride, padding=s.padding)
    if suffix == "_input_grad":
        def call(be):
            return f(dy, w, x.shape, backend=be, **kw)
    elif suffix == "_weight_grad":
        def call(be):
            return f(x, dy, w.shape, backend=be, **kw)
    else:
        def call(be):
            return f(x, w, backend=be, **kw)
    _assert_close(call(backend), call("numpy"))
    benchmark.group = f"{case} {op}"
    benchmark(call, backend)
    benchmark.extra_info.update(batch=n, gflops=_rate(benchmark, s.flops(n)))
