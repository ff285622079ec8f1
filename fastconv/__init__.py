"""fastconv: compiled CNN kernels with a NumPy reference, a layer stack and visualization."""
from .backends import (available_backends, get_backend, get_num_threads, isa, set_backend, set_num_threads,
                       use_backend)
from .backends.kernels import get_algorithm, implementations, kernel_for, set_algorithm, use_kernel
from .ops import (batch_norm2d, batch_norm2d_grad, conv2d, conv2d_input_grad, conv2d_weight_grad, conv_transpose2d, convolve2d, correlate2d,
                  max_pool2d, max_unpool2d, tiled_conv2d, tiled_conv2d_input_grad, tiled_conv2d_weight_grad,
                  unshared_conv2d, unshared_conv2d_input_grad, unshared_conv2d_weight_grad)

__version__ = "0.1.0"

__all__ = [
    "available_backends", "get_algorithm", "get_backend", "get_num_threads", "isa", "set_backend", "implementations", "kernel_for",
    "use_kernel", "set_algorithm", "set_num_threads", "use_backend",
    "conv2d", "conv2d_input_grad", "conv2d_weight_grad", "conv_transpose2d", "convolve2d", "correlate2d",
    "max_pool2d", "max_unpool2d", "tiled_conv2d", "tiled_conv2d_input_grad", "tiled_conv2d_weight_grad",
    "unshared_conv2d", "unshared_conv2d_input_grad", "unshared_conv2d_weight_grad", "batch_norm2d",
    "batch_norm2d_grad", "__version__",
]
