"""The named datasets the commands take (`--data digits|cifar10|npz`), one loader for all of them."""
from __future__ import annotations

from .. import data as D

NAMES = ("digits", "cifar10", "npz")


def load(name, *, data_dir=None, data_path=None, image_size=16):
    """(DataSplit, class names) of the dataset `name`; ValueError naming the missing option."""
    if name == "digits":
        split = D.load_digits(image_size)
        return split, [str(i) for i in range(split.num_classes)]
    if name == "cifar10":
        if not data_dir:
            raise ValueError("--data cifar10 needs --data-dir DIR (the CIFAR-10 python batches)")
        return D.load_cifar10(data_dir), list(D.CIFAR10_CLASSES)
    if name == "npz":
        if not data_path:
            raise ValueError("--data npz needs --data-path FILE")
        split = D.load_npz(data_path)
        return split, [str(i) for i in range(split.num_classes)]
    raise ValueError(f"data: expected one of {NAMES}, got {name!r}")
