"""The C ABI (libfastconv.so) through cffi: every entry point against the NumPy reference, its error
codes on bad sizes, and the C example compiled and run."""
import os
import shutil
import subprocess

import numpy as np
import pytest

import fastconv as fc

cffi = pytest.importorskip("cffi")
from fastconv import cabi  # noqa: E402

try:
    LIB, FFI = cabi.load()
except (OSError, FileNotFoundError) as e:  # an install without the C library
    pytest.skip(f"C ABI library not available: {e}", allow_module_level=True)

DTYPES = {np.float32: ("f32", "float"), np.float64: ("f64", "double")}
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "c", "conv_check.c")


def ptr(a, ctype):
    return FFI.NULL if a is None else FFI.cast(f"{ctype} *", a.ctypes.data)


def call(name, dtype, params, *arrays):
    suffix, ctype = DTYPES[dtype]
    args = [ptr(a, "int64_t" if a is not None and a.dtype == np.int64 else ctype) for a in arrays]
    rc = getattr(LIB, f"fc_{name}_{suffix}")(params, *args)
    assert rc == LIB.FC_OK, FFI.string(LIB.fc_last_error()).decode()


def conv_params(x, w, y, stride, pad, dilation, groups):
    return FFI.new("fc_conv_params *", [*x.shape, w.shape[0], *w.shape[2:], *y.shape[2:], *stride, *pad,
                                        *dilation, groups])


def tiled_params(x, w, y, stride, pad):
    return FFI.new("fc_tiled_params *", [*x.shape, w.shape[2], *w.shape[4:], *y.shape[2:], *stride, *pad,
                                         *w.shape[:2]])


def close(a, b, dtype):
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())))


