"""patch(model) / unpatch(model): run a torch model's supported layers on fastconv's kernels, in place.

A supported layer keeps its identity: only its class changes, to the fastconv.torch subclass of its
torch.nn class, whose forward calls fastconv's operators. Parameters (and so any optimizer holding them),
buffers, hooks, train/eval mode and state-dict keys stay exactly as they were; unpatch changes the class
back. Only layers of exactly a torch.nn class are swapped (a subclass may have a forward of its own), and
only those the kernels can compute: CPU float32/float64 parameters, max-pool dilation 1.
"""
from __future__ import annotations

import torch
from torch import nn

from .modules import BatchNorm2d, Conv2d, ConvTranspose2d, MaxPool2d, MaxUnpool2d

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


def patch(model: nn.Module, kinds=None) -> dict:
    """Swap, in place, every layer of `model` (itself included) whose type is exactly one of torch.nn's Conv2d,
    ConvTranspose2d, BatchNorm2d, MaxPool2d, MaxUnpool2d — or only those named in `kinds` ("Conv2d" or nn.Conv2d, ...) —
    for its fastconv.torch subclass, same weights. Returns {qualified name: layer} of the layers swapped."""
    wanted = _kinds(kinds)
    swapped = {}
    for name, module in model.named_modules():
        cls = type(module)
        if cls in wanted and _computable(module):
            module.__class__ = SWAPS[cls]
            setattr(module, _MARK, True)
            swapped[name] = module
    return swapped


def unpatch(model: nn.Module) -> dict:
    """Undo `patch`: the layers it swapped get their torch.nn class back. Returns {qualified name: layer}."""
    torch_class = {ours: theirs for theirs, ours in SWAPS.items()}
    restored = {}
    for name, module in model.named_modules():
        if module.__dict__.pop(_MARK, False):
            module.__class__ = torch_class[type(module)]
            restored[name] = module
    return restored
