"""The kernel registry (csrc/registry.cpp): every implementation of every op, forced by name, runs the
shared shape sweep on every problem it can compute and matches the NumPy reference in both dtypes —
so each is tested by name, not reached by guessing a shape that crosses a threshold. Also: kernel_for
names what a call runs, the forcing errors, FASTCONV_KERNEL, and `fastconv info --kernels`."""
import os

import numpy as np
import pytest

import fastconv as fc
from _helpers import assert_close, central_diff, randn, run_python
from shapes import CONV_ARGS, CONV_CASES, DTYPES, NORM_SHAPES, TILED_CASES, POOL_CASES

if "cpp" not in fc.available_backends():
    pytest.skip("the cpp backend is not built", allow_module_level=True)

IMPLS = fc.implementations()
PAIRS = [(op, name) for op, names in IMPLS.items() for name in names]


def _conv(id, x, w, stride=1, padding=0, dilation=1, groups=1):
    return dict(id=id, x=x, w=w, stride=stride, padding=padding, dilation=dilation, groups=groups)


# Besides the shared sweep: rows of whole vectors and deep channels (the vector and register-tile paths),
# depthwise layers on wide rows, four outputs per single-channel group, and a 5x5 stride-1 layer.
CONV_SWEEP = CONV_CASES + [
    _conv("wide-32", (2, 8, 10, 32), (16, 8, 3, 3), padding=1),
    _conv("deep-stride2", (2, 32, 12, 12), (24, 32, 3, 3), stride=2, padding=1),
    _conv("pointwise-wide", (2, 16, 9, 40), (8, 16, 1, 1)),
    _conv("dw-wide-same", (2, 3, 9, 32), (3, 1, 3, 3), padding="same", groups=3),
    _conv("dw-5x5-48", (1, 4, 8, 48), (4, 1, 5, 5), padding=2, groups=4),
    _conv("dw-4-per-group", (1, 2, 7, 9), (8, 1, 3, 3), padding=1, groups=2),
    _conv("5x5-stride1", (2, 3, 7, 9), (4, 3, 5, 5), padding=2),
    # channels-last depthwise: whole vectors of channels and a tail, strides, dilation, maps down to 1x1
    _conv("dw-21-small", (2, 21, 5, 6), (21, 1, 3, 3), padding=1, groups=21),
    _conv("dw-19-stride-dil", (3, 19, 9, 7), (19, 1, 3, 2), stride=(2, 3), padding=(2, 1), dilation=(2, 1), groups=19),
    _conv("dw-40-2x2-stride2", (3, 40, 2, 2), (40, 1, 3, 3), stride=2, padding=1, groups=40),
    _conv("dw-33-same-dil2", (2, 33, 4, 3), (33, 1, 3, 3), padding="same", dilation=2, groups=33),
    # batch-folded pointwise: odd channel counts, tiles past MR rows, more columns than one GEMM block
    _conv("pointwise-2x3", (3, 37, 2, 3), (45, 37, 1, 1)),
    _conv("pointwise-many-columns", (40, 24, 4, 4), (19, 24, 1, 1)),
]
# Besides the shared sweep: tile widths that divide the vector width on wide rows (lane weights) and
# phases of at least 16 positions (polyphase copies, per-phase GEMMs).
LOCAL_SWEEP = TILED_CASES + [
    ((2, 3, 16, 34), 4, 3, 1, 0, (2, 2)),
    ((1, 2, 12, 20), 3, 3, 1, 1, (1, 4)),
    ((2, 3, 19, 13), 5, 3, 1, 0, (2, 3)),
    ((2, 4, 23, 21), 3, 5, 2, 2, (2, 2)),
]


