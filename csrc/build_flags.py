"""Compiler flags of the kernel libraries, one set per ISA level: shared by setup.py (the Python
package) and by builds of the C library alone (csrc/build_c_library.py, e.g. cross-compiled for aarch64).

No -march=native anywhere: every level is compiled for a fixed instruction set, and the library picks
the best level the running CPU supports (csrc/dispatch.cpp), so one binary runs on any CPU of its
architecture. The names here are the FASTCONV_ISA values and the libfastconv_<isa>.so suffixes. The x86
levels are the psABI's microarchitecture levels (x86-64 baseline, x86-64-v3: AVX2, FMA, BMI1/2, F16C,
LZCNT, MOVBE; x86-64-v4: v3 and AVX-512 F/BW/CD/DQ/VL), whose extra scalar instructions the compiler also
uses in the kernels' index arithmetic, as it does under -march=native.
"""
import glob
import os

# The package's build puts Python's own CFLAGS first (-fwrapv among them) and pybind11 adds hidden
# visibility; both are named here so that the C library alone compiles the very same kernels. Wrap-around
# signed arithmetic changes how GCC vectorises some loops (the unshared forward and the FFT among them ran
# faster with it: docs/performance.md); hidden visibility: each kernel library exports its table only.
COMMON = ["-O3", "-fno-math-errno", "-fwrapv", "-fvisibility=hidden"]
OPENMP = ["-fopenmp"]

ISA_FLAGS = {
    "x86_64": {
        "sse2": ["-march=x86-64", "-mtune=generic"],
        "avx2": ["-march=x86-64-v3", "-mtune=generic"],
        "avx512": ["-march=x86-64-v4", "-mtune=generic"],
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
