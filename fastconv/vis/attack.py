"""Adversarial examples — "yet another image optimization": argmin ‖Δx‖ such that f(x + Δx) = y_target,
through the model's own backward pass.

- adversarial: a minimal-perturbation targeted attack (targeted DeepFool, Moosavi-Dezfooli et al. 2016):
  repeated minimum-norm steps to the linearised boundary between the current class and the target,
  stopping per sample as soon as the target wins, then shrunk by bisection to the smallest scale at which
  it still wins.
- fgsm, pgd: the standard baselines with Captum's semantics (captum.robust.FGSM / PGD): the loss is the
  cross-entropy of `target` per sample (summed over the batch, so one sample's gradient does not depend on
  the batch size); an untargeted step ascends it, a targeted one descends it; gradient entries with
  |g| ≤ 1e-6 (Captum's zero_thresh) leave their pixel unchanged; results are clamped to [lower, upper].

Every routine returns an `Attack`: Δx, the model's new prediction and ‖Δx‖ per sample.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _core

ZERO_THRESH = 1e-6   # captum.robust.FGSM.zero_thresh: smaller gradients count as zero (no step)
NORMS = ("l2", "linf")


class Attack(NamedTuple):
    delta: np.ndarray        # Δx, the shape of x: the adversarial image is x + delta
    prediction: np.ndarray   # (N,) the model's class for x + delta
    norm: np.ndarray         # (N,) ‖Δx‖ in the attack's norm ('linf' for fgsm)


def _norm_name(norm):
    name = str(norm).lower()
    if name not in NORMS:
        raise ValueError(f"norm: expected 'l2' or 'linf', got {norm!r}")
    return name


def _norms(delta, norm):
    flat = delta.reshape(len(delta), -1).astype(np.float64)
    return np.linalg.norm(flat, axis=1) if norm == "l2" else np.abs(flat).max(axis=1, initial=0.0)


def _result(model, x, x_adv, norm):
    with _core.evaluating(model):
        pred = model.forward(x_adv).argmax(axis=1)
    delta = x_adv - x
    return Attack(delta, pred, _norms(delta, norm))


@_core.takes_model
def loss_gradient(model, x, target):
    """∂/∂x of Σ_n CE(model(x)_n, target_n), the cross-entropy of each sample's target, summed over the batch."""
    with _core.evaluating(model):
        logits = model.forward(x)
        t = _core.targets(target, len(x))
        dy = _core.softmax(logits.astype(np.float64))
        dy[np.arange(len(x)), t] -= 1
        return _core.backward_from(model, dy.astype(logits.dtype), -1, "gradient")


def _fgsm_step(model, x, target, epsilon, targeted):
    """Captum's FGSM._perturb: x ± ε·sign(g) where |g| > zero_thresh, x elsewhere (not yet clamped)."""
    g = loss_gradient(model, x, target)
    sign = -1.0 if targeted else 1.0
    return np.where(np.abs(g) > ZERO_THRESH, x + sign * epsilon * np.sign(g), x).astype(x.dtype)


@_core.takes_model
def fgsm(model, x, target, epsilon, *, targeted=False, lower=-np.inf, upper=np.inf):
    """Fast gradient sign method (Goodfellow et al. 2015), as captum.robust.FGSM(model, CrossEntropy,
    lower, upper).perturb(x, epsilon, target, targeted=targeted): one step of size ε along the sign of the
    loss gradient — up the loss of `target` (untargeted: its true class) or down it (targeted), clamped to
    [lower, upper]. Returns an Attack whose norm is ‖Δx‖∞."""
    x = _core.as_batch(model, x)
    x_adv = np.clip(_fgsm_step(model, x, target, epsilon, targeted), lower, upper)
    return _result(model, x, x_adv, "linf")


def _project(x0, x, radius, norm):
    """Captum PGD's _clip: back into the ball of `radius` around x0 (L2 as torch.renorm, with its 1e-7)."""
    diff = x - x0
    if norm == "linf":
        return x0 + np.clip(diff, -radius, radius)
    n = np.linalg.norm(diff.reshape(len(diff), -1).astype(np.float64), axis=1)
    scale = np.where(n > radius, radius / (n + 1e-7), 1.0)
    return x0 + (diff * scale[:, None, None, None]).astype(x.dtype)


