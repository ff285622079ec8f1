"""The fastconv.nn layers added for imported torch models (BatchNorm2d, AvgPool2d, AdaptiveAvgPool2d,
LocalResponseNorm, ConvTranspose2d, Softmax): forward and backward against PyTorch in float64; and
fastconv.nn.from_torch(module) on Sequential containers and traced chains."""
import numpy as np
import pytest

import fastconv.nn as fnn
from _helpers import assert_close

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
from torch_helpers import one_torch_thread  # noqa: E402,F401  (the fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _against_torch(layer, module, x_shape, rng, train=False):
    """Same state; equal output, dx and every parameter gradient for a random dy (float64)."""
    module = module.double().train(train)
    layer.train(train)
    fnn.from_torch(module.state_dict(), layer) if list(layer.state()) else None
    x = rng.standard_normal(x_shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    y = layer(x)
    assert_close(y, yt.detach().numpy(), np.float64)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    assert_close(layer.backward(dy), xt.grad.numpy(), np.float64)
    grads = {name: grad for name, _, grad in layer.parameters()}
    for name, p in module.named_parameters():
        assert_close(grads[name], p.grad.numpy(), np.float64)
    for name, value in layer.buffers():   # BatchNorm's running statistics follow torch's in training too
        np.testing.assert_allclose(value, module.state_dict()[name].numpy(), rtol=1e-12)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm(train, affine, rng):
    module = nn.BatchNorm2d(4, eps=1e-3, momentum=0.2, affine=affine)
    with torch.no_grad():   # non-trivial statistics and affine parameters
        module.running_mean.uniform_(-1, 1), module.running_var.uniform_(0.5, 2)
        if affine:
            module.weight.uniform_(0.5, 2), module.bias.uniform_(-1, 1)
    _against_torch(fnn.BatchNorm2d(4, eps=1e-3, momentum=0.2, affine=affine, dtype=np.float64), module,
                   (3, 4, 5, 6), rng, train)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), count_include_pad=False),
                                    dict(kernel_size=3, padding=1, divisor_override=4)])
def test_avg_pool(kwargs, rng):
    _against_torch(fnn.AvgPool2d(**kwargs), nn.AvgPool2d(**kwargs), (2, 3, 7, 8), rng)


@pytest.mark.parametrize("size", [1, (3, 2), (5, 7), (None, 3), 7])
def test_adaptive_avg_pool(size, rng):
    _against_torch(fnn.AdaptiveAvgPool2d(size), nn.AdaptiveAvgPool2d(size), (2, 3, 7, 6), rng)


@pytest.mark.parametrize("size", [1, 2, 5])
def test_local_response_norm(size, rng):
    _against_torch(fnn.LocalResponseNorm(size, alpha=0.1, beta=0.75, k=2.0), nn.LocalResponseNorm(size, 0.1, 0.75, 2.0),
                   (2, 7, 4, 3), rng)


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding=1, output_padding=1, groups=2),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=1, output_padding=1, dilation=2, bias=False),
])
def test_conv_transpose(kwargs, rng):
    torch.manual_seed(0)
    _against_torch(fnn.ConvTranspose2d(**kwargs, dtype=np.float64), nn.ConvTranspose2d(**kwargs),
                   (2, kwargs["in_channels"], 5, 4), rng)


def test_softmax(rng):
    _against_torch(fnn.Softmax(1), nn.Softmax(dim=1), (4, 10), rng)


def _check_import(module, x_shape, rng):
    """from_torch(module) gives the same outputs (eval mode, float64) and PyTorch's state-dict keys."""
    module = module.double().eval()
    model = fnn.from_torch(module)
    assert not model.training
    assert set(model.state_dict()) == set(module.state_dict())
    x = rng.standard_normal(x_shape)
    with torch.no_grad():
        assert_close(model(x), module(torch.tensor(x)).numpy(), np.float64)
    return model


