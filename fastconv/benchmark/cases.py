"""The rows of the `fastconv bench` table: for each op and shape, the callables to time and how to check them.

A Case holds zero-argument callables for every implementation that exists here (fastconv's chosen
backend, Numba, PyTorch, scipy), the work one call does (flops or bytes moved) and a `check()` that
runs fastconv and the NumPy reference on the same reduced batch and compares them (the reference is
slow, so its throughput is taken from that call, normalised to the work it did).
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple, Optional

import numpy as np

import fastconv as fc
from .shapes import CONV_SHAPES, LARGE_KERNEL_SHAPES, TILED_SHAPES, PLANE_SHAPES, POOL_SHAPES, VGG_SHAPES

CHECK_BATCH = 2          # images the reference sees when it validates a row


class Case(NamedTuple):
    group: str                      # S1 … T1: what --only selects
    op: str
    shape: str                      # printed shape description
    unit: str                       # "GFLOP/s" or "GB/s"
    work: float                     # flops (or bytes) of one full-size call
    impls: dict                     # name -> zero-arg callable at full size ("fastconv", "numba", "torch", "scipy")
    check: Callable[[], tuple]      # -> (passed, reference rate in unit or None)
    base: Optional[str] = None      # T1: the impl a ratio is taken against instead of torch ("dense")
    algorithm: str = ""             # the algorithm (and tile) of fastconv's call, e.g. "winograd F(4x4,3x3)"


def _rng_arrays(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s, dtype=np.float32) for s in shapes]


def _close(got, want):
    tol = 2e-4 * max(1.0, float(np.abs(want).max()))
    return bool(np.allclose(got, want, rtol=2e-4, atol=tol))


def _checker(run, work_per_image, n, compare=_close):
    """check(): run(backend, n) for fastconv's default backend and the reference on n images."""
    def check():
        got = run(None, n)
        t0 = time.perf_counter()
        want = run("numpy", n)
        ref_time = time.perf_counter() - t0
        ok = all(compare(g, w) for g, w in zip(got, want)) if isinstance(got, tuple) else compare(got, want)
        return ok, work_per_image * n / ref_time * 1e-9
    return check


def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def _has(backend):
    return backend in fc.available_backends()


# --- dense convolution: forward, input grad, weight grad ------------------------------------------------

DENSE_OPS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad")


def dense_call(op, s, x, w, dy, algorithm=None):
    """backend -> result of dense op `op` on bench shape `s` (shared with the pytest-benchmark suite)."""
    kw = dict(s.kwargs, algorithm=algorithm)
    if op == "conv2d":
        return lambda be: fc.conv2d(x, w, backend=be, **kw)
    if op == "conv2d_input_grad":
        return lambda be: fc.conv2d_input_grad(dy, w, x.shape, backend=be, **kw)
    return lambda be: fc.conv2d_weight_grad(x, dy, w.shape, backend=be, **kw)


def _torch_dense(op, s, x, w, dy):
    torch = _torch()
    if torch is None:
        return None
    import torch.nn.functional as F
    tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy))
    kw = dict(stride=s.stride, padding=s.padding, dilation=s.dilation, groups=s.groups)
    if op == "conv2d":
        return lambda: F.conv2d(tx, tw, **kw)
    if op == "conv2d_input_grad":
        return lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tdy, **kw)
    return lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tdy, **kw)


def _dense_args(op, x, w, dy):
    return {"conv2d": (x, w), "conv2d_input_grad": (dy, w, x.shape), "conv2d_weight_grad": (x, dy, w.shape)}[op]


def _algorithm(op, *args, **kwargs):
    """What fastconv's call `op(*args, **kwargs)` runs: its algorithm and tile (the cpp registry's choice)."""
    if not _has("cpp"):
        return "direct"
    k = fc.kernel_for(op, *args, **kwargs)
    return k.algorithm + (f" {k.tile}" if k.tile else "")


def _forced_algorithms(op, s):
    """The algorithms besides 'direct' that apply to a row: Winograd on 3x3 stride-1 layers, Winograd and
    FFT on 5x5 ones, FFT on every op of stride-1 layers with larger kernels."""
    if not _has("cpp") or (s.stride, s.groups) != (1, 1):
        return ()
    return {3: ("winograd",), 5: ("winograd", "fft")}.get(s.k, ("fft",))


def _forced(op, s, x, w, dy):
    """Extra impls, fastconv with each algorithm that applies forced ('direct' among them), so that the
    table can hold 'auto' to the best of them. The algorithm whose kernel 'auto' runs is left out: its
    time is auto's own (timing one kernel twice would only measure the machine's noise)."""
    algorithms = _forced_algorithms(op, s)
    args = _dense_args(op, x, w, dy)
    auto = fc.kernel_for(op, *args, **s.kwargs).name if algorithms else None
    return {alg: (lambda call=dense_call(op, s, x, w, dy, alg): call("cpp"))
            for alg in ("direct",) + algorithms
            if fc.kernel_for(op, *args, **s.kwargs, algorithm=alg).name != auto} if algorithms else {}


