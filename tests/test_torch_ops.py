"""fastconv.torch operators: outputs and gradients against torch.nn.functional (float64, within 1e-10),
gradcheck for every op, the operator registrations (opcheck: schema, fake kernel, autograd), zero-copy
hand-off and errors. Tiled and unshared convolution, which torch lacks, are checked against the unfold +
einsum twins of fastconv.nn.to_torch."""
import subprocess
import sys

import numpy as np
import pytest

import fastconv as fc
from _helpers import assert_close, distinct
from shapes import CONV_ARGS, CONV_CASES, TILED_CASES, POOL_CASES, TRANSPOSE_CASES

torch = pytest.importorskip("torch")
F = torch.nn.functional
import fastconv.torch as fct  # noqa: E402  (needs torch)
from fastconv.nn import _torch as twins  # noqa: E402
from torch_helpers import one_torch_thread, torch_conv2d  # noqa: E402,F401  (the fixture)

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")]
ids = [c["id"] for c in CONV_CASES]


def _randn(rng, shape, grad=True):
    return torch.tensor(rng.standard_normal(shape), requires_grad=grad)


def _same(got, want):
    """Equal to within 1e-10 of the larger of 1 and the largest |value| (float64)."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, got.shape, want.shape)
    assert_close(got.detach().numpy(), want.detach().numpy(), np.float64)


def _same_with_grads(ours, theirs, inputs, rng):
    """ours(*inputs) equals theirs(*inputs), and so do the gradients for one random dy."""
    y, yt = ours(*inputs), theirs(*inputs)
    _same(y, yt)
    dy = torch.tensor(rng.standard_normal(tuple(y.shape)))
    for g, gt in zip(torch.autograd.grad(y, inputs, dy), torch.autograd.grad(yt, inputs, dy)):
        _same(g, gt)


def _gradcheck(fn, inputs):
    assert torch.autograd.gradcheck(fn, inputs, atol=1e-7, rtol=1e-6)


def _conv_case(case, rng):
    args = {k: case[k] for k in CONV_ARGS}
    return args, _randn(rng, case["x"]), _randn(rng, case["w"]), _randn(rng, case["w"][:1])


@pytest.mark.parametrize("case", CONV_CASES, ids=ids)
def test_conv2d_equals_torch(case, rng):
    args, x, w, b = _conv_case(case, rng)
    _same_with_grads(lambda x, w, b: fct.conv2d(x, w, b, **args), lambda x, w, b: torch_conv2d(x, w, b, **args),
                     (x, w, b), rng)


# small cases covering every geometry: stride, per-side and larger-than-kernel padding, dilation, groups, words
GRADCHECK = [c for c in CONV_CASES if c["id"] in (
    "1x1-input-pad1", "prime-13x5", "stride-asym", "dilation-asym-stride2", "depthwise-x2", "groups2-dil2-same",
    "same-stride-3x2-even", "full-dil2-stride2", "pad-gt-kernel")]


@pytest.mark.parametrize("case", GRADCHECK, ids=[c["id"] for c in GRADCHECK])
def test_conv2d_gradcheck(case, rng):
    args, x, w, b = _conv_case(case, rng)
    dy = _randn(rng, tuple(fct.conv2d(x, w, **args).shape))
    _gradcheck(lambda x, w, b: fct.conv2d(x, w, b, **args), (x, w, b))
    _gradcheck(lambda dy, w: fct.conv2d_input_grad(dy, w, x.shape, **args), (dy, w))
    _gradcheck(lambda x, dy: fct.conv2d_weight_grad(x, dy, w.shape, **args), (x, dy))


def test_conv2d_grad_ops_equal_fastconv(rng):
    """The gradient operators called directly are fastconv's gradient ops."""
    args, x, w, _ = _conv_case(CONV_CASES[-1], rng)
    dy = _randn(rng, tuple(fct.conv2d(x, w, **args).shape))
    n = lambda t: t.detach().numpy()  # noqa: E731
    _same(fct.conv2d_input_grad(dy, w, x.shape, **args),
          torch.from_numpy(fc.conv2d_input_grad(n(dy), n(w), x.shape, **args)))
    _same(fct.conv2d_weight_grad(x, dy, w.shape, **args),
          torch.from_numpy(fc.conv2d_weight_grad(n(x), n(dy), w.shape, **args)))


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=[c["id"] for c in TRANSPOSE_CASES])
def test_conv_transpose2d_equals_torch_and_gradcheck(case, rng):
    args = {k: case[k] for k in ("stride", "padding", "output_padding", "dilation", "groups")}
    x, w, b = _randn(rng, case["x"]), _randn(rng, case["w"]), _randn(rng, (case["w"][1] * case["groups"],))
    ours = lambda x, w, b: fct.conv_transpose2d(x, w, b, **args)  # noqa: E731
    _same_with_grads(ours, lambda x, w, b: F.conv_transpose2d(x, w, b, **args), (x, w, b), rng)
    _gradcheck(ours, (x, w, b))


