"""pytest-benchmark suite: the C++ backend against the NumPy reference on dense conv and switch pooling.

Run with `pytest bench/ --benchmark-only` (the default `pytest` run only collects tests/). Every case
first checks the timed backend against the reference on the same data, then times it. The reference
runs on a reduced batch (it is slow); throughput is reported normalised per image as GFLOP/s in
`extra_info`, so the two backends compare directly in one run:
`pytest bench/ --benchmark-only --benchmark-columns=min,mean --benchmark-group-by=param:case`.
"""
import numpy as np
import pytest

import fastconv as fc
from bench.shapes import CONV_SHAPES, POOL_SHAPES

REF_BATCH_DIVISOR = 8
CONV_CASES = ["S1", "S2"]
POOL_CASES = list(POOL_SHAPES)
BACKENDS = ["cpp", "numpy"]


def _batch(shape, backend):
    return shape.N if backend != "numpy" else max(1, shape.N // REF_BATCH_DIVISOR)


def _assert_close(got, want):
    tol = 2e-4 if want.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max())))


def _conv_call(op, s, x, w, dy):
    kw = s.kwargs
    if op == "conv2d":
        return lambda backend: fc.conv2d(x, w, backend=backend, **kw)
    if op == "conv2d_input_grad":
        return lambda backend: fc.conv2d_input_grad(dy, w, x.shape, backend=backend, **kw)
    return lambda backend: fc.conv2d_weight_grad(x, dy, w.shape, backend=backend, **kw)


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
    call = _conv_call(op, s, x, w, dy)
    _assert_close(call(backend), call("numpy"))  # validate before timing
    benchmark.group = f"{case} {op}"
    benchmark(call, backend)
    benchmark.extra_info.update(batch=n, gflops=round(s.flops(n) / benchmark.stats.stats.min * 1e-9, 2))


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
    benchmark.extra_info.update(batch=n, melem_per_s=round(elements / benchmark.stats.stats.min * 1e-6, 1))
