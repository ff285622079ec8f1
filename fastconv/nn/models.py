"""Ready-made architectures: the seed CNN of the demo, and AlexNet, VGG (plain and with batch norm) and a
Zeiler–Fergus-style net with torchvision's structure and state-dict keys."""
from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _random
from .conv import Conv2d, LocallyConnected2d, TiledConv2d
from .layers import Dropout, Flatten, Linear, MaxPool2d, ReLU
from .norm import BatchNorm2d, LocalResponseNorm
from .pooling import AdaptiveAvgPool2d
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


# -- the CNNs of the visualization literature, with torchvision's structure and state-dict keys ---------------
def _imagenet_net(features, pool, classifier, dtype, rng):
    """features → avgpool (AdaptiveAvgPool2d) → flatten → classifier: torchvision's AlexNet and VGG, whose forward
    calls torch.flatten between avgpool and classifier (fastconv.nn.from_torch names that step 'flatten')."""
    model = Sequential(("features", Sequential(*features)), ("avgpool", AdaptiveAvgPool2d(pool)),
                       ("flatten", Flatten()), ("classifier", Sequential(*classifier)))
    return model.astype(dtype)


def alexnet(num_classes=1000, dropout=0.5, *, dtype=np.float32, rng=None):
    """torchvision's AlexNet (its one-GPU variant of Krizhevsky et al. 2012): same layers, names and state-dict
    keys ("features.0.weight", ..., "classifier.6.bias"), so its checkpoints load with load_state_dict."""
    rng = _random.get_rng(rng)
    kw = dict(rng=rng)
    features = [Conv2d(3, 64, 11, 4, 2, **kw), ReLU(), MaxPool2d(3, 2),
                Conv2d(64, 192, 5, padding=2, **kw), ReLU(), MaxPool2d(3, 2),
                Conv2d(192, 384, 3, padding=1, **kw), ReLU(), Conv2d(384, 256, 3, padding=1, **kw), ReLU(),
                Conv2d(256, 256, 3, padding=1, **kw), ReLU(), MaxPool2d(3, 2)]
    classifier = [Dropout(dropout), Linear(256 * 6 * 6, 4096, **kw), ReLU(), Dropout(dropout),
                  Linear(4096, 4096, **kw), ReLU(), Linear(4096, num_classes, **kw)]
    return _imagenet_net(features, 6, classifier, dtype, rng)


VGG_CONFIGS = {   # channels of each 3×3 conv, "M" a 2×2 max-pool (Simonyan & Zisserman 2015, table 1)
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def vgg(name="vgg16", batch_norm=False, num_classes=1000, dropout=0.5, *, dtype=np.float32, rng=None):
    """torchvision's VGG `name` ('vgg11', 'vgg13', 'vgg16', 'vgg19'), with batch norm after every conv for
    batch_norm=True (torchvision's `*_bn`): same layers, names and state-dict keys."""
    if name not in VGG_CONFIGS:
        raise ValueError(f"name: expected one of {list(VGG_CONFIGS)}, got {name!r}")
    rng = _random.get_rng(rng)
    features, channels = [], 3
    for v in VGG_CONFIGS[name]:
        if v == "M":
            features.append(MaxPool2d(2, 2))
            continue
        features.append(Conv2d(channels, v, 3, padding=1, rng=rng))
        features += [BatchNorm2d(v), ReLU()] if batch_norm else [ReLU()]
        channels = v
    classifier = [Linear(512 * 7 * 7, 4096, rng=rng), ReLU(), Dropout(dropout), Linear(4096, 4096, rng=rng), ReLU(),
                  Dropout(dropout), Linear(4096, num_classes, rng=rng)]
    return _imagenet_net(features, 7, classifier, dtype, rng)


def vgg11(**kwargs):
    return vgg("vgg11", **kwargs)


def vgg11_bn(**kwargs):
    return vgg("vgg11", batch_norm=True, **kwargs)


def vgg16(**kwargs):
    return vgg("vgg16", **kwargs)


def vgg16_bn(**kwargs):
    return vgg("vgg16", batch_norm=True, **kwargs)


def zeiler_fergus(num_classes=1000, *, dtype=np.float32, rng=None):
    """A Zeiler & Fergus (2014, fig. 3) style net: 7×7/2 conv, 3×3/2 overlapping max-pooling and local
    response normalisation in the first two stages, then three 3×3 convs and two 4096-unit layers; as
    features / avgpool / flatten / classifier, the layout of the torchvision nets."""
    rng = _random.get_rng(rng)
    kw = dict(rng=rng)
    features = [Conv2d(3, 96, 7, 2, 1, **kw), ReLU(), MaxPool2d(3, 2, 1), LocalResponseNorm(5),
                Conv2d(96, 256, 5, 2, **kw), ReLU(), MaxPool2d(3, 2, 1), LocalResponseNorm(5),
                Conv2d(256, 384, 3, padding=1, **kw), ReLU(), Conv2d(384, 384, 3, padding=1, **kw), ReLU(),
                Conv2d(384, 256, 3, padding=1, **kw), ReLU(), MaxPool2d(3, 2)]
    classifier = [Dropout(0.5), Linear(256 * 6 * 6, 4096, **kw), ReLU(), Dropout(0.5), Linear(4096, 4096, **kw),
                  ReLU(), Linear(4096, num_classes, **kw)]
    return _imagenet_net(features, 6, classifier, dtype, rng)
