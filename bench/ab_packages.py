"""No-regression A/B of two whole fastconv packages (Python and kernels), e.g. a commit against an older one.

    python bench/ab_packages.py OLD_ROOT NEW_ROOT [--rounds 5] [--threads 1] [--only S1,P1]

OLD_ROOT and NEW_ROOT are directories that hold a built `fastconv/` package (a checkout after
`python setup.py build_ext --inplace`; `git worktree add` gives the old one). Each round times every bench
shape's fastconv call (fastest of >= 5 calls and 1 s; batch 8 for S1-S7, 16 for T1/U1) in a fresh process
per package, old and new alternating so that a slow spell of a shared machine hits both; the table gives
the medians over rounds and ratio = new / old (above 1: the new package is slower).

`fastconv bench --ab LIB` swaps only the kernel library under one Python package; this script also
measures what changed in Python (validation, dispatch, wrappers).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def time_rows(only):
    """In this process: {row: seconds} for the fastconv on sys.path."""
    import time

    import numpy as np

    import fastconv as fc
    from fastconv.benchmark.shapes import CONV_SHAPES, PLANE_SHAPES, POOL_SHAPES, SMALL_CALL, TILED_SHAPES

    rng = np.random.default_rng(0)
    out = {}

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def best(name, f, budget=1.0, least=5):
        if only and name.split()[0] not in only:
            return
        f()
        ts, end = [], time.perf_counter() + budget
        while len(ts) < least or time.perf_counter() < end:
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        out[name] = min(ts)

    for name in ("S1", "S2", "S3", "S6", "S7"):
        c = CONV_SHAPES[name].with_batch(8)
        x, w, dy = r(*c.x_shape), r(*c.w_shape), r(*c.y_shape())
        best(name + " fwd", lambda: fc.conv2d(x, w, **c.kwargs))
        best(name + " igrad", lambda: fc.conv2d_input_grad(dy, w, x.shape, **c.kwargs))
        best(name + " wgrad", lambda: fc.conv2d_weight_grad(x, dy, w.shape, **c.kwargs))
    c = PLANE_SHAPES["S8"]
    img, k = r(c.H, c.W), r(c.k, c.k)
    best("S8 correlate2d", lambda: fc.correlate2d(img, k, "valid"))
    for name, p in POOL_SHAPES.items():
        x = r(p.N, p.C, p.H, p.W)
        best(name, lambda: fc.max_pool2d(x, p.kernel, p.stride, p.padding))
        y, sw = fc.max_pool2d(x, p.kernel, p.stride, p.padding)
        best(name + " unpool", lambda: fc.max_unpool2d(y, sw, x.shape))
    for name, c in TILED_SHAPES.items():
        c = c.with_batch(16)
        x = r(*c.x_shape)
        H_out, W_out = c.out_hw()
        f, w = ((fc.unshared_conv2d, r(H_out, W_out, c.C_out, c.C_in, c.k, c.k)) if name == "U1" else
                (fc.tiled_conv2d, r(c.tile, c.tile, c.C_out, c.C_in, c.k, c.k)))
        best(name + " fwd", lambda: f(x, w, stride=c.stride, padding=c.padding))
    c = SMALL_CALL
    x, w = r(*c.x_shape), r(*c.w_shape)
    best("X1 small call", lambda: fc.conv2d(x, w, **c.kwargs), least=200)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", help="comma-separated bench groups (S1, P1, X1, ...)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    only = set(a.only.split(",")) if a.only else None
    if a.child:
        import fastconv as fc
        fc.set_num_threads(a.threads)
        print(json.dumps(time_rows(only)))
        return 0
    times = {"old": [], "new": []}
    for i in range(a.rounds):
        for tag in ("old", "new"):
            env = dict(os.environ, PYTHONPATH=os.path.abspath(getattr(a, tag)))
            cmd = [sys.executable, os.path.abspath(__file__), a.old, a.new, "--child", "--threads", str(a.threads)]
            if a.only:
                cmd += ["--only", a.only]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            times[tag].append(json.loads(res.stdout.splitlines()[-1]))
        print(f"round {i + 1}/{a.rounds} done", file=sys.stderr)
    print(f"{'row':<16} {'old µs':>10} {'new µs':>10} {'new/old':>8}  per-round ratios")
    ratios = []
    for row in times["old"][0]:
        old = statistics.median(t[row] for t in times["old"])
        new = statistics.median(t[row] for t in times["new"])
        per = " ".join(f"{n[row] / o[row]:.3f}" for o, n in zip(times["old"], times["new"]))
        ratios.append(new / old)
        print(f"{row:<16} {old * 1e6:>10.1f} {new * 1e6:>10.1f} {new / old:>8.3f}  {per}")
    print(f"median ratio {statistics.median(ratios):.3f}; geometric mean "
          f"{statistics.geometric_mean(ratios):.3f}; worst {max(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
