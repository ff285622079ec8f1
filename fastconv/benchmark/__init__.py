"""`fastconv bench`: every kernel validated against the NumPy reference, then timed against PyTorch,
scipy and Numba in the same run, as a table of throughputs, ratios and fractions of the machine's
measured GEMM peak (or memory-copy bandwidth, for pooling).

Every row is validated first. Then each repeat sweeps the whole table: for a row it calls the
implementations in turn, round after round (a short block of calls each, after a pause and one untimed
call: see machine.interleaved_times), and keeps each one's fastest call, so a ratio compares times taken
under the same spells of machine load. With --repeat R the table shows the median over the R sweeps of
each throughput and of each ratio; a row's sweeps lie a whole table apart, so one slow spell of the
shared machine (they last seconds to minutes) reaches one of them, not all.
"""
from __future__ import annotations

import json
import statistics
import sys
import time

from . import machine
from .cases import all_cases

IMPLS = ("fastconv", "numba", "torch", "scipy", "dense", "direct", "winograd", "fft")
FORCED = ("direct", "winograd", "fft")  # fastconv with one algorithm forced: 'auto' is held to the best of them


def measure(cases, repeat, log=print, timer=machine.interleaved_times):
    """Rows of medians over `repeat` sweeps of all cases: rate per impl, ratio vs torch (or vs the base
    impl), and the check result. Rows are logged as the last sweep completes them."""
    checks = [case.check() for case in cases]
    times = [{k: [] for k in case.impls} for case in cases]
    for sweep in range(1, repeat):
        for case, ts in zip(cases, times):
            _sweep(case, ts, timer)
        log(f"sweep {sweep}/{repeat} done", flush=True)
    rows = []
    for case, check, ts in zip(cases, checks, times):  # the last sweep, each row shown as it completes
        _sweep(case, ts, timer)
        rows.append(_row(case, check, ts))
        log(_line(rows[-1]), flush=True)
    return rows


def _sweep(case, ts, timer):
    for name, t in timer(case.impls).items():
        ts[name].append(t)


def _row(case, check, ts):
    """A table row from a case's check result and its per-sweep fastest times `ts`: medians over sweeps."""
    passed, ref_rate = check
    base = case.base or "torch"
    ratios = [b / f for b, f in zip(ts.get(base, []), ts["fastconv"])]
    row = dict(group=case.group, op=case.op, shape=case.shape, unit=case.unit, passed=passed, numpy=ref_rate,
               ratio=statistics.median(ratios) if ratios else None, ratio_vs=base)
    for name, t in ts.items():
        row[name] = statistics.median(case.work / v * 1e-9 for v in t)
    row["algorithm"] = case.algorithm
    forced = [ts[a] for a in FORCED if a in ts]
    # auto's time over the best forced algorithm's (auto's own among them: cases leave out the forced
    # algorithm that runs auto's kernel), per sweep: at most 1.05 is the target
    row["auto_vs_best"] = (statistics.median(f / min(f, *t) for f, *t in zip(ts["fastconv"], *forced))
                           if forced else None)
    return row


def ab_cases(cases, library):
    """The cases with two implementations: fastconv's call on the kernels chosen for this CPU ('fastconv')
    and the same call on the kernels of another build of them at `library` ('ab'), e.g. one compiled with
    -march=native. Every call first makes its kernels active (both pay that switch: a lock and a
    pointer store); a row's ratio is the other build's time over the chosen one's."""
    from fastconv import _cpp

    isa = _cpp.isa()

    def on(switch, fn):
        def call():
            switch()
            return fn()
        return call

    return [c._replace(impls={"fastconv": on(lambda: _cpp._use_isa(isa), c.impls["fastconv"]),
                              "ab": on(lambda: _cpp._use_library(library), c.impls["fastconv"])}, base="ab")
            for c in cases]


def _fmt(v, width=8, digits=1):
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.{digits}f}"


_SUFFIX = {"dense": "d", "ab": "a"}  # ratios not against PyTorch: vs fastconv's dense conv, vs another build
HEADER = (f"{'row':<4} {'op':<28} {'shape':<34} {'pass':<4} {'fastconv':>8} {'numpy':>8} {'numba':>8} "
          f"{'torch':>8} {'scipy':>8} {'ratio':>7} {'%peak':>6} {'auto/best':>9}  algorithm")


