"""torchvision's AlexNet and VGG, written out as torchvision defines them (module structure, forward with
torch.flatten, state-dict keys), and a Zeiler–Fergus-style net in the same layout: outside truth for the
import tests (torchvision itself does not load beside the CPU build of torch installed here)."""
import torch
from torch import nn


class AlexNet(nn.Module):
    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


CFGS = {"A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}


def make_layers(cfg, batch_norm=False):
    layers, in_channels = [], 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)] if batch_norm else \
                [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(True),
            nn.Dropout(p=dropout), nn.Linear(4096, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def vgg(cfg, batch_norm):
    return VGG(make_layers(CFGS[cfg], batch_norm))


class ZeilerFergus(AlexNet):
    """7×7/2 conv, 3×3/2 overlapping max-pooling and local response normalisation (Zeiler & Fergus 2014)."""

    def __init__(self, num_classes=1000):
        super().__init__(num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 7, 2, 1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1), nn.LocalResponseNorm(5),
            nn.Conv2d(96, 256, 5, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1), nn.LocalResponseNorm(5),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(384, 384, 3, padding=1),
            nn.ReLU(inplace=True), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))


TORCH_MODELS = {"alexnet": AlexNet, "vgg11": lambda: vgg("A", False), "vgg11_bn": lambda: vgg("A", True),
                "vgg16": lambda: vgg("D", False), "vgg16_bn": lambda: vgg("D", True), "zeiler_fergus": ZeilerFergus}


class SmallZeilerFergus(AlexNet):
    """The Zeiler–Fergus layout (7×7/2 conv, 3×3/2 overlapping pooling with switches, LRN) at a width the
    default test suite can afford, with a BatchNorm2d to fold; ReLUs not in place, as Captum's hooks need."""

    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 7, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.LocalResponseNorm(5),
            nn.Conv2d(8, 16, 5, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.LocalResponseNorm(5),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))
