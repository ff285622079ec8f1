"""fastconv.torch modules against their torch.nn namesakes (constructors, state dicts, outputs and gradients
in float64 within 1e-10), the tiled / locally connected modules against fastconv.nn's torch twins,
patch / unpatch on a torch model, and torch.compile / torch.export of a model built from the modules."""
import numpy as np
import pytest

from _helpers import assert_close

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
import fastconv.torch as fct  # noqa: E402  (needs torch)
from fastconv.nn import _torch as twins  # noqa: E402
from torch_helpers import one_torch_thread  # noqa: E402,F401  (the fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _same(got, want):
    """Equal within 1e-10 (float64) or 1e-4 (float32) of the larger of 1 and the largest |value|."""
    assert got.dtype == want.dtype
    got = got.detach().numpy()
    assert_close(got, want.detach().numpy(), got.dtype)


def _twins_agree(ours, theirs, *inputs, rng=None):
    """Same state dict keys; with theirs' weights loaded into ours, equal outputs and gradients (float64)."""
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    inputs = [t.detach().requires_grad_(t.is_floating_point()) for t in inputs]
    y, yt = ours(*inputs), theirs(*inputs)
    y, yt = (y[0], yt[0]) if isinstance(y, tuple) else (y, yt)
    _same(y, yt)
    dy = torch.tensor(np.random.default_rng(0).standard_normal(tuple(y.shape)))
    params = list(ours.parameters())
    theirs_params = list(theirs.parameters())
    floats = [t for t in inputs if t.requires_grad]
    grads = torch.autograd.grad(y, floats + params, dy)
    grads_t = torch.autograd.grad(yt, floats + theirs_params, dy)
    for g, gt in zip(grads, grads_t):
        _same(g, gt)


CONV_CONFIGS = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
    dict(in_channels=3, out_channels=5, kernel_size=4, padding="same", bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, groups=4, padding_mode="reflect"),
    dict(in_channels=3, out_channels=2, kernel_size=3, padding=(2, 1), padding_mode="circular"),
    dict(in_channels=3, out_channels=2, kernel_size=3, stride=2, padding=1, padding_mode="replicate"),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("config", CONV_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_conv2d_is_torch_conv2d(config):
    torch.manual_seed(0)
    ours, theirs = fct.Conv2d(**config, dtype=torch.float64), nn.Conv2d(**config, dtype=torch.float64)
    assert repr(ours) == repr(theirs)
    _twins_agree(ours, theirs, torch.rand(2, config["in_channels"], 9, 8, dtype=torch.float64))
    _twins_agree(ours, theirs, torch.rand(config["in_channels"], 7, 7, dtype=torch.float64))   # unbatched


def test_conv2d_initialises_as_torch():
    torch.manual_seed(3)
    theirs = nn.Conv2d(3, 8, 5)
    torch.manual_seed(3)
    ours = fct.Conv2d(3, 8, 5)
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
    assert ours.weight.dtype == torch.float32


@pytest.mark.parametrize("config,output_size", [
    (dict(in_channels=4, out_channels=3, kernel_size=3), None),
    (dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, groups=2), (10, 9)),
    (dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2),
          dilation=1, bias=False), None),
    (dict(in_channels=2, out_channels=2, kernel_size=3, padding=1, output_padding=1, dilation=2), None),
])
def test_conv_transpose2d_is_torch_conv_transpose2d(config, output_size):
    torch.manual_seed(0)
    ours = fct.ConvTranspose2d(**config, dtype=torch.float64)
    theirs = nn.ConvTranspose2d(**config, dtype=torch.float64)
    x = torch.rand(2, config["in_channels"], 5, 5, dtype=torch.float64)
    _twins_agree(ours, theirs, x)
    if output_size is not None:
        _same(ours(x, output_size), theirs(x, output_size))


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                    dict(kernel_size=(2, 3), stride=(1, 2)),
                                    dict(kernel_size=3, stride=2, padding=1, dilation=(2, 1), ceil_mode=True)])