def _line(row):
    ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x" + _SUFFIX.get(row["ratio_vs"], "")
    return (f"{row['group']:<4} {row['op']:<28} {row['shape']:<34} {'ok' if row['passed'] else 'FAIL':<4} "
            f"{_fmt(row.get('fastconv'))} {_fmt(row.get('numpy'), digits=2)} {_fmt(row.get('numba'))} "
            f"{_fmt(row.get('torch'))} {_fmt(row.get('scipy'))} {ratio:>7} {_fmt(row.get('pct_peak'), 6, 0)} "
            f"{_fmt(row.get('auto_vs_best'), 9, 2)}  {row.get('algorithm', '')}")


def _add_peaks(rows, peak, bandwidth):
    for r in rows:
        r["pct_peak"] = 100 * r["fastconv"] / (peak if r["unit"] == "GFLOP/s" else bandwidth)
        if r.get("torch") and r["unit"] == "GFLOP/s":
            r["torch_pct_peak"] = 100 * r["torch"] / peak
        r["target"] = target(r)


def target(row):
    """The ratio a row is held to (the speed targets): 1x PyTorch on dense rows (0.9x where PyTorch runs
    above 90% of the GEMM peak), 2x on the S1/S6 input grads, 3x depthwise, 5x single plane, max-pool
    and unshared, 1.5x unpool; T1 within 1.5x of the dense conv's time; with Winograd, 1.6x on the S3/S4
    forward and input grads and the VGG rows, 1.3x on the S3/S4 weight grads, 1.4x on the S5 (dilated)
    and 1.3x on the S2 (5x5) forward and input grads; with FFT, 10x on F1 and 2x on F2."""
    if row.get("ratio_vs") == "dense":
        return 2 / 3
    if row.get("ratio_vs") == "ab":  # the dispatched kernels cost nothing measurable against another build
        return 0.97
    group, op = row["group"], row["op"]
    if group in ("S1", "S6") and op == "conv2d_input_grad":
        return 2.0
    if group in ("S3", "S4") and op != "conv2d_weight_grad" or group in ("V1", "V2", "V3"):
        return 1.6
    if group in ("S3", "S4"):
        return 1.3
    if group in ("S2", "S5") and op != "conv2d_weight_grad":
        return 1.4 if group == "S5" else 1.3
    if group in ("S1", "S2", "S3", "S4", "S5", "S6"):
        return 0.9 if row.get("torch_pct_peak", 0) > 90 else 1.0
    return {"S7": 3.0, "S8": 5.0, "U1": 5.0, "F1": 10.0, "F2": 2.0}.get(group, 1.5 if op == "max_unpool2d" else 5.0)


