"""Dataset-wide routines over data that need not fit in memory.

`data` is a NumPy array, a `dask.array.Array` (NCHW, chunked along N) or an iterable of batches (arrays or
(x, y) pairs). A routine supplies `fn(model, x_batch, start) -> part` (`start`: the batch's first dataset
index) and an associative `merge([part, ...]) -> part`; `map_reduce` runs fn on the batches
[j·batch_size, (j+1)·batch_size) of the dataset and merges the parts in dataset order. The batches are
cut at the same dataset indices whatever the chunking (Dask chunks are aligned to multiples of batch_size,
an iterable's batches are regrouped), because a layer's output for one image may depend on the batch it
is computed in (BLAS picks its GEMM kernel by the batch size); with the merge associative, a streamed call
returns exactly what the in-memory call with the same batch_size returns.

- NumPy arrays and iterables run here, one batch at a time; merges follow a binary counter, so at most
  log2(batches) parts are alive (bounded memory for reductions such as a top-k).
- Dask arrays become one task per chunk plus a tree of merge tasks, computed by the active scheduler
  (threads by default, a dask.distributed Client when one is connected). The model enters the graph as one
  key, so a distributed worker receives it once, not once per task; each batch runs on a copy of the
  layer objects sharing the weights, because layers cache their inputs during forward.

Dask is imported only when the data is a Dask array: `import fastconv.vis` never imports it.
"""
from __future__ import annotations

import copy
import sys
from collections.abc import Iterable

import numpy as np

from . import _core

SPLIT_EVERY = 8   # parts per merge task in the Dask tree reduction


def is_dask(x) -> bool:
    da = sys.modules.get("dask.array")   # a Dask array cannot exist unless dask.array was imported
    return da is not None and isinstance(x, da.Array)


class Batches:
    """An iterable of NCHW batches (or (x, y) pairs), read once."""

    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        for b in self.iterable:
            yield np.asarray(b[0] if isinstance(b, tuple) else b)


def images(data):
    """The images of `data`: an array, an (x, y) pair, a Dataset-like object with .x, a Dask array or an
    iterable of batches. NumPy and Dask arrays are returned as they are, other iterables wrapped in Batches."""
    if hasattr(data, "x") and not isinstance(data, np.ndarray):
        data = data.x
    elif isinstance(data, tuple) and len(data) == 2:
        data = data[0]
    if isinstance(data, np.ndarray):
        return data[None] if data.ndim == 3 else data   # one CHW image
    if is_dask(data):
        return _check_dask(data)
    if isinstance(data, list) and data and np.ndim(data[0]) == 4:
        return Batches(data)
    if isinstance(data, Iterable) and not isinstance(data, (list, tuple, str, bytes)):
        return Batches(data)
    return np.asarray(data)


def is_streamed(x) -> bool:
    return is_dask(x) or isinstance(x, Batches)


