"""Backward projections to pixel space: the gradient, the deconvnet and guided backpropagation.

All three are one mechanism — a forward pass to some layer, a seed placed at that layer, and the model's
own backward pass down to the pixels (max-pool unpools through its recorded switches, a convolution
filters with its transposed, i.e. flipped, filters: `conv2d_input_grad`) — and differ only in how a ReLU
passes the signal back (`fastconv.nn.RELU_RULES`, switched with `fastconv.nn.backward_rule`):

  ============  ==========================  ===================================================
  rule          ReLU backward               method
  ============  ==========================  ===================================================
  'gradient'    dx = dy · [x > 0]           saliency (Simonyan et al. 2014): the true gradient
  'deconvnet'   dx = dy · [dy > 0]          deconvnet (Zeiler & Fergus 2014): rectify the signal
  'guided'      dx = dy · [x > 0] · [dy>0]  guided backprop (Springenberg et al. 2015): both masks
  ============  ==========================  ===================================================

No copy of the network is made: the ReLU layers switch rule for the duration of one call.
"""
from __future__ import annotations

import numpy as np

from . import _core


@_core.takes_model
def project(model, x, layer, channel, position=None, rule="deconvnet", seed="value"):
    """Project one activation per sample of `layer` (channel `channel`, at `position` or, by default, at
    the channel's maximum in that sample) down to pixel space under ReLU rule `rule`.

    seed='value' starts the backward pass from the activation's own value (Zeiler & Fergus's
    deconvnet: all other activations zeroed); seed='one' from 1 (the gradient of that unit, as Captum's
    Neuron* methods). Returns an array of x's shape.
    """
    x = _core.as_batch(model, x)
    with _core.evaluating(model):
        a = _core.forward_to(model, x, layer)
        s, pos = _core.one_activation(a, channel, position)
        if seed == "one":
            s = _unit_seed(a, channel, pos)
        elif seed != "value":
            raise ValueError(f"seed: expected 'value' or 'one', got {seed!r}")
        return _core.backward_from(model, s, layer, rule)


def _unit_seed(a, channel, pos):
    out = np.zeros_like(a)
    ch = np.broadcast_to(np.asarray(channel, dtype=np.int64), (len(a),))
    for n in range(len(a)):
        out[(n, ch[n]) + tuple(pos[n])] = 1
    return out


@_core.takes_model
def deconvnet(model, x, layer, channel, position=None):
    """Zeiler & Fergus's deconvnet projection of one activation of `layer`/`channel` per sample (default:
    the channel's maximum), all others zeroed, seeded with its value: unpool by the switches, rectify,
    filter with the transposed filters, down to the pixels. Returns an array of x's shape."""
    return project(model, x, layer, channel, position, rule="deconvnet", seed="value")


@_core.takes_model
def class_gradient(model, x, target, rule="gradient"):
    """∂S_c/∂x of the unnormalised class score S_c (the logit of `target`) under ReLU rule `rule`."""
    x = _core.as_batch(model, x)
    with _core.evaluating(model):
        logits = model.forward(x)
        t = _core.targets(target, len(x))
        dy = np.zeros_like(logits)
        dy[np.arange(len(x)), t] = 1
        return _core.backward_from(model, dy, -1, rule)


@_core.takes_model
def saliency(model, x, target):
    """Simonyan et al. 2014's image-specific saliency map: max over colour channels of |∂S_c/∂x|, S_c the
    unnormalised score (logit) of class `target`. Returns (N, H, W)."""
    return np.abs(class_gradient(model, x, target, "gradient")).max(axis=1)


@_core.takes_model
def guided_backprop(model, x, target):
    """Springenberg et al. 2015's guided backpropagation. target: a class index (int or one per sample)
    — the gradient of its logit — or a (layer, channel) pair: the gradient of the channel's strongest unit
    in each sample. ReLUs pass only positive signal where their input was positive. Returns x's shape."""
    if isinstance(target, tuple):
        layer, channel = target
        return project(model, x, layer, channel, rule="guided", seed="one")
    return class_gradient(model, x, target, "guided")


@_core.takes_model
def gradient(model, x, target):
    """Plain backpropagation of the class score to the input (signed; saliency is its |·| max over C)."""
    return class_gradient(model, x, target, "gradient")