def _local_case(case, rng, op):
    shape, C_out, k, stride, padding, tile = case
    x = _randn(rng, shape)
    H_out, W_out = fct.conv2d(x, torch.zeros(C_out, shape[1], k, k, dtype=torch.float64), stride=stride,
                              padding=padding).shape[2:]
    grid, bias = (tile, (C_out,)) if op == "tiled_conv2d" else ((H_out, W_out), (C_out, H_out, W_out))
    return x, _randn(rng, (*grid, C_out, shape[1], k, k)), _randn(rng, bias), dict(stride=stride, padding=padding)


def _twin(op, k, geo):
    cls = twins.TorchTiledConv2d if op == "tiled_conv2d" else twins.TorchLocallyConnected2d

    def run(x, w, b):  # the twin's forward on the very tensors given, so autograd reaches them
        twin = cls(w.detach(), b.detach(), k, geo["stride"], geo["padding"])
        return torch.func.functional_call(twin, {"weight": w, "bias": b}, (x,))
    return run


@pytest.mark.parametrize("op", ["tiled_conv2d", "unshared_conv2d"])
@pytest.mark.parametrize("case", TILED_CASES)
def test_tiled_conv_equals_unfold_twin_and_gradcheck(op, case, rng):
    x, w, b, geo = _local_case(case, rng, op)
    forward, input_grad, weight_grad = (getattr(fct, op + s) for s in ("", "_input_grad", "_weight_grad"))
    ours = lambda x, w, b: forward(x, w, b, **geo)  # noqa: E731
    _same_with_grads(ours, _twin(op, case[2], geo), (x, w, b), rng)
    if x.numel() + w.numel() > 300:  # gradcheck perturbs every input element: keep it to the small cases
        return
    dy = _randn(rng, tuple(ours(x, w, b).shape))
    _gradcheck(ours, (x, w, b))
    _gradcheck(lambda dy, w: input_grad(dy, w, x.shape, **geo), (dy, w))
    _gradcheck(lambda x, dy: weight_grad(x, dy, w.shape, **geo), (x, dy))


def _pool_args(case):
    return {k: case[k] for k in ("kernel_size", "stride", "padding", "ceil_mode")}


@pytest.mark.parametrize("case", POOL_CASES, ids=[c["id"] for c in POOL_CASES])
def test_max_pool2d_equals_torch_and_gradcheck(case, rng):
    """Distinct values 1 apart: the argmax cannot move under gradcheck's perturbation."""
    args = _pool_args(case)
    x = torch.tensor(distinct(rng, case["x"]), requires_grad=True)
    y, switches = fct.max_pool2d(x, **args)
    yt, it = F.max_pool2d(x, return_indices=True, **args)
    assert switches.dtype == torch.int64 and torch.equal(switches, it) and not switches.requires_grad
    _same_with_grads(lambda x: fct.max_pool2d(x, **args)[0], lambda x: F.max_pool2d(x, **args), (x,), rng)
    _gradcheck(lambda x: fct.max_pool2d(x, **args)[0], (x,))


