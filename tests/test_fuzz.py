"""Randomized hostile arguments for every public op and every C ABI entry point: strides, paddings and
dilations up to 2**64, kernels up to 2**64 (pooling) and 2**31 (weight shapes), zero and huge sizes, bad
integers. Every call either equals the NumPy reference or raises ValueError/TypeError naming the
arguments at fault, or MemoryError — never a crash, a hang or a silently wrong result.

Hypothesis runs in a subprocess per backend (and one for the C ABI), each case printed before it runs:
a crash fails the test and names the case, instead of killing pytest. It uses conftest.py's profile
(HYPOTHESIS_PROFILE, derandomized 'ci' by default) with its example count times FUZZ_EXAMPLES (4)."""
import inspect
import json
import os

import numpy as np
import pytest

import fastconv as fc
from _helpers import run_python

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

EXTREME = [0, -1, 2**31 - 1, 2**31, 2**40, 2**61, 2**62, 2**63 - 1, 2**63, 2**64, -2**63]
# Half the cases are ordinary (so that they compute and are checked against the reference), half hostile.
ORDINARY = dict(geom=st.integers(1, 3), pad=st.integers(0, 2), size=st.integers(1, 6), n=st.integers(1, 3),
                k=st.integers(1, 4), big=st.integers(1, 6), extreme=st.integers(1, 3))
HOSTILE = dict(geom=st.one_of(st.integers(1, 3), st.sampled_from(EXTREME)),
               pad=st.one_of(st.integers(0, 3), st.sampled_from(EXTREME)), size=st.integers(0, 6),
               n=st.integers(0, 3), k=st.integers(0, 4), big=st.one_of(st.integers(0, 6), st.sampled_from(EXTREME)),
               extreme=st.sampled_from(EXTREME))


def _pair(s):
    return st.one_of(s, st.tuples(s, s))


def _shape_or_big(draw, S, shape):
    """`shape`, or sometimes one entry replaced by another number."""
    if draw(st.integers(0, 3)):
        return tuple(shape)
    i = draw(st.integers(0, len(shape) - 1))
    return tuple(shape[:i]) + (draw(S["big"]),) + tuple(shape[i + 1:])


# A case is (op, array shapes by argument name, other arguments). A shape that depends on others is a
# spec that the child resolves (_arrays): ("forward", x, w) the forward's output shape, ("grid", T or
# "output", kernel) a tiled or unshared weight, ("pool" or "switches", x, pool arguments) a max-pool's
# result; weight_shape ("shape", w, which) is w's shape with kH (which = 1) or kW (2) set to 2**31.
@st.composite
def dense(draw):
    S = draw(st.sampled_from([ORDINARY, HOSTILE]))
    op = draw(st.sampled_from(["conv2d", "conv2d_input_grad", "conv2d_weight_grad", "conv_transpose2d",
                               "convolve2d", "correlate2d"]))
    if op in ("convolve2d", "correlate2d"):
        return op, dict(image=draw(st.tuples(S["size"], S["size"])), kernel=draw(st.tuples(S["size"], S["size"]))), \
            dict(mode=draw(st.sampled_from(["full", "same", "valid", "nearest"])))
    G = draw(st.one_of(st.just(1), S["geom"]))
    g = G if 1 <= G <= 3 else 1
    N, C_g, M_g, H, W, kH, kW = (draw(S["n"]), draw(S["n"]), draw(S["n"]), draw(S["size"]), draw(S["size"]),
                                 draw(S["k"]), draw(S["k"]))
    kw = dict(stride=draw(_pair(S["geom"])), dilation=draw(_pair(S["geom"])), groups=G,
              padding=draw(st.one_of(_pair(S["pad"]), _pair(S["pad"]), st.sampled_from(["same", "valid", "full"]))))
    x, w = (N, g * C_g, H, W), (g * M_g, C_g, kH, kW)
    if op == "conv_transpose2d":
        w = (g * C_g, M_g, kH, kW)
        kw["output_padding"] = draw(_pair(st.one_of(st.integers(0, 1), S["extreme"])))
        if isinstance(kw["padding"], str):
            kw["padding"] = 0
    if op == "conv2d_input_grad":
        return op, dict(dy=("forward", x, w), weight=w), dict(input_shape=_shape_or_big(draw, S, x), **kw)
    if op == "conv2d_weight_grad":
        return op, dict(x=x, dy=("forward", x, w)), dict(weight_shape=_shape_or_big(draw, S, w), **kw)
    return op, dict(x=x, weight=w), kw


