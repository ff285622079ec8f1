"""Compiler flags of the kernel libraries, one set per ISA level: shared by setup.py (the Python
package) and by builds of the C library alone (csrc/build_c_library.py, e.g. cross-compiled for aarch64).

No -march=native anywhere: every level is compiled for a fixed instruction set, and the library picks
the best level the running CPU supports (csrc/dispatch.cpp), so one binary runs on any CPU of its
architecture. The names here are the FASTCONV_ISA values and the libfastconv_<isa>.so suffixes.
"""
import glob
import os

COMMON = ["-O3", "-fno-math-errno"]
OPENMP = ["-fopenmp"]

ISA_FLAGS = {
    "x86_64": {
        "sse2": ["-march=x86-64", "-mtune=generic"],
        "avx2": ["-march=x86-64", "-mtune=generic", "-mavx2", "-mfma"],
        "avx512": ["-march=x86-64", "-mtune=generic", "-mavx2", "-mfma", "-mavx512f", "-mavx512bw",
                   "-mavx512vl", "-mavx512dq"],
    },
    "aarch64": {"neon": ["-march=armv8-a"]},
}

# Front sources (generic flags): the C ABI, the dispatch and the shape checks, in libfastconv.so.
FRONT = ["csrc/cabi.cpp", "csrc/dispatch.cpp", "csrc/shape_checks.cpp"]
BINDINGS = ["csrc/bindings.cpp"]


def kernel_sources(root="."):
    """The kernels and their table: compiled once per ISA level."""
    skip = {os.path.basename(s) for s in FRONT + BINDINGS}
    return sorted(os.path.relpath(s, root) for s in glob.glob(os.path.join(root, "csrc", "*.cpp"))
                  if os.path.basename(s) not in skip)


def isa_levels(machine):
    """{isa: flags} for an architecture as platform.machine() names it; one generic level elsewhere."""
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())
    return ISA_FLAGS.get(machine, {"generic": []})
