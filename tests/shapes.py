"""The shared shape sweep: plain data, imported by the tests (every backend vs the NumPy reference) and by bench/.

Import it as `import shapes` from tests/ (pytest puts tests/ on sys.path) or as `tests.shapes` from the
repository root. Every case is a dict whose keys are the op's own argument names, so
`fc.conv2d(x, w, **{k: c[k] for k in CONV_ARGS})` runs it.

CONV_CASES     dense conv2d and its two gradients: x (N, C_in, H, W), w (C_out, C_in/groups, kH, kW).
TRANSPOSE_CASES conv_transpose2d: x (N, C_in, H, W), w (C_in, C_out/groups, kH, kW), with output_padding.
PLANE_CASES    convolve2d / correlate2d: image (H, W), kernel (kH, kW); run for every mode that scipy accepts.
POOL_CASES     max_pool2d / max_unpool2d: x (N, C, H, W), kernel_size, stride, padding, ceil_mode.
TILED_CASES    tiled / unshared conv: ((N, C_in, H, W), C_out, k, stride, padding, tile) tuples.
NORM_SHAPES    batch_norm2d and its gradient: x (N, C, H, W).
DTYPES         the dtypes every case runs in.
"""

DTYPES = ("float32", "float64")

CONV_ARGS = ("stride", "padding", "dilation", "groups")


def _conv(id, x, w, stride=1, padding=0, dilation=1, groups=1):
    return dict(id=id, x=x, w=w, stride=stride, padding=padding, dilation=dilation, groups=groups)


CONV_CASES = [
    _conv("1x1-kernel", (2, 3, 5, 6), (4, 3, 1, 1)),
    _conv("1x1-input", (2, 3, 1, 1), (2, 3, 1, 1)),
    _conv("1x1-input-pad1", (1, 2, 1, 1), (3, 2, 3, 3), padding=1),
    _conv("kernel-eq-input", (2, 2, 4, 5), (3, 2, 4, 5)),
    _conv("prime-7x11", (1, 2, 7, 11), (3, 2, 3, 5)),
    _conv("prime-13x5", (2, 1, 13, 5), (2, 1, 5, 3), stride=(2, 1)),
    _conv("stride-gt-kernel", (2, 2, 9, 10), (3, 2, 2, 2), stride=3),
    _conv("stride-asym", (1, 2, 8, 9), (2, 2, 3, 2), stride=(1, 2), padding=(2, 0)),
    _conv("dilation2", (1, 2, 9, 8), (2, 2, 3, 3), dilation=2),
    _conv("dilation-asym-stride2", (2, 1, 11, 12), (2, 1, 2, 3), stride=2, dilation=(2, 3), padding=1),
    _conv("depthwise", (2, 4, 6, 7), (4, 1, 3, 3), padding=1, groups=4),
    _conv("depthwise-x2", (1, 3, 6, 5), (6, 1, 3, 2), stride=2, groups=3),
    _conv("groups2", (2, 4, 7, 6), (6, 2, 3, 3), padding=1, groups=2),
    _conv("groups2-dil2-same", (1, 4, 8, 8), (4, 2, 3, 3), padding="same", dilation=2, groups=2),
    _conv("N1-C1", (1, 1, 6, 6), (1, 1, 3, 3)),
    _conv("C1-many-out", (2, 1, 5, 7), (5, 1, 2, 2)),
    _conv("pad-int", (2, 3, 5, 5), (2, 3, 3, 3), padding=2),
    _conv("pad-pair", (1, 2, 6, 5), (3, 2, 3, 3), padding=(1, 2)),
    _conv("pad-gt-kernel", (1, 2, 4, 5), (2, 2, 2, 2), padding=3),
    _conv("valid", (2, 2, 7, 6), (3, 2, 3, 2), padding="valid"),
    _conv("same", (2, 2, 6, 7), (3, 2, 3, 3), padding="same"),
    _conv("same-even-kernel", (1, 2, 6, 7), (2, 2, 4, 2), padding="same"),
    _conv("same-stride2-asym", (2, 2, 7, 8), (2, 2, 3, 3), stride=2, padding="same"),
    _conv("same-stride-3x2-even", (1, 3, 9, 10), (2, 3, 2, 4), stride=(3, 2), padding="same"),
    _conv("full", (1, 2, 5, 6), (2, 2, 3, 2), padding="full"),
    _conv("full-dil2-stride2", (2, 1, 6, 5), (2, 1, 3, 3), stride=2, padding="full", dilation=2),
    _conv("channels-16-32", (2, 16, 10, 9), (32, 16, 3, 3), padding=1),
    _conv("wide-5x5", (1, 8, 12, 12), (8, 8, 5, 5), stride=2, padding=2),
]


