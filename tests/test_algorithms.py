"""Convolution algorithms (direct, Winograd, FFT): the `algorithm=` argument, set_algorithm and
FASTCONV_ALGORITHM, what kernel_for reports, the errors of a forced algorithm that does not apply, and
the accuracy contract: against float64, float32 results of every 'auto' choice within 1e-4·max|y64|
on the bench's 3x3 and large-kernel layers and on 3x3 layers with 512 input channels, float64 within
1e-11. (Every Winograd and FFT implementation also runs the registry's shape sweep by name:
test_registry.py, test_nonfinite.py.)"""
import os

import numpy as np
import pytest

import fastconv as fc
from fastconv import data, nn
from _helpers import num_threads, run_python
from fastconv.benchmark.shapes import CONV_SHAPES, FFT_SHAPES, VGG_SHAPES

if "cpp" not in fc.available_backends():
    pytest.skip("the cpp backend is not built", allow_module_level=True)

OPS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad")
TILES = ("f4x3", "f2x3")
FFT_TILES = (16, 32, 64, 128)


def _args(op, x, w, dy):
    return {"conv2d": (x, w), "conv2d_input_grad": (dy, w, x.shape), "conv2d_weight_grad": (x, dy, w.shape)}[op]


def _problem(rng, N, C, K, H, W=None, dtype=np.float32, padding=1, dilation=1):
    W = W or H
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((K, C, 3, 3))
    y = fc.conv2d(x[:1, :1], w[:1, :1], padding=padding, dilation=dilation, backend="numpy")
    dy = rng.standard_normal((N, K) + y.shape[2:])
    return [a.astype(dtype) for a in (x, w, dy)]


def _rel_err(got, exact):
    return float(np.abs(got - exact).max() / np.abs(exact).max())


# Rows of a few tiles and of more tiles than a vector holds (the transforms' gathers and scatters run
# a vector of tiles at a time, the last one partial), undilated and dilated (the stride phases' rows).
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("W, kw", [(13, dict(padding=1)), (75, dict(padding=1)), (83, dict(padding=2, dilation=2)),
                                   (70, dict(padding=(1, 3), dilation=(1, 2)))], ids=["13", "75", "83-d2", "70-d12"])
def test_forced_winograd_matches_direct_in_every_tile(op, W, kw, rng):
    x, w, dy = _problem(rng, 2, 5, 7, 11, W, np.float64, **kw)
    exact = getattr(fc, op)(*_args(op, x, w, dy), **kw, algorithm="direct")
    for tile in TILES:
        for dtype, bound in ((np.float64, 1e-13), (np.float32, 1e-5)):
            with fc.use_kernel(f"{op}__winograd_{tile}"):
                got = getattr(fc, op)(*(a.astype(dtype) if isinstance(a, np.ndarray) else a
                                        for a in _args(op, x, w, dy)), **kw, algorithm="winograd")
            assert got.dtype == dtype and _rel_err(got, exact) < bound
    assert fc.kernel_for(op, *_args(op, x, w, dy), **kw, algorithm="winograd").algorithm == "winograd"


@pytest.mark.parametrize("dtype, bound", [(np.float32, 1e-5), (np.float64, 1e-13)])
@pytest.mark.parametrize("op", ("conv2d", "conv2d_input_grad"))
@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=2, dilation=2), dict(padding=(1, 2), dilation=(1, 2))],
                         ids=["d1", "d2", "d12"])
def test_winograd_chunks_that_split_tile_rows(op, kw, dtype, bound, rng):
    # 3 x 23 x 25 outputs: tile rows of 7 (F(4x4)) and 13 (F(2x2)) tiles, so that chunks of whole GEMM
    # slivers begin and end inside rows and images (dilated by 2: phases of 11 or 12 rows, both column
    # phases in one tile row of 4 or 7 tile pairs); each output is computed alike in any chunk, so the
    # result does not depend on the thread count that sizes the chunks.
    x, w, dy = _problem(rng, 3, 6, 5, 23, 25, dtype, **kw)
    exact = getattr(fc, op)(*_args(op, x, w, dy), **kw, algorithm="direct")
    for tile in TILES:
        runs = []
        for threads in (1, 2, 3):
            with num_threads(threads), fc.use_kernel(f"{op}__winograd_{tile}"):
                runs.append(getattr(fc, op)(*_args(op, x, w, dy), **kw))
        assert _rel_err(runs[0], exact) < bound
        assert all(np.array_equal(run, runs[0]) for run in runs[1:])