def test_from_torch_sequential_every_layer(rng):
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.LocalResponseNorm(3), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU()), nn.AvgPool2d(2),
        nn.ConvTranspose2d(8, 4, 2, stride=2), nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(), nn.Dropout(0.3),
        nn.Linear(36, 5), nn.Softmax(dim=1))
    with torch.no_grad():
        module[1].running_mean.uniform_(-1, 1), module[1].running_var.uniform_(0.5, 2)
    model = _check_import(module, (2, 3, 20, 18), rng)
    assert [type(layer).__name__ for layer in model][:4] == ["Conv2d", "BatchNorm2d", "ReLU", "LocalResponseNorm"]
    assert isinstance(model["5"], fnn.Sequential)


class Chain(nn.Module):
    """torchvision's AlexNet/VGG pattern: submodules and torch.flatten in forward."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(16, 3))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        x = torch.flatten(x, 1)
        return self.classifier(F.relu(x))


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_from_torch_traced_chain(rng):
    torch.manual_seed(0)
    model = _check_import(Chain(), (2, 3, 10, 10), rng)
    assert [name for name, _ in model.named_layers()] == ["features", "avgpool", "flatten", "relu", "classifier"]


def test_from_torch_names_what_it_cannot_import():
    with pytest.raises(TypeError, match=r"layer '1' \(GELU\) is not supported"):
        fnn.from_torch(nn.Sequential(nn.Conv2d(1, 1, 1), nn.GELU()))
    with pytest.raises(TypeError, match=r"layer '0' \(MaxPool2d\) is not supported: return_indices"):
        fnn.from_torch(nn.Sequential(nn.MaxPool2d(2, return_indices=True)))
    with pytest.raises(TypeError, match=r"Branchy: step 'b' is not a chain step"):
        fnn.from_torch(Branchy())


# -- the CNNs of the visualization literature on scikit-learn's sample photos -----------------------------------
def _photos(dtype):
    """scikit-learn's two sample photos, their central 224×224 crops, ImageNet-normalised, NCHW."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    images = np.stack(sklearn_datasets.load_sample_images().images)[:, 101:325, 208:432] / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return ((images - mean) / std).transpose(0, 3, 1, 2).astype(dtype)


def _batch_norm_statistics(module):
    """Non-trivial running statistics (a fresh BatchNorm2d's are 0 and 1), so eval-mode BN is exercised."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.1, 0.1)


def _logits_equal(name, dtype, tol, prepare=None):
    """from_torch(torchvision-style module) (also with BatchNorm folded) and fastconv.nn.models.<name> with its
    state dict give the module's logits on the photos; returns (module, imported model, photos)."""
    from torchvision_models import TORCH_MODELS
    torch.manual_seed(0)
    module = TORCH_MODELS[name]().eval()
    _batch_norm_statistics(module)
    if dtype == np.float64:
        module = module.double()
    x = _photos(dtype)
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy()
    imported = fnn.from_torch(module)
    defined = getattr(fnn.models, name)(dtype=dtype, rng=1).eval()
    fnn.from_torch(module.state_dict(), defined)     # fastconv.nn.models: torchvision's state-dict keys
    models = [imported, defined]
    if any(isinstance(m, nn.BatchNorm2d) for m in module.modules()):
        models.append(fnn.from_torch(module, fold_batch_norm=True))
    for model in models:
        assert [n for n, _ in model.named_layers()] == ["features", "avgpool", "flatten", "classifier"]
        logits = model(x)
        assert logits.dtype == dtype
        assert np.abs(logits - expected).max() <= tol * np.abs(expected).max(), name
    return module, imported, x