def test_max_unpool2d_equals_torch_and_gradcheck(rng):
    x = torch.tensor(distinct(rng, (2, 3, 7, 6)))
    _, switches = F.max_pool2d(x, 2, return_indices=True)
    y = _randn(rng, tuple(switches.shape))
    ours = lambda y: fct.max_unpool2d(y, switches, x.shape)  # noqa: E731
    _same_with_grads(ours, lambda y: F.max_unpool2d(y, switches, 2, output_size=x.shape[2:]), (y,), rng)
    _gradcheck(ours, (y,))


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm2d_equals_torch_and_gradcheck(affine, rng):
    x = _randn(rng, (3, 4, 5, 2))
    params = (_randn(rng, (4,)), _randn(rng, (4,))) if affine else ()
    ours = lambda x, *wb: fct.batch_norm2d(x, *wb)[0]  # noqa: E731
    theirs = lambda x, *wb: F.batch_norm(x, None, None, *wb, training=True)  # noqa: E731
    _same_with_grads(ours, theirs, (x,) + params, rng)
    _gradcheck(ours, (x,) + params)
    _, mean, inv_std = fct.batch_norm2d(x, *params)
    var, mean_t = torch.var_mean(x, (0, 2, 3), unbiased=False)
    _same(mean, mean_t.detach())
    _same(inv_std, (var + 1e-5).rsqrt().detach())
    assert not mean.requires_grad and not inv_std.requires_grad
    with pytest.raises(NotImplementedError, match="not differentiable"):
        y = fct.batch_norm2d(x, *params)[0]
        (g,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)
        torch.autograd.grad(g.sum(), x)


def test_batch_norm2d_with_relu_equals_torch_and_gradcheck(rng):
    x = _randn(rng, (3, 4, 5, 2))
    params = (_randn(rng, (4,)), _randn(rng, (4,)))
    ours = lambda x, *wb: fct.batch_norm2d(x, *wb, relu=True)[0]  # noqa: E731
    theirs = lambda x, *wb: F.relu(F.batch_norm(x, None, None, *wb, training=True))  # noqa: E731
    assert (ours(x, *params) == 0).any()
    _same_with_grads(ours, theirs, (x,) + params, rng)
    _gradcheck(ours, (x,) + params)


def test_overlapping_unpool_accumulates_as_max_pool_backward(rng):
    """With overlapping windows a switch repeats: the sum over its outputs is max-pool's gradient."""
    x = torch.tensor(distinct(rng, (1, 2, 7, 7)), requires_grad=True)
    y, switches = fct.max_pool2d(x, 3, 1)
    dy = torch.tensor(rng.standard_normal(tuple(y.shape)))
    (dx,) = torch.autograd.grad(F.max_pool2d(x, 3, 1), x, dy)
    _same(fct.max_unpool2d(dy, switches, x.shape), dx)


def test_double_backward_through_conv_and_pool(rng):
    """The formulas call the registered operators, so gradients are differentiable again."""
    x, w = _randn(rng, (1, 2, 6, 6)), _randn(rng, (3, 2, 3, 3))
    f = lambda x, w: fct.max_pool2d(fct.conv2d(x, w, padding=1), 2)[0]  # noqa: E731
    assert torch.autograd.gradgradcheck(f, (x, w), atol=1e-7, rtol=1e-6)