def _transpose(id, x, w, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    return dict(id=id, x=x, w=w, stride=stride, padding=padding, output_padding=output_padding,
                dilation=dilation, groups=groups)


TRANSPOSE_CASES = [
    _transpose("basic", (2, 3, 4, 5), (3, 2, 3, 3)),
    _transpose("stride2-pad1", (1, 2, 5, 4), (2, 3, 3, 3), stride=2, padding=1),
    _transpose("stride2-outpad1", (2, 2, 4, 4), (2, 2, 3, 3), stride=2, padding=1, output_padding=1),
    _transpose("stride-asym-outpad", (1, 2, 3, 5), (2, 3, 2, 3), stride=(3, 2), padding=(0, 1), output_padding=(2, 1)),
    _transpose("dilation2", (1, 2, 4, 4), (2, 2, 3, 2), dilation=2, padding=1),
    _transpose("outpad-lt-dilation", (1, 2, 4, 5), (2, 3, 3, 3), padding=1, output_padding=1, dilation=2),
    _transpose("groups2", (2, 4, 3, 4), (4, 3, 3, 3), stride=2, groups=2),
    _transpose("depthwise", (1, 3, 4, 4), (3, 1, 2, 2), stride=2, groups=3),
    _transpose("1x1", (2, 3, 1, 1), (3, 4, 1, 1)),
]

PLANE_CASES = [
    dict(id="3x3-on-7x11", image=(7, 11), kernel=(3, 3)),
    dict(id="even-4x2-on-13x5", image=(13, 5), kernel=(4, 2)),
    dict(id="even-2x2", image=(6, 6), kernel=(2, 2)),
    dict(id="kernel-eq-image", image=(5, 4), kernel=(5, 4)),
    dict(id="1x1-on-1x1", image=(1, 1), kernel=(1, 1)),
    dict(id="1x1-kernel", image=(4, 6), kernel=(1, 1)),
    dict(id="row-vectors", image=(1, 7), kernel=(1, 3)),
    dict(id="kernel-larger-swap", image=(3, 4), kernel=(5, 6)),
    dict(id="kernel-larger-even-swap", image=(2, 3), kernel=(6, 4)),
]


def _pool(id, x, kernel_size, stride=None, padding=0, ceil_mode=False):
    return dict(id=id, x=x, kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode)


POOL_CASES = [
    _pool("k2s2", (2, 3, 6, 8), 2),
    _pool("k2s2-odd", (1, 2, 7, 5), 2),
    _pool("k2s2-odd-ceil", (1, 2, 7, 5), 2, ceil_mode=True),
    _pool("k3s2-overlap", (2, 2, 7, 9), 3, 2),
    _pool("k3s2-pad1", (1, 3, 8, 7), 3, 2, 1),
    _pool("k3s2-pad1-ceil", (2, 1, 8, 6), 3, 2, 1, True),
    _pool("k3s1-pad1", (1, 2, 5, 5), 3, 1, 1),
    _pool("rect-k2x3-s1x2-pad1", (1, 2, 6, 9), (2, 3), (1, 2), (1, 1)),
    _pool("stride-gt-kernel", (1, 2, 9, 10), 2, 3),
    _pool("stride-gt-kernel-ceil", (1, 2, 9, 10), 2, 3, 0, True),
    _pool("1x1", (2, 2, 3, 4), 1),
    _pool("kernel-eq-input", (2, 3, 4, 5), (4, 5)),
    _pool("1x1-input", (1, 2, 1, 1), 1),
    _pool("prime-13x5", (1, 1, 13, 5), (3, 2), (2, 1)),
]


# (N, C_in, H, W), C_out, k, stride, padding, tile
TILED_CASES = [
    ((2, 3, 7, 6), 4, 3, 1, 1, (2, 2)),
    ((1, 1, 1, 1), 1, 1, 1, 0, (1, 1)),            # 1x1 everything
    ((3, 2, 5, 5), 2, 5, 1, 0, (1, 1)),            # kernel = input
    ((2, 3, 11, 7), 5, 2, 2, "same", (3, 2)),      # prime sizes, stride 2, period not dividing the output
    ((2, 2, 6, 6), 3, 3, 3, 4, (5, 4)),            # stride > kernel, pad > kernel, tile larger than output
    ((1, 2, 13, 5), 2, 3, (2, 1), (1, 2), (7, 1)),
    ((4, 3, 8, 8), 16, 3, 1, "full", (2, 3)),
]

# batch_norm2d: 1x1 and prime planes, planes of at least one kernel chunk (1024 values: blocks of one channel),
# many small planes (blocks of channels, the last one short), one channel, N = 1.
NORM_SHAPES = [(2, 3, 1, 1), (1, 2, 2, 1), (3, 5, 7, 11), (2, 7, 13, 3), (1, 3, 40, 40), (2, 2, 33, 32), (4, 37, 2, 2),
               (3, 130, 4, 4), (5, 1, 3, 3), (1, 1, 2, 3), (32, 64, 4, 4), (2, 300, 1, 1)]