def test_max_pool_and_unpool_are_torchs(kwargs, rng):
    x = torch.tensor(rng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8), dtype=torch.float64)
    _twins_agree(fct.MaxPool2d(**kwargs), nn.MaxPool2d(**kwargs), x)
    y, switches = fct.MaxPool2d(**kwargs, return_indices=True)(x)
    yt, it = nn.MaxPool2d(**kwargs, return_indices=True)(x)
    assert torch.equal(y, yt) and torch.equal(switches, it)
    unpool = {k: v for k, v in kwargs.items() if k != "ceil_mode"}
    if unpool.get("stride", unpool["kernel_size"]) == unpool["kernel_size"]:  # no repeated switches
        _twins_agree(fct.MaxUnpool2d(**unpool), nn.MaxUnpool2d(**unpool), y, switches)
        _same(fct.MaxUnpool2d(**unpool)(y, switches, x.shape), nn.MaxUnpool2d(**unpool)(y, switches, x.shape))


def test_tiled_and_locally_connected_are_fastconv_nn_twins():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 9, 8, dtype=torch.float64)
    ours = fct.TiledConv2d(3, 4, 3, tile=(2, 3), stride=1, padding="same", dtype=torch.float64)
    assert ours.weight.shape == (2, 3, 4, 3, 3, 3) and ours.bias.shape == (4,)
    theirs = twins.TorchTiledConv2d(torch.rand(2, 3, 4, 3, 3, 3), torch.rand(4), 3, 1, "same").double()
    _twins_agree(ours, theirs, x)
    ours = fct.LocallyConnected2d(3, 4, (3, 2), input_size=(9, 8), stride=2, padding=1, dtype=torch.float64)
    assert ours.weight.shape == (5, 5, 4, 3, 3, 2) and ours.bias.shape == (4, 5, 5) and ours.output_size == (5, 5)
    theirs = twins.TorchLocallyConnected2d(torch.rand(5, 5, 4, 3, 3, 2), torch.rand(4, 5, 5), (3, 2), 2, 1).double()
    _twins_agree(ours, theirs, x)
    fresh = fct.LocallyConnected2d(3, 4, (3, 2), input_size=(9, 8), stride=2, padding=1)
    bound = 1 / np.sqrt(3 * 3 * 2)   # torch's conv init: U(±1/sqrt(fan_in)), fan_in = C_in·kH·kW
    assert 0.8 * bound < fresh.weight.abs().max().item() <= bound
    assert fct.LocallyConnected2d(3, 4, 3, (9, 8), bias=False).bias is None


def torch_net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1), nn.ReLU(), nn.MaxPool2d(3, 2, dilation=2),
        nn.Flatten(), nn.Linear(16, 5))


def test_patch_swaps_in_place_and_unpatch_restores(rng):
    torch.manual_seed(0)
    model = torch_net().double()
    x = torch.tensor(rng.standard_normal((4, 3, 12, 12)))
    y_before = model(x)
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    swapped = fct.patch(model)
    assert list(swapped) == ["0", "1", "3", "4", "5", "7"]    # the dilated max-pool (7) too
    assert [type(m) for m in swapped.values()] == [fct.Conv2d, fct.BatchNorm2d, fct.MaxPool2d, fct.Conv2d, fct.Conv2d,
                                                   fct.MaxPool2d]
    assert swapped["0"] is model[0] and type(model[7]) is fct.MaxPool2d
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    _same(model(x), y_before)
    restored = fct.unpatch(model)
    assert list(restored) == list(swapped) and type(model[0]) is nn.Conv2d and type(model[3]) is nn.MaxPool2d
    _same(model(x), y_before)


