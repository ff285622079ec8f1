"""The C ABI library (libfastconv.so) loaded with cffi in ABI mode, declarations taken from its header.

    from fastconv import cabi
    lib, ffi = cabi.load()              # cffi handles; lib.fc_conv2d_f32(...) etc.
    cabi.library_path(), cabi.include_dir()   # for linking from C, Julia, Rust

The header's cffi-begin/cffi-end section is fed to cffi verbatim, so the Python declarations can never
drift from the C ones.
"""
from __future__ import annotations

import functools
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def library_path() -> str:
    """Absolute path of the shared library exporting the fc_* functions."""
    path = os.path.join(_HERE, "libfastconv.so")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: fastconv was installed without its C ABI library")
    return path


def include_dir() -> str:
    """Directory holding fastconv.h."""
    path = os.path.join(_HERE, "include")
    if not os.path.exists(os.path.join(path, "fastconv.h")):
        raise FileNotFoundError(f"{path}/fastconv.h is missing: fastconv was installed without its C header")
    return path


def declarations() -> str:
    """The part of fastconv.h between the cffi markers (plain C declarations)."""
    with open(os.path.join(include_dir(), "fastconv.h")) as f:
        text = f.read()
    return text.split("/* cffi-begin */", 1)[1].split("/* cffi-end */", 1)[0]


@functools.lru_cache(maxsize=None)
def load():
    """(lib, ffi): the library opened once with cffi in ABI mode."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(declarations())
    return ffi.dlopen(library_path()), ffi
