"""The visualizations on torch models imported with fastconv.nn.from_torch: layers addressed by torch's
nested names ("features.4"), and every method against PyTorch and Captum on scikit-learn's sample photos
(read from PNG/JPEG files by fastconv.data.load_images, ImageNet-normalised)."""
import copy

import numpy as np
import pytest

import fastconv.nn as fnn
from fastconv import data, vis
from _helpers import assert_close

torch = pytest.importorskip("torch")
from torch_helpers import one_torch_thread  # noqa: E402,F401  (the fixture)
from torchvision_models import SmallZeilerFergus  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")]   # Captum's notice
SIZE = 96   # the small net's maps: 46 → 23 → 10 → 5 → 5 → 2


@pytest.fixture(scope="module")
def photos(photo_dir):
    """The photos read back as a (2, 3, SIZE, SIZE) float64 batch, ImageNet-normalised."""
    return data.load_images(photo_dir, SIZE, mean="imagenet", dtype=np.float64)


@pytest.fixture(scope="module")
def net():
    """(torch module, imported model), float64, eval mode, non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    module = SmallZeilerFergus().double().eval()
    bn = module.features[9]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.1, 0.1), bn.running_var.uniform_(0.5, 1.5)
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.1, 0.1)
    return module, fnn.from_torch(module)


def _in_dtype(module, dtype):
    """The float64 module itself, or a float32 copy."""
    return module if dtype == np.float64 else copy.deepcopy(module).float()


def _torch_output(module, x, name):
    """The output of module's submodule `name` for x (a forward hook)."""
    out = {}
    handle = module.get_submodule(name).register_forward_hook(lambda m, i, o: out.setdefault("y", o.detach()))
    with torch.no_grad():
        module(torch.tensor(x))
    handle.remove()
    return out["y"].numpy()


def test_layers_are_named_by_torch_paths(net, photos):
    module, model = net
    leaves = [n for n, m in module.named_modules() if n and not list(m.children())]
    names = [n for n, _ in model.flat().named_layers()]
    assert [n for n in names if n != "flatten"] == leaves and names[names.index("flatten") - 1] == "avgpool"
    assert [n for n, _ in model.named_layers()] == ["features", "avgpool", "flatten", "classifier"]
    flat = model.flat()
    assert flat.flat() is flat and all(a is b for a, b in zip(flat, [*model["features"], model["avgpool"]]))
    for name in ("features.0", "features.4", "features.9", "features", "classifier.2"):
        assert_close(vis.activations(model, photos, name), _torch_output(module, photos, name), np.float64)
    assert_close(vis.filters(model, "features.4"), module.features[4].weight.detach().numpy(), np.float64)
    with pytest.raises(ValueError, match=r"layer: 'features.99' is not a layer of the model; layers: \['features.0'"):
        vis.activations(model, photos, "features.99")


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_logits_equal_torch_also_with_batch_norm_folded(net, photos, dtype, tol):
    module = _in_dtype(net[0], dtype)
    with torch.no_grad():
        expected = module(torch.tensor(photos.astype(dtype))).numpy()
    for model in (fnn.from_torch(module), fnn.from_torch(module, fold_batch_norm=True)):
        assert np.abs(model(photos.astype(dtype)) - expected).max() <= tol * np.abs(expected).max()
    assert "features.9" not in dict(fnn.from_torch(module, fold_batch_norm=True).flat().named_layers())


def _captum():
    return pytest.importorskip("captum.attr")


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_saliency_guided_and_deconvnet_equal_captum(net, photos, dtype, tol):
    """Captum's Saliency, GuidedBackprop and Deconvolution of the torch module; fastconv's saliency,
    guided_backprop and class_gradient(rule='deconvnet') of the imported model (folded and not)."""
    attr = _captum()
    module = _in_dtype(net[0], dtype)
    x, target = photos.astype(dtype), [3, 7]
    xt = lambda: torch.tensor(x, requires_grad=True)   # noqa: E731
    expected = {"saliency": attr.Saliency(module).attribute(xt(), target=target, abs=True).detach().numpy().max(1),
                "guided": attr.GuidedBackprop(module).attribute(xt(), target=target).detach().numpy(),
                "deconvnet": attr.Deconvolution(module).attribute(xt(), target=target).detach().numpy()}
    for model in (fnn.from_torch(module), fnn.from_torch(module, fold_batch_norm=True)):
        got = {"saliency": vis.saliency(model, x, target), "guided": vis.guided_backprop(model, x, target),
               "deconvnet": vis.class_gradient(model, x, target, rule="deconvnet")}
        for name, ref in expected.items():
            assert got[name].dtype == dtype
            assert np.abs(got[name] - ref).max() <= tol * np.abs(ref).max(), name


@pytest.mark.parametrize("layer,channel", [("features.4", 5), ("features.11", 9)])
def test_deconvnet_projection_equals_captum_neuron_deconvolution(net, photos, layer, channel):
    """Zeiler & Fergus's projection of a channel's strongest activation in an inner layer (through the
    pooling switches) equals Captum's NeuronDeconvolution of that unit, scaled by the activation (the
    deconvnet's seed; positive, where the deconvnet's rectification is linear in it)."""
    attr = _captum()
    module, model = net
    got = vis.deconvnet(model, photos, layer, channel)
    a = _torch_output(module, photos, layer)[:, channel]
    neuron = attr.NeuronDeconvolution(module, module.get_submodule(layer))
    for n in range(len(photos)):
        i, j = np.unravel_index(a[n].argmax(), a[n].shape)
        ref = neuron.attribute(torch.tensor(photos[n:n + 1], requires_grad=True),
                               neuron_selector=(channel, i, j)).detach().numpy()[0]
        assert a[n, i, j] > 0 and np.abs(ref).max() > 0
        assert_close(got[n], ref * a[n, i, j], np.float64)