@pytest.mark.parametrize("dtype, bound", [(np.float32, 1e-5), (np.float64, 1e-13)])
@pytest.mark.parametrize("op", ("conv2d", "conv2d_input_grad"))
@pytest.mark.parametrize("N, C, K, H, W", [(1, 20, 41, 6, 7), (2, 9, 70, 5, 5), (1, 3, 17, 3, 9)])
def test_winograd_with_more_output_channels_than_tiles(op, N, C, K, H, W, dtype, bound, rng):
    # Few tiles, so one or two chunks of them, each through GEMMs with partial slivers of output channels;
    # the result is the same at any thread count.
    x, w, dy = _problem(rng, N, C, K, H, W, dtype)
    if op == "conv2d_input_grad":   # the input grad runs as a forward conv from K to C channels
        x, w, dy = _problem(rng, N, K, C, H, W, dtype)
    exact = getattr(fc, op)(*_args(op, x, w, dy), padding=1, algorithm="direct")
    for tile in TILES:
        runs = []
        for threads in (1, 2, 3, 4):
            with num_threads(threads), fc.use_kernel(f"{op}__winograd_{tile}"):
                runs.append(getattr(fc, op)(*_args(op, x, w, dy), padding=1))
        assert _rel_err(runs[0], exact) < bound
        assert all(np.array_equal(run, runs[0]) for run in runs[1:])


@pytest.mark.parametrize("kwargs, why", [(dict(stride=2), "needs stride 1"), (dict(groups=2), "needs groups == 1")])
@pytest.mark.parametrize("op", OPS)
def test_forced_winograd_that_does_not_apply_names_why(op, kwargs, why, rng):
    x, w, dy = _problem(rng, 1, 4, 4, 9)
    if "groups" in kwargs:
        w = w[:, :2]
    dy = getattr(fc, "conv2d")(x, w, padding=1, **kwargs)
    with pytest.raises(ValueError, match=f"algorithm 'winograd' does not apply.*{why}"):
        getattr(fc, op)(*_args(op, x, w, dy), padding=1, algorithm="winograd", **kwargs)
    # 'auto' silently picks what applies
    auto = getattr(fc, op)(*_args(op, x, w, dy), padding=1, algorithm="auto", **kwargs)
    assert np.array_equal(auto, getattr(fc, op)(*_args(op, x, w, dy), padding=1, algorithm="direct", **kwargs))


def test_forced_algorithm_errors(rng):
    x, w, _ = _problem(rng, 1, 4, 4, 9)
    with pytest.raises(ValueError, match="winograd_f4x3 needs a 3x3 kernel"):
        fc.conv2d(x, w[:, :, :1, :1], algorithm="winograd")
    with pytest.raises(ValueError, match="algorithm 'fft' does not apply.*fft_t32 needs stride 1"):
        fc.conv2d_weight_grad(x, x[:, :, ::2, ::2], w.shape, padding=1, stride=2, algorithm="fft")
    with pytest.raises(ValueError, match="algorithm 'fft' does not apply.*fft_t32 needs stride 1"):
        fc.conv2d(x, w, stride=2, algorithm="fft")
    with pytest.raises(ValueError, match="fft_t32 needs groups == 1"):
        fc.conv2d(x, w[:, :2], groups=2, algorithm="fft")
    with pytest.raises(ValueError, match="fft_t16 does not apply: needs a .dilated. kernel no larger than its tile"):
        with fc.use_kernel("conv2d__fft_t16"):
            fc.conv2d(x, w, dilation=8, padding=8)
    with pytest.raises(ValueError, match="algorithm: expected one of 'auto', 'direct', 'winograd', 'fft', got 'fast'"):
        fc.conv2d(x, w, algorithm="fast")
    with pytest.raises(ValueError, match="algorithm: expected one of"):
        fc.set_algorithm(None)
    with pytest.raises(ValueError, match="is a winograd implementation, not direct"):
        with fc.use_kernel("conv2d__winograd_f4x3"):
            fc.conv2d(x, w, algorithm="direct")


