"""Property test: random shapes, strides, dilations, groups and per-side paddings ((top, bottom),
(left, right)) on every backend equal the reference on an input padded explicitly with np.pad."""
import numpy as np
import pytest

import fastconv as fc
from _helpers import assert_close
from test_padding import _crop, _padded

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402


@given(data=st.data())
def test_random_one_sided_paddings_equal_explicit_pad(data):
    """Random shapes, strides, dilations, groups and per-side paddings: every backend against np.pad."""
    groups = data.draw(st.sampled_from([1, 2]))
    C = groups * data.draw(st.integers(1, 3))
    C_out = groups * data.draw(st.integers(1, 3))
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    s = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    d = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    pad = tuple(tuple(data.draw(st.integers(0, 5)) for _ in range(2)) for _ in range(2))
    H = data.draw(st.integers(max(1, d[0] * (kh - 1) + 1 - sum(pad[0])), 20))
    W = data.draw(st.integers(max(1, d[1] * (kw - 1) + 1 - sum(pad[1])), 20))
    rng = np.random.default_rng(12)
    x, w = rng.standard_normal((2, C, H, W)), rng.standard_normal((C_out, C // groups, kh, kw))
    xp = _padded(x, pad)
    geo = dict(stride=s, dilation=d, groups=groups)
    y_ref = fc.conv2d(xp, w, **geo, backend="numpy")
    dy = rng.standard_normal(y_ref.shape)
    dx_ref = _crop(fc.conv2d_input_grad(dy, w, xp.shape, **geo, backend="numpy"), pad, (H, W))
    dw_ref = fc.conv2d_weight_grad(xp, dy, w.shape, **geo, backend="numpy")
    for name in fc.available_backends():
        assert_close(fc.conv2d(x, w, padding=pad, **geo, backend=name), y_ref, np.float64)
        assert_close(fc.conv2d_input_grad(dy, w, x.shape, padding=pad, **geo, backend=name), dx_ref, np.float64)
        assert_close(fc.conv2d_weight_grad(x, dy, w.shape, padding=pad, **geo, backend=name), dw_ref, np.float64)
