"""SGD and Adam with PyTorch's exact update rules (torch.optim, single-tensor path).

`params` is a model (anything with `parameters()`, re-read on every step, so parameters replaced after
construction — e.g. by `astype` — are followed) or an iterable of `(name, value, grad)` triples, a snapshot
whose arrays are then updated in place. Parameters are always updated in place; state is kept per name.
"""
from __future__ import annotations

import numpy as np


class Optimizer:
    def __init__(self, params, lr):
        if lr < 0:
            raise ValueError(f"lr: expected a learning rate >= 0, got {lr}")
        self.lr = lr
        if hasattr(params, "parameters"):
            self._model, self._snapshot = params, None
        else:
            self._model, self._snapshot = None, [tuple(p) for p in params]
            if any(len(p) != 3 for p in self._snapshot):
                raise TypeError("params: expected a model or (name, value, grad) triples")
        if not self._params():
            raise ValueError("params: the optimizer got no parameters")
        self.state = {}

    def _params(self):
        return list(self._model.parameters()) if self._model is not None else self._snapshot

    def zero_grad(self) -> None:
        for _, _, grad in self._params():
            grad[...] = 0

    def step(self) -> None:
        for name, value, grad in self._params():
            self._update(name, value, grad.astype(value.dtype, copy=False), self.state.setdefault(name, {}))

    def _update(self, name, p, g, state):
        raise NotImplementedError


class SGD(Optimizer):
    """torch.optim.SGD (dampening 0): g += wd·p; buf = μ·buf + g (buf = g at first); g = g + μ·buf if
    nesterov else buf; p -= lr·g."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(f"momentum and weight_decay must be >= 0, got {momentum} and {weight_decay}")
        if nesterov and momentum <= 0:
            raise ValueError("nesterov: requires momentum > 0")
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov

    def _update(self, name, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None or buf.shape != p.shape:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= self.momentum
                buf += g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= p.dtype.type(self.lr) * g


class Adam(Optimizer):
    """torch.optim.Adam (amsgrad off): g += wd·p; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
    p -= lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) + eps)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or eps < 0 or weight_decay < 0:
            raise ValueError(f"Adam: invalid betas {betas}, eps {eps} or weight_decay {weight_decay}")
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def _update(self, name, p, g, state):
        b1, b2 = self.betas
        if self.weight_decay:
            g = g + self.weight_decay * p
        if "step" not in state or state["exp_avg"].shape != p.shape:
            state.update(step=0, exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p))
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        m += (1 - b1) * (g - m)          # torch: exp_avg.lerp_(grad, 1 - beta1)
        v *= b2
        v += (1 - b2) * g * g
        step_size = self.lr / (1 - b1 ** t)
        denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + self.eps
        p -= (step_size * (m / denom)).astype(p.dtype, copy=False)
