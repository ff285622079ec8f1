"""fastconv.vis.attack: fgsm and pgd against Captum's FGSM / PGD, and the minimal targeted attack
on the trained seed CNN (success, and a smaller ‖Δx‖ than FGSM's at the same success)."""
import numpy as np
import pytest

from fastconv import nn, vis
from nn_helpers import pool_cnn

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def _x(n=5, side=12, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, 1, side, side))


def test_fgsm_and_pgd_follow_the_loss_gradient_sign():
    model = pool_cnn()
    x, y = _x(), np.array([0, 1, 2, 0, 1])
    g = vis.attack.loss_gradient(model, x, y)
    res = vis.fgsm(model, x, y, 0.1)
    np.testing.assert_allclose(res.delta, 0.1 * np.sign(g) * (np.abs(g) > 1e-6), atol=1e-15)
    np.testing.assert_allclose(res.norm, 0.1)
    loss = lambda xx: nn.SoftmaxCrossEntropy()(nn.predict(model, xx), y)
    assert loss(x + res.delta) > loss(x) > loss(x + vis.fgsm(model, x, y, 0.1, targeted=True).delta)
    p = vis.pgd(model, x, y, radius=0.5, step_size=0.1, steps=4, norm="l2", lower=0, upper=1)
    assert np.all(p.norm <= 0.5 + 1e-12) and (x + p.delta).min() >= 0 and (x + p.delta).max() <= 1
    with pytest.raises(ValueError, match="norm"):
        vis.pgd(model, x, y, 1, 0.1, 1, norm="l1")


# -- against Captum --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def twins():
    torch = pytest.importorskip("torch")
    robust = pytest.importorskip("captum.robust")
    model = pool_cnn()
    tmodel = nn.to_torch(model).eval()
    return torch, robust, model, tmodel


def _captum_kwargs(torch, lower, upper):
    return dict(loss_func=torch.nn.CrossEntropyLoss(reduction="none"), lower_bound=lower, upper_bound=upper)


FGSM_CASES = [(0.1, False, -np.inf, np.inf), (0.05, True, -np.inf, np.inf), (0.2, False, 0.0, 1.0),
              (0.3, True, 0.0, 1.0)]


