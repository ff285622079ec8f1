"""Ready-made architectures."""
from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _random
from .conv import Conv2d, LocallyConnected2d, TiledConv2d
from .layers import Dropout, Flatten, Linear, MaxPool2d, ReLU
from .sequential import Sequential

VARIANTS = ("conv", "local", "tiled")


def seed_cnn(in_channels, num_classes, image_size, variant="conv", channels=(16, 32), kernel_size=5, tile=2,
             dropout=0.0, *, first_kernel=None, first_stride=1, dtype=np.float32, rng=None):
    """conv k×k (pad k//2) → ReLU → maxpool 2 → [conv | locally connected | tiled] k×k → ReLU → maxpool 2
    → Flatten → [Dropout] → Linear (logits; train with SoftmaxCrossEntropy).

    image_size: int or (H, W), at least 4 (8, 16 and 32 all work). variant picks the second layer:
    'conv' (Conv2d), 'local' (LocallyConnected2d) or 'tiled' (TiledConv2d with `tile`).
    first_kernel, first_stride: the first convolution's size (default kernel_size) and stride, padded by
    first_kernel // 2 — the knobs of Zeiler & Fergus's architecture selection (11×11 stride 4 vs 7×7 stride 2).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    H, W = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if min(H, W) < 4:
        raise ValueError(f"image_size: expected at least 4 (two 2×2 poolings), got {image_size!r}")
    rng = _random.get_rng(rng)
    c1, c2 = channels
    pad = kernel_size // 2
    kw = dict(dtype=dtype, rng=rng)
    k1 = kernel_size if first_kernel is None else first_kernel
    H, W = (V.conv_out(n, k1 // 2, k1 // 2, k1, first_stride, 1) for n in (H, W))
    if min(H, W) < 4:
        raise ValueError(f"first_stride: {first_stride} leaves a {H}×{W} map after the first layer; two 2×2 "
                         "poolings need at least 4×4")
    half = (H // 2, W // 2)
    if variant == "conv":
        second = Conv2d(c1, c2, kernel_size, padding=pad, **kw)
    elif variant == "local":
        second = LocallyConnected2d(c1, c2, kernel_size, half, padding=pad, **kw)
    else:
        second = TiledConv2d(c1, c2, kernel_size, tile, padding=pad, **kw)
    stack = [Conv2d(in_channels, c1, k1, stride=first_stride, padding=k1 // 2, **kw), ReLU(), MaxPool2d(2),
             second, ReLU(), MaxPool2d(2), Flatten()]
    if dropout:
        stack.append(Dropout(dropout))
    stack.append(Linear(c2 * (half[0] // 2) * (half[1] // 2), num_classes, **kw))
    return Sequential(*stack)
