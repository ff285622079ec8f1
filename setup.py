"""Builds fastconv's compiled parts from csrc/:

- fastconv/libfastconv_<isa>.so: the kernels, compiled once per ISA level of this architecture (x86-64:
  sse2, avx2, avx512; aarch64: neon), each exporting only its table of entry points (csrc/kernels.h);
- fastconv/libfastconv.so: the plain C ABI (csrc/fastconv.h, installed as fastconv/include/fastconv.h)
  and the dispatch that loads the best level the running CPU supports;
- fastconv._cpp: the pybind11 module, linked against libfastconv.so.

Sources compile in parallel (FASTCONV_BUILD_JOBS, default: all cores). FASTCONV_SANITIZE=1 adds
-fsanitize=address,undefined (used by the memory-safety CI step).
"""
import os
import platform
import shutil
import sys

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc"))
import build_flags  # noqa: E402

ParallelCompile("FASTCONV_BUILD_JOBS", default=0).install()

CABI = "fastconv.libfastconv"
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
extra = SANITIZE if os.environ.get("FASTCONV_SANITIZE", "0") == "1" else []
headers = sorted(os.path.join("csrc", h) for h in os.listdir("csrc") if h.endswith((".h", ".map")))


def library(name, sources, compile_args, link_args=()):
    return Pybind11Extension(name, sources, include_dirs=["csrc"], cxx_std=17, depends=headers,
                             extra_compile_args=build_flags.COMMON + compile_args + extra,
                             extra_link_args=list(link_args) + extra)


class BuildExt(build_ext):
    """pybind11's build_ext, plus: plain names for the C libraries, _cpp linked against libfastconv.so
    (found beside it at run time), and the C header travelling with the library."""

    def get_ext_filename(self, ext_name):
        # Called with the full dotted name and, by get_ext_fullpath, with its last part alone.
        if ext_name.split(".")[-1].startswith("libfastconv"):
            return os.path.join(*ext_name.split(".")) + ".so"
        return super().get_ext_filename(ext_name)

    def get_export_symbols(self, ext):
        return [] if ext.name.split(".")[-1].startswith("libfastconv") else super().get_export_symbols(ext)

    def build_extension(self, ext):
        if ext.name == "fastconv._cpp":
            ext.extra_objects = [self.get_ext_fullpath(CABI)]
        super().build_extension(ext)

    def run(self):
        super().run()
        root = "." if self.inplace else self.build_lib
        include = os.path.join(root, "fastconv", "include")
        os.makedirs(include, exist_ok=True)
        shutil.copy2(os.path.join("csrc", "fastconv.h"), include)


kernel_libs = [
    library(f"fastconv.libfastconv_{isa}", build_flags.kernel_sources(), flags + build_flags.OPENMP,
            build_flags.OPENMP + ["-Wl,--version-script=csrc/kernels.map"])
    for isa, flags in build_flags.isa_levels(platform.machine()).items()
]
ext_modules = kernel_libs + [
    library(CABI, build_flags.FRONT, ["-fvisibility=default"], ["-Wl,-soname,libfastconv.so", "-ldl"]),
    library("fastconv._cpp", build_flags.BINDINGS, [], ["-Wl,-rpath,$ORIGIN"]),
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
