"""Builds the pybind11 extension fastconv._cpp and the C ABI library fastconv/libfastconv.so from csrc/.

The C ABI library holds the same kernels behind extern "C" entry points (csrc/cabi.cpp); its header
csrc/fastconv.h is installed beside it as fastconv/include/fastconv.h.

FASTCONV_PORTABLE=1 builds without -march=native (a scalar/SSE2 path that runs on any x86-64).
FASTCONV_SANITIZE=1 adds -fsanitize=address,undefined (used by the memory-safety CI step).
"""
import glob
import os
import shutil

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup


def _flags():
    compile_args = ["-O3", "-fopenmp", "-fno-math-errno"]
    link_args = ["-fopenmp"]
    if os.environ.get("FASTCONV_PORTABLE", "0") != "1":
        compile_args.append("-march=native")
    if os.environ.get("FASTCONV_SANITIZE", "0") == "1":
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        compile_args += san
        link_args += san
    return compile_args, link_args


compile_args, link_args = _flags()
kernels = sorted(s for s in glob.glob("csrc/*.cpp") if not s.endswith(("cabi.cpp", "bindings.cpp")))
CABI = "fastconv.libfastconv"


class BuildExt(build_ext):
    """pybind11's build_ext, plus: the C ABI library gets a plain name and its header travels with it."""

    def get_ext_filename(self, ext_name):
        # Called with the full dotted name and, by get_ext_fullpath, with its last part alone.
        if ext_name.split(".")[-1] == "libfastconv":
            return os.path.join(*ext_name.split(".")) + ".so"
        return super().get_ext_filename(ext_name)

    def get_export_symbols(self, ext):
        return [] if ext.name == CABI else super().get_export_symbols(ext)

    def run(self):
        super().run()
        root = "." if self.inplace else self.build_lib
        include = os.path.join(root, "fastconv", "include")
        os.makedirs(include, exist_ok=True)
        shutil.copy2(os.path.join("csrc", "fastconv.h"), include)


ext_modules = [
    Pybind11Extension(
        "fastconv._cpp",
        kernels + ["csrc/bindings.cpp"],
        include_dirs=["csrc"],
        cxx_std=17,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        depends=glob.glob("csrc/*.h"),
    ),
    Pybind11Extension(
        CABI,
        kernels + ["csrc/cabi.cpp"],
        include_dirs=["csrc"],
        cxx_std=17,
        extra_compile_args=compile_args + ["-fvisibility=default"],
        extra_link_args=link_args,
        depends=glob.glob("csrc/*.h"),
    ),
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
