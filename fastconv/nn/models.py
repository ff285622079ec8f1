"""Ready-made architectures."""
from __future__ import annotations

import numpy as np

from . import _random
from .conv import Conv2d, LocallyConnected2d, TiledConv2d
from .layers import Dropout, Flatten, Linear, MaxPool2d, ReLU
from .sequential import Sequential

VARIANTS = ("conv", "local", "tiled")


def seed_cnn(in_channels, num_classes, image_size, variant="conv", channels=(16, 32), kernel_size=5, tile=2,
             dropout=0.0, *, dtype=np.float32, rng=None):
    """conv k×k (pad k//2) → ReLU → maxpool 2 → [conv | locally connected | tiled] k×k → ReLU → maxpool 2
    → Flatten → [Dropout] → Linear (logits; train with SoftmaxCrossEntropy).

    image_size: int or (H, W), at least 4 (8, 16 and 32 all work). variant picks the second layer:
    'conv' (Conv2d), 'local' (LocallyConnected2d) or 'tiled' (TiledConv2d with `tile`).
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
    half = (H // 2, W // 2)
    if variant == "conv":
        second = Conv2d(c1, c2, kernel_size, padding=pad, **kw)
    elif variant == "local":
        second = LocallyConnected2d(c1, c2, kernel_size, half, padding=pad, **kw)
    else:
        second = TiledConv2d(c1, c2, kernel_size, tile, padding=pad, **kw)
    stack = [Conv2d(in_channels, c1, kernel_size, padding=pad, **kw), ReLU(), MaxPool2d(2),
             second, ReLU(), MaxPool2d(2), Flatten()]
    if dropout:
        stack.append(Dropout(dropout))
    stack.append(Linear(c2 * (half[0] // 2) * (half[1] // 2), num_classes, **kw))
    return Sequential(*stack)
