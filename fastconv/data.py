"""Datasets as NumPy arrays (NCHW float32 in [0, 1], int64 labels). Nothing here ever downloads.

- load_digits: scikit-learn's bundled 8×8 digits (1797 images, 10 classes), optionally upsampled.
- load_cifar10: the standard CIFAR-10 python batches in a directory the user supplies.
- load_npz: arrays from an .npz (x, y — or x_train, y_train, x_test, y_test).
- synthetic: small learnable class-template images for tests.
Each returns a DataSplit with .train and .test, each a Dataset(x, y).

Data too large for memory stays on disk as a lazy Dask array (the `dask` extra) for the dataset-wide
visualizations: image_folder (PNG/JPEG files, labels from class subfolders) and open_array (.npy, Zarr);
load_images reads image files into an in-memory batch.
"""
from __future__ import annotations

import os
import pickle
from typing import NamedTuple

import numpy as np

# image files and arrays on disk, re-exported (Pillow and Dask are imported only when these are called)
from ._image_files import (  # noqa: F401
    IMAGE_EXTENSIONS, NORMALIZATIONS, ImageFolder, image_folder, list_images, load_images, open_array)


class Dataset(NamedTuple):
    x: np.ndarray   # (N, C, H, W) float32
    y: np.ndarray   # (N,) int64


class DataSplit(NamedTuple):
    train: Dataset
    test: Dataset
    num_classes: int


