"""IEEE semantics at the borders: padded positions contribute nothing, not 0 × NaN. With NaN or Inf in a
weight, an input or an output gradient, every implementation of the registry (forced by name) gives what
the NumPy reference gives: every op sums real products only, so a non-finite weight tap (or output
gradient) that meets only the padding leaves the output finite there, as in PyTorch's oneDNN path and its
conv_transpose2d.

The values go where the implementations differ: corner taps of the weight (which reach the padding at the
borders of the output and of dx) and border pixels of x and dy."""
import numpy as np
import pytest

import fastconv as fc
from _helpers import randn
from shapes import CONV_ARGS, DTYPES, POOL_CASES
from test_registry import CONV_SWEEP, LOCAL_SWEEP, PAIRS


def _poison(a, rng):
    """a with NaN, +Inf and -Inf at corners of its last two axes, in different leading entries."""
    a = a.copy()
    lead = a.reshape(-1, *a.shape[-2:])
    for k, v in enumerate((np.nan, np.inf, -np.inf)):
        i = rng.integers(len(lead))
        lead[i, -(k % 2), -(k // 2)] = v
    return a


def _dense(op, dtype, rng):
    for case in CONV_SWEEP:
        kw = {k: case[k] for k in CONV_ARGS}
        x, w = randn(rng, case["x"], dtype), randn(rng, case["w"], dtype)
        dy = randn(rng, fc.conv2d(x, w, **kw, backend="numpy").shape, dtype)
        x, w, dy = _poison(x, rng), _poison(w, rng), _poison(dy, rng)
        if op == "conv2d":
            yield lambda b: fc.conv2d(x, w, **kw, backend=b)
        elif op == "conv2d_input_grad":
            yield lambda b: fc.conv2d_input_grad(dy, w, x.shape, **kw, backend=b)
        else:
            yield lambda b: fc.conv2d_weight_grad(x, dy, w.shape, **kw, backend=b)


def _tiled(op, dtype, rng):
    family, _, part = op.partition("_conv2d")
    fwd = getattr(fc, family + "_conv2d")
    for xs, C_out, k, s, p, T in LOCAL_SWEEP:
        kw = dict(stride=s, padding=p)
        x = randn(rng, xs, dtype)
        H_out, W_out = fc.conv2d(x, np.zeros((C_out, xs[1], k, k), dtype), **kw, backend="numpy").shape[2:]
        w = randn(rng, ((H_out, W_out) if family == "unshared" else T) + (C_out, xs[1], k, k), dtype)
        dy = randn(rng, (xs[0], C_out, H_out, W_out), dtype)
        x, w, dy = _poison(x, rng), _poison(w, rng), _poison(dy, rng)
        f = getattr(fc, op)
        if part == "":
            yield lambda b: fwd(x, w, **kw, backend=b)
        elif part == "_input_grad":
            yield lambda b: f(dy, w, x.shape, **kw, backend=b)
        else:
            yield lambda b: f(x, dy, w.shape, **kw, backend=b)


def _pool(op, dtype, rng):
    for case in POOL_CASES:
        x = _poison(randn(rng, case["x"], dtype), rng)
        args = (case["kernel_size"], case["stride"], case["padding"])
        if op == "max_pool2d":
            yield lambda b: fc.max_pool2d(x, *args, ceil_mode=case["ceil_mode"], backend=b)
        else:
            y, sw = fc.max_pool2d(x, *args, ceil_mode=case["ceil_mode"], backend="numpy")
            yield lambda b: fc.max_unpool2d(y, sw, x.shape, backend=b)


def _norm(op, dtype, rng):
    """Batch norm: a non-finite value makes its channel's statistics non-finite (NaN in x and dy, and Inf in
    x, make the whole channel NaN), also as the channel's first value, which the kernels' sums start from."""
    for shape in ((3, 4, 5, 5), (2, 3, 40, 40), (4, 37, 2, 2)):
        x, dy = _poison(randn(rng, shape, dtype), rng), _poison(randn(rng, shape, dtype), rng)
        x[0, 0, 0, 0] = np.inf
        w = randn(rng, shape[1:2], dtype)
        mean, inv_std = fc.batch_norm2d(x, w, backend="numpy")[1:]
        if op == "batch_norm2d":
            yield lambda b: fc.batch_norm2d(x, w, backend=b)
        else:
            yield lambda b: fc.batch_norm2d_grad(dy, x, mean, inv_std, w, backend=b)


@pytest.mark.skipif("cpp" not in fc.available_backends(), reason="the cpp backend is not built")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the reference's inf - inf
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, impl", PAIRS, ids=[name for _, name in PAIRS])
def test_nonfinite_values_match_the_reference(op, impl, dtype, rng):
    make = _dense if op.startswith("conv2d") else _norm if op.startswith("batch_norm") else _pool if "pool" in op \
        else _tiled
    ran = 0
    for call in make(op, dtype, rng):
        with fc.use_kernel(impl):
            try:
                got = call("cpp")
            except ValueError as e:
                assert str(e).startswith(f"{impl} does not apply: ")
                continue
        want = call("numpy")
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            extra, missing = np.isnan(g) & ~np.isnan(w), np.isnan(w) & ~np.isnan(g)
            assert not extra.any(), f"NaN at {np.argwhere(extra)[:4].tolist()} where the reference has {w[extra][:4]}"
            assert not missing.any(), f"{g[missing][:4]} at {np.argwhere(missing)[:4].tolist()}: the reference has NaN"
            np.testing.assert_allclose(g, w, rtol=1e-3 if dtype == "float32" else 1e-9, atol=1e-3)
        ran += 1
    assert ran > 0, f"{impl} computed no problem of the sweep"


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_conv_transpose2d_with_nonfinite_weights_matches_pytorch(rng):
    """The issue's case: conv_transpose2d (the input gradient's kernels) with NaN and Inf taps is finite
    where only the padding would have met them, as in PyTorch. (PyTorch's forward is not a reference
    for this: its oneDNN path skips the padding, its native path multiplies it.)"""
    torch = pytest.importorskip("torch")
    for shape in [(2, 32, 8, 32), (1, 3, 7, 9)]:
        x, w = randn(rng, shape, np.float32), _poison(randn(rng, (shape[1], 16, 3, 3), np.float32), rng)
        got = fc.conv_transpose2d(x, w, padding=1)
        want = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
        assert np.isfinite(want).any() and not np.isfinite(want).all()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_conv2d_and_weight_grad_with_nonfinite_values_match_pytorch(rng):
    """The forward with NaN and Inf weight taps and the weight gradient with NaN and Inf in dy, against
    PyTorch's oneDNN path (taken for these shapes: batch 2, 16 or more channels): outputs where only the
    padding meets them stay finite. The second shape runs fastconv's Winograd forward, whose fallback must
    agree too."""
    torch = pytest.importorskip("torch")
    for xs, C_out in [((2, 16, 8, 8), 16), ((2, 32, 12, 12), 64)]:
        x = randn(rng, xs, np.float32)
        w = _poison(randn(rng, (C_out, xs[1], 3, 3), np.float32), rng)
        dy = _poison(randn(rng, (2, C_out) + xs[2:], np.float32), rng)
        wt = torch.from_numpy(w).requires_grad_()
        yt = torch.nn.functional.conv2d(torch.from_numpy(x), wt, padding=1)
        yt.backward(torch.from_numpy(dy))
        for got, want in [(fc.conv2d(x, w, padding=1), yt.detach().numpy()),
                          (fc.conv2d_weight_grad(x, dy, w.shape, padding=1), wt.grad.numpy())]:
            assert np.isfinite(want).any() and not np.isfinite(want).all()
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