@st.composite
def local(draw):
    S = draw(st.sampled_from([ORDINARY, HOSTILE]))
    family = draw(st.sampled_from(["tiled_conv2d", "unshared_conv2d"]))
    op = family + draw(st.sampled_from(["", "_input_grad", "_weight_grad"]))
    N, C, H, W, M, k = (draw(S["n"]), draw(S["n"]), draw(S["size"]), draw(S["size"]), draw(S["n"]), draw(S["k"]))
    kw = dict(stride=draw(_pair(S["geom"])), padding=draw(_pair(S["pad"])))
    x = (N, C, H, W)
    grid = ("output" if family == "unshared_conv2d" and draw(st.integers(0, 3)) else
            (draw(st.integers(0 if S is HOSTILE else 1, 3)), draw(st.integers(0 if S is HOSTILE else 1, 3))))
    w = ("grid", grid, (M, C, k, k))
    if op.endswith("input_grad"):
        return op, dict(dy=("forward", x, w), weight=w), dict(input_shape=_shape_or_big(draw, S, x), **kw)
    if op.endswith("weight_grad"):
        which = draw(st.integers(0, 2)) if S is HOSTILE else 0
        return op, dict(x=x, dy=("forward", x, w)), dict(weight_shape=("shape", w, which), **kw)
    return op, dict(x=x, weight=w), kw


@st.composite
def pool(draw):
    S = draw(st.sampled_from([ORDINARY, HOSTILE]))
    op = draw(st.sampled_from(["max_pool2d", "max_unpool2d", "set_num_threads"]))
    if op == "set_num_threads":
        return op, {}, dict(n=draw(st.one_of(st.integers(-2, 5), st.sampled_from(EXTREME + [4096, 4097, 2.0, True]))))
    x = (draw(S["n"]), draw(S["n"]), draw(S["size"]), draw(S["size"]))
    k = draw(_pair(st.one_of(S["k"], S["big"])))
    half = min(k if isinstance(k, tuple) else (k,)) // 2  # the largest padding PyTorch allows
    pad = st.integers(0, max(0, half)) if S is ORDINARY else st.one_of(st.integers(0, max(0, half)), S["pad"])
    kw = dict(kernel_size=k, stride=draw(st.one_of(st.none(), _pair(S["geom"]))), padding=draw(_pair(pad)),
              ceil_mode=draw(st.booleans()))
    if op == "max_pool2d":
        return op, dict(x=x), kw
    return op, dict(y=("pool", x, kw), switches=("switches", x, kw)), dict(output_size=_shape_or_big(draw, S, x))


FAMILIES = {"dense": dense(), "local": local(), "pool": pool()}


def _forward_shape(x_shape, w_shape, op, kw):
    """The output shape of op's forward on these shapes, or a small shape that does not fit it."""
    family = op.partition("_conv2d")[0] + "_conv2d" if "_conv2d" in op else "conv2d"
    geo = {k: v for k, v in kw.items() if k in ("stride", "padding", "dilation", "groups")}
    try:
        return getattr(fc, family)(np.zeros(x_shape), np.zeros(w_shape), **geo).shape
    except (ValueError, TypeError, MemoryError):
        return (1, 1, 2, 2)


def _arrays(op, shapes, kw, rng, dtype):
    """Resolves the shapes that depend on others (the forward's output, the weight grid of an unshared
    conv, a pool's values and switches) and draws the arrays."""
    def weight(spec):
        if spec[1] != "output":
            return (*spec[1], *spec[2])
        x = shapes.get("x", kw.get("input_shape"))
        out = _forward_shape(x, (*spec[2][:1], *x[1:2], *spec[2][2:]), "conv2d", kw) if len(x) == 4 else (1, 1, 1, 1)
        return (*out[2:], *spec[2])

    resolved = {}
    for name, spec in shapes.items():
        if isinstance(spec, tuple) and spec and spec[0] == "grid":
            spec = weight(spec)
        elif isinstance(spec, tuple) and spec and spec[0] == "forward":
            w = weight(spec[2]) if spec[2][0] == "grid" else spec[2]
            spec = _forward_shape(spec[1], w, op, kw)
        elif isinstance(spec, tuple) and spec and spec[0] in ("pool", "switches"):
            try:
                y, sw = fc.max_pool2d(rng.standard_normal(spec[1]).astype(dtype), **spec[2])
            except (ValueError, TypeError, MemoryError):
                y, sw = np.zeros((1, 1, 2, 2), dtype), rng.integers(-3, 40, (1, 1, 2, 2))
            resolved[name] = y if spec[0] == "pool" else sw
            continue
        resolved[name] = rng.standard_normal(spec).astype(dtype)
    if "weight_shape" in kw and isinstance(kw["weight_shape"], tuple) and kw["weight_shape"][:1] == ("shape",):
        w = weight(kw["weight_shape"][1])
        kw = dict(kw, weight_shape=_huge_kernel(w, kw["weight_shape"][2]))
    return list(resolved.values()), kw