def test_direct_is_todays_kernels_bit_for_bit(rng):
    """'direct' runs the kernel the registry chose before Winograd existed, whatever 'auto' would pick."""
    x, w, dy = _problem(rng, 2, 32, 64, 16)
    assert fc.kernel_for("conv2d", x, w, padding=1).algorithm == "winograd"
    direct = fc.kernel_for("conv2d", x, w, padding=1, algorithm="direct")
    assert (direct.algorithm, direct.tile) == ("direct", None)
    with fc.use_kernel(direct.name):
        expected = fc.conv2d(x, w, padding=1)
    assert np.array_equal(fc.conv2d(x, w, padding=1, algorithm="direct"), expected)


def test_kernel_for_reports_the_algorithm_and_tile(rng):
    x, w, _ = _problem(rng, 2, 32, 64, 16)
    k = fc.kernel_for("conv2d", x, w, padding=1)
    assert (k.name, k.algorithm, k.tile) == ("conv2d__winograd_f4x3", "winograd", "F(4x4,3x3)")
    assert str(k).endswith(", winograd F(4x4,3x3))")


def test_set_algorithm_is_the_default_of_every_dense_op(rng):
    x, w, dy = _problem(rng, 2, 32, 64, 16)
    assert fc.get_algorithm() == "auto"
    try:
        fc.set_algorithm("direct")
        for op in OPS:
            assert fc.kernel_for(op, *_args(op, x, w, dy), padding=1).algorithm == "direct"
        assert fc.kernel_for("conv2d", x, w, padding=1, algorithm="winograd").algorithm == "winograd"
    finally:
        fc.set_algorithm("auto")


