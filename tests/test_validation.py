"""Bad input: one test each; every error is a ValueError/TypeError whose message names the argument."""
import numpy as np
import pytest

import fastconv as fc

X = np.zeros((2, 3, 6, 6))
W = np.zeros((4, 3, 3, 3))


def test_x_wrong_ndim():
    with pytest.raises(ValueError, match=r"^x: expected a 4-D array .*or .*got shape \(6, 6\)"):
        fc.conv2d(np.zeros((6, 6)), W)


def test_weight_wrong_ndim():
    with pytest.raises(ValueError, match=r"^weight: expected a 4-D array .*got shape \(4, 3, 3\)"):
        fc.conv2d(X, np.zeros((4, 3, 3)))


def test_channel_mismatch():
    with pytest.raises(ValueError, match=r"^weight: expected shape \(4, 3, kH, kW\).*got \(4, 2, 3, 3\)"):
        fc.conv2d(X, np.zeros((4, 2, 3, 3)))


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"^weight: dilated kernel \(7, 7\) is larger than the padded input \(6, 6\)"):
        fc.conv2d(X, np.zeros((4, 3, 7, 7)))
    with pytest.raises(ValueError, match=r"^weight: dilated kernel \(5, 5\)"):
        fc.conv2d(np.zeros((1, 3, 4, 4)), W, dilation=2)


def test_stride_below_one():
    with pytest.raises(ValueError, match=r"^stride: each value must be >= 1"):
        fc.conv2d(X, W, stride=(1, 0))


def test_dilation_below_one():
    with pytest.raises(ValueError, match=r"^dilation: each value must be >= 1"):
        fc.conv2d(X, W, dilation=0)


def test_negative_padding():
    with pytest.raises(ValueError, match=r"^padding: each value must be >= 0"):
        fc.conv2d(X, W, padding=-1)


def test_unknown_padding_word():
    with pytest.raises(ValueError, match=r"^padding: expected .*'valid', 'same', 'full', 'causal'; got 'wavenet'"):
        fc.conv2d(X, W, padding="wavenet")


def test_non_integer_stride():
    with pytest.raises(TypeError, match=r"^stride: expected an int"):
        fc.conv2d(X, W, stride=1.5)


def test_unknown_backend():
    with pytest.raises(ValueError, match=r"^backend: expected one of .*'cpp'.*got 'cuda'"):
        fc.conv2d(X, W, backend="cuda")


def test_backend_not_a_string():
    with pytest.raises(TypeError, match=r"^backend: "):
        fc.conv2d(X, W, backend=3)


def test_groups_not_dividing_channels():
    with pytest.raises(ValueError, match=r"^groups: 2 must divide both input channels \(3\)"):
        fc.conv2d(X, np.zeros((4, 1, 3, 3)), groups=2)


def test_groups_below_one():
    with pytest.raises(ValueError, match=r"^groups: must be >= 1"):
        fc.conv2d(X, W, groups=0)


def test_wrong_bias_length():
    with pytest.raises(ValueError, match=r"^bias: expected shape \(4,\).*got \(3,\)"):
        fc.conv2d(X, W, np.zeros(3))


def test_integer_dtype():
    with pytest.raises(TypeError, match=r"^x: expected dtype float32 or float64, got int64"):
        fc.conv2d(X.astype(np.int64), W)


def test_complex_dtype():
    with pytest.raises(TypeError, match=r"^weight: expected dtype float32 or float64, got complex128"):
        fc.conv2d(X, W.astype(complex))


def test_object_dtype():
    with pytest.raises(TypeError, match=r"^x: expected dtype float32 or float64, got object"):
        fc.conv2d(X.astype(object), W)


def test_none_input():
    with pytest.raises(TypeError, match=r"^x: "):
        fc.conv2d(None, W)


def test_mixed_float_dtypes():
    with pytest.raises(TypeError, match=r"^weight: dtype float32 differs from the input's dtype float64"):
        fc.conv2d(X, W.astype(np.float32))
    with pytest.raises(TypeError, match=r"^bias: dtype float64 differs .*float32"):
        fc.conv2d(X.astype(np.float32), W.astype(np.float32), np.zeros(4))
    with pytest.raises(TypeError, match=r"^dy: dtype float32 differs"):
        fc.conv2d_weight_grad(X, np.zeros((2, 4, 4, 4), np.float32), W.shape)


def test_float16_dtype():
    with pytest.raises(TypeError, match=r"^x: expected dtype float32 or float64, got float16"):
        fc.max_pool2d(X.astype(np.float16), 2)


def _pooled():
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4))
    return x, *fc.max_pool2d(x, 2)


def test_switches_out_of_range(any_backend):
    x, y, sw = _pooled()
    sw[0, 1, 1, 1] = 16
    with pytest.raises(ValueError, match=r"^switches: values must lie in \[0, 16\) .*got range \[\d+, 16\]"):
        fc.max_unpool2d(y, sw, x.shape, backend=any_backend)
    sw[0, 1, 1, 1] = -1
    with pytest.raises(ValueError, match=r"^switches: values must lie in \[0, 16\) .*got range \[-1, "):
        fc.max_unpool2d(y, sw, x.shape, backend=any_backend)


def test_switches_wrong_shape():
    x, y, sw = _pooled()
    with pytest.raises(ValueError, match=r"^switches: expected shape \(1, 2, 2, 2\).*got \(1, 2, 2, 1\)"):
        fc.max_unpool2d(y, sw[..., :1], x.shape)


