"""Images synthesised by gradient ascent/descent on the pixels through the model's own backward pass:

- class_model: Simonyan et al. 2014's class model, argmax_x S_c(x) − λ‖x‖², S_c the unnormalised score,
  with Yosinski et al. 2015's regularisers (Gaussian blur every few steps, zeroing small-norm pixels).
- deep_dream: gradient ascent on ½‖a‖² of a layer (its gradient is a itself), step normalised by the
  mean |gradient|, random jitter, processed over octaves (Mordvintsev et al. 2015).
- neural_style: Gatys et al. 2015 — content loss on activations plus style loss on Gram matrices
  normalised by layer size, minimised over the pixels with L-BFGS (scipy) or Adam.
Each takes `return_history=True` to also return the objective at every step.
"""
from __future__ import annotations

import numpy as np

from . import _core
from .receptive import infer_input_shape


def _blur(x, sigma):
    from scipy import ndimage
    return ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="nearest")


@_core.takes_model
def class_model(model, target, steps=200, lr=0.1, l2=1e-3, blur_every=0, blur_sigma=0.5, clip_percentile=None,
                seed=0, *, init_std=0.01, input_shape=None, return_history=False):
    """One image per target class (int or sequence) maximising S_c(x) − l2·‖x‖² by `steps` gradient-ascent
    steps of size lr from a small random image (init_std · N(0, 1), 0 for a zero image; seeded). Every
    `blur_every` steps (0: never) the image is blurred with a Gaussian of `blur_sigma` pixels; with
    `clip_percentile` p, pixels whose norm over channels is below the p-th percentile are set to 0.
    input_shape (C, H, W): inferred from the layers when omitted. Returns (T, C, H, W) [, history (steps, T)]."""
    t = np.atleast_1d(np.asarray(target, dtype=np.int64))
    shape = tuple(input_shape) if input_shape is not None else infer_input_shape(model)
    dtype = _core.model_dtype(model)
    x = (init_std * np.random.default_rng(seed).standard_normal((len(t),) + shape)).astype(dtype)
    rows = np.arange(len(t))
    history = []
    with _core.evaluating(model):
        for step in range(1, steps + 1):
            logits = model.forward(x)
            history.append(logits[rows, t] - l2 * np.sum(x.reshape(len(t), -1) ** 2, axis=1))
            dy = np.zeros_like(logits)
            dy[rows, t] = 1
            g = _core.backward_from(model, dy, -1, "gradient") - 2 * l2 * x
            x = x + lr * g
            if blur_every and step % blur_every == 0 and blur_sigma > 0:
                x = _blur(x, blur_sigma).astype(dtype)
            if clip_percentile:
                norms = np.linalg.norm(x, axis=1)                                   # (T, H, W)
                cut = np.percentile(norms.reshape(len(t), -1), clip_percentile, axis=1)
                x = x * (norms >= cut[:, None, None])[:, None]
    return (x, np.array(history)) if return_history else x


def _zoom(x, size):
    from scipy import ndimage
    H, W = x.shape[2:]
    return ndimage.zoom(x, (1, 1, size[0] / H, size[1] / W), order=1)


@_core.takes_model
def deep_dream(model, image, layer, steps=10, lr=0.02, octaves=3, octave_scale=1.4, jitter=1, seed=0, *,
               clip=None, return_history=False):
    """DeepDream: amplify what `layer` sees in `image` (N, C, H, W). At each step the image is rolled by a
    random jitter (≤ `jitter` px), the gradient of ½‖a‖² is taken (seed dy = a), and x += lr · g / mean|g|.
    Octaves: the image is processed from its smallest version (scaled by 1/octave_scale per octave) up,
    the detail added at each scale carried to the next. clip: (lo, hi) bounds on pixel values.
    Returns the dreamed image [, history: ½‖a‖² per step, per image]."""
    x0 = _core.as_batch(model, image)
    dtype = x0.dtype
    rng = np.random.default_rng(seed)
    H, W = x0.shape[2:]
    sizes = []
    for o in range(octaves):
        size = (int(round(H / octave_scale ** o)), int(round(W / octave_scale ** o)))
        try:
            with _core.evaluating(model):
                _core.forward_to(model, np.zeros((1,) + x0.shape[1:2] + size, dtype), layer)
        except ValueError:
            break   # too small for the layer's windows
        sizes.append(size)
    if not sizes:
        raise ValueError(f"deep_dream: the image {x0.shape} is too small for layer {layer!r}")
    bases = [x0 if s == (H, W) else _zoom(x0, s).astype(dtype) for s in sizes]
    detail = np.zeros_like(bases[-1])
    history = []
    with _core.evaluating(model):
        for base in bases[::-1]:
            x = base + (_zoom(detail, base.shape[2:]).astype(dtype) if detail.shape != base.shape else detail)
            for _ in range(steps):
                dh, dw = rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0)
                xj = np.roll(x, (dh, dw), axis=(2, 3))
                a = _core.forward_to(model, xj, layer)
                history.append(0.5 * np.sum(a.reshape(len(a), -1).astype(np.float64) ** 2, axis=1))
                g = np.roll(_core.backward_from(model, a.copy(), layer, "gradient"), (-dh, -dw), axis=(2, 3))
                scale = np.abs(g).reshape(len(g), -1).mean(axis=1)
                x = x + (lr / np.maximum(scale, 1e-12))[:, None, None, None].astype(dtype) * g
                if clip is not None:
                    x = np.clip(x, *clip)
            detail = x - base
    return (x, np.array(history)) if return_history else x