def test_patched_model_trains_like_torch(rng):
    """A few SGD steps on the patched model follow the unpatched one's trajectory (float64)."""
    torch.manual_seed(0)
    reference = torch_net().double()
    patched = torch_net().double()
    patched.load_state_dict(reference.state_dict())
    fct.patch(patched)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (reference, patched)]
    for _ in range(3):
        x = torch.tensor(rng.standard_normal((4, 3, 12, 12)))
        target = torch.tensor(rng.integers(0, 5, 4))
        for model, opt in zip((reference, patched), opts):
            opt.zero_grad()
            F.cross_entropy(model(x), target).backward()
            opt.step()
    for a, b in zip(patched.state_dict().values(), reference.state_dict().values()):   # running statistics too
        _same(a, b) if a.is_floating_point() else torch.testing.assert_close(a, b)


def test_patch_fuse_relu_fuses_batch_norm_and_relu_pairs_and_unpatch_restores(rng):
    """fuse_relu: the BatchNorm2d + ReLU pair of a Sequential (not the ReLU after a conv) becomes one fused layer
    and a pass-through; training follows the unpatched model (outputs, gradients, running statistics)."""
    torch.manual_seed(0)
    reference, patched = torch_net().double(), torch_net().double()
    patched.load_state_dict(reference.state_dict())
    swapped = fct.patch(patched, fuse_relu=True)
    assert list(swapped) == ["0", "1", "3", "4", "5", "7", "2"]
    assert type(patched[2]) is fct.FusedReLU and patched[1].relu and type(patched[6]) is nn.ReLU
    assert "relu=True" in repr(patched[1])
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (reference, patched)]
    for _ in range(3):
        x = torch.tensor(rng.standard_normal((4, 3, 12, 12)))
        target = torch.tensor(rng.integers(0, 5, 4))
        losses = []
        for model, opt in zip((reference, patched), opts):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), target)
            loss.backward()
            losses.append(loss.detach())
            opt.step()
        _same(*losses)
    for a, b in zip(patched.state_dict().values(), reference.state_dict().values()):
        _same(a, b) if a.is_floating_point() else torch.testing.assert_close(a, b)
    patched.eval(), reference.eval()
    x = torch.tensor(rng.standard_normal((2, 3, 12, 12)))
    _same(patched(x), reference(x))
    assert list(fct.unpatch(patched)) == ["0", "1", "2", "3", "4", "5", "7"]
    assert type(patched[1]) is nn.BatchNorm2d and type(patched[2]) is nn.ReLU and "relu" not in vars(patched[1])


def test_fuse_relu_only_where_the_pair_is_certain():
    """Not a ReLU used twice, not a BatchNorm2d outside a Sequential's order, not one patch did not swap."""
    shared = nn.ReLU()
    model = nn.Sequential(nn.BatchNorm2d(2), shared, nn.BatchNorm2d(2), shared,
                          nn.Sequential(nn.BatchNorm2d(2).half(), nn.ReLU()), nn.BatchNorm2d(2), nn.Identity(), nn.ReLU())
    swapped = fct.patch(model, fuse_relu=True)
    assert not any(type(m) is fct.FusedReLU for m in swapped.values())
    assert not any(getattr(m, "relu", False) for m in model.modules())
    built = nn.Sequential(fct.BatchNorm2d(2), nn.ReLU())
    assert fct.patch(built, fuse_relu=True) == {} and not built[0].relu