def test_switches_wrong_dtype():
    x, y, sw = _pooled()
    with pytest.raises(TypeError, match=r"^switches: expected dtype int64.*got int32"):
        fc.max_unpool2d(y, sw.astype(np.int32), x.shape)
    with pytest.raises(TypeError, match=r"^switches: expected dtype int64.*got float64"):
        fc.max_unpool2d(y, sw.astype(np.float64), x.shape)


def test_output_size_mismatch():
    x, y, sw = _pooled()
    with pytest.raises(ValueError, match=r"^output_size: expected \(N, C\) = \(1, 2\)"):
        fc.max_unpool2d(y, sw, (1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"^output_size: expected 4 positive ints"):
        fc.max_unpool2d(y, sw, (2, 4, 4))


def test_input_grad_dy_wrong_shape():
    with pytest.raises(ValueError, match=r"^dy: expected shape \(2, 4, 4, 4\).*got \(2, 4, 5, 4\)"):
        fc.conv2d_input_grad(np.zeros((2, 4, 5, 4)), W, X.shape)


def test_weight_grad_dy_wrong_shape():
    with pytest.raises(ValueError, match=r"^dy: expected shape \(2, 4, 4, 4\).*got \(2, 3, 4, 4\)"):
        fc.conv2d_weight_grad(X, np.zeros((2, 3, 4, 4)), W.shape)


def test_input_shape_and_weight_shape_wrong_length():
    with pytest.raises(ValueError, match=r"^input_shape: expected 4 positive ints"):
        fc.conv2d_input_grad(np.zeros((2, 4, 4, 4)), W, (2, 3, 6))
    with pytest.raises(ValueError, match=r"^weight_shape: expected 4 positive ints"):
        fc.conv2d_weight_grad(X, np.zeros((2, 4, 4, 4)), (4, 3, 3))


@pytest.mark.parametrize("op", [fc.convolve2d, fc.correlate2d])
def test_bad_mode(op):
    with pytest.raises(ValueError, match=r"^mode: expected 'full', 'valid' or 'same', got 'circular'"):
        op(np.zeros((4, 4)), np.zeros((2, 2)), "circular")


def test_plane_wrong_ndim():
    with pytest.raises(ValueError, match=r"^image: expected a 2-D array"):
        fc.convolve2d(np.zeros((1, 4, 4)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"^kernel: expected a 2-D array"):
        fc.correlate2d(np.zeros((4, 4)), np.zeros(2))


def test_pool_padding_more_than_half_kernel():
    with pytest.raises(ValueError, match=r"^padding: must be at most half of kernel_size"):
        fc.max_pool2d(X, 2, padding=2)


def test_pool_kernel_larger_than_input():
    with pytest.raises(ValueError, match=r"^kernel_size: \(7, 7\) \(dilated\) is larger than the padded input"):
        fc.max_pool2d(X, 7)


def test_pool_x_wrong_ndim():
    with pytest.raises(ValueError, match=r"^x: expected a 4-D array"):
        fc.max_pool2d(np.zeros((6, 6)), 2)


def test_conv_transpose_bad_output_padding():
    with pytest.raises(ValueError, match=r"^output_padding: must be smaller than stride"):
        fc.conv_transpose2d(X, np.zeros((3, 2, 3, 3)), stride=2, output_padding=2)


def test_conv_transpose_channel_mismatch():
    with pytest.raises(ValueError, match=r"^weight: expected shape \(3, C_out/groups, kH, kW\)"):
        fc.conv_transpose2d(X, np.zeros((4, 2, 3, 3)))


def test_conv_transpose_padding_word():
    with pytest.raises(ValueError, match=r"^padding: conv_transpose2d takes an int or a pair"):
        fc.conv_transpose2d(X, np.zeros((3, 2, 3, 3)), padding="same")


def test_cached_geometry_still_refuses_what_equals_an_accepted_value():
    """The geometry of a call with plain ints is cached; a bool, a float or a NumPy integer that compares equal
    to those ints is checked afresh (bools and floats are refused, NumPy integers accepted)."""
    fc.conv2d(X, W, stride=1, padding=(1, 1))
    with pytest.raises(TypeError, match=r"^stride: expected an int"):
        fc.conv2d(X, W, stride=True, padding=(1, 1))
    with pytest.raises(TypeError, match=r"^padding: expected an int"):
        fc.conv2d(X, W, stride=1, padding=(1.0, 1))
    assert fc.conv2d(X, W, stride=np.int64(1), padding=(1, 1)).shape == (2, 4, 6, 6)
    y, _ = fc.max_pool2d(X, 2, ceil_mode=True)
    assert y.shape == (2, 3, 3, 3)


@pytest.mark.parametrize("call, name", [
    (lambda: fc.conv2d(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 1, 1)), padding=2**22),
     "x, weight, padding, stride, dilation"),
    (lambda: fc.conv2d_input_grad(np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1)), (1, 1, 2**20, 2**20),
                                  stride=2**20), "input_shape"),
    (lambda: fc.max_unpool2d(np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1), np.int64), (1, 1, 2**30, 2**30)),
     "output_size"),
])
def test_an_output_too_large_for_memory_names_the_argument_that_sized_it(call, name):
    with pytest.raises((MemoryError, ValueError), match=rf"^{name}: the result of shape \(.*\) \(float64, .* GiB\) cannot be"):
        call()