def _dense(op, dtype, rng):
    """(run, expected) per problem of the sweep: run() is the cpp call, expected the float64 reference."""
    for case in CONV_SWEEP:
        kw = {k: case[k] for k in CONV_ARGS}
        x, w = randn(rng, case["x"], dtype), randn(rng, case["w"], dtype)
        b = randn(rng, (case["w"][0],), dtype)
        x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
        y = fc.conv2d(x64, w64, b64, **kw, backend="numpy")
        dy = randn(rng, y.shape, dtype)
        if op == "conv2d":
            yield lambda: fc.conv2d(x, w, b, **kw, backend="cpp"), y
        elif op == "conv2d_input_grad":
            yield (lambda: fc.conv2d_input_grad(dy, w, x.shape, **kw, backend="cpp"),
                   fc.conv2d_input_grad(dy.astype(np.float64), w64, x.shape, **kw, backend="numpy"))
        else:
            yield (lambda: fc.conv2d_weight_grad(x, dy, w.shape, **kw, backend="cpp"),
                   fc.conv2d_weight_grad(x64, dy.astype(np.float64), w.shape, **kw, backend="numpy"))


def _tiled(op, dtype, rng):
    family, _, part = op.partition("_conv2d")
    unshared = family == "unshared"
    fwd = getattr(fc, family + "_conv2d")
    for xs, C_out, k, s, p, T in LOCAL_SWEEP:
        kw = dict(stride=s, padding=p)
        x = randn(rng, xs, dtype)
        H_out, W_out = fc.conv2d(x, np.zeros((C_out, xs[1], k, k), dtype), **kw, backend="numpy").shape[2:]
        w = randn(rng, ((H_out, W_out) if unshared else T) + (C_out, xs[1], k, k), dtype)
        b = randn(rng, (C_out, H_out, W_out) if unshared else (C_out,), dtype)
        dy = randn(rng, (xs[0], C_out, H_out, W_out), dtype)
        if part == "":
            yield lambda: fwd(x, w, b, **kw, backend="cpp"), fwd(x, w, b, **kw, backend="numpy")
        elif part == "_input_grad":
            f = getattr(fc, op)
            yield lambda: f(dy, w, x.shape, **kw, backend="cpp"), f(dy, w, x.shape, **kw, backend="numpy")
        else:
            f = getattr(fc, op)
            yield lambda: f(x, dy, w.shape, **kw, backend="cpp"), f(x, dy, w.shape, **kw, backend="numpy")


def _pool(op, dtype, rng):
    for case in POOL_CASES:
        x = randn(rng, case["x"], dtype)
        args = (case["kernel_size"], case["stride"], case["padding"])
        kw = dict(ceil_mode=case["ceil_mode"])
        y, sw = fc.max_pool2d(x, *args, **kw, backend="numpy")
        if op == "max_pool2d":
            yield lambda: fc.max_pool2d(x, *args, **kw, backend="cpp"), (y, sw)
        else:
            yield (lambda: fc.max_unpool2d(y, sw, x.shape, backend="cpp"),
                   fc.max_unpool2d(y, sw, x.shape, backend="numpy"))


def _norm(op, dtype, rng):
    for shape in NORM_SHAPES:
        x, dy = randn(rng, shape, dtype) + 3, randn(rng, shape, dtype)
        w, b = randn(rng, shape[1:2], dtype), randn(rng, shape[1:2], dtype)
        y, mean, inv_std = fc.batch_norm2d(x, w, b, backend="cpp")
        if op == "batch_norm2d":
            yield lambda: fc.batch_norm2d(x, w, b, backend="cpp"), fc.batch_norm2d(x, w, b, backend="numpy")
        else:
            yield (lambda: fc.batch_norm2d_grad(dy, x, mean, inv_std, w, backend="cpp"),
                   fc.batch_norm2d_grad(dy, x, mean, inv_std, w, backend="numpy"))