def _op_samples(rng):
    """One call per operator of torch.ops.fastconv, canonical arguments."""
    t = lambda *s: _randn(rng, s)  # noqa: E731
    conv = ([1, 2], [1, 0, 2, 1], [1, 1], 2)
    local = ([1, 1], [1, 1, 0, 0])
    sw = F.max_pool2d(torch.tensor(distinct(rng, (2, 2, 6, 6))), 2, return_indices=True)[1]
    return {
        "conv2d": (t(2, 4, 7, 6), t(6, 2, 3, 2), t(6), *conv),
        "conv2d_input_grad": (t(2, 6, 6, 4), t(6, 2, 3, 2), [2, 4, 7, 6], *conv),
        "conv2d_weight_grad": (t(2, 4, 7, 6), t(2, 6, 6, 4), [6, 2, 3, 2], *conv),
        "conv_transpose2d": (t(2, 4, 3, 4), t(4, 3, 3, 3), t(6), [2, 2], [1, 0], [1, 1], [1, 1], 2),
        "tiled_conv2d": (t(2, 3, 6, 5), t(2, 3, 4, 3, 3, 3), t(4), *local),
        "tiled_conv2d_input_grad": (t(2, 4, 6, 3), t(2, 3, 4, 3, 3, 3), [2, 3, 6, 5], *local),
        "tiled_conv2d_weight_grad": (t(2, 3, 6, 5), t(2, 4, 6, 3), [2, 3, 4, 3, 3, 3], *local),
        "unshared_conv2d": (t(2, 3, 6, 5), t(6, 3, 4, 3, 3, 3), t(4, 6, 3), *local),
        "unshared_conv2d_input_grad": (t(2, 4, 6, 3), t(6, 3, 4, 3, 3, 3), [2, 3, 6, 5], *local),
        "unshared_conv2d_weight_grad": (t(2, 3, 6, 5), t(2, 4, 6, 3), [6, 3, 4, 3, 3, 3], *local),
        "max_pool2d": (torch.tensor(distinct(rng, (2, 3, 7, 6)), requires_grad=True), [3, 3], [2, 2], [1, 1], True,
                       [1, 2]),
        "max_unpool2d": (t(2, 2, 3, 3), sw, [2, 2, 6, 6]),
        "batch_norm2d": (t(2, 3, 4, 5), t(3), t(3), 1e-5, True),
        # batch_norm2d_grad is not differentiable (its autograd formula raises): inputs without grad
        "batch_norm2d_grad": tuple(_randn(rng, s, grad=False) for s in ((2, 3, 4, 5), (2, 3, 4, 5), (3,), (3,), (3,),
                                                                        (3,))) + (True,),
    }


def test_every_op_is_sampled():
    assert set(_op_samples(np.random.default_rng(0))) == set(fct.OP_NAMES)


@pytest.mark.parametrize("op", sorted(fct.OP_NAMES))
def test_opcheck(op, rng):
    """torch.library.opcheck: schema, fake kernel against the real one, autograd registration, AOT dispatch."""
    torch.library.opcheck(getattr(torch.ops.fastconv, op).default, _op_samples(rng)[op])


def test_contiguous_tensors_reach_the_kernel_without_a_copy(monkeypatch, rng):
    """The backend receives NumPy arrays over the tensors' own memory, and the result is the kernel's array."""
    from fastconv.backends import reference
    seen = {}

    def spy(x, w, b, y, *geometry, **kw):
        seen.update(x=x.ctypes.data, w=w.ctypes.data, y=y)
        return real(x, w, b, y, *geometry, **kw)

    real = reference.conv2d
    monkeypatch.setattr(reference, "conv2d", spy)
    x, w = torch.rand(2, 3, 6, 6), torch.rand(4, 3, 3, 3, requires_grad=True)
    with fc.use_backend("numpy"):
        y = fct.conv2d(x, w)
    assert seen["x"] == x.data_ptr() and seen["w"] == w.data_ptr()
    assert y.data_ptr() == seen["y"].ctypes.data
    with fc.use_backend("numpy"):   # a non-contiguous view is made contiguous (once) and gives the same result
        y2 = fct.conv2d(x.transpose(2, 3).contiguous().transpose(2, 3), w)
    assert seen["x"] != x.data_ptr() and torch.equal(y, y2)


def test_unobserved_calls_skip_the_dispatcher_and_observed_ones_do_not():
    """Plain eager calls without autograd run the CPU kernel directly; a profiler, autograd or fake tensors
    see the operator."""
    x, w = torch.rand(2, 3, 6, 6), torch.rand(4, 3, 3, 3)
    y = fct.conv2d(x, w)
    with torch.profiler.profile() as prof:
        assert torch.equal(fct.conv2d(x, w), y)
    assert "fastconv::conv2d" in {e.name for e in prof.events()}
    assert "fastconv" in type(fct.conv2d(x, w.requires_grad_()).grad_fn).__name__
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode() as mode:
        fake = fct.conv2d(mode.from_tensor(x), mode.from_tensor(w), padding="same")
    assert type(fake) is not torch.Tensor and fake.shape == (2, 4, 6, 6)