def test_occlusion_equals_torch_and_captum(net, photos):
    """The Zeiler-Fergus maps equal torch's softmax on each occluded photo (float64, 1e-10); the per-pixel
    mode equals Captum's Occlusion to the float32 precision in which Captum averages."""
    attr = _captum()
    module, model = net
    target, w, s = [1, 2], 32, 16
    prob = lambda z: torch.softmax(module(z), dim=1)   # noqa: E731
    maps = vis.occlusion(model, photos, target, window=w, stride=s)
    assert maps.shape == (2, 5, 5)
    with torch.no_grad():
        for i in range(5):
            for j in range(5):
                occluded = photos.copy()
                occluded[:, :, i * s:i * s + w, j * s:j * s + w] = 0
                ref = prob(torch.tensor(occluded))[[0, 1], target].numpy()
                assert np.abs(maps[:, i, j] - ref).max() <= 1e-10 * ref.max()
    ref = attr.Occlusion(prob).attribute(torch.tensor(photos), target=target, sliding_window_shapes=(3, w, w),
                                         strides=(3, s, s), baselines=0.0).numpy()
    got = vis.occlusion(model, photos, target, window=w, stride=s, per_pixel=True)
    assert np.abs(got - ref[:, 0]).max() <= 1e-6 * np.abs(ref).max()


def test_top_activations_of_an_imported_layer(net, photos):
    """The strongest unit per image of "features.8" (a conv) is torch's activation maximum, and its
    projection is the deconvnet's projection of that unit, cropped to its receptive field."""
    module, model = net
    top = vis.top_activations(model, photos, "features.8", k=2, channels=[0, 5])
    a = _torch_output(module, photos, "features.8")[:, [0, 5]]
    assert_close(top.values, np.sort(a.reshape(2, 2, -1).max(-1).T, axis=1)[:, ::-1], np.float64)
    n, (i, j) = top.indices[1, 0], top.positions[1, 0]
    full = vis.deconvnet(model, photos[n:n + 1], "features.8", 5, (i, j))[0]
    t, l, h, w = top.windows[1, 0]
    crop = full[:, max(t, 0):t + h, max(l, 0):l + w]
    assert_close(top.projections[1, 0][:, max(-t, 0):max(-t, 0) + crop.shape[1],
                                       max(-l, 0):max(-l, 0) + crop.shape[2]], crop, np.float64)


# -- fastconv visualize --torch-model ----------------------------------------------------------------------------
def _check_report(out, methods):
    html = (out / "index.html").read_text(encoding="utf-8")
    for method in methods:
        assert (out / f"{method}.png").stat().st_size > 1000 and f"data-file='{method}.png'" in html
    return html


def test_cli_visualize_torch_model(net, photo_dir, tmp_path, capsys):
    from fastconv import cli
    module = net[0]
    torch.save(module, tmp_path / "zf.pt")
    torch.save(module.state_dict(), tmp_path / "zf_state.pt")
    out = tmp_path / "report"
    assert cli.main(["visualize", "--torch-model", str(tmp_path / "zf.pt"), "--images", str(photo_dir),
                     "--image-size", str(SIZE), "--out", str(out)]) == 0
    html = _check_report(out, ["deconvnet", "guided", "saliency", "occlusion"])
    assert "layer &#x27;features.11&#x27;" in html and "china.png: " in html
    assert cli.main(["visualize", "--torch-model", str(tmp_path / "zf.pt"), "--images", str(photo_dir),
                     "--image-size", str(SIZE), "--method", "saliency", "--out", str(tmp_path / "one")]) == 0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["index.html", "saliency.png"]
    capsys.readouterr()
    assert cli.main(["visualize", "--torch-model", str(tmp_path / "zf_state.pt"), "--images", str(photo_dir)]) == 2
    assert "--arch must name its architecture, one of alexnet, zeiler_fergus, vgg11" in capsys.readouterr().err
    assert cli.main(["visualize", "--torch-model", str(tmp_path / "zf.pt")]) == 2
    assert "needs --images DIR" in capsys.readouterr().err


@pytest.mark.slow   # a random-init VGG-11 is 0.5 GB on disk; the code paths are those of the test above but --arch
@pytest.mark.parametrize("saved", ["module", "state_dict"])
def test_cli_visualize_saved_vgg11(saved, photo_dir, tmp_path):
    from fastconv import cli
    from torchvision_models import TORCH_MODELS
    torch.manual_seed(0)
    module = TORCH_MODELS["vgg11"]().eval()
    torch.save(module if saved == "module" else module.state_dict(), tmp_path / "vgg11.pt")
    arch = ["--arch", "vgg11"] if saved == "state_dict" else []
    assert cli.main(["visualize", "--torch-model", str(tmp_path / "vgg11.pt"), *arch, "--images", str(photo_dir),
                     "--image-size", "64", "--out", str(tmp_path / "report")]) == 0
    _check_report(tmp_path / "report", ["deconvnet", "guided", "saliency", "occlusion"])