def problems(op, dtype, rng):
    if op.startswith("conv2d"):
        return _dense(op, dtype, rng)
    if op.startswith("batch_norm2d"):
        return _norm(op, dtype, rng)
    return _pool(op, dtype, rng) if "pool" in op else _tiled(op, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, impl", PAIRS, ids=[name for _, name in PAIRS])
def test_every_implementation_matches_the_reference(op, impl, dtype, rng):
    ran = 0
    for run, expected in problems(op, dtype, rng):
        with fc.use_kernel(impl):
            try:
                got = run()
            except ValueError as e:
                assert str(e).startswith(f"{impl} does not apply: ")
                continue
        if op == "max_pool2d":  # values and switches exactly
            for g, e in zip(got, expected):
                np.testing.assert_array_equal(g, e)
        elif isinstance(got, tuple):
            for g, e in zip(got, expected):
                assert_close(g, e, dtype)
        else:
            assert_close(got, expected, dtype)
        ran += 1
    assert ran > 0, f"{impl} computed no problem of the sweep"


@pytest.mark.parametrize("variant, geo", [
    ("depthwise_channels_last", dict(x=(2, 17, 4, 3), w=(17, 1, 3, 3), stride=2, padding=1, dilation=1, groups=17)),
    ("depthwise_channels_last", dict(x=(1, 18, 5, 4), w=(18, 1, 2, 3), stride=1, padding="same", dilation=2, groups=18)),
    ("pointwise_folded", dict(x=(3, 5, 2, 3), w=(7, 5, 1, 1), stride=1, padding=0, dilation=1, groups=1)),
    ("fft_t16", dict(x=(2, 3, 13, 11), w=(4, 3, 5, 4), stride=1, padding=(2, 1), dilation=(1, 2), groups=1)),
], ids=["dw-stride2", "dw-same-dil2", "pointwise", "fft"])
def test_forced_gradients_vs_finite_differences(variant, geo, rng):
    """Both gradient kernels of a family against central differences of its own forward (float64)."""
    kw = {k: geo[k] for k in CONV_ARGS}
    x, w = rng.standard_normal(geo["x"]), rng.standard_normal(geo["w"])
    dy = rng.standard_normal(fc.conv2d(x, w, **kw, backend="numpy").shape)
    with fc.use_kernel(*(f"{op}__{variant}" for op in ("conv2d", "conv2d_input_grad", "conv2d_weight_grad"))):
        def loss():
            return float(np.sum(fc.conv2d(x, w, **kw, backend="cpp") * dy))

        dx = fc.conv2d_input_grad(dy, w, x.shape, **kw, backend="cpp")
        dw = fc.conv2d_weight_grad(x, dy, w.shape, **kw, backend="cpp")
        np.testing.assert_allclose(dx, central_diff(loss, x), rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(dw, central_diff(loss, w), rtol=1e-7, atol=1e-8)


def test_the_last_implementation_of_every_op_runs_every_problem(rng):
    """select() falls back on the last entry: it must never refuse a problem."""
    for op, names in IMPLS.items():
        with fc.use_kernel(names[-1]):
            for run, _ in problems(op, np.float32, rng):
                run()


@pytest.mark.parametrize("op, args, kwargs, expected", [
    ("conv2d", [(2, 8, 10, 32), (16, 8, 3, 3)], dict(padding=1), "conv2d__implicit_gemm"),
    ("conv2d", [(2, 4, 9, 9), (4, 1, 3, 3)], dict(padding=1, groups=4), "conv2d__depthwise"),
    ("conv2d", [(2, 16, 9, 9), (8, 16, 1, 1)], {}, "conv2d__packed_gemm"),
    ("conv2d", [(2, 16, 2, 2), (8, 16, 1, 1)], {}, "conv2d__pointwise_folded"),
    ("conv2d", [(2, 32, 8, 8), (32, 1, 3, 3)], dict(stride=2, padding=1, groups=32), "conv2d__depthwise_channels_last"),
    ("conv2d", [(2, 32, 2, 2), (32, 1, 3, 3)], dict(padding=1, groups=32), "conv2d__depthwise_channels_last"),
    # dilated by 2: Winograd on the phases of deep layers, the direct kernels on shallow ones and beyond 2
    ("conv2d", [(2, 128, 28, 28), (128, 128, 3, 3)], dict(padding=2, dilation=2), "conv2d__winograd_f4x3"),
    ("conv2d", [(2, 32, 28, 28), (32, 32, 3, 3)], dict(padding=2, dilation=2), "conv2d__implicit_gemm"),
    ("conv2d", [(2, 128, 28, 28), (128, 128, 3, 3)], dict(padding=3, dilation=3), "conv2d__implicit_gemm"),
    ("correlate2d", [(40, 40), (9, 9)], {}, "conv2d__depthwise"),
    ("conv_transpose2d", [(2, 32, 8, 32), (32, 16, 3, 3)], dict(padding=1), "conv2d_input_grad__implicit_gemm"),
    ("conv2d_input_grad", [(2, 16, 7, 7), (16, 8, 3, 3), (2, 8, 9, 9)], dict(stride=1), "conv2d_input_grad__packed_gemm"),
    ("max_pool2d", [(2, 3, 8, 8), 2], {}, "max_pool2d__phase_split"),
])
def test_kernel_for_names_what_runs(op, args, kwargs, expected, rng):
    arrays = [randn(rng, a, np.float32) if isinstance(a, tuple) and len(a) >= 2 and i < 2 else a
              for i, a in enumerate(args)]
    if op == "conv2d_input_grad":  # (dy, w, input_shape)
        arrays = [randn(rng, args[0], np.float32), randn(rng, args[1], np.float32), args[2]]
    k = fc.kernel_for(op, *arrays, **kwargs)
    assert k.name == expected and k.isa == fc.isa()
    assert str(k) == f"{expected} ({fc.isa()}" + (f", {k.algorithm} {k.tile})" if k.tile else ")")


def test_forcing_errors(rng):
    x, w = randn(rng, (1, 3, 6, 6), np.float32), randn(rng, (4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="unknown implementation 'conv2d__nope'"):
        with fc.use_kernel("conv2d__nope"):
            pass
    with fc.use_kernel("conv2d__depthwise"):
        with pytest.raises(ValueError, match=r"conv2d__depthwise does not apply: needs one input channel per group"):
            fc.conv2d(x, w)
        assert fc.kernel_for("conv2d_weight_grad", x, fc.conv2d(x, w, backend="numpy"), w.shape).name == \
            "conv2d_weight_grad__implicit_gemm"  # only conv2d is forced
        with fc.use_kernel("conv2d_input_grad__implicit_gemm"):  # nested: both forced
            assert fc.kernel_for("conv2d", x[:, :1], w[:1, :1]).name == "conv2d__depthwise"
            with pytest.raises(ValueError, match="needs stride 1"):
                fc.conv2d_input_grad(randn(rng, (1, 4, 2, 2), np.float32), w, x.shape, stride=2)
    assert fc.kernel_for("conv2d", x[:, :, :1, :2], w[:, :, :1, :1]).name == "conv2d__pointwise_folded"
    with pytest.raises(ValueError, match="op_name"):
        fc.kernel_for("not_an_op", x)


def _run(code, **env):
    return run_python("-c", code, env={**os.environ, **env})


def test_fastconv_kernel_environment_variable():
    code = ("import numpy as np, fastconv as fc; x = np.ones((1, 8, 6, 32), np.float32); "
            "w = np.ones((8, 8, 3, 3), np.float32); print(fc.kernel_for('conv2d', x, w).name); "
            "print(fc.kernel_for('conv2d_weight_grad', x, fc.conv2d(x, w), w.shape).name)")
    r = _run(code, FASTCONV_KERNEL="conv2d__packed_gemm, conv2d_weight_grad__packed_gemm")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["conv2d__packed_gemm", "conv2d_weight_grad__packed_gemm"]
    r = _run(code, FASTCONV_KERNEL="conv2d__fastest")
    assert r.returncode != 0 and "unknown implementation 'conv2d__fastest'" in r.stderr


def test_info_lists_every_implementation():
    r = run_python("-m", "fastconv.cli", "info", "--kernels")
    assert r.returncode == 0, r.stderr
    for op, names in IMPLS.items():
        assert f"{op}: {', '.join(names)}" in r.stdout