def test_backward_calls_the_gradient_kernels_directly_unless_it_builds_a_graph(monkeypatch):
    """A plain backward runs the gradient kernels without the dispatcher; with create_graph the gradient
    calls are operators again, recorded for the second derivative."""
    from fastconv.torch import _library
    calls = []
    for name in ("conv2d_input_grad", "conv2d_weight_grad"):
        kernel = _library.KERNELS[name]
        monkeypatch.setitem(_library.KERNELS, name, lambda *a, k=kernel, n=name: calls.append(n) or k(*a))
    x, w = torch.rand(2, 3, 6, 6, requires_grad=True), torch.rand(4, 3, 3, 3, requires_grad=True)
    fct.conv2d(x, w).sum().backward()
    assert sorted(calls) == ["conv2d_input_grad", "conv2d_weight_grad"]
    direct = x.grad.clone()
    calls.clear()
    (dx,) = torch.autograd.grad(fct.conv2d(x, w).sum(), x, create_graph=True)
    assert calls == [] and dx.grad_fn is not None and torch.equal(dx.detach(), direct)


@pytest.mark.parametrize("padding", [2, (1, 0), "same", "full", "causal", ((0, 2), (1, 0))])
def test_unobserved_conv2d_takes_every_argument_form_as_the_operator_does(padding, rng):
    """The direct path hands the user's forms to ops.conv2d unnormalised: the same result as the operator."""
    x, w, b = (torch.tensor(rng.standard_normal(s)) for s in ((2, 4, 9, 8), (6, 2, 3, 2), (6,)))
    kw = dict(stride=(2, 1), padding=padding, dilation=(1, 2), groups=2)
    with torch.no_grad():
        direct = fct.conv2d(x, w, b, **kw)
    observed = fct.conv2d(x, w.requires_grad_(), b, **kw)
    assert "fastconv" in type(observed.grad_fn).__name__ and torch.equal(direct, observed.detach())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_layouts(dtype, rng):
    x = torch.tensor(rng.standard_normal((2, 3, 8, 8)), dtype=dtype).to(memory_format=torch.channels_last)
    w = torch.tensor(rng.standard_normal((4, 3, 3, 3)), dtype=dtype)
    y = fct.conv2d(x, w, padding="same")
    assert y.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(y, F.conv2d(x, w, padding="same"), rtol=tol, atol=tol)


def test_unbatched_inputs(rng):
    x, w = torch.rand(3, 6, 6, dtype=torch.float64), torch.rand(4, 3, 3, 3, dtype=torch.float64)
    _same(fct.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1))
    y, switches = fct.max_pool2d(x, 2)
    yt, it = F.max_pool2d(x, 2, return_indices=True)
    _same(y, yt)
    assert torch.equal(switches, it)
    _same(fct.max_unpool2d(y, switches, (6, 6)), F.max_unpool2d(yt, it, 2))


def test_errors_name_the_argument():
    x, w = torch.rand(2, 3, 6, 6), torch.rand(4, 3, 3, 3)
    with pytest.raises(TypeError, match=r"^x: expected dtype float32 or float64, got float16"):
        fct.conv2d(x.half(), w.half())
    with pytest.raises(TypeError, match=r"^weight: dtype float64 differs"):
        fct.conv2d(x, w.double())
    with pytest.raises(TypeError, match=r"^x: expected a torch.Tensor, got ndarray"):
        fct.conv2d(x.numpy(), w)
    with pytest.raises(ValueError, match=r"^weight: expected shape \(4, 3, kH, kW\).*got \(4, 2, 3, 3\)"):
        fct.conv2d(x, torch.rand(4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"^x: expected a 4-D tensor \(N, C_in, H, W\)"):
        fct.conv2d(x[0, 0], w)
    with pytest.raises(ValueError, match=r"^weight: expected a 6-D tensor"):
        fct.tiled_conv2d(x, w)
    with pytest.raises(ValueError, match=r"^switches: values must lie in"):
        fct.max_unpool2d(torch.rand(1, 1, 2, 2), torch.full((1, 1, 2, 2), 99), (1, 1, 4, 4))


def test_import_fastconv_does_not_import_torch():
    code = "import sys, fastconv, fastconv.nn; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
