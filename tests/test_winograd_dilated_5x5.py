"""Winograd beyond dense 3x3 layers: dilated 3x3 layers split into undilated ones on their stride phases
(`*__winograd_dilated_*`, csrc/winograd_split.h) and 5x5 stride-1 layers by F(4x4,5x5)
(`*__winograd_f4x5`). Every such implementation, forced by name, against the NumPy reference over a sweep
(prime and 1x1 maps, paddings beyond the kernel's reach, dilations 2 and 3, batch 1, both dtypes); the
gradients against finite differences; what 'auto' and 'winograd' pick on the bench's S2 and S5 rows, and
the error contract of test_algorithms.py (float32 within 1e-4·max|y64|, float64 within 1e-11) on them and
on 512-input-channel layers."""
import numpy as np
import pytest

import fastconv as fc
from fastconv.benchmark.shapes import CONV_SHAPES

if "cpp" not in fc.available_backends():
    pytest.skip("the cpp backend is not built", allow_module_level=True)

OPS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad")

# (N, C_in, C_out, H, W, padding, dilation); paddings past 2·dilation make the input gradient's windows
# start inside dy, 1x1 maps leave most of every tile empty, and phases of unequal size come from sizes
# that the dilation does not divide.
DILATED = [(1, 3, 4, 1, 1, 2, 2), (2, 5, 7, 13, 11, 2, 2), (1, 4, 6, 17, 19, 3, 3), (1, 2, 3, 9, 8, 0, 3),
           (2, 3, 5, 10, 7, (1, 4), (2, 3)), (1, 3, 2, 7, 7, 5, 2), (1, 17, 9, 6, 23, (2, 0), (3, 1))]
FIVE = [(1, 3, 4, 1, 1, 2, 1), (2, 5, 7, 13, 11, 2, 1), (1, 4, 6, 7, 9, 0, 1), (1, 2, 3, 6, 5, 4, 1),
        (2, 3, 5, 11, 8, (1, 3), 1), (1, 3, 2, 5, 6, 6, 1), (1, 17, 9, 19, 4, (3, 2), 1), (2, 5, 7, 7, 75, 2, 1),
        (2, 3, 4, 13, 11, 4, 2), (1, 2, 3, 12, 17, (2, 5), (1, 3))]
# (family, its tiles, kernel size, case)
SPLITS = [("winograd_dilated", ("f4x3", "f2x3"), 3, case) for case in DILATED] + \
         [("winograd", ("f4x5",), 5, case) for case in FIVE]
BOUND = {np.float32: 1e-5, np.float64: 1e-12}


def _args(op, x, w, dy):
    return {"conv2d": (x, w), "conv2d_input_grad": (dy, w, x.shape), "conv2d_weight_grad": (x, dy, w.shape)}[op]


def _problem(rng, k, N, C, K, H, W, padding, dilation):
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((K, C, k, k))
    dy = rng.standard_normal(fc.conv2d(x, w, padding=padding, dilation=dilation, backend="numpy").shape)
    return x, w, dy, dict(padding=padding, dilation=dilation)


def _rel_err(got, exact):
    return float(np.abs(got - exact).max() / np.abs(exact).max())


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("split, tiles, k, case", SPLITS,
                         ids=[f"{s}-{'x'.join(map(str, c[:5]))}-k{k}-p{c[5]}-d{c[6]}" for s, _, k, c in SPLITS])
def test_every_implementation_matches_the_reference(split, tiles, k, case, op, dtype, rng):
    x, w, dy, kw = _problem(rng, k, *case)
    b = rng.standard_normal(w.shape[0]) if op == "conv2d" else None
    args = _args(op, x, w, dy) + ((b,) if b is not None else ())
    exact = getattr(fc, op)(*args, **kw, backend="numpy")
    for tile in tiles:
        name = f"{op}__{split}_{tile}"
        if op == "conv2d_input_grad" and k == 5 and np.any(np.asarray(kw["padding"]) > 4 * np.asarray(kw["dilation"])):
            with pytest.raises(ValueError, match=f"{name} does not apply: needs padding <= dilation"):
                with fc.use_kernel(name):
                    getattr(fc, op)(*args, **kw)
            continue
        with fc.use_kernel(name):
            assert fc.kernel_for(op, *_args(op, x, w, dy), **kw).name == name
            got = getattr(fc, op)(*(a.astype(dtype) if isinstance(a, np.ndarray) else a for a in args), **kw)
        assert got.dtype == dtype and _rel_err(got, exact) < BOUND[dtype], (name, _rel_err(got, exact))