@_core.takes_model
def pgd(model, x, target, radius, step_size, steps, *, norm="linf", targeted=False, lower=-np.inf, upper=np.inf):
    """Projected gradient descent (Madry et al. 2018), as captum.robust.PGD(model, CrossEntropy, lower,
    upper).perturb(x, radius, step_size, steps, target, targeted=targeted, norm=...) without a random start:
    `steps` FGSM sign steps of `step_size` (unclamped), each followed by projection onto the `norm` ball of
    `radius` around x and clamping to [lower, upper]. norm: 'linf' or 'l2'. Returns an Attack (norm in
    the attack's norm)."""
    norm = _norm_name(norm)
    x0 = _core.as_batch(model, x)
    x_adv = x0
    for _ in range(int(steps)):
        x_adv = _fgsm_step(model, x_adv, target, step_size, targeted)
        x_adv = np.clip(_project(x0, x_adv, radius, norm), lower, upper)
    return _result(model, x0, x_adv, norm)


def _margin_step(model, x, t, norm, lower, upper):
    """One forward and one backward pass: which samples already predict t, and for the others the
    minimum-norm step r to the linearised boundary z_t = z_k of their current class k."""
    with _core.evaluating(model):
        z = model.forward(x)
        rows = np.arange(len(x))
        k = z.argmax(axis=1)
        dy = np.zeros_like(z)
        dy[rows, t] = 1
        dy[rows, k] -= 1          # k == t gives a zero seed: no step for samples already won
        g = _core.backward_from(model, dy, -1, "gradient")
    gap = (z[rows, k] - z[rows, t]).astype(np.float64)
    # Pixels held at a bound the step would push them past cannot move: leave them out of the step.
    g = np.where(((x <= lower) & (g < 0)) | ((x >= upper) & (g > 0)), 0, g).reshape(len(x), -1).astype(np.float64)
    if norm == "l2":
        r = (gap / np.maximum(np.sum(g * g, axis=1), 1e-30))[:, None] * g
    else:
        r = (gap / np.maximum(np.abs(g).sum(axis=1), 1e-30))[:, None] * np.sign(g)
    return k == t, r.reshape(x.shape)


def _wins(model, x, t):
    with _core.evaluating(model):
        return model.forward(x).argmax(axis=1) == t


@_core.takes_model
def adversarial(model, x, target, norm="l2", *, max_steps=50, overshoot=0.02, bisect=10, lower=-np.inf,
                upper=np.inf):
    """The smallest Δx (in `norm`, 'l2' or 'linf') that makes the model predict `target` for x + Δx.

    Targeted DeepFool: at each step, with k the current class and t the target, the linearised boundary
    z_t = z_k is reached by the minimum-norm step r = (z_k − z_t)·g/‖g‖₂² ('l2') or
    (z_k − z_t)·sign(g)/‖g‖₁ ('linf'), g = ∂(z_t − z_k)/∂x without the pixels held at a bound it pushes
    against; x moves by (1 + overshoot)·r, clamped to [lower, upper], per sample, until t wins or
    `max_steps` pass. Then `bisect` bisection steps on the scale s ∈ (0, 1] of that Δx find the smallest s
    at which t still wins.
    A sample whose class already is `target` gets Δx = 0. Returns an Attack (prediction == target where the
    attack succeeded)."""
    norm = _norm_name(norm)
    x = _core.as_batch(model, x)
    t = _core.targets(target, len(x))
    x_adv = x.copy()
    active = np.arange(len(x))
    for _ in range(int(max_steps)):
        won, r = _margin_step(model, x_adv[active], t[active], norm, lower, upper)
        active, r = active[~won], r[~won]
        if active.size == 0:
            break
        x_adv[active] = np.clip(x_adv[active] + (1 + overshoot) * r, lower, upper).astype(x.dtype)
    x_adv = _shrink(model, x, x_adv, t, bisect, lower, upper)
    return _result(model, x, x_adv, norm)


def _shrink(model, x, x_adv, t, steps, lower, upper):
    """Bisection on s ∈ (0, 1]: the smallest scale of Δx = x_adv − x at which the target still wins."""
    delta = (x_adv - x).astype(np.float64)
    won = _wins(model, x_adv, t)
    lo, hi = np.zeros(len(x)), np.ones(len(x))
    for _ in range(int(steps)):
        mid = (lo + hi) / 2
        trial = np.clip(x + mid[:, None, None, None] * delta, lower, upper).astype(x.dtype)
        ok = _wins(model, trial, t)
        hi = np.where(ok & won, mid, hi)
        lo = np.where(ok & won, lo, mid)
    return np.where(won[:, None, None, None],
                    np.clip(x + hi[:, None, None, None] * delta, lower, upper).astype(x.dtype), x_adv)
