"""fastconv for PyTorch (the `torch` extra): fastconv's kernels as torch operators, modules and a patcher.

- torch.ops.fastconv.<op>: every fastconv op registered with torch.library, with fake kernels (torch.compile,
  torch.export) and autograd formulas built from fastconv's own gradient kernels; the functions here
  (conv2d, max_pool2d, ...) take fastconv's argument forms and call them.
- Modules Conv2d, ConvTranspose2d, BatchNorm2d (relu=True: a ReLU fused after it), MaxPool2d, MaxUnpool2d (torch.nn's
  constructors and state-dict keys), TiledConv2d and LocallyConnected2d (fastconv.nn's).
- patch(model, kinds=None, fuse_relu=False) swaps a torch model's supported layers in place (and fuses BatchNorm2d +
  ReLU pairs into the BatchNorm2d, the ReLU becoming a pass-through FusedReLU); unpatch(model) restores them.

CPU float32/float64 tensors reach the kernels without a copy when contiguous. `import fastconv` never
imports torch; importing this module does.
"""
from . import _library  # noqa: F401  (registers torch.ops.fastconv.*)
from .functional import (batch_norm2d, conv2d, conv2d_input_grad, conv2d_weight_grad, conv_transpose2d, max_pool2d,
                         max_unpool2d, tiled_conv2d, tiled_conv2d_input_grad, tiled_conv2d_weight_grad, unshared_conv2d,
                         unshared_conv2d_input_grad, unshared_conv2d_weight_grad)
from .modules import (BatchNorm2d, Conv2d, ConvTranspose2d, FusedReLU, LocallyConnected2d, MaxPool2d, MaxUnpool2d,
                      TiledConv2d)
from .patch import patch, unpatch

OP_NAMES = tuple(_library.SCHEMAS)   # the operators torch.ops.fastconv.<name>

__all__ = [
    "batch_norm2d", "conv2d", "conv2d_input_grad", "conv2d_weight_grad", "conv_transpose2d", "max_pool2d",
    "max_unpool2d",
    "tiled_conv2d", "tiled_conv2d_input_grad", "tiled_conv2d_weight_grad", "unshared_conv2d",
    "unshared_conv2d_input_grad", "unshared_conv2d_weight_grad",
    "BatchNorm2d", "Conv2d", "ConvTranspose2d", "FusedReLU", "LocallyConnected2d", "MaxPool2d", "MaxUnpool2d",
    "TiledConv2d",
    "patch", "unpatch", "OP_NAMES",
]