def dense_cases(names, numba=True, shapes=CONV_SHAPES, ops=DENSE_OPS):
    out = []
    for name in names:
        s = shapes[name]
        x, w, dy = _rng_arrays([s.x_shape, s.w_shape, s.y_shape()])
        for op in ops:
            def run(be, n, op=op, s=s, x=x, w=w, dy=dy):
                return dense_call(op, s, x[:n], w, dy[:n])(be)
            call = dense_call(op, s, x, w, dy)
            impls = {"fastconv": lambda call=call: call(None)}
            if numba and _has("numba"):
                impls["numba"] = lambda call=call: call("numba")
            t = _torch_dense(op, s, x, w, dy)
            if t is not None:
                impls["torch"] = t
            impls.update(_forced(op, s, x, w, dy))
            desc = f"{s.N}x{s.C_in}x{s.H}x{s.W} {s.C_in}->{s.C_out} k{s.k}"
            desc += "".join(f" {a}{v}" for a, v in (("s", s.stride), ("p", s.padding), ("d", s.dilation), ("g", s.groups))
                            if v not in (1, 0) or (a == "p" and v))
            out.append(Case(name, op, desc, "GFLOP/s", s.flops(), impls, _checker(run, s.flops(1), CHECK_BATCH),
                            algorithm=_algorithm(op, *_dense_args(op, x, w, dy), **s.kwargs)))
    return out


# --- single plane, large kernel ------------------------------------------------------------------------

def plane_cases(names, numba=True):
    out = []
    for name in names:
        s = PLANE_SHAPES[name]
        image, kernel = _rng_arrays([(s.H, s.W), (s.k, s.k)])
        impls = {"fastconv": lambda image=image, kernel=kernel: fc.correlate2d(image, kernel, "valid")}
        if numba and _has("numba"):
            impls["numba"] = lambda image=image, kernel=kernel: fc.correlate2d(image, kernel, "valid", backend="numba")
        torch = _torch()
        if torch is not None:
            import torch.nn.functional as F
            ti, tk = torch.from_numpy(image)[None, None], torch.from_numpy(kernel)[None, None]
            impls["torch"] = lambda ti=ti, tk=tk: F.conv2d(ti, tk)
        try:
            from scipy import signal
            flipped = np.ascontiguousarray(kernel[::-1, ::-1])
            impls["scipy"] = lambda image=image, flipped=flipped: signal.fftconvolve(image, flipped, mode="valid")
        except ImportError:
            pass
        algorithms = _forced_algorithms("correlate2d", s)
        for alg in ("direct",) + algorithms if algorithms else ():
            impls[alg] = lambda alg=alg, image=image, kernel=kernel: fc.correlate2d(image, kernel, "valid",
                                                                                   algorithm=alg, backend="cpp")

        def run(be, n, image=image, kernel=kernel):
            return fc.correlate2d(image, kernel, "valid", backend=be)
        out.append(Case(name, "correlate2d", f"{s.H}x{s.W} k{s.k} valid", "GFLOP/s", s.flops(), impls,
                        _checker(run, s.flops(), 1), algorithm=_algorithm("correlate2d", image, kernel, "valid")))
    return out


# --- pooling with switches, unpooling ------------------------------------------------------------------

def _equal(got, want):
    return bool(np.array_equal(got, want))


def pool_cases(numba=True):
    out = []
    torch = _torch()
    for p in POOL_SHAPES.values():
        (x,) = _rng_arrays([p.x_shape])
        y, sw = fc.max_pool2d(x, p.kernel, p.stride, p.padding)
        desc = f"{p.N}x{p.C}x{p.H}x{p.W} k{p.kernel} s{p.stride}" + (f" p{p.padding}" if p.padding else "")
        per_image_in, per_image_out = x[0].size * 4, y[0].size * (4 + 8)
        for op in ("max_pool2d", "max_unpool2d"):
            if op == "max_pool2d":
                def run(be, n, p=p, x=x):
                    return fc.max_pool2d(x[:n], p.kernel, p.stride, p.padding, backend=be)
            else:
                def run(be, n, y=y, sw=sw, x=x):
                    return fc.max_unpool2d(y[:n], sw[:n], (n,) + x.shape[1:], backend=be)
            impls = {"fastconv": lambda run=run, n=p.N: run(None, n)}
            if numba and _has("numba"):
                impls["numba"] = lambda run=run, n=p.N: run("numba", n)
            if torch is not None:
                import torch.nn.functional as F
                tx, ty, tsw = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(sw)
                if op == "max_pool2d":
                    impls["torch"] = lambda p=p, tx=tx: F.max_pool2d(tx, p.kernel, p.stride, p.padding, return_indices=True)
                else:
                    impls["torch"] = lambda p=p, tx=tx, ty=ty, tsw=tsw: F.max_unpool2d(
                        ty, tsw, p.kernel, p.stride, p.padding, output_size=tx.shape[2:])
            bytes_ = (per_image_in + per_image_out) * p.N
            out.append(Case(p.name[:2], op, desc, "GB/s", bytes_, impls,
                            _checker(run, per_image_in + per_image_out, CHECK_BATCH, compare=_equal)))
    return out


