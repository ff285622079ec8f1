"""Named benchmark shapes (the issue's S1–S8, V1–V3, F1–F2, P1, U1, T1, X1): plain data shared by `fastconv bench`,
the pytest-benchmark suites in bench/ and the tests.

Conv shapes are small-CNN layers (CIFAR-sized through ImageNet-stem-sized); the flop count is the
dense multiply-add count 2·N·C_out·H_out·W_out·(C_in/groups)·kH·kW, the same for forward and both
gradients, and the same for tiled and unshared convolution of that shape.
"""
from __future__ import annotations

from typing import NamedTuple, Union


class ConvBench(NamedTuple):
    name: str
    N: int
    C_in: int
    C_out: int
    H: int
    W: int
    k: int
    stride: int = 1
    padding: Union[int, str] = 0
    dilation: int = 1
    groups: int = 1
    note: str = ""
    tile: int = 1          # tiled conv only: T_h = T_w = tile

    @property
    def x_shape(self):
        return (self.N, self.C_in, self.H, self.W)

    @property
    def w_shape(self):
        return (self.C_out, self.C_in // self.groups, self.k, self.k)

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def out_hw(self):
        span = self.dilation * (self.k - 1) + 1
        return tuple((n + 2 * self.padding - span) // self.stride + 1 for n in (self.H, self.W))

    def y_shape(self, N=None):
        return (N or self.N, self.C_out) + self.out_hw()

    def flops(self, N=None):
        """Multiply-adds ×2 for batch N (default: the shape's own)."""
        H_out, W_out = self.out_hw()
        return 2 * (N or self.N) * self.C_out * H_out * W_out * (self.C_in // self.groups) * self.k * self.k

    def with_batch(self, N):
        return self._replace(N=N)


class PoolBench(NamedTuple):
    name: str
    N: int
    C: int
    H: int
    W: int
    kernel: int
    stride: int
    padding: int = 0

    @property
    def x_shape(self):
        return (self.N, self.C, self.H, self.W)

    def out_hw(self):
        return tuple((n + 2 * self.padding - self.kernel) // self.stride + 1 for n in (self.H, self.W))

    def with_batch(self, N):
        return self._replace(N=N)


CONV_SHAPES = {
    "S1": ConvBench("S1", 64, 3, 32, 32, 32, 5, padding=2, note="CIFAR first layer"),
    "S2": ConvBench("S2", 64, 32, 64, 16, 16, 5, padding=2, note="CIFAR second layer"),
    "S3": ConvBench("S3", 32, 64, 128, 32, 32, 3, padding=1, note="3x3 mid layer"),
    "S4": ConvBench("S4", 8, 128, 128, 56, 56, 3, padding=1, note="ResNet-style 56x56"),
    "S5": ConvBench("S5", 16, 64, 64, 32, 32, 3, padding=2, dilation=2, note="dilated 3x3"),
    "S6": ConvBench("S6", 32, 3, 64, 64, 64, 7, stride=2, padding=3, note="strided 7x7 stem"),
    "S7": ConvBench("S7", 32, 64, 64, 32, 32, 3, padding=1, groups=64, note="depthwise 3x3"),
}

# VGG-16-style 3x3 layers (forward rows only): where Winograd's fewer multiplies count most.
VGG_SHAPES = {
    "V1": ConvBench("V1", 8, 64, 64, 112, 112, 3, padding=1, note="VGG-16 conv1_2"),
    "V2": ConvBench("V2", 8, 256, 256, 28, 28, 3, padding=1, note="VGG-16 conv3_x"),
    "V3": ConvBench("V3", 8, 512, 512, 14, 14, 3, padding=1, note="VGG-16 conv5_x"),
}

# Single planes, 'valid' (correlate2d / conv2d on a 1x1 plane): 512x512 with a 9x9 kernel, and 1024x1024
# with a 31x31 kernel, where FFT convolution pays.
PLANE_SHAPES = {"S8": ConvBench("S8", 1, 1, 1, 512, 512, 9, note="single plane, large kernel"),
                "F1": ConvBench("F1", 1, 1, 1, 1024, 1024, 31, note="single plane, 31x31 kernel")}

# A layer with 11x11 kernels ('same'), the other row where FFT convolution pays.
LARGE_KERNEL_SHAPES = {"F2": ConvBench("F2", 8, 16, 16, 128, 128, 11, padding=5, note="11x11 layer")}

# The rows where 'auto' is expected to choose FFT.
FFT_SHAPES = {"F1": PLANE_SHAPES["F1"], **LARGE_KERNEL_SHAPES}

POOL_SHAPES = {
    "P1": PoolBench("P1", 64, 64, 32, 32, 2, 2),
    "P1_3x3s2": PoolBench("P1_3x3s2", 64, 64, 32, 32, 3, 2, 1),
}

# Unshared (one kernel per output position) and tiled (2x2 kernels cycled) on the same layer.
TILED_SHAPES = {
    "U1": ConvBench("U1", 64, 16, 16, 16, 16, 3, padding=1, note="unshared (locally connected)"),
    "T1": ConvBench("T1", 64, 16, 16, 16, 16, 3, padding=1, note="tiled 2x2", tile=2),
}

# A single small call: what the Python layers and thread start-up cost on top of the arithmetic.
SMALL_CALL = ConvBench("X1", 1, 3, 16, 32, 32, 3, padding=1, note="one image through fc.conv2d")