DENSE = [  # x shape, w shape, stride, padding, dilation, groups
    ((2, 3, 9, 7), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 4, 11, 5), (6, 2, 2, 3), (2, 1), (0, 2), (2, 1), 2),
    ((3, 4, 6, 6), (4, 1, 3, 3), (1, 2), (1, 1), (1, 1), 4),
    ((1, 1, 5, 5), (1, 1, 5, 5), (1, 1), (0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("xs, ws, s, p, d, g", DENSE)
def test_dense_entry_points(dtype, xs, ws, s, p, d, g, rng):
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    kw = dict(stride=s, padding=p, dilation=d, groups=g, backend="numpy")
    ref = fc.conv2d(x, w, b, **kw)
    y = np.empty_like(ref)
    params = conv_params(x, w, y, s, p, d, g)
    call("conv2d", dtype, params, x, w, b, y)
    close(y, ref, dtype)
    dy = rng.standard_normal(ref.shape).astype(dtype)
    dx = np.empty_like(x)
    call("conv2d_input_grad", dtype, params, dy, w, dx)
    close(dx, fc.conv2d_input_grad(dy, w, x.shape, **kw), dtype)
    dw = np.empty_like(w)
    call("conv2d_weight_grad", dtype, params, x, dy, dw)
    close(dw, fc.conv2d_weight_grad(x, dy, w.shape, **kw), dtype)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("op", ["tiled_conv2d", "unshared_conv2d"])
def test_tiled_entry_points(dtype, op, rng):
    x = rng.standard_normal((2, 3, 8, 7)).astype(dtype)
    s, p = (2, 1), (1, 0)
    H_out, W_out = (8 + 2 - 3) // 2 + 1, 7 - 3 + 1
    grid = (2, 3) if op == "tiled_conv2d" else (H_out, W_out)
    w = rng.standard_normal(grid + (4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal((4,) if op == "tiled_conv2d" else (4, H_out, W_out)).astype(dtype)
    fwd, dgrad, wgrad = (getattr(fc, op + sfx) for sfx in ("", "_input_grad", "_weight_grad"))
    ref = fwd(x, w, b, stride=s, padding=p, backend="numpy")
    y = np.empty_like(ref)
    params = tiled_params(x, w, y, s, p)
    call(op, dtype, params, x, w, b, y)
    close(y, ref, dtype)
    dy = rng.standard_normal(ref.shape).astype(dtype)
    dx, dw = np.empty_like(x), np.empty_like(w)
    call(op + "_input_grad", dtype, params, dy, w, dx)
    close(dx, dgrad(dy, w, x.shape, stride=s, padding=p, backend="numpy"), dtype)
    call(op + "_weight_grad", dtype, params, x, dy, dw)
    close(dw, wgrad(x, dy, w.shape, stride=s, padding=p, backend="numpy"), dtype)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_pool_entry_points(dtype, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    ref_y, ref_sw = fc.max_pool2d(x, 3, 2, 1, backend="numpy")
    y, sw = np.empty_like(ref_y), np.empty_like(ref_sw)
    params = FFI.new("fc_pool_params *", [*x.shape, *y.shape[2:], 3, 3, 2, 2, 1, 1])
    call("max_pool2d", dtype, params, x, y, sw)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(sw, ref_sw)
    out = np.empty_like(x)
    call("max_unpool2d", dtype, params, y, sw, out)
    np.testing.assert_array_equal(out, fc.max_unpool2d(y, sw, x.shape, backend="numpy"))


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_dilated_pool_entry_point_and_ceil_mode_clipping(dtype, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    suffix, ctype = DTYPES[dtype]
    for k, s, p, d, ceil in [(3, 2, 1, 2, False), (3, 3, 1, (2, 1), True), (4, 3, 1, 1, True)]:
        ref_y, ref_sw = fc.max_pool2d(x, k, s, p, d, ceil_mode=ceil, backend="numpy")
        y, sw = np.empty_like(ref_y), np.empty_like(ref_sw)
        params = FFI.new("fc_pool_params *", [*x.shape, *y.shape[2:], k, k, s, s, p, p])
        dh, dw = d if isinstance(d, tuple) else (d, d)
        rc, msg = _rc(getattr(LIB, f"fc_max_pool2d_dilated_{suffix}"), params, dh, dw, ptr(x, ctype), ptr(y, ctype),
                      ptr(sw, "int64_t"))
        assert rc == LIB.FC_OK, msg
        np.testing.assert_array_equal(y, ref_y)
        np.testing.assert_array_equal(sw, ref_sw)
    small = np.arange(4, dtype=dtype).reshape(1, 1, 2, 2)   # PyTorch's ceil_mode: k 3, s 2 on 2x2 gives one
    y, sw = np.empty((1, 1, 1, 1), dtype), np.empty((1, 1, 1, 1), np.int64)
    params = FFI.new("fc_pool_params *", [1, 1, 2, 2, 1, 1, 3, 3, 2, 2, 0, 0])
    call("max_pool2d", dtype, params, small, y, sw)
    assert y.item() == 3 and sw.item() == 3
    rc, msg = _rc(getattr(LIB, f"fc_max_pool2d_dilated_{suffix}"), params, 0, 1, ptr(small, ctype), ptr(y, ctype),
                  ptr(sw, "int64_t"))
    assert rc == LIB.FC_EINVAL and msg.startswith(f"fc_max_pool2d_dilated_{suffix}: ") and "dilation" in msg


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_batch_norm_entry_points(dtype, rng):
    x, dy = (rng.standard_normal((3, 5, 4, 3)).astype(dtype) for _ in range(2))
    w, b = (rng.standard_normal(5).astype(dtype) for _ in range(2))
    params = FFI.new("fc_norm_params *", list(x.shape))
    suffix, ctype = DTYPES[dtype]
    for ww, bb in ((w, b), (None, None)):
        want = fc.batch_norm2d(x, ww, bb, eps=1e-3, backend="numpy")
        y, mean, inv_std = np.empty_like(x), np.empty(5, dtype), np.empty(5, dtype)
        rc, msg = _rc(getattr(LIB, f"fc_batch_norm2d_{suffix}"), params, 1e-3,
                      *(ptr(a, ctype) for a in (x, ww, bb, y, mean, inv_std)))
        assert rc == LIB.FC_OK, msg
        for got, ref in zip((y, mean, inv_std), want):
            close(got, ref, dtype)
        dx, dw, db = np.empty_like(x), np.empty(5, dtype), np.empty(5, dtype)
        call("batch_norm2d_grad", dtype, params, dy, x, mean, inv_std, ww, dx, dw, db)
        for got, ref in zip((dx, dw, db), fc.batch_norm2d_grad(dy, x, mean, inv_std, ww, backend="numpy")):
            close(got, ref, dtype)
    one = FFI.new("fc_norm_params *", [1, 5, 1, 1])
    rc, msg = _rc(getattr(LIB, f"fc_batch_norm2d_{suffix}"), one, 1e-5, *(ptr(a, ctype) for a in (x, w, b, y, mean,
                                                                                                    inv_std)))
    assert rc == LIB.FC_EINVAL and msg.startswith(f"fc_batch_norm2d_{suffix}: more than one value per channel")
    rc, msg = _rc(getattr(LIB, f"fc_batch_norm2d_{suffix}"), params, -1.0, *(ptr(a, ctype) for a in (x, w, b, y, mean,
                                                                                                      inv_std)))
    assert rc == LIB.FC_EINVAL and "eps" in msg


def _rc(fn, *args):
    rc = fn(*args)
    return rc, FFI.string(LIB.fc_last_error()).decode()


def test_errors_return_codes_and_messages():
    x = np.zeros((1, 3, 5, 5), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    y = np.zeros((1, 4, 3, 3), np.float32)
    f = lambda a: ptr(a, "float")  # noqa: E731
    bad_groups = FFI.new("fc_conv_params *", [1, 3, 5, 5, 4, 3, 3, 3, 3, 1, 1, 0, 0, 1, 1, 2])
    rc, msg = _rc(LIB.fc_conv2d_f32, bad_groups, f(x), f(w), FFI.NULL, f(y))
    assert rc == LIB.FC_EINVAL and "groups" in msg
    too_big = FFI.new("fc_conv_params *", [1, 3, 5, 5, 4, 3, 3, 9, 3, 1, 1, 0, 0, 1, 1, 1])
    rc, msg = _rc(LIB.fc_conv2d_f32, too_big, f(x), f(w), FFI.NULL, f(y))
    assert rc == LIB.FC_EINVAL and "H_out" in msg
    ok = FFI.new("fc_conv_params *", [1, 3, 5, 5, 4, 3, 3, 3, 3, 1, 1, 0, 0, 1, 1, 1])
    rc, msg = _rc(LIB.fc_conv2d_f32, ok, FFI.NULL, f(w), FFI.NULL, f(y))
    assert rc == LIB.FC_EINVAL and "NULL" in msg
    rc, msg = _rc(LIB.fc_conv2d_f32, FFI.NULL, f(x), f(w), FFI.NULL, f(y))
    assert rc == LIB.FC_EINVAL and "params" in msg
    zero_stride = FFI.new("fc_tiled_params *", [1, 3, 5, 5, 4, 3, 3, 3, 3, 0, 1, 0, 0, 1, 1])
    rc, msg = _rc(LIB.fc_tiled_conv2d_f32, zero_stride, f(x), FFI.NULL, FFI.NULL, f(y))
    assert rc == LIB.FC_EINVAL and ">= 1" in msg
    wide_pad = FFI.new("fc_pool_params *", [1, 3, 5, 5, 3, 3, 2, 2, 2, 2, 2, 2])
    rc, msg = _rc(LIB.fc_max_pool2d_f32, wide_pad, f(x), f(y), FFI.cast("int64_t *", y.ctypes.data))
    assert rc == LIB.FC_EINVAL and msg.startswith("fc_max_pool2d_f32: ") and "padding" in msg
    sw = np.array([0, 1, 99, 2], np.int64).reshape(1, 1, 2, 2)
    out = np.zeros((1, 1, 3, 3), np.float32)
    yy = np.ones((1, 1, 2, 2), np.float32)
    unpool = FFI.new("fc_pool_params *", [1, 1, 3, 3, 2, 2, 2, 2, 1, 1, 0, 0])
    rc, msg = _rc(LIB.fc_max_unpool2d_f32, unpool, f(yy), ptr(sw, "int64_t"), f(out))
    assert rc == LIB.FC_EINVAL and "switches[2] = 99" in msg
    assert not out.any()  # nothing written on failure


def test_output_size_helper():
    assert LIB.fc_conv_output_size(32, 2, 2, 5, 1, 1) == 32
    assert LIB.fc_conv_output_size(64, 3, 3, 7, 2, 1) == 32
    assert LIB.fc_conv_output_size(3, 0, 0, 5, 1, 1) == 0


def test_paths_point_at_installed_files():
    assert os.path.isfile(cabi.library_path())
    assert os.path.isfile(os.path.join(cabi.include_dir(), "fastconv.h"))
    assert "fc_conv2d_f32" in cabi.declarations()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_example_compiles_and_runs(tmp_path):
    exe = tmp_path / "conv_check"
    lib = cabi.library_path()
    subprocess.run(["cc", "-O2", "-I", cabi.include_dir(), EXAMPLE, lib, f"-Wl,-rpath,{os.path.dirname(lib)}",
                    "-lm", "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    assert out.startswith("ok")