def chart(rows, path):
    """Bar chart of the ratios (log scale); skipped with a message when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chart: matplotlib not installed, no PNG written")
        return
    rows = [r for r in rows if r["ratio"]]
    labels = [f"{r['group']} {r['op'].replace('conv2d', 'conv').replace('_grad', '')}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(rows)), 4.5))
    # Green where the row meets its target (a black tick on the bar).
    bars = [target(r) for r in rows]
    ax.bar(range(len(rows)), [r["ratio"] for r in rows],
           color=["tab:green" if r["ratio"] >= t else "tab:red" for r, t in zip(rows, bars)])
    ax.scatter(range(len(rows)), bars, marker="_", s=120, color="k", zorder=3, label="target")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), labels, rotation=75, fontsize=7)
    ax.set_ylabel("speed-up (x PyTorch; T1: x fastconv dense)")
    ax.set_title("fastconv vs PyTorch, same run, 2 threads")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"chart: {path}")


def run(only=None, repeat=1, threads=2, numba=True, json_path=None, png_path=None, ab=None):
    import fastconv as fc
    start = time.perf_counter()
    fc.set_num_threads(threads)
    try:
        import torch
        torch.set_num_threads(threads)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    try:
        from fastconv import _cpp
        build = _cpp.build_info()
    except ImportError:
        build = "cpp backend not built"
    peak, peak_src = machine.gemm_peak()
    bandwidth = machine.copy_bandwidth()
    info = dict(threads=threads, backend=fc.get_backend(), build=build, torch=torch_version, blas=machine.blas_info(),
                repeat=repeat)
    print(f"fastconv bench: backend {info['backend']}, {threads} threads, repeat {repeat} (medians)")
    print(f"build: {build}; torch {torch_version}")
    print("numpy thread pools: " + "; ".join(info["blas"]))
    print(f"GEMM peak: {peak:.1f} GFLOP/s ({peak_src}); memory copy: {bandwidth:.1f} GB/s (numpy/torch copy); "
          "both measured again after the table, the higher of each kept")
    print("rates in GFLOP/s (conv: direct-convolution flops / time, also for Winograd) or GB/s (pool); numpy = the "
          "reference on a reduced batch; ratio = torch time / fastconv time (T1: 'd' = fastconv dense conv time / "
          "tiled time); %peak of GEMM peak or copy bandwidth; auto/best = fastconv's time / the best of 'direct' "
          "and 'winograd' or 'fft' forced (stride-1 rows they apply to; the one that runs fastconv's own kernel "
          "is fastconv's time); algorithm = what fastconv ran")
    print(HEADER)
    cases = all_cases(only, numba and not ab)
    if ab:
        print(f"A/B: ratio = time on the kernels of {ab} / time on the kernels chosen for this CPU ('a')")
        cases = ab_cases([c for c in cases if "fastconv" in c.impls], ab)
    rows = measure(cases, repeat)
    # A peak measured in a slow spell would understate it (and wrongly grant the 0.9x bar of target()): of
    # the measurements before and after the table, the higher counts.
    peak, peak_src = max((peak, peak_src), machine.gemm_peak())
    bandwidth = max(bandwidth, machine.copy_bandwidth())
    info.update(gemm_peak_gflops=peak, gemm_peak_source=peak_src, copy_bandwidth_gbs=bandwidth)
    _add_peaks(rows, peak, bandwidth)
    print(f"\nGEMM peak: {peak:.1f} GFLOP/s ({peak_src}); memory copy: {bandwidth:.1f} GB/s (higher of the two "
          "measurements)")
    print(HEADER)
    for r in rows:
        print(_line(r))
    if (only is None or "X1" in only) and not ab:
        small = machine.small_call(peak)
        info["small_call"] = small
        print("X1 one 1x3x32x32 conv2d (3->16 k3 p1), µs: " + ", ".join(f"{k} {v:.1f}" for k, v in small.items()))
    info["seconds"] = time.perf_counter() - start
    print(f"total {info['seconds']:.0f} s")
    if json_path:
        text = json.dumps(dict(machine=info, rows=rows), indent=1)
        if json_path == "-":
            print(text)
        else:
            with open(json_path, "w") as f:
                f.write(text)
    if png_path:
        chart(rows, png_path)
    return 0 if all(r["passed"] for r in rows) else 1


def add_parser(sub):
    """The `bench` subcommand of the fastconv CLI."""
    p = sub.add_parser("bench", help="validate, then time every kernel against PyTorch/scipy/NumPy (table)",
                       description=__doc__)
    p.add_argument("--only", help="comma-separated rows, e.g. S1,P1,U1 (S1-S8, V1-V3, P1, U1, T1, X1)")
    p.add_argument("--repeat", type=int, default=1, help="repeat every measurement; the table shows medians")
    p.add_argument("--threads", type=int, default=2, help="threads for fastconv and PyTorch (default 2)")
    p.add_argument("--no-numba", action="store_true", help="skip the Numba column")
    p.add_argument("--json", metavar="PATH", help="also write the rows and machine info as JSON ('-': stdout)")
    p.add_argument("--png", metavar="PATH", help="bar chart of the ratios (needs matplotlib)")
    p.add_argument("--ab", metavar="LIBRARY", help="instead of PyTorch, time every row against the kernels of "
                   "another build of them (a libfastconv_<isa>.so, e.g. built with python csrc/build_c_library.py "
                   "--extra-flags=-march=native): ratio = its time / the dispatched kernels' time")
    p.set_defaults(func=lambda a: run(only=set(a.only.split(",")) if a.only else None, repeat=a.repeat,
                                      threads=a.threads, numba=not a.no_numba, json_path=a.json, png_path=a.png,
                                      ab=a.ab))
    return p


if __name__ == "__main__":
    sys.exit(run())