def split(x, y, test_fraction=0.2, seed=0) -> DataSplit:
    """A fixed stratified split: `test_fraction` of each class, chosen by a generator seeded with `seed`."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[:int(round(test_fraction * len(idx)))]] = True
    tr, te = rng.permutation(np.flatnonzero(~test)), np.flatnonzero(test)
    return DataSplit(Dataset(x[tr], y[tr]), Dataset(x[te], y[te]), int(y.max()) + 1)


def resize(x, size, method="bilinear"):
    """Resize (N, C, H, W) images to size × size: 'bilinear' (half-pixel centres, edge-clamped, as
    torch.nn.functional.interpolate(align_corners=False)) or 'nearest'."""
    H, W = x.shape[2:]
    if (H, W) == (size, size):
        return x
    rows, cols = _resize_matrix(H, size, method), _resize_matrix(W, size, method)
    return np.einsum("ih,nchw,jw->ncij", rows, x, cols).astype(x.dtype)


def _resize_matrix(n_in, n_out, method):
    """(n_out, n_in) matrix M with out = M @ in along one axis."""
    m = np.zeros((n_out, n_in))
    scale = n_in / n_out
    if method == "nearest":
        m[np.arange(n_out), np.minimum((np.arange(n_out) * scale).astype(int), n_in - 1)] = 1
        return m
    if method != "bilinear":
        raise ValueError(f"method: expected 'bilinear' or 'nearest', got {method!r}")
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def random_shift(x, rng, max_shift=1):
    """Each image translated by a random integer offset in [−max_shift, max_shift]² (zero fill): a
    training-time augmentation for fit(augment=...)."""
    N, C, H, W = x.shape
    m = max_shift
    padded = np.zeros((N, C, H + 2 * m, W + 2 * m), x.dtype)
    padded[:, :, m:m + H, m:m + W] = x
    dh, dw = rng.integers(0, 2 * m + 1, size=(2, N))
    rows = dh[:, None] + np.arange(H)[None]            # (N, H)
    cols = dw[:, None] + np.arange(W)[None]            # (N, W)
    return padded[np.arange(N)[:, None, None, None], np.arange(C)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def load_digits(size=8, *, method="bilinear", test_fraction=0.2, seed=0) -> DataSplit:
    """scikit-learn's bundled 8×8 digits as (N, 1, size, size) float32 in [0, 1], 10 classes, with a fixed
    stratified split (the same for every size). size: 8, or larger to upsample (16, 32)."""
    try:
        from sklearn.datasets import load_digits as _sk_digits
    except ImportError as e:
        raise ImportError("load_digits needs scikit-learn (pip install scikit-learn); its digits ship "
                          "with it, nothing is downloaded") from e
    d = _sk_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size: expected an int >= 8 (8, 16, 32), got {size!r}")
    x = np.clip(resize(x, int(size), method), 0, 1)
    return split(x, d.target.astype(np.int64), test_fraction, seed)


def _check_images(x, y, where):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"{where}: expected images (N, C, H, W) or (N, H, W), got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{where}: expected labels of shape ({len(x)},), got {y.shape}")
    if y.dtype.kind not in "iu" or (y.size and y.min() < 0):
        raise ValueError(f"{where}: expected non-negative integer labels, got dtype {y.dtype}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif x.dtype.kind != "f":
        raise ValueError(f"{where}: expected float or uint8 images, got dtype {x.dtype}")
    return Dataset(np.ascontiguousarray(x, np.float32), y.astype(np.int64))


def load_npz(path, *, test_fraction=0.2, seed=0) -> DataSplit:
    """Arrays from an .npz: keys x_train, y_train, x_test, y_test, or x, y (split as `split` does).
    Images (N, C, H, W) or (N, H, W); uint8 is scaled to [0, 1]."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such data file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from e
    if {"x_train", "y_train", "x_test", "y_test"} <= set(arrays):
        train = _check_images(arrays["x_train"], arrays["y_train"], f"{path} [x_train/y_train]")
        test = _check_images(arrays["x_test"], arrays["y_test"], f"{path} [x_test/y_test]")
        return DataSplit(train, test, int(max(train.y.max(), test.y.max())) + 1)
    if {"x", "y"} <= set(arrays):
        d = _check_images(arrays["x"], arrays["y"], f"{path} [x/y]")
        return split(d.x, d.y, test_fraction, seed)
    raise ValueError(f"{path}: expected keys x, y (or x_train, y_train, x_test, y_test), got {sorted(arrays)}")


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and NumPy arrays only: the CIFAR batches need nothing else."""
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}   # how a Python 3 protocol-2 pickle spells bytes

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: CIFAR-10 batch file not found (expected data_batch_1..5 and test_batch "
                                "from cifar-10-python.tar.gz, extracted)")
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"{path}: expected a dict with b'data' and b'labels', got {keys}")
    data, labels = np.asarray(d[b"data"]), np.asarray(d[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: b'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu" or (labels.size and
                                                                        (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"{path}: b'labels' must be {len(data)} integers in [0, 10), got {labels.dtype} "
                         f"{labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(data_dir, *, train_batches=5) -> DataSplit:
    """CIFAR-10 from the python batches in `data_dir` (or its cifar-10-batches-py/ subdirectory), as
    (N, 3, 32, 32) float32 in [0, 1]; train = data_batch_1..train_batches, test = test_batch."""
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"{data_dir}: CIFAR-10 directory not found (nothing is downloaded; extract "
                                "cifar-10-python.tar.gz and pass the cifar-10-batches-py directory)")
    nested = os.path.join(data_dir, "cifar-10-batches-py")
    if os.path.isdir(nested) and not os.path.exists(os.path.join(data_dir, "test_batch")):
        data_dir = nested
    parts = [_read_cifar_batch(os.path.join(data_dir, f"data_batch_{i}")) for i in range(1, train_batches + 1)]
    x_test, y_test = _read_cifar_batch(os.path.join(data_dir, "test_batch"))
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return DataSplit(Dataset(x_train.astype(np.float32) / 255.0, y_train),
                     Dataset(x_test.astype(np.float32) / 255.0, y_test), 10)


def synthetic(n=200, num_classes=3, channels=1, size=8, noise=0.3, *, test_fraction=0.25, seed=0) -> DataSplit:
    """Learnable toy images: each class a fixed random template in [0, 1], plus Gaussian noise, clipped."""
    rng = np.random.default_rng(seed)
    templates = rng.random((num_classes, channels, size, size)).astype(np.float32)
    y = np.arange(n) % num_classes
    x = templates[y] + noise * rng.standard_normal((n, channels, size, size)).astype(np.float32)
    return split(np.clip(x, 0, 1).astype(np.float32), y.astype(np.int64), test_fraction, seed)