@pytest.mark.parametrize("eps,targeted,lower,upper", FGSM_CASES)
def test_fgsm_equals_captum(twins, eps, targeted, lower, upper):
    torch, robust, model, tmodel = twins
    x, t = _x(6, seed=1), np.array([0, 1, 2, 2, 1, 0])
    ours = vis.fgsm(model, x, t, eps, targeted=targeted, lower=lower, upper=upper)
    attack = robust.FGSM(tmodel, **_captum_kwargs(torch, lower, upper))
    ref = attack.perturb(torch.tensor(x), eps, torch.tensor(t), targeted=targeted).detach().numpy()
    np.testing.assert_allclose(x + ours.delta, ref, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(ours.prediction, tmodel(torch.tensor(ref)).argmax(1).numpy())


PGD_CASES = [("linf", False, 0.1, 0.03, 5, -np.inf, np.inf), ("linf", True, 0.2, 0.05, 6, 0.0, 1.0),
             ("l2", False, 0.5, 0.04, 5, -np.inf, np.inf), ("l2", True, 0.3, 0.05, 7, 0.0, 1.0)]


@pytest.mark.parametrize("norm,targeted,radius,step,steps,lower,upper", PGD_CASES)
def test_pgd_equals_captum(twins, norm, targeted, radius, step, steps, lower, upper):
    torch, robust, model, tmodel = twins
    x, t = _x(6, seed=2), np.array([2, 1, 0, 0, 1, 2])
    ours = vis.pgd(model, x, t, radius, step, steps, norm=norm, targeted=targeted, lower=lower, upper=upper)
    attack = robust.PGD(tmodel, **_captum_kwargs(torch, lower, upper))
    ref = attack.perturb(torch.tensor(x), radius, step, steps, torch.tensor(t), targeted=targeted,
                         random_start=False, norm={"linf": "Linf", "l2": "L2"}[norm]).detach().numpy()
    np.testing.assert_allclose(x + ours.delta, ref, rtol=0, atol=1e-10)
    assert np.abs(ours.delta).max() > 0


def test_captum_default_loss_on_softmax_outputs_is_the_same_cross_entropy(twins):
    """Captum's default loss is −log(output[target]); on a softmax head it is our cross-entropy."""
    torch, robust, model, tmodel = twins
    x, t = _x(4, seed=3), np.array([1, 0, 2, 1])
    ref = robust.FGSM(torch.nn.Sequential(tmodel, torch.nn.Softmax(dim=1))).perturb(
        torch.tensor(x), 0.1, torch.tensor(t)).detach().numpy()
    np.testing.assert_allclose(x + vis.fgsm(model, x, t, 0.1).delta, ref, rtol=0, atol=1e-10)


# -- the minimal targeted attack on the trained seed CNN -------------------------------------------------
@pytest.fixture(scope="module")
def digits_cnn():
    pytest.importorskip("sklearn")
    from fastconv import data
    split = data.load_digits(16)
    model = nn.models.seed_cnn(1, 10, 16, rng=0)
    nn.fit(model, split.train, epochs=3, batch_size=32, optimizer=nn.Adam(model, lr=2e-3), seed=0, progress=False)
    return model, split.test


def _pairs(test, n_images):
    """(image index, target) for the first n test images that the model classifies, every other class."""
    idx = np.repeat(np.arange(n_images), 9)
    t = np.array([c for i in range(n_images) for c in range(10) if c != test.y[i]])
    return idx, t


def test_adversarial_reaches_the_target_with_less_than_fgsm(digits_cnn):
    model, test = digits_cnn
    idx, t = _pairs(test, 12)
    x = test.x[idx]
    res = vis.adversarial(model, x, t, norm="l2", lower=0, upper=1)
    success = res.prediction == t
    assert success.mean() >= 0.95, success.mean()
    np.testing.assert_allclose(res.norm, np.linalg.norm(res.delta.reshape(len(x), -1), axis=1), rtol=1e-6)
    assert (x + res.delta).min() >= 0 and (x + res.delta).max() <= 1
    # FGSM (targeted) at the smallest ε of a grid that reaches the same target: compare ‖Δx‖₂ where both succeed
    fgsm_norm = np.full(len(x), np.nan)
    for eps in np.linspace(0.02, 0.6, 30):
        f = vis.fgsm(model, x, t, eps, targeted=True, lower=0, upper=1)
        first = np.isnan(fgsm_norm) & (f.prediction == t)
        fgsm_norm[first] = np.linalg.norm(f.delta[first].reshape(first.sum(), x[0].size), axis=1)
    both = success & ~np.isnan(fgsm_norm)
    assert both.sum() >= len(x) // 2
    assert np.all(res.norm[both] < fgsm_norm[both]), (res.norm[both], fgsm_norm[both])
    ratio = res.norm[success] / np.linalg.norm(x[success].reshape(success.sum(), -1), axis=1)
    assert np.median(ratio) < 0.5


def test_adversarial_linf_and_already_won_samples(digits_cnn):
    model, test = digits_cnn
    x = test.x[:6]
    pred = nn.predict(model, x).argmax(axis=1)
    res = vis.adversarial(model, x, pred)                       # already the target: nothing to do
    assert np.all(res.delta == 0) and np.all(res.prediction == pred) and np.all(res.norm == 0)
    t = (pred + 3) % 10
    inf = vis.adversarial(model, x, t, norm="linf", lower=0, upper=1)
    assert np.all(inf.prediction == t)
    np.testing.assert_allclose(inf.norm, np.abs(inf.delta).reshape(6, -1).max(axis=1))


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_adversarial_on_every_test_pair(digits_cnn, norm):
    """Every (test digit, other class) pair: ≥ 95% reach their target. Run with `pytest -m slow -s`."""
    model, test = digits_cnn
    idx, t = _pairs(test, len(test.x))
    x = test.x[idx]
    res = vis.adversarial(model, x, t, norm=norm, lower=0, upper=1)
    success = res.prediction == t
    ratio = np.linalg.norm(res.delta.reshape(len(x), -1), axis=1) / np.linalg.norm(x.reshape(len(x), -1), axis=1)
    print(f"\n{norm}: {success.sum()}/{len(x)} pairs reach their target ({success.mean():.4f}); "
          f"median ‖Δx‖₂/‖x‖₂ {np.median(ratio[success]):.3f}")
    assert success.mean() >= 0.95