class _BatchNormReLU(nn.BatchNorm2d):
    """torch's BatchNorm2d followed by ReLU, under BatchNorm2d's state-dict keys."""

    def forward(self, x):
        return F.relu(super().forward(x))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("momentum, affine, track", [(0.1, True, True), (None, True, True), (0.3, False, True),
                                                     (0.1, True, False)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batch_norm2d_is_torch_batch_norm2d(momentum, affine, track, dtype, relu, rng):
    """Training steps (outputs, gradients, running statistics and num_batches_tracked), then eval mode; with
    relu=True against torch's BatchNorm2d followed by ReLU."""
    kw = dict(momentum=momentum, affine=affine, track_running_stats=track, dtype=dtype)
    ours, theirs = fct.BatchNorm2d(5, relu=relu, **kw), (_BatchNormReLU if relu else nn.BatchNorm2d)(5, **kw)
    if affine:
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 2)
            theirs.bias.uniform_(-1, 1)
    ours.load_state_dict(theirs.state_dict())
    for step in range(3):
        x = torch.tensor(rng.standard_normal((4, 5, 3, 2)) * (step + 1) + step, dtype=dtype)
        if dtype == torch.float64:
            _twins_agree(ours, theirs, x)
        else:
            _same(ours(x), theirs(x))
        for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
            _same(a, b) if a.is_floating_point() else torch.testing.assert_close(a, b, msg=name)
    ours.eval(), theirs.eval()
    _same(ours(x), theirs(x))
    assert repr(ours) == (repr(theirs).replace("_BatchNormReLU(", "BatchNorm2d(").replace(")", ", relu=True)", 1)
                          if relu else repr(theirs))


def test_patch_kinds_and_what_it_leaves_alone():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), twins.TorchPaddedConv2d(2, 2, 3, fastconv_padding="full"),
                          nn.Conv2d(2, 2, 3).half())
    assert list(fct.patch(model, kinds=["MaxPool2d"])) == ["1"]
    assert list(fct.patch(model, kinds=nn.Conv2d)) == ["0"]   # a subclass (2) and a float16 layer (3) stay
    assert fct.patch(model) == {} and list(fct.unpatch(model)) == ["0", "1"]
    with pytest.raises(ValueError, match=r"^kinds: expected names from \['BatchNorm2d', 'Conv2d'"):
        fct.patch(model, kinds=["Linear"])
    built = nn.Sequential(fct.Conv2d(1, 2, 3))
    assert fct.unpatch(built) == {} and type(built[0]) is fct.Conv2d   # built as fastconv layers: not patch's


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = fct.Conv2d(2, 4, 3, padding=1)
        self.pool = fct.MaxPool2d(2, return_indices=True)
        self.unpool = fct.MaxUnpool2d(2)
        self.local = fct.LocallyConnected2d(4, 3, 3, input_size=(8, 8), stride=2, padding=1)
        self.tiled = fct.TiledConv2d(3, 3, 3, tile=2, padding=1)
        self.up = fct.ConvTranspose2d(3, 2, 2, stride=2)
        self.head = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        y, switches = self.pool(torch.relu(self.conv(x)))
        y = self.unpool(y, switches)                       # (N, 4, 8, 8)
        y = torch.relu(self.tiled(self.local(y)))           # (N, 3, 4, 4)
        return self.head(self.up(y).flatten(1))


@pytest.mark.parametrize("backend", [
    "aot_eager",   # dynamo's graph capture, the fake kernels and AOTAutograd over the formulas, without codegen
    pytest.param("inductor", marks=pytest.mark.slow),   # + C++ code generation for the torch ops (about 45 s here)
])
def test_torch_compile_matches_eager(backend, rng):
    """fullgraph=True: the fastconv operators cause no graph break; forward and gradients match eager."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = SmallNet()
    x = torch.tensor(rng.standard_normal((2, 2, 8, 8)), dtype=torch.float32)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    for run in (model, compiled):
        model.zero_grad()
        out = run(x)
        out.square().sum().backward()
        if run is model:
            eager_out, eager_grads = out.detach(), [p.grad.clone() for p in model.parameters()]
    _same(out, eager_out)
    for p, g in zip(model.parameters(), eager_grads):
        _same(p.grad, g)


def test_torch_export_records_the_operators(rng):
    model = SmallNet().eval()
    x = torch.tensor(rng.standard_normal((2, 2, 8, 8)), dtype=torch.float32)
    exported = torch.export.export(model, (x,))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    for op in ("conv2d", "max_pool2d", "max_unpool2d", "unshared_conv2d", "tiled_conv2d", "conv_transpose2d"):
        assert f"fastconv.{op}.default" in targets, (op, targets)
    _same(exported.module()(x), model(x))
