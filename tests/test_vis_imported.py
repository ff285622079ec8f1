"""The visualizations on torch models imported with fastconv.nn.from_torch: layers addressed by torch's
nested names ("features.4"), and every method against PyTorch and Captum on scikit-learn's sample photos
(read from PNG/JPEG files by fastconv.data.load_images, ImageNet-normalised)."""
import numpy as np
import pytest

import fastconv.nn as fnn
from fastconv import data, vis
from _helpers import assert_close

torch = pytest.importorskip("torch")
from torch_helpers import one_torch_thread  # noqa: E402,F401  (the fixture)
from torchvision_models import SmallZeilerFergus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE = 96   # the small net's maps: 46 → 23 → 10 → 5 → 5 → 2


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The two sample photos as files, read back as a (2, 3, SIZE, SIZE) float64 batch."""
    Image = pytest.importorskip("PIL.Image")
    images = pytest.importorskip("sklearn.datasets").load_sample_images().images
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(images[0]).save(d / "china.png")
    Image.fromarray(images[1]).save(d / "flower.jpg")
    return data.load_images(d, SIZE, mean="imagenet", dtype=np.float64)


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
    module = net[0] if dtype == np.float64 else SmallZeilerFergus().eval().float()
    if dtype == np.float32:
        module.load_state_dict(net[0].state_dict())
    with torch.no_grad():
        expected = module(torch.tensor(photos.astype(dtype))).numpy()
    for model in (fnn.from_torch(module), fnn.from_torch(module, fold_batch_norm=True)):
        assert np.abs(model(photos.astype(dtype)) - expected).max() <= tol * np.abs(expected).max()
    assert "features.9" not in dict(fnn.from_torch(module, fold_batch_norm=True).flat().named_layers())
