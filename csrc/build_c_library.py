"""Build the C library alone — libfastconv.so and its libfastconv_<isa>.so kernel libraries — without
Python: for C users and for cross-compiled targets (CI builds aarch64 with Debian's
g++-aarch64-linux-gnu and runs examples/c/conv_check.c under qemu-aarch64).

    python csrc/build_c_library.py --out DIR [--cxx aarch64-linux-gnu-g++] [--machine aarch64] [--jobs N]

The flags and sources are csrc/build_flags.py's, the ones setup.py uses.
"""
import argparse
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import build_flags  # noqa: E402

ROOT = os.path.dirname(HERE)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for the libraries and fastconv.h")
    ap.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    ap.add_argument("--machine", default=platform.machine(), help="target architecture (x86_64, aarch64)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--extra-flags", default="", help="flags added to every level's, e.g. -march=native for a "
                    "build to compare the dispatched one against (fastconv bench --ab)")
    args = ap.parse_args(argv)
    out, objs = os.path.abspath(args.out), os.path.join(os.path.abspath(args.out), "obj")
    os.makedirs(objs, exist_ok=True)
    base = [args.cxx, "-std=c++17", "-fPIC", "-I", os.path.join(ROOT, "csrc")] + build_flags.COMMON

    def compile_(src, flags, tag):
        obj = os.path.join(objs, f"{tag}_{os.path.basename(src)}.o")
        subprocess.run(base + flags + ["-c", os.path.join(ROOT, src), "-o", obj], check=True)
        return obj

    levels = build_flags.isa_levels(args.machine)
    extra = args.extra_flags.split()
    jobs = [(src, flags + extra + build_flags.OPENMP, isa) for isa, flags in levels.items()
            for src in build_flags.kernel_sources(ROOT)]
    jobs += [(src, ["-fvisibility=default"], "front") for src in build_flags.FRONT]
    with ThreadPoolExecutor(args.jobs) as pool:
        built = list(pool.map(lambda j: compile_(*j), jobs))
    for isa in levels:
        mine = [o for o, (_, _, tag) in zip(built, jobs) if tag == isa]
        subprocess.run([args.cxx, "-shared", "-o", os.path.join(out, f"libfastconv_{isa}.so"), *mine,
                        *build_flags.OPENMP, "-Wl,--version-script=" + os.path.join(HERE, "kernels.map")],
                       check=True)
    front = [o for o, (_, _, tag) in zip(built, jobs) if tag == "front"]
    subprocess.run([args.cxx, "-shared", "-o", os.path.join(out, "libfastconv.so"), *front,
                    "-Wl,-soname,libfastconv.so", "-ldl"], check=True)
    with open(os.path.join(HERE, "fastconv.h")) as src, open(os.path.join(out, "fastconv.h"), "w") as dst:
        dst.write(src.read())
    print(f"built libfastconv.so and the kernel levels {', '.join(levels)} in {out}")


if __name__ == "__main__":
    main()