def _check_dask(x):
    if x.dtype.kind != "f":
        raise TypeError(f"data: expected a float Dask array, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"data: expected a Dask array of NCHW images (N, C, H, W), got shape {x.shape}")
    if any(len(c) != 1 for c in x.chunks[1:]):   # a chunk must hold whole images
        x = x.rechunk({1: -1, 2: -1, 3: -1})
    return x


def map_reduce(model, x, fn, merge, *, batch_size=256, progress=False, desc=None):
    """merge(fn(model, batch, start) for every batch of x, in order) — see the module docstring."""
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
    if is_dask(x):
        return _dask_map_reduce(model, x, fn, merge, batch_size, progress, desc)
    with _core.evaluating(model):
        if isinstance(x, Batches):
            parts = (fn(model, _core.as_batch(model, xb), start) for start, xb in _regroup(x, batch_size))
            return _merge_in_order(_core.progress(parts, desc=desc, enabled=progress), merge)
        sls = list(_core.chunks(len(x), batch_size))
        parts = (fn(model, _core.as_batch(model, x[sl]), sl.start) for sl in sls)
        return _merge_in_order(_core.progress(parts, total=len(sls), desc=desc, enabled=progress), merge)


def _regroup(batches, size):
    """(start, batch) of exactly `size` images (the last may be smaller) from batches of any sizes."""
    start, held, count = 0, [], 0
    for xb in batches:
        held.append(xb)
        count += len(xb)
        while count >= size:
            joined = np.concatenate(held)
            yield start, joined[:size]
            start, held, count = start + size, [joined[size:]], count - size
    if count:
        yield start, np.concatenate(held)


def _merge_in_order(parts, merge):
    """merge(all parts) with at most log2(#parts) of them alive: equal-sized neighbours merge first."""
    stack = []   # (level, part), levels strictly decreasing towards the top
    for part in parts:
        level = 0
        while stack and stack[-1][0] == level:
            part = merge([stack.pop()[1], part])
            level += 1
        stack.append((level, part))
    if not stack:
        raise ValueError("data: expected at least one image, got none")
    return stack[0][1] if len(stack) == 1 else merge([p for _, p in stack])


# -- Dask --------------------------------------------------------------------------------------------
def _fresh(model):
    """A copy of the model's layer objects sharing its weights: forward caches each layer's input on the
    copy, so threads never share caches and a batch's caches are freed with its copy (they would otherwise
    stay alive into the next batch and double the peak memory)."""
    from .. import nn
    if isinstance(model, nn.Sequential):
        return nn.Sequential(*[(name, _fresh(layer)) for name, layer in model.named_layers()]).eval()
    layer = copy.copy(model)
    layer.train(False)
    return layer


def _chunk_task(fn, merge, model, xb, start, batch_size):
    xb = np.asarray(xb)
    return merge([fn(_fresh(model), _core.as_batch(model, xb[sl]), start + sl.start)
                  for sl in _core.chunks(len(xb), batch_size)])


def _merge_task(merge, *parts):
    return merge(list(parts))


def _chunk_bounds(x):
    """The dataset index where each chunk of a Dask array begins, and the length of the array last."""
    return np.cumsum((0,) + x.chunks[0])


def _dask_map_reduce(model, x, fn, merge, batch_size, progress, desc):
    import dask
    if any(n % batch_size for n in x.chunks[0][:-1]):   # chunks of whole batches (see the module docstring)
        x = x.rechunk({0: batch_size * max(1, round(max(x.chunks[0]) / batch_size))})
    blocks = x.to_delayed().ravel()
    starts = _chunk_bounds(x)[:-1]
    model_key = dask.delayed(model, traverse=False)   # one key: shipped once to each worker that needs it
    task = dask.delayed(_chunk_task, pure=True)
    parts = [task(fn, merge, model_key, b, int(s), batch_size)
             for b, s, n in zip(blocks, starts, x.chunks[0]) if n]
    if not parts:
        raise ValueError("data: expected at least one image, got none")
    while len(parts) > 1:
        parts = [dask.delayed(_merge_task, pure=True)(merge, *parts[i:i + SPLIT_EVERY])
                 for i in range(0, len(parts), SPLIT_EVERY)]
    return compute(parts[0], progress)


# What local_cluster changes in Dask's defaults for its workers (see its docstring).
LOCAL_CLUSTER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                        "distributed.worker.profile.enabled": False}


def local_cluster(n_workers=None, threads_per_worker=1, **kwargs):
    """A dask.distributed LocalCluster of `n_workers` worker processes (default: one per core, no
    dashboard) tuned for long numeric tasks. Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers by
    default, which in glibc also pins the mmap threshold at 128 KiB: every activation buffer of a forward
    pass is then a fresh mmap whose pages fault in again, batch after batch (docs/performance.md has the
    cost); and each worker samples its threads' stacks every 10 ms for the dashboard's profile. Both are
    off here (LOCAL_CLUSTER_CONFIG); a cluster you create inside dask.config.set(LOCAL_CLUSTER_CONFIG)
    gets the same. Other keyword arguments go to LocalCluster."""
    import os

    import dask
    from distributed import LocalCluster
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        return LocalCluster(n_workers=n_workers or os.cpu_count(), threads_per_worker=threads_per_worker,
                            **{"dashboard_address": None, **kwargs})


def client():
    """The connected dask.distributed Client, or None (distributed is not imported just to ask)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client
    try:
        return default_client()
    except ValueError:
        return None


def compute(obj, progress=False):
    """obj computed on the active scheduler, with Dask's progress bar if asked."""
    import dask
    c = client()
    if c is not None:
        future = c.compute(obj)
        if progress:
            from distributed import progress as bar
            bar(future)
        return future.result()
    if progress:
        from dask.diagnostics import ProgressBar
        with ProgressBar():
            return dask.compute(obj)[0]
    return dask.compute(obj)[0]


def take(x, indices):
    """The images at `indices` (any order, repeats allowed) of a NumPy or Dask array, as NumPy."""
    indices = np.asarray(indices, dtype=np.int64)
    if not is_dask(x):
        return np.asarray(x[indices])
    unique, inverse = np.unique(indices, return_inverse=True)
    # One task per chunk that holds a wanted image, reading it and keeping those images; Dask plans a
    # fancy index over the whole array as a shuffle, with two tasks per chunk.
    import dask
    bounds = _chunk_bounds(x)
    block = np.searchsorted(bounds, unique, side="right") - 1
    blocks = x.to_delayed().ravel()
    pick = dask.delayed(np.take, pure=True)
    parts = [pick(blocks[b], unique[block == b] - bounds[b], axis=0) for b in np.unique(block)]
    return compute(dask.delayed(np.concatenate)(parts))[inverse.reshape(indices.shape)]


def concat(parts):
    """merge for per-image results: arrays (or tuples of arrays) joined along the batch axis."""
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(p) for p in zip(*parts))
    return np.concatenate(parts)
