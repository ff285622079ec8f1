"""Dataset-scale top_activations on Dask (issue 18): peak memory and throughput, in memory vs streamed, and
a two-process dask.distributed cluster vs the threaded scheduler.

    python bench/stream_bench.py memory [--dir DIR] [--images 60000]
        writes a float32 Zarr store of N×3×64×64 random images chunked 512 (2.9 GB for 60,000) under DIR,
        runs top_activations of the seed CNN's last pooling layer over it streamed (threaded scheduler, then
        a LocalCluster of 2 single-threaded worker processes) and over its first --in-memory images loaded as
        one NumPy array, each in a fresh process that reports its own peak RSS (resource.getrusage), then
        deletes the store.
    python bench/stream_bench.py distributed [--dir DIR] [--images 20000]
        the same streamed run (3×32×32 images, chunks of 512) on the threaded scheduler and on a LocalCluster
        of 2 single-threaded worker processes, in --pairs alternating pairs of fresh processes (each timing
        the median of --repeat runs after a warm-up run, so that a change in the machine's load between
        the two modes shows as the spread of the pairs' ratios); prints each pair and the median ratio.

Every run validates before it reports: the streamed result equals the in-memory one on the first images.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

LAYER, K = "5", 9


def _model(size):
    from fastconv import nn
    return nn.models.seed_cnn(3, 10, size, rng=0)


def _same(a, b):
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in a._fields)


def write_store(path, n, size, chunk):
    """N random images (seeded), written chunk by chunk: the writer never holds more than a few chunks."""
    import dask.array as da
    rng = da.random.default_rng(0)
    x = rng.random((n, 3, size, size), dtype=np.float32, chunks=(chunk, 3, size, size))
    x.to_zarr(path, overwrite=True)


def child(args):
    """One measurement in this process: streamed over the store, or in memory over its first images."""
    import dask
    import dask.array as da

    from fastconv import vis
    from fastconv.data import open_array
    x = open_array(args.store)
    model = _model(x.shape[-1])
    ok = None
    if args.mode == "memory":   # validated here, so that the streamed runs' peak RSS is theirs alone
        first = x[:args.check]
        ok = _same(vis.top_activations(model, np.asarray(first), LAYER, k=K), vis.top_activations(model, first, LAYER, k=K))
        data = np.asarray(x[:args.n])
    elif args.mode == "distributed":
        from distributed import Client
        cluster = vis.local_cluster(n_workers=2, threads_per_worker=1)
        client = Client(cluster)
        data = x
    else:
        dask.config.set(scheduler="threads")
        data = x
    vis.top_activations(model, data[:4096], LAYER, k=K)   # warm-up (8 chunks: every worker imports and runs)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        top = vis.top_activations(model, data, LAYER, k=K)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    workers_mb = None
    if args.mode == "distributed":
        workers_mb = max(client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024).values())
        client.close()
        cluster.close()
    assert isinstance(data, (np.ndarray, da.Array)) and top.values.shape[1] == K
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    digest = hashlib.sha1(b"".join(np.ascontiguousarray(getattr(top, f)).tobytes() for f in top._fields)).hexdigest()
    print(json.dumps(dict(mode=args.mode, images=len(data), seconds=seconds, images_per_s=len(data) / seconds,
                          peak_rss_mb=peak_mb, worker_peak_rss_mb=workers_mb, validated=ok, digest=digest)))


def run_child(store, mode, n, repeat, check=1024):
    out = subprocess.run([sys.executable, __file__, "_child", "--store", store, "--mode", mode, "--n", str(n),
                          "--check", str(check), "--repeat", str(repeat)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"child {mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["memory", "distributed", "_child"])
    p.add_argument("--dir", default=None, help="where the Zarr store is written (default: the temp directory)")
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--in-memory", type=int, default=10000, help="images of the in-memory run (memory)")
    p.add_argument("--repeat", type=int, default=None, help="timed runs per process, the median reported "
                                                            "(default: 1 for memory, 3 for distributed)")
    p.add_argument("--pairs", type=int, default=5, help="alternating threaded/distributed processes (distributed)")
    p.add_argument("--store"), p.add_argument("--mode"), p.add_argument("--n", type=int), p.add_argument("--check", type=int)
    args = p.parse_args(argv)
    if args.what == "_child":
        return child(args)
    n = args.images or (60000 if args.what == "memory" else 20000)
    size, chunk = (64, 512) if args.what == "memory" else (32, 512)
    need = n * 3 * size * size * 4
    root = tempfile.mkdtemp(prefix="fastconv-stream-", dir=args.dir)
    free = shutil.disk_usage(root).free
    if free < 1.5 * need:
        raise SystemExit(f"{root}: {free / 2**30:.1f} GiB free, the store needs {need / 2**30:.1f} GiB (+50%)")
    store = os.path.join(root, "images.zarr")
    try:
        start = time.perf_counter()
        write_store(store, n, size, chunk)
        print(f"wrote {n} images {3}x{size}x{size} float32 ({need / 1e9:.2f} GB) chunked {chunk} in "
              f"{time.perf_counter() - start:.0f} s")
        if args.what == "memory":
            rows = [run_child(store, m, min(args.in_memory, n) if m == "memory" else n, args.repeat or 1)
                    for m in ("streamed", "distributed", "memory")]
        else:
            rows = [run_child(store, m, n, args.repeat or 3) for _ in range(args.pairs)
                    for m in ("streamed", "distributed")]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for r in rows:
        check = "" if r["validated"] is None else f", streamed == in-memory on the first 1024 images: {r['validated']}"
        workers = "" if r["worker_peak_rss_mb"] is None else f" (client; each worker ≤ {r['worker_peak_rss_mb']:.0f} MB)"
        print(f"{r['mode']:>11}: {r['images']} images in {r['seconds']:.1f} s = {r['images_per_s']:.0f} images/s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB{workers}{check}")
    threaded, dist = ([r for r in rows if r["mode"] == m] for m in ("streamed", "distributed"))
    ratios = [d["seconds"] / t["seconds"] for t, d in zip(threaded, dist)]
    print(f"distributed / threaded time: {np.median(ratios):.2f}"
          + (f" (pairs: {', '.join(f'{q:.2f}' for q in ratios)})" if len(ratios) > 1 else "")
          + f"; same result: {len({r['digest'] for r in threaded + dist}) == 1}")


if __name__ == "__main__":
    main()