def _huge_kernel(shape, which):
    """A weight shape, with kH (which = 1) or kW (which = 2) of 2**31."""
    return tuple(shape) if which == 0 else tuple(shape[:-3 + which]) + (2**31,) + tuple(shape[len(shape) - 2 + which:])


def _names_an_argument(op, message):
    """Whether the message starts with the names of the arguments at fault ('padding: ...', 'x/weight: ...')."""
    names = set(inspect.signature(getattr(fc, op)).parameters) - {"backend"}
    return all(part in names for part in message.split(":")[0].split("/"))


def run_case(case, rng, dtype):
    """'equal', 'unverified' (the reference ran out of memory) or 'Error: message'; AssertionError for a
    wrong result or an error that names no argument."""
    op, shapes, kw = case
    if op == "set_num_threads":
        old = fc.get_num_threads()
        try:
            fc.set_num_threads(**kw)
        except ValueError as e:
            assert _names_an_argument(op, str(e)), e
            return f"ValueError: {e}"
        finally:
            fc.set_num_threads(old)
        return "equal"
    arrays, kw = _arrays(op, shapes, kw, rng, dtype)
    try:
        got = getattr(fc, op)(*arrays, **kw)
    except MemoryError as e:
        return f"MemoryError: {e}"
    except (ValueError, TypeError) as e:
        assert _names_an_argument(op, str(e)), f"{type(e).__name__} names no argument: {e}"
        return f"{type(e).__name__}: {e}"
    try:
        with fc.use_backend("numpy"):
            want = getattr(fc, op)(*arrays, **kw)
    except MemoryError:
        return "unverified"
    assert_equal(got, want, dtype)
    return "equal"


def assert_equal(got, want, dtype):
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(g, w, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-4)


def child(examples):
    """Runs in the subprocess: hypothesis over each family's cases, each case printed before it runs."""
    rng = np.random.default_rng(0)
    for family, cases in FAMILIES.items():
        @settings(settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci")), max_examples=examples,
                  database=None, deadline=None)
        @given(cases, st.sampled_from([np.float32, np.float64]))
        def fuzz(case, dtype):
            print("case", json.dumps(case, default=str), flush=True)
            print("outcome", family, run_case(case, rng, dtype).splitlines()[0][:200], flush=True)

        fuzz()


def _examples():
    return max(10, int(settings().max_examples * float(os.environ.get("FUZZ_EXAMPLES", "4"))))


# Some hostile arguments ask for an honest but huge result (a dilation of 2**31 in conv_transpose2d makes
# an output of 2**31 rows): the child's memory is capped so that these end in MemoryError, not in the
# OOM killer. Under AddressSanitizer, which reserves terabytes of address space, the cap is its own.
LIMIT = 6 << 30
CAP = ("import resource; resource.setrlimit(resource.RLIMIT_AS, ({0}, {0}))\n".format(LIMIT)
       if "libasan" not in os.environ.get("LD_PRELOAD", "") else "")
ASAN_OPTIONS = f"allocator_may_return_null=1:max_allocation_size_mb={LIMIT >> 20}"


