"""What the machine can do, measured in the same run as the kernels: float32 GEMM peak, memory-copy
bandwidth, the overhead of one small conv call, and which BLAS/threads NumPy uses."""
from __future__ import annotations

import time

import numpy as np

import fastconv as fc
from .shapes import SMALL_CALL


def best_time(fn, budget=0.25, min_calls=5, max_calls=500):
    """Seconds of the fastest call: one warm-up call, then at least `min_calls` calls and until `budget`
    seconds are spent (on a loaded machine a single call can lose a whole scheduler time slice)."""
    fn()
    times = []
    while (sum(times) < budget or len(times) < min_calls) and len(times) < max_calls:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def interleaved_times(impls, budget=0.2, min_rounds=3, max_rounds=200, block=0.02, settle=0.1):
    """{name: seconds of its fastest call}. Rounds call the implementations in turn, so that every one
    samples the same spells of machine load. In a round each first waits `settle` seconds and makes one
    untimed call, then timed calls for about `block` seconds. The wait lets the thread pool of the one
    before (PyTorch's, Numba's or our own OpenMP team, which spin for milliseconds after a parallel
    region) fall asleep: timed right after another library's call, a 2-thread kernel shares the two
    cores with its spinning threads and can lose half its speed — whichever library runs second."""
    best = {name: float("inf") for name in impls}
    start, rounds = time.perf_counter(), 0
    while (time.perf_counter() - start < (budget + settle) * len(impls) or rounds < min_rounds) and rounds < max_rounds:
        for name, fn in impls.items():
            time.sleep(settle)
            fn()
            t_end = time.perf_counter() + block
            while True:
                t0 = time.perf_counter()
                fn()
                t1 = time.perf_counter()
                best[name] = min(best[name], t1 - t0)
                if t1 >= t_end:
                    break
        rounds += 1
    return best


def gemm_peak(n=2048):
    """Float32 GEMM GFLOP/s of an n x n x n product: the faster of numpy matmul (its BLAS) and torch.mm
    (when installed), called in turn for about a second, fastest call of each."""
    a, b = (np.random.default_rng(1).standard_normal((n, n), dtype=np.float32) for _ in range(2))
    impls = {f"numpy matmul {n}x{n} float32": lambda: a @ b}
    try:
        import torch
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        impls[f"torch.mm {n}x{n} float32"] = lambda: torch.mm(ta, tb)
    except ImportError:
        pass
    times = interleaved_times(impls, budget=0.5)
    src = min(times, key=times.get)
    return 2 * n ** 3 / times[src] * 1e-9, src


def copy_bandwidth(nbytes=64 << 20):
    """GB/s (bytes read + written) of the faster of numpy.copyto and torch's copy_ on `nbytes`."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    best = best_time(lambda: np.copyto(dst, src), budget=0.3)
    try:
        import torch
        ts, td = torch.from_numpy(src), torch.from_numpy(dst)
        best = min(best, best_time(lambda: td.copy_(ts), budget=0.3))
    except ImportError:
        pass
    return 2 * nbytes / best * 1e-9


def small_call(peak_gflops):
    """µs for one 1x3x32x32 conv2d (3->16, 3x3) through fc.conv2d and through the kernel alone, and its
    arithmetic at the GEMM peak (a lower bound, so the overhead reported is an upper bound)."""
    s = SMALL_CALL
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(s.x_shape, dtype=np.float32), rng.standard_normal(s.w_shape, dtype=np.float32)
    total = best_time(lambda: fc.conv2d(x, w, **s.kwargs), budget=0.2)
    out = {"total_us": total * 1e6, "arith_us": s.flops() / (peak_gflops * 1e9) * 1e6}
    try:
        from fastconv import _cpp
        y = np.empty(s.y_shape(), np.float32)
        p = (s.padding, s.padding)
        out["kernel_us"] = best_time(lambda: _cpp.conv2d(x, w, None, y, (1, 1), p, (1, 1), 1, "auto", "", False),
                                     budget=0.2) * 1e6
    except ImportError:
        pass
    out["overhead_us"] = out["total_us"] - out["arith_us"]
    return out


def blas_info():
    """One line per thread pool NumPy (and anything loaded) uses, from threadpoolctl when installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed"]
    return [f"{p.get('internal_api')} {p.get('version')} threads={p.get('num_threads')} ({p.get('filepath', '').split('/')[-1]})"
            for p in threadpool_info()]

