"""Helpers for the tests that compare against PyTorch (import only after pytest.importorskip("torch")).

`torch_conv2d` states fastconv's padding words in torch's own terms (an explicit F.pad where torch has no
word); `one_torch_thread` keeps torch's OpenMP pool from spinning beside fastconv's on the two cores.
"""
import pytest
import torch
import torch.nn.functional as F

from _helpers import conv_pads


def torch_conv2d(x, w, b, stride, padding, dilation, groups):
    """torch conv2d; padding words torch lacks (strided 'same', 'full') become an explicit F.pad."""
    kw = dict(stride=stride, dilation=dilation, groups=groups)
    if padding in ("same", "valid") and stride in (1, (1, 1)):
        return F.conv2d(x, w, b, padding=padding, **kw)
    t, bo, l, r = conv_pads(padding, x.shape[2:], w.shape[2:], stride, dilation)
    return F.conv2d(F.pad(x, (l, r, t, bo)), w, b, **kw)


@pytest.fixture
def one_torch_thread():
    """torch's and fastconv's OpenMP pools spinning side by side on 2 cores slow both down many-fold."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
