"""The C++ backend: the compiled kernels of fastconv._cpp (csrc/), same function table as the reference.

Arguments arrive validated and C-contiguous from ops.py; the extension dispatches on dtype itself and
its registry picks the implementation (kernels.py forces or names one), so this module only maps names.
Importing it fails (making the backend unavailable) when the extension has not been built. The
extension picks the kernels' ISA level when it loads (FASTCONV_ISA caps it); a FASTCONV_ISA that names
no level is a configuration error, raised rather than hidden.
"""
try:
    from .. import _cpp
except ImportError as e:
    if "FASTCONV_ISA" in str(e):
        raise ValueError(str(e)) from None
    raise
from .kernels import dry_run, forced


def _op(name, takes_algorithm=False):
    """The extension's op `name`, told which implementation is forced, or only asked which would run.
    The dense conv ops (takes_algorithm) also take the algorithm to keep to."""
    fn = getattr(_cpp, name)

    def call(*args, algorithm="auto"):
        if takes_algorithm:
            args += (algorithm,)
        names = dry_run()
        if names is None:
            return fn(*args, forced(name), False)
        names.append(fn(*args, forced(name), True))
        return 0  # what max_unpool2d returns when no switch lies outside the plane

    call.__name__ = name
    return call


conv2d = _op("conv2d", takes_algorithm=True)
conv2d_input_grad = _op("conv2d_input_grad", takes_algorithm=True)
conv2d_weight_grad = _op("conv2d_weight_grad", takes_algorithm=True)
max_pool2d = _op("max_pool2d")
max_unpool2d = _op("max_unpool2d")
batch_norm2d = _op("batch_norm2d")
batch_norm2d_grad = _op("batch_norm2d_grad")
tiled_conv2d = _op("tiled_conv2d")
tiled_conv2d_input_grad = _op("tiled_conv2d_input_grad")
tiled_conv2d_weight_grad = _op("tiled_conv2d_weight_grad")
unshared_conv2d = _op("unshared_conv2d")
unshared_conv2d_input_grad = _op("unshared_conv2d_input_grad")
unshared_conv2d_weight_grad = _op("unshared_conv2d_weight_grad")
set_num_threads = _cpp.set_num_threads
get_num_threads = _cpp.get_num_threads
build_info = _cpp.build_info
isa = _cpp.isa
