"""`fastconv` command line: info now; demo, bench, train and visualize as their issues land."""
from __future__ import annotations

import argparse
import sys


def _info(args) -> int:
    import fastconv as fc
    from fastconv import backends

    print(f"fastconv {fc.__version__}")
    print(f"backends available: {', '.join(fc.available_backends())} (default: {fc.get_backend()})")
    for name, why in backends.unavailable_reasons().items():
        print(f"  {name}: unavailable ({why})")
    print(f"threads: {fc.get_num_threads()}")
    try:
        from fastconv import _cpp
        print(f"cpp build: {_cpp.build_info()}")
    except ImportError:
        pass
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastconv", description="Fast CNN kernels, layers and visualization.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print version, backends, threads and SIMD level")
    p.set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
