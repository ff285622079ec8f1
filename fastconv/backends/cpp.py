"""The C++ backend: the compiled kernels of fastconv._cpp (csrc/), same function table as the reference.

Arguments arrive validated and C-contiguous from ops.py; the extension dispatches on dtype itself,
so this module only maps names. Importing it fails (making the backend unavailable) when the
extension has not been built. The extension picks the kernels' ISA level when it loads (FASTCONV_ISA caps
it); a FASTCONV_ISA that names no level is a configuration error, raised rather than hidden.
"""
try:
    from .. import _cpp
except ImportError as e:
    if "FASTCONV_ISA" in str(e):
        raise ValueError(str(e)) from None
    raise

conv2d = _cpp.conv2d
conv2d_input_grad = _cpp.conv2d_input_grad
conv2d_weight_grad = _cpp.conv2d_weight_grad
max_pool2d = _cpp.max_pool2d
max_unpool2d = _cpp.max_unpool2d
tiled_conv2d = _cpp.tiled_conv2d
tiled_conv2d_input_grad = _cpp.tiled_conv2d_input_grad
tiled_conv2d_weight_grad = _cpp.tiled_conv2d_weight_grad
unshared_conv2d = _cpp.unshared_conv2d
unshared_conv2d_input_grad = _cpp.unshared_conv2d_input_grad
unshared_conv2d_weight_grad = _cpp.unshared_conv2d_weight_grad
set_num_threads = _cpp.set_num_threads
build_info = _cpp.build_info
isa = _cpp.isa