def gram(f):
    """Gram matrices (N, C, C) of feature maps (N, C, H, W): G_ij = Σ_k F_ik F_jk."""
    F = f.reshape(f.shape[0], f.shape[1], -1)
    return F @ F.transpose(0, 2, 1)


def _style_terms(a, A):
    """Gatys's E_l = Σ(G − A)² / (4 N_l² M_l²) and its gradient (G − A)·F / (N_l² M_l²) w.r.t. a."""
    N_l, M_l = a.shape[1], int(np.prod(a.shape[2:]))
    F = a.reshape(a.shape[0], N_l, -1).astype(np.float64)
    D = F @ F.transpose(0, 2, 1) - A
    loss = float(np.sum(D ** 2)) / (4 * N_l ** 2 * M_l ** 2)
    grad = (D @ F) / (N_l ** 2 * M_l ** 2)
    return loss, grad.reshape(a.shape)


@_core.takes_model
def neural_style(model, content, style, content_layers, style_layers, content_weight=1.0, style_weight=1e3,
                 steps=100, *, method="lbfgs", lr=0.02, init="content", bounds=None, seed=0, return_history=False):
    """Gatys et al. 2015: minimise α·Σ_l ½‖F_l − P_l‖² (content, at content_layers) + β·Σ_l w_l E_l (style at
    style_layers, w_l = 1/len(style_layers), E_l the Gram-matrix loss normalised by 4N_l²M_l²) over the
    pixels, from the content image (init='content'), noise ('noise') or a given array. method: 'lbfgs'
    (scipy.optimize, `steps` iterations, optional pixel `bounds` (lo, hi)) or 'adam' (`steps` steps of lr).
    content (1, C, H, W); style (1, C, H', W') may differ in size. Returns the image [, history dict]."""
    content, style = _core.as_batch(model, content), _core.as_batch(model, style)
    dtype = content.dtype
    c_idx = [_core.layer_index(model, lay) for lay in content_layers]
    s_idx = [_core.layer_index(model, lay) for lay in style_layers]
    top = max(c_idx + s_idx)
    with _core.evaluating(model):
        P = _collect(model, content, c_idx, top)
        A = {i: gram(a.astype(np.float64)) for i, a in _collect(model, style, s_idx, top).items()}
    history = {"total": [], "content": [], "style": []}

    def loss_and_grad(x):
        with _core.evaluating(model):
            acts = _collect(model, x, sorted(set(c_idx + s_idx)), top, copy=False)
            seeds, lc, ls = {}, 0.0, 0.0
            for i in c_idx:
                d = acts[i].astype(np.float64) - P[i]
                lc += 0.5 * float(np.sum(d ** 2))
                seeds[i] = seeds.get(i, 0) + content_weight * d
            for i in s_idx:
                e, g = _style_terms(acts[i], A[i])
                ls += e / len(s_idx)
                seeds[i] = seeds.get(i, 0) + style_weight / len(s_idx) * g
            total = content_weight * lc + style_weight * ls
            dx = _core.backward_multi(model, {i: s.astype(dtype) for i, s in seeds.items()})
        for key, v in zip(("total", "content", "style"), (total, lc, ls)):
            history[key].append(v)
        return total, dx

    if isinstance(init, str):
        if init not in ("content", "noise"):
            raise ValueError(f"init: expected 'content', 'noise' or an array, got {init!r}")
        x = content.copy() if init == "content" else \
            np.random.default_rng(seed).uniform(0, 1, content.shape).astype(dtype)
    else:
        x = _core.as_batch(model, init).copy()
    if method == "lbfgs":
        from scipy.optimize import minimize

        def fun(flat):
            total, dx = loss_and_grad(flat.reshape(content.shape).astype(dtype))
            return total, dx.astype(np.float64).ravel()
        res = minimize(fun, x.astype(np.float64).ravel(), jac=True, method="L-BFGS-B",
                       bounds=None if bounds is None else [tuple(bounds)] * x.size,
                       options=dict(maxiter=steps, maxfun=steps * 2))
        x = res.x.reshape(content.shape).astype(dtype)
    elif method == "adam":
        m, v = np.zeros_like(x, np.float64), np.zeros_like(x, np.float64)
        for k in range(1, steps + 1):
            _, g = loss_and_grad(x)
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g.astype(np.float64) ** 2
            step = lr * (m / (1 - 0.9 ** k)) / (np.sqrt(v / (1 - 0.999 ** k)) + 1e-8)
            x = (x - step).astype(dtype)
            if bounds is not None:
                x = np.clip(x, *bounds)
    else:
        raise ValueError(f"method: expected 'lbfgs' or 'adam', got {method!r}")
    hist = {k: np.array(v) for k, v in history.items()}
    return (x, hist) if return_history else x


def _collect(model, x, indices, top, copy=True):
    """Activations {index: array} of the listed layers from one forward pass up to layer `top`."""
    want, out, a = set(indices), {}, x
    for i, (_, layer) in enumerate(model.named_layers()[:top + 1]):
        a = layer.forward(a)
        if i in want:
            out[i] = a.copy() if copy else a
    return out