# --- unshared and tiled convolution --------------------------------------------------------------------

LOCAL_OPS = ("", "_input_grad", "_weight_grad")


def _tiled_call(op, s, x, w, dy):
    kw = dict(stride=s.stride, padding=s.padding)
    f = getattr(fc, op)
    if op.endswith("_input_grad"):
        return lambda be: f(dy, w, x.shape, backend=be, **kw)
    if op.endswith("_weight_grad"):
        return lambda be: f(x, dy, w.shape, backend=be, **kw)
    return lambda be: f(x, w, backend=be, **kw)


def _torch_unshared(suffix, s, x, w, dy):
    """PyTorch's usual locally connected layer: unfold, then one einsum (and fold for the input grad)."""
    torch = _torch()
    if torch is None:
        return None
    import torch.nn.functional as F
    H_out, W_out = s.out_hw()
    L, K = H_out * W_out, s.C_in * s.k * s.k
    tx, tdy = torch.from_numpy(x), torch.from_numpy(dy).reshape(s.N, s.C_out, L)
    tw = torch.from_numpy(w).reshape(L, s.C_out, K)
    kw = dict(kernel_size=s.k, padding=s.padding, stride=s.stride)
    if suffix == "":
        return lambda: torch.einsum("nkl,lok->nol", F.unfold(tx, **kw), tw).reshape(s.N, s.C_out, H_out, W_out)
    if suffix == "_input_grad":
        return lambda: F.fold(torch.einsum("nol,lok->nkl", tdy, tw), (s.H, s.W), **kw)
    return lambda: torch.einsum("nol,nkl->lok", tdy, F.unfold(tx, **kw))


def tiled_cases(names, numba=True):
    out = []
    for name in names:
        s = TILED_SHAPES[name]
        H_out, W_out = s.out_hw()
        grid = (H_out, W_out) if name == "U1" else (s.tile, s.tile)
        op0 = "unshared_conv2d" if name == "U1" else "tiled_conv2d"
        x, w, dy = _rng_arrays([s.x_shape, grid + (s.C_out, s.C_in, s.k, s.k), s.y_shape()])
        wd = np.ascontiguousarray(w[0, 0])
        for suffix, dense_op in zip(LOCAL_OPS, DENSE_OPS):
            op = op0 + suffix
            call = _tiled_call(op, s, x, w, dy)

            def run(be, n, op=op, s=s, x=x, w=w, dy=dy):
                return _tiled_call(op, s, x[:n], w, dy[:n])(be)
            impls = {"fastconv": lambda call=call: call(None)}
            if numba and _has("numba"):
                impls["numba"] = lambda call=call: call("numba")
            base = None
            if name == "U1":
                t = _torch_unshared(suffix, s, x, w, dy)
                if t is not None:
                    impls["torch"] = t
            else:   # tiled: compared with fastconv's dense conv of the same shape
                dense = dense_call(dense_op, s, x, wd, dy)
                impls["dense"] = lambda dense=dense: dense(None)
                base = "dense"
            desc = f"{s.N}x{s.C_in}x{s.H}x{s.W} {s.C_in}->{s.C_out} k{s.k} p{s.padding}"
            desc += f" tile {s.tile}x{s.tile}" if name == "T1" else ""
            out.append(Case(name, op, desc, "GFLOP/s", s.flops(), impls, _checker(run, s.flops(1), CHECK_BATCH), base))
    return out


def all_cases(only=None, numba=True):
    """Every row, or those whose group (S1, P1, U1, ...) is in `only`."""
    want = (lambda g: only is None or g in only)
    rows = dense_cases([n for n in CONV_SHAPES if want(n)], numba)
    rows += dense_cases([n for n in VGG_SHAPES if want(n)], False, VGG_SHAPES, ("conv2d",))
    rows += dense_cases([n for n in LARGE_KERNEL_SHAPES if want(n)], False, LARGE_KERNEL_SHAPES)
    rows += plane_cases([n for n in PLANE_SHAPES if want(n)], numba)
    rows += pool_cases(numba) if want("P1") else []
    rows += tiled_cases([n for n in TILED_SHAPES if want(n)], numba)
    return rows
