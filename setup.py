"""Builds the pybind11 extension fastconv._cpp from csrc/.

FASTCONV_PORTABLE=1 builds without -march=native (a scalar/SSE2 path that runs on any x86-64).
FASTCONV_SANITIZE=1 adds -fsanitize=address,undefined (used by the memory-safety CI step).
"""
import glob
import os

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
sources = sorted(s for s in glob.glob("csrc/*.cpp") if not s.endswith("cabi.cpp"))

ext_modules = [
    Pybind11Extension(
        "fastconv._cpp",
        sources,
        include_dirs=["csrc"],
        cxx_std=17,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        depends=glob.glob("csrc/*.h"),
    )
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