def test_imported_zeiler_fergus_logits_and_vis_equal_torch_and_captum():
    """float64 logits within 1e-10; saliency and guided backprop of the imported net equal Captum's."""
    attr = pytest.importorskip("captum.attr")
    from fastconv import vis
    module, model, x = _logits_equal("zeiler_fergus", np.float64, 1e-10)
    for m in module.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False   # Captum's guided backprop hooks the ReLU modules' outputs
    target = [3, 7]
    sal = attr.Saliency(module).attribute(torch.tensor(x, requires_grad=True), target=target, abs=True)
    gbp = attr.GuidedBackprop(module).attribute(torch.tensor(x, requires_grad=True), target=target)
    assert_close(vis.saliency(model, x, target), sal.detach().numpy().max(axis=1), np.float64)
    assert_close(vis.guided_backprop(model, x, target), gbp.detach().numpy(), np.float64)


@pytest.mark.slow   # the code paths of the Zeiler-Fergus test above, at 61M-138M parameters (10-30 s each here)
@pytest.mark.parametrize("name,dtype,tol", [("alexnet", np.float32, 1e-4), ("alexnet", np.float64, 1e-10),
                                            ("zeiler_fergus", np.float32, 1e-4),
                                            ("vgg11_bn", np.float32, 1e-4), ("vgg16", np.float32, 1e-4),
                                            ("vgg16_bn", np.float32, 1e-4), ("vgg16_bn", np.float64, 1e-10)])
def test_imported_logits_equal_torch_large(name, dtype, tol):
    _logits_equal(name, dtype, tol)


def test_to_torch_round_trip_of_the_new_layers(rng):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.LocalResponseNorm(3), nn.AvgPool2d(2),
                           nn.ConvTranspose2d(4, 2, 2, stride=2), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                           nn.Linear(8, 3), nn.Softmax(dim=1)).double().eval()
    with torch.no_grad():
        module[1].running_mean.uniform_(-1, 1)
    back = fnn.to_torch(fnn.from_torch(module))
    x = torch.tensor(rng.standard_normal((2, 3, 9, 9)))
    with torch.no_grad():
        assert torch.allclose(back(x), module(x), rtol=1e-12, atol=1e-14)
    assert list(back.state_dict()) == list(module.state_dict())


def test_save_and_load_keep_batch_norm_statistics(tmp_path, rng):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
    module.train()(torch.randn(5, 3, 4, 4))    # running statistics away from 0 and 1, num_batches_tracked 1
    model = fnn.from_torch(module.double().eval())
    fnn.save(model, tmp_path / "m.npz")
    loaded = fnn.load(tmp_path / "m.npz")
    for (name, a), (name2, b) in zip(model.state(), loaded.state()):
        assert name == name2 and a.dtype == b.dtype and np.array_equal(a, b)
    assert int(loaded["1"].num_batches_tracked) == 1
    x = rng.standard_normal((2, 3, 4, 4))
    np.testing.assert_array_equal(loaded(x), model(x))


def test_fold_batch_norm_equal_outputs_and_gradients(rng):
    """Folded eval-mode BatchNorm2d (after a conv with and without bias, affine or not, nested): the same
    outputs and input gradients, one layer less per pair; a BatchNorm2d after anything else stays."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Sequential(
        nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(6, affine=False)), nn.ReLU(),
        nn.BatchNorm2d(6), nn.Flatten(), nn.Linear(54, 3)).double().eval()
    _batch_norm_statistics(module)
    model = fnn.from_torch(module)
    folded = fnn.from_torch(module, fold_batch_norm=True)
    assert [n for n, _ in folded.flat().named_layers()] == ["0", "2", "3.0", "4", "5", "6", "7"]
    assert folded["0"].bias is not None and model["0"].bias is None    # the original is left alone
    x = rng.standard_normal((2, 3, 7, 7))
    y = model(x)
    assert_close(folded(x), y, np.float64)
    dy = rng.standard_normal(y.shape)
    assert_close(folded.backward(dy), model.backward(dy), np.float64)
    with pytest.raises(ValueError, match="training mode"):
        fnn.fold_batch_norm(model.train())