@pytest.mark.parametrize("split, tiles, k, case", [SPLITS[1], SPLITS[len(DILATED) + 4]], ids=["dilated", "5x5"])
def test_gradients_match_finite_differences(split, tiles, k, case, rng):
    """<dy, conv(x + εv, w + εu)> by central differences against <dx, v> + <dw, u> (float64; the loss is
    bilinear, so the difference quotient is exact up to rounding)."""
    x, w, dy, kw = _problem(rng, k, *case)
    v, u = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    with fc.use_kernel(f"conv2d__{split}_{tiles[0]}"):
        loss = [np.vdot(dy, fc.conv2d(x + e * v, w + e * u, **kw)) for e in (1e-3, -1e-3)]
    with fc.use_kernel(f"conv2d_input_grad__{split}_{tiles[0]}"), fc.use_kernel(f"conv2d_weight_grad__{split}_{tiles[0]}"):
        dx, dw = fc.conv2d_input_grad(dy, w, x.shape, **kw), fc.conv2d_weight_grad(x, dy, w.shape, **kw)
    expected = (loss[0] - loss[1]) / 2e-3
    assert abs(np.vdot(dx, v) + np.vdot(dw, u) - expected) <= 1e-8 * abs(expected)


def test_forced_split_that_does_not_apply_names_why(rng):
    x, w = rng.standard_normal((1, 2, 9, 9)), rng.standard_normal((3, 2, 3, 3))
    with pytest.raises(ValueError, match="winograd_dilated_f4x3 does not apply: needs dilation > 1"):
        with fc.use_kernel("conv2d__winograd_dilated_f4x3"):
            fc.conv2d(x, w, padding=1)
    with pytest.raises(ValueError, match="winograd_f4x5 does not apply: needs a 5x5 kernel"):
        with fc.use_kernel("conv2d_input_grad__winograd_f4x5"):
            fc.conv2d_input_grad(np.ones((1, 3, 9, 9)), w, x.shape, padding=1)
    w5 = rng.standard_normal((3, 2, 5, 5))
    with pytest.raises(ValueError, match="winograd_f4x5 needs stride 1"):
        fc.conv2d(x, w5, padding=2, stride=2, algorithm="winograd")


@pytest.mark.parametrize("row, tile", [("S2", "f4x5"), ("S5", "f4x3")])
def test_what_auto_and_winograd_pick_on_the_bench_rows(row, tile):
    """S2 (5x5, 32 -> 64 channels): F(4x4,5x5) for every op. S5 (dilated by 2): the dense F(4x4,3x3)
    kernels on its stride phases for every op, not the split kernel. 'auto' and a forced 'winograd' alike."""
    s = CONV_SHAPES[row]
    x, w, dy = (np.zeros(shape, np.float32) for shape in (s.x_shape, s.w_shape, s.y_shape()))
    for op in OPS:
        auto = fc.kernel_for(op, *_args(op, x, w, dy), **s.kwargs)
        k = fc.kernel_for(op, *_args(op, x, w, dy), **s.kwargs, algorithm="winograd")
        assert auto.name == k.name == f"{op}__winograd_{tile}", (auto, k)


# The bench rows and layers with 512 input channels (5x5 and dilated 3x3).
ACCURACY = [(2, CONV_SHAPES["S2"]), (2, CONV_SHAPES["S5"]),
            (1, CONV_SHAPES["S2"]._replace(C_in=512, H=12, W=12)),
            (1, CONV_SHAPES["S5"]._replace(C_in=512, H=14, W=14))]


@pytest.mark.parametrize("N, s", ACCURACY, ids=[f"{s.name}-C{s.C_in}" for _, s in ACCURACY])
def test_accuracy_of_every_auto_choice_and_every_tile(N, s, rng):
    s = s.with_batch(N)
    x, w, dy = rng.standard_normal(s.x_shape), rng.standard_normal(s.w_shape), rng.standard_normal(s.y_shape())
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    split, tiles = ("winograd", ("f4x5",)) if s.k == 5 else ("winograd_dilated", ("f4x3", "f2x3"))
    for op in OPS:
        exact = getattr(fc, op)(*_args(op, x, w, dy), **s.kwargs, algorithm="direct")
        choices = [fc.kernel_for(op, *_args(op, x32, w32, dy32), **s.kwargs).name]
        choices += [f"{op}__{split}_{t}" for t in tiles]
        for name in choices:
            with fc.use_kernel(name):
                err32 = _rel_err(getattr(fc, op)(*_args(op, x32, w32, dy32), **s.kwargs), exact)
                err64 = _rel_err(getattr(fc, op)(*_args(op, x, w, dy), **s.kwargs), exact)
            assert err32 <= 1e-4, (name, err32)
            assert err64 <= 1e-11, (name, err64)
