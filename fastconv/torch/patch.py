"""patch(model) / unpatch(model): run a torch model's supported layers on fastconv's kernels, in place.

A supported layer keeps its identity: only its class changes, to the fastconv.torch subclass of its
torch.nn class, whose forward calls fastconv's operators. Parameters (and so any optimizer holding them),
buffers, hooks, train/eval mode and state-dict keys stay exactly as they were; unpatch changes the class
back. Only layers of exactly a torch.nn class are swapped (a subclass may have a forward of its own), and
only those the kernels can compute: CPU float32/float64 parameters, max-pool dilation 1.

fuse_relu=True also fuses each swapped BatchNorm2d with the nn.ReLU right after it in an nn.Sequential (both
used nowhere else in the model): the BatchNorm2d gets relu=True and applies the ReLU in its own passes over
the data, forward and backward, and the ReLU becomes a FusedReLU, which passes its (already rectified) input
through. The BatchNorm2d's output, as its forward hooks see it, is then rectified. unpatch undoes both.
"""
from __future__ import annotations

import collections

import torch
from torch import nn

from .modules import BatchNorm2d, Conv2d, ConvTranspose2d, FusedReLU, MaxPool2d, MaxUnpool2d

SWAPS = {nn.Conv2d: Conv2d, nn.ConvTranspose2d: ConvTranspose2d, nn.BatchNorm2d: BatchNorm2d, nn.MaxPool2d: MaxPool2d,
         nn.MaxUnpool2d: MaxUnpool2d}
KINDS = {cls.__name__: cls for cls in SWAPS}
_MARK = "_fastconv_patched"   # set on the layers patch swapped, so unpatch leaves fastconv.torch layers built as such


def _kinds(kinds):
    if kinds is None:
        return set(SWAPS)
    if isinstance(kinds, (str, type)):
        kinds = [kinds]
    out = set()
    for kind in kinds:
        cls = KINDS.get(kind) if isinstance(kind, str) else kind
        if cls not in SWAPS:
            raise ValueError(f"kinds: expected names from {sorted(KINDS)} (or those torch.nn classes), got {kind!r}")
        out.add(cls)
    return out


def _computable(module):
    """Whether fastconv's kernels compute this layer as torch does (else it is left alone)."""
    for p in module.parameters(recurse=False):
        if p.device.type != "cpu" or p.dtype not in (torch.float32, torch.float64):
            return False
    if isinstance(module, nn.ConvTranspose2d):
        return module.padding_mode == "zeros"
    return True


def patch(model: nn.Module, kinds=None, fuse_relu=False) -> dict:
    """Swap, in place, every layer of `model` (itself included) whose type is exactly one of torch.nn's Conv2d,
    ConvTranspose2d, BatchNorm2d, MaxPool2d, MaxUnpool2d — or only those named in `kinds` ("Conv2d" or nn.Conv2d, ...) —
    for its fastconv.torch subclass, same weights; with fuse_relu, also fuse BatchNorm2d + ReLU pairs (see the
    module's docstring). Returns {qualified name: layer} of the layers swapped (fused ReLUs included)."""
    wanted = _kinds(kinds)
    swapped = {}
    for name, module in model.named_modules():
        cls = type(module)
        if cls in wanted and _computable(module):
            module.__class__ = SWAPS[cls]
            setattr(module, _MARK, True)
            swapped[name] = module
    if fuse_relu:
        swapped.update(_fuse_relus(model))
    return swapped


def _fuse_relus(model):
    """Each BatchNorm2d patch swapped that an nn.ReLU directly follows in an nn.Sequential (whose forward runs its
    children in order), neither of them used anywhere else: relu=True, and the ReLU a FusedReLU."""
    uses = collections.Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    fused = {}
    for name, seq in model.named_modules():
        if type(seq) is not nn.Sequential:
            continue
        children = list(seq.named_children())
        for (_, norm), (relu_name, relu) in zip(children, children[1:]):
            if type(norm) is BatchNorm2d and getattr(norm, _MARK, False) and type(relu) is nn.ReLU \
                    and uses[id(norm)] == 1 and uses[id(relu)] == 1:
                norm.relu = True
                relu.__class__ = FusedReLU
                setattr(relu, _MARK, True)
                fused[f"{name}.{relu_name}" if name else relu_name] = relu
    return fused


def unpatch(model: nn.Module) -> dict:
    """Undo `patch`: the layers it swapped get their torch.nn class back. Returns {qualified name: layer}."""
    torch_class = {ours: theirs for theirs, ours in SWAPS.items()}
    torch_class[FusedReLU] = nn.ReLU
    restored = {}
    for name, module in model.named_modules():
        if module.__dict__.pop(_MARK, False):
            if type(module) is BatchNorm2d:
                module.__dict__.pop("relu", None)   # back to the class's False, then to nn.BatchNorm2d
            module.__class__ = torch_class[type(module)]
            restored[name] = module
    return restored
