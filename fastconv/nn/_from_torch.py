"""from_torch(module): a fastconv.nn model built from a torch.nn.Module (imported only when torch is).

nn.Sequential containers map to Sequential with the same layer names, so the parameter names, and so the
state-dict keys, stay PyTorch's ("features.0.weight"). Any other module is traced with torch.fx; a forward
that is a chain — each step one submodule or one of torch.flatten / relu applied to the step before, as in
torchvision's AlexNet and VGG — becomes a Sequential named after its submodules (a function step after its
fx node, e.g. "flatten"). An unsupported layer raises TypeError naming it and its position.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import conv, layers, norm, pooling
from .base import placeholder_params
from .sequential import Sequential
from .serialize import _copy_params


def _copy(layer, module, where):
    """The module's parameters and buffers (PyTorch's names) into the layer, at the layer's dtype."""
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    _copy_params(layer, state, f"layer '{where}' ({type(module).__name__})")
    return layer


def _dtype(module):
    """float64 if the module's first float tensor is (a buffer for a BatchNorm2d without affine parameters)."""
    t = next((t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()), None)
    return np.float64 if t is not None and t.dtype == torch.float64 else np.float32


def _conv2d(m):
    padding = getattr(m, "fastconv_padding", m.padding)   # fastconv.nn.to_torch's padded twin
    return conv.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, padding, m.dilation, m.groups,
                       m.bias is not None, m.padding_mode, dtype=_dtype(m))


def _max_pool2d(m):
    if m.return_indices:
        raise ValueError("return_indices=True")
    return layers.MaxPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.dilation)


def _batch_norm2d(m):
    if not m.track_running_stats:
        raise ValueError("track_running_stats=False")
    return norm.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, dtype=_dtype(m))


def _flatten(m):
    if m.start_dim != 1 or m.end_dim != -1:
        raise ValueError(f"start_dim={m.start_dim}, end_dim={m.end_dim} (only 1 and -1)")
    return layers.Flatten()


def _tiled(m):
    T_h, T_w, C_out, C_in = m.weight.shape[:4]
    return conv.TiledConv2d(C_in, C_out, m.kernel_size, (T_h, T_w), m.stride, m.padding, m.bias is not None,
                            dtype=_dtype(m))


def _locally_connected(m):
    if hasattr(m, "input_size"):
        input_size = m.input_size
    else:   # fastconv.nn.to_torch's twin: an input size that gives its grid (the layer needs one)
        H_out, W_out = m.weight.shape[:2]
        input_size = tuple((n - 1) * s + k for n, s, k in zip((H_out, W_out), m.stride, m.kernel_size))
        if m.padding not in (0, (0, 0)):
            raise ValueError("a padded locally connected twin (its input size is unknown)")
    return conv.LocallyConnected2d(m.weight.shape[3], m.weight.shape[2], m.kernel_size, input_size, m.stride, m.padding,
                                   m.bias is not None, dtype=_dtype(m))


@functools.lru_cache(maxsize=None)
def _converters():
    from . import _torch as twins
    convs = {nn.Conv2d: _conv2d, twins.TorchPaddedConv2d: _conv2d,
             twins.TorchTiledConv2d: _tiled, twins.TorchLocallyConnected2d: _locally_connected}
    try:   # the fastconv.torch modules (subclasses of torch.nn's, or fastconv.nn's layouts)
        import fastconv.torch as fct
        convs.update({fct.Conv2d: _conv2d, fct.MaxPool2d: _max_pool2d, fct.ConvTranspose2d: None,
                      fct.TiledConv2d: _tiled, fct.LocallyConnected2d: _locally_connected})
    except ImportError:
        fct = None
    table = {
        nn.Linear: lambda m: layers.Linear(m.in_features, m.out_features, m.bias is not None, dtype=_dtype(m)),
        nn.ConvTranspose2d: lambda m: conv.ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                                                           m.padding, m.output_padding, m.groups, m.bias is not None,
                                                           m.dilation, dtype=_dtype(m)),
        nn.ReLU: lambda m: layers.ReLU(),
        nn.MaxPool2d: _max_pool2d,
        nn.Flatten: _flatten,
        nn.Dropout: lambda m: layers.Dropout(m.p),
        nn.BatchNorm2d: _batch_norm2d,
        nn.LocalResponseNorm: lambda m: norm.LocalResponseNorm(m.size, m.alpha, m.beta, m.k),
        nn.Softmax: lambda m: norm.Softmax(1 if m.dim is None else m.dim),
        nn.AvgPool2d: lambda m: pooling.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                                  m.count_include_pad, m.divisor_override),
        nn.AdaptiveAvgPool2d: lambda m: pooling.AdaptiveAvgPool2d(m.output_size),
    }
    table.update(convs)
    if fct is not None:
        table[fct.ConvTranspose2d] = table[nn.ConvTranspose2d]
    return table