def test_environment_sets_the_default():
    code = ("import numpy as np, fastconv as fc; x = np.ones((2, 32, 16, 16), np.float32); "
            "w = np.ones((64, 32, 3, 3), np.float32); print(fc.get_algorithm(), "
            "fc.kernel_for('conv2d', x, w, padding=1).algorithm)")
    r = run_python("-c", code, env={**os.environ, "FASTCONV_ALGORITHM": "direct"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["direct", "direct"]
    r = run_python("-c", code, env={**os.environ, "FASTCONV_ALGORITHM": "quick"})
    assert r.returncode != 0 and "algorithm: expected one of" in r.stderr


def test_plane_ops_and_layers_take_the_algorithm(rng):
    image, kernel = rng.standard_normal((20, 17)), rng.standard_normal((3, 3))
    for f in (fc.correlate2d, fc.convolve2d):
        got = f(image, kernel, "same", algorithm="winograd")
        assert np.abs(got - f(image, kernel, "same", algorithm="direct")).max() < 1e-13
    layer = nn.Conv2d(4, 6, 3, padding=1, algorithm="winograd", dtype=np.float64, rng=0)
    x = rng.standard_normal((2, 4, 9, 9))
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    ref = nn.Conv2d(4, 6, 3, padding=1, algorithm="direct", dtype=np.float64, rng=0)
    assert np.abs(y - ref(x)).max() < 1e-12
    assert np.abs(dx - ref.backward(np.ones_like(y))).max() < 1e-12
    assert np.abs(layer.weight_grad - ref.weight_grad).max() < 1e-11
    assert layer.config["algorithm"] == "winograd" and "algorithm" not in nn.Conv2d(4, 6, 3).config
    with pytest.raises(ValueError, match="algorithm: expected one of"):
        nn.Conv2d(4, 6, 3, algorithm="magic")


# Kernel = input, 1x1, prime sizes, even kernels, paddings valid/same/full/ints, dilation, bias.
FFT_CASES = [((1, 1, 13, 13), (1, 1, 13, 13), dict()), ((2, 3, 7, 11), (5, 3, 1, 1), dict(padding=(0, 2))),
             ((1, 2, 31, 29), (3, 2, 7, 5), dict(padding="same")), ((2, 1, 17, 23), (1, 1, 6, 4), dict(padding="full")),
             ((1, 4, 19, 37), (6, 4, 3, 3), dict(padding=(2, 1), dilation=(3, 2))),
             ((3, 5, 40, 9), (7, 5, 9, 2), dict(padding=4))]


@pytest.mark.parametrize("dtype, bound", [(np.float32, 1e-5), (np.float64, 1e-13)])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", FFT_CASES, ids=lambda c: "x".join(map(str, c[0] + c[1][2:])))
def test_forced_fft_matches_the_reference_in_every_tile(case, op, dtype, bound, rng):
    xs, ws, kw = case
    if kw.get("padding") == "full":
        kw = dict(padding=(ws[2] - 1, ws[3] - 1))
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    dy = rng.standard_normal(fc.conv2d(x, w, **kw, backend="numpy").shape)
    args = (x, w, b) if op == "conv2d" else _args(op, x, w, dy)
    exact = getattr(fc, op)(*args, **kw, backend="numpy")
    ran = 0
    for n in FFT_TILES:
        if max((k - 1) * d + 1 for k, d in zip(ws[2:], np.broadcast_to(kw.get("dilation", 1), 2))) > n:
            continue
        with fc.use_kernel(f"{op}__fft_t{n}"):
            got = getattr(fc, op)(*(a.astype(dtype) if isinstance(a, np.ndarray) else a for a in args), **kw,
                                  algorithm="fft")
        assert got.dtype == dtype and _rel_err(got, exact) < bound, (n, _rel_err(got, exact))
        ran += 1
    assert ran >= 3


@pytest.mark.parametrize("dtype, bound", [(np.float32, 1e-5), (np.float64, 1e-13)])
def test_fft_weight_grad_in_chunks_of_tile_groups(dtype, bound, rng):
    # 7 images of 36 16x16 tiles, 128 channels in and out: the spectra of all tile groups exceed the
    # kernel's chunk (64 MiB) at every vector width, so it sums the bins' products chunk by chunk; the
    # weight gradient is a sum over the images, and one image's tiles fit one chunk.
    x, dy = rng.standard_normal((7, 128, 86, 86)).astype(dtype), rng.standard_normal((7, 128, 84, 84)).astype(dtype)
    with fc.use_kernel("conv2d_weight_grad__fft_t16"):
        got = fc.conv2d_weight_grad(x, dy, (128, 128, 3, 3))
        per_image = sum(fc.conv2d_weight_grad(x[i:i + 1], dy[i:i + 1], (128, 128, 3, 3)) for i in range(7))
    assert _rel_err(got, per_image) < bound


def test_plane_ops_by_fft_match_scipy(rng):
    signal = pytest.importorskip("scipy.signal")
    image, kernel = rng.standard_normal((45, 38)), rng.standard_normal((11, 9))
    for mode in ("full", "same", "valid"):
        for ours, theirs in ((fc.correlate2d, signal.correlate2d), (fc.convolve2d, signal.convolve2d)):
            assert fc.kernel_for("correlate2d", image, kernel, mode, algorithm="fft").algorithm == "fft"
            expected = theirs(image, kernel, mode)
            for dtype, bound in ((np.float64, 1e-13), (np.float32, 1e-5)):
                got = ours(image.astype(dtype), kernel.astype(dtype), mode, algorithm="fft")
                assert _rel_err(got, expected) < bound, (ours.__name__, mode, dtype)


@pytest.mark.parametrize("op", OPS)
def test_auto_picks_fft_for_large_kernels_only(op):
    for s in FFT_SHAPES.values():
        x, w, dy = (np.zeros(shape, np.float32) for shape in (s.x_shape, s.w_shape, s.y_shape()))
        k = fc.kernel_for(op, *_args(op, x, w, dy), **s.kwargs)
        assert k.algorithm == "fft" and k.tile == f"{k.name.split('_t')[-1]}x{k.name.split('_t')[-1]}", (s.name, k)
        assert str(k).endswith(f", fft {k.tile})")
    for s in CONV_SHAPES.values():  # the small-kernel layers stay direct or Winograd
        x, w, dy = (np.zeros(shape, np.float32) for shape in (s.x_shape, s.w_shape, s.y_shape()))
        assert fc.kernel_for(op, *_args(op, x, w, dy), **s.kwargs).algorithm != "fft", s.name


# The bench's 3x3 layers (batch cut to keep the suite fast: the per-element error does not depend on
# the batch; S5 is dilated) and 3x3 layers with 512 input channels.
ACCURACY_LAYERS = [(2, s.C_in, s.C_out, s.H, dict(padding=s.padding, dilation=s.dilation))
                   for s in (*CONV_SHAPES.values(), *VGG_SHAPES.values()) if s.k == 3 and s.groups == 1]
ACCURACY_LAYERS += [(2, 512, 64, 14, dict(padding=1)), (1, 512, 512, 7, dict(padding=1))]


@pytest.mark.parametrize("name", sorted(FFT_SHAPES))
def test_accuracy_of_the_auto_choice_on_the_large_kernel_rows(name, rng):
    """The bench's large-kernel rows, every op (batch cut to 1: the per-element error of the forward and
    input grad does not depend on it; the weight grad's sum over the batch grows like its exact value)."""
    s = FFT_SHAPES[name].with_batch(1)
    x, w, dy = rng.standard_normal(s.x_shape), rng.standard_normal(s.w_shape), rng.standard_normal(s.y_shape())
    for op in OPS:
        args = _args(op, x, w, dy)
        args32 = _args(op, *(a.astype(np.float32) for a in (x, w, dy)))
        exact = getattr(fc, op)(*args, **s.kwargs, algorithm="direct")
        assert fc.kernel_for(op, *args32, **s.kwargs).algorithm == "fft", op
        assert _rel_err(getattr(fc, op)(*args32, **s.kwargs), exact) <= 1e-4
        assert _rel_err(getattr(fc, op)(*args, **s.kwargs, algorithm="fft"), exact) <= 1e-11


@pytest.mark.parametrize("layer", ACCURACY_LAYERS, ids=[f"{n}x{c}x{h}->{k}-d{kw.get('dilation', 1)}"
                                                        for n, c, k, h, kw in ACCURACY_LAYERS])
def test_accuracy_of_every_auto_choice_and_every_winograd_tile(layer, rng):
    *dims, kw = layer
    x, w, dy = _problem(rng, *dims, dtype=np.float64, **kw)
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    for op in OPS:
        exact = getattr(fc, op)(*_args(op, x, w, dy), **kw, algorithm="direct")
        choices = [fc.kernel_for(op, *_args(op, x32, w32, dy32), **kw).name]
        choices += [f"{op}__winograd_{t}" for t in TILES]
        for name in choices:
            with fc.use_kernel(name):
                err32 = _rel_err(getattr(fc, op)(*_args(op, x32, w32, dy32), **kw), exact)
                err64 = _rel_err(getattr(fc, op)(*_args(op, x, w, dy), **kw), exact)
            assert err32 <= 1e-4, (name, err32)
            assert err64 <= 1e-11, (name, err64)


def test_training_on_digits_reaches_the_accuracy_of_direct():
    """The seed CNN with 3x3 layers, trained the same way with Winograd forced on every conv (its layers
    are too narrow for 'auto' to pick it: 'auto' is 'direct' there): test accuracy within 0.5% of 'direct'."""
    algorithm = "winograd"
    pytest.importorskip("sklearn")
    split = data.load_digits(8)
    acc = {}
    for alg in ("direct", algorithm):
        fc.set_algorithm(alg)
        try:
            model = nn.models.seed_cnn(1, 10, 8, channels=(8, 16), kernel_size=3, rng=0)
            nn.fit(model, split.train, epochs=3, batch_size=32, optimizer=nn.Adam(model, 3e-3), seed=0,
                   progress=False)
            acc[alg] = nn.evaluate(model, split.test)[1]
        finally:
            fc.set_algorithm("auto")
    assert acc["direct"] >= 0.9
    assert abs(acc[algorithm] - acc["direct"]) <= 0.005, acc