def _run_child(code):
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, ASAN_OPTIONS=":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), ASAN_OPTIONS])))
    r = run_python("-c", f"{CAP}import sys; sys.path.insert(0, {tests!r}); import conftest, test_fuzz; {code}",
                   env=env, timeout=600)
    cases = [line[5:] for line in r.stdout.splitlines() if line.startswith("case ")]
    assert r.returncode == 0, (f"rc {r.returncode} at case {cases[-1] if cases else None}:\n"
                               f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return [line[8:] for line in r.stdout.splitlines() if line.startswith("outcome ")]


@pytest.mark.parametrize("backend", [b for b in fc.available_backends() if b != "numpy"] or ["numpy"])
def test_public_ops_survive_hostile_arguments(backend, monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKEND", backend)
    outcomes = _run_child(f"test_fuzz.child({_examples()})")
    for family in FAMILIES:
        got = [o.split(" ", 1)[1] for o in outcomes if o.startswith(family + " ")]
        assert len(got) >= 10 and any(o == "equal" for o in got), (family, got)
        print(family, backend, {k: sum(o.startswith(k) for o in got)
                                for k in ("equal", "unverified", "ValueError", "TypeError", "MemoryError")})


# --- the C ABI: honest buffers for the sizes it is given, any int64 geometry ----------------------------

INT64 = st.sampled_from([v for v in EXTREME if -2**63 <= v < 2**63])
CABI_OPS = ["conv2d", "conv2d_input_grad", "conv2d_weight_grad", "max_pool2d", "max_unpool2d"] + [
    f + p for f in ("tiled_conv2d", "unshared_conv2d") for p in ("", "_input_grad", "_weight_grad")]


@st.composite
def cabi_params(draw):
    """(op, params): ordinary parameters (output sizes from fc_conv_output_size's arithmetic) or hostile ones
    (any int64 geometry, any small output size)."""
    op = draw(st.sampled_from(CABI_OPS))
    hostile = draw(st.booleans())
    size, geom = st.integers(0 if hostile else 1, 4), st.one_of(st.integers(1, 3), INT64) if hostile else st.integers(1, 3)
    pad = st.one_of(st.integers(0, 2), INT64) if hostile else st.integers(0, 1)
    out = lambda n, k, s, p, d: draw(size) if hostile else max(0, (n + 2 * p - d * (k - 1) - 1) // s + 1)
    if op.startswith("max"):
        N, C, H, W, kh, kw = (draw(size) for _ in range(6))
        sh, sw = draw(geom), draw(geom)
        ph, pw = (draw(pad), draw(pad)) if hostile else (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
        return op, (N, C, H, W, out(H, kh, sh, ph, 1), out(W, kw, sw, pw, 1), kh, kw, sh, sw, ph, pw)
    N, C_in, H, W, C_out, kH, kW = (draw(size) for _ in range(7))
    sh, sw, ph, pw = draw(geom), draw(geom), draw(pad), draw(pad)
    if op.startswith("conv2d"):
        dh, dw, g = draw(geom), draw(geom), draw(geom) if hostile else 1
        return op, (N, C_in, H, W, C_out, kH, kW, out(H, kH, sh, ph, dh), out(W, kW, sw, pw, dw), sh, sw, ph, pw, dh, dw, g)
    return op, (N, C_in, H, W, C_out, kH, kW, out(H, kH, sh, ph, 1), out(W, kW, sw, pw, 1), sh, sw, ph, pw,
                draw(size), draw(size))


def _cabi_reference(op, p, arrays):
    """The Python API's result for the same problem (numpy backend), or None where it cannot state it
    (asymmetric output sizes, switches outside the plane: the C ABI skips those, Python refuses them)."""
    x, y = arrays["x"], arrays["y"]
    try:
        with fc.use_backend("numpy"):
            if op.startswith("max"):
                kw = dict(kernel_size=p[6:8], stride=p[8:10], padding=p[10:12])
                if op == "max_pool2d":
                    return fc.max_pool2d(x, **kw)
                return fc.max_unpool2d(y, arrays["switches"], x.shape)
            kw = dict(stride=p[9:11], padding=p[11:13])
            family = op.partition("_conv2d")[0] + "_conv2d" if "_conv2d" in op else "conv2d"
            if family == "conv2d":
                kw.update(dilation=p[13:15], groups=p[15])
            part = op.partition("conv2d")[2]
            f = getattr(fc, op)
            return {"": lambda: f(x, arrays["w"], **kw), "_input_grad": lambda: f(y, arrays["w"], x.shape, **kw),
                    "_weight_grad": lambda: f(x, y, arrays["w"].shape, **kw)}[part]()
    except (ValueError, MemoryError):
        return None


def cabi_case(lib, ffi, op, p, rng, dtype):
    """'equal' (FC_OK and the reference's result), 'ok' (FC_OK, a problem Python cannot state), or
    'error rc: message' naming the entry point; buffers are exactly as large as the sizes in p say, so
    any read or write past them is the library's (and fails under ASan)."""
    suffix, ctype = ("f32", "float") if dtype == np.float32 else ("f64", "double")
    arr = lambda *shape: rng.standard_normal(shape).astype(dtype)
    if op.startswith("max"):
        N, C, H, W, H_out, W_out = p[:6]
        a = dict(x=arr(N, C, H, W), y=arr(N, C, H_out, W_out), switches=rng.integers(-2, 30, (N, C, H_out, W_out)))
        if op == "max_unpool2d" and N * C * H_out * W_out:
            a["y"], a["switches"] = (fc.max_pool2d(a["x"], p[6:8], p[8:10], p[10:12]) if _cabi_reference(
                "max_pool2d", p, a) is not None else (a["y"], a["switches"]))
        params = ffi.new("fc_pool_params *", list(p))
        order = ["x", "y", "switches"] if op == "max_pool2d" else ["y", "switches", "x"]
    else:
        N, C_in, H, W, C_out, kH, kW, H_out, W_out = p[:9]
        a = dict(x=arr(N, C_in, H, W), y=arr(N, C_out, H_out, W_out))
        if op.startswith("conv2d"):
            G = p[15]
            a["w"] = arr(C_out, C_in // G if G > 0 and C_in % G == 0 else C_in, kH, kW)
            params = ffi.new("fc_conv_params *", list(p))
        else:
            a["w"] = arr(*((H_out, W_out) if op.startswith("unshared") else p[13:15]), C_out, C_in, kH, kW)
            params = ffi.new("fc_tiled_params *", list(p))
        order = {"": ["x", "w", None, "y"], "_input_grad": ["y", "w", "x"], "_weight_grad": ["x", "y", "w"]}[
            op.partition("conv2d")[2]]
    inputs = {k: v.copy() for k, v in a.items()}
    ptrs = [ffi.NULL if k is None else ffi.cast(("int64_t" if a[k].dtype == np.int64 else ctype) + " *",
                                                   a[k].ctypes.data) for k in order]
    rc = getattr(lib, f"fc_{op}_{suffix}")(params, *ptrs)
    if rc != lib.FC_OK:
        msg = ffi.string(lib.fc_last_error()).decode()
        assert rc in (lib.FC_EINVAL, lib.FC_ENOMEM) and msg.startswith(f"fc_{op}_{suffix}: "), (rc, msg)
        return f"error {rc}: {msg}"
    want = _cabi_reference(op, p, inputs)
    if want is None:
        return "ok"
    assert_equal(tuple(a[k] for k in order[-(1 if op != "max_pool2d" else 2):]), want, dtype)
    return "equal"


def cabi_child(examples):
    from fastconv import cabi
    lib, ffi = cabi.load()
    rng = np.random.default_rng(0)

    @settings(settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci")), max_examples=examples,
              database=None, deadline=None)
    @given(cabi_params(), st.sampled_from([np.float32, np.float64]))
    def fuzz(case, dtype):
        print("case", json.dumps([case[0], [str(v) for v in case[1]]]), flush=True)
        print("outcome", cabi_case(lib, ffi, *case, rng, dtype)[:200], flush=True)

    fuzz()


@pytest.mark.skipif("cpp" not in fc.available_backends(), reason="the C ABI library is not built")
def test_c_abi_survives_hostile_parameters():
    pytest.importorskip("cffi")
    outcomes = _run_child(f"test_fuzz.cabi_child({_examples()})")
    assert len(outcomes) >= 10
    print({k: sum(o.startswith(k) for o in outcomes) for k in ("equal", "ok", "error")})


REACH = """
import numpy as np, fastconv as fc
x = np.linspace(-1, 1, 2 * 3 * 7 * 9).reshape(2, 3, 7, 9)
for w, g in [(np.ones((4, 3, 2, 1)), 1), (np.ones((3, 1, 2, 1)), 3)]:
    kw = dict(dilation=(2**31 - 1, 1), padding="same", groups=g)
    y = fc.conv2d(x, w, **kw)
    print(fc.kernel_for("conv2d", x, w, **kw).name, np.abs(y).max(),
          np.abs(fc.conv2d_input_grad(y + 1, w, x.shape, **kw)).max(),
          np.abs(fc.conv2d_weight_grad(x, y + 1, w.shape, **kw)).max())
"""


@pytest.mark.skipif("cpp" not in fc.available_backends(), reason="the cpp backend is not built")
def test_a_kernel_reaching_far_past_the_input_needs_no_workspace_for_its_reach():
    """Found by the fuzz: a 2-tap kernel dilated by 2**31 - 1 with 'same' padding made the depthwise and
    implicit kernels copy a padded plane of 2**31 rows around a 7x9 output. Every tap reads padding, so
    all three ops give zeros, under the fuzz's memory cap, from the packed GEMM."""
    r = run_python("-c", CAP + REACH, env=dict(os.environ, FASTCONV_BACKEND="cpp"))
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.split() == ["conv2d__packed_gemm", "0.0", "0.0", "0.0"] * 2