def _convert(module, where):
    if type(module) is nn.Sequential:
        return Sequential(*[(name, _convert(sub, f"{where}.{name}" if where else name))
                            for name, sub in module.named_children()])
    make = _converters().get(type(module))
    if make is None and type(module).__module__.startswith("torch."):   # a torch layer we have no twin of
        raise TypeError(f"from_torch: layer '{where}' ({type(module).__name__}) is not supported")
    if make is None:
        return _traced(module, where)
    try:
        with placeholder_params():   # no random init: the module's arrays replace the placeholders
            layer = make(module)
    except ValueError as e:
        raise TypeError(f"from_torch: layer '{where}' ({type(module).__name__}) is not supported: {e}") from None
    return _copy(layer, module, where) if layer.param_names or layer.buffer_names else layer


_FUNCTIONS = {torch.flatten: "flatten", torch.relu: "relu", F.relu: "relu"}


def _function_layer(node, where):
    fn = None
    if node.op == "call_function":
        fn = _FUNCTIONS.get(node.target)
    elif node.op == "call_method" and node.target in ("flatten", "relu"):
        fn = node.target
    extra = list(node.args[1:]) + list(node.kwargs.values())
    if fn == "relu" and extra in ([], [False], [True]):   # F.relu's inplace flag changes nothing here
        return layers.ReLU()
    if fn == "flatten" and extra in ([1], [1, -1]):
        return layers.Flatten()
    raise TypeError(f"from_torch: step '{node.name}' of '{where or type(node.graph.owning_module).__name__}' "
                    f"({node.op} {getattr(node.target, '__name__', node.target)}) is not supported; supported: "
                    "submodules, torch.flatten(x, 1), relu")


class _ChildTracer(torch.fx.Tracer):
    """Traces one level: every direct submodule is a step of its own (converted on its own, names kept)."""

    def is_leaf_module(self, m, module_qualified_name):
        return "." not in module_qualified_name


def _traced(module, where):
    """A module whose forward is a chain of submodules and simple functions, as a Sequential."""
    label = f"'{where}' ({type(module).__name__})" if where else type(module).__name__
    try:
        graph = _ChildTracer().trace(module)
    except Exception as e:
        raise TypeError(f"from_torch: layer {label} is not supported, and its forward cannot be traced: {e}") from None
    steps, previous = [], None
    for node in graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                raise TypeError(f"from_torch: layer {label}: forward takes more than one input")
            previous = node
            continue
        if node.op == "output":
            if node.args[0] is not previous:
                raise TypeError(f"from_torch: layer {label}: forward does not return its last step")
            break
        inputs = [a for a in node.all_input_nodes]
        if inputs != [previous]:
            raise TypeError(f"from_torch: layer {label}: step '{node.name}' is not a chain step (it reads "
                            f"{[a.name for a in inputs]}, not only the step before)")
        if node.op == "call_module":
            name = node.target
            steps.append((name, _convert(module.get_submodule(name), f"{where}.{name}" if where else name)))
        else:
            steps.append((node.name, _function_layer(node, where)))
        previous = node
    return Sequential(*steps)


def from_torch_module(module: nn.Module):
    """The fastconv.nn model equivalent to `module`, weights (and BatchNorm statistics) copied, in its mode."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    return _convert(module, "").train(module.training)

