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


# -- image files and arrays on disk, lazily (Dask, Pillow and Zarr are imported only here) --------------
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class ImageFolder(NamedTuple):
    x: object       # dask.array.Array (N, C, H, W) float32 in [0, 1], chunked along N, read when computed
    y: np.ndarray   # (N,) int64: the index of the image's class subfolder in `classes`
    classes: list   # class names: the sorted subfolder names ('' for images directly in the directory)
    files: list     # the image paths, in dataset order


def list_images(directory):
    """(files, labels, classes) of the PNG/JPEG files under `directory`: the first-level subfolder an image
    lies in is its class; sorted by class, then path, so the order never depends on the file system."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such image directory")
    found = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        rel = os.path.relpath(root, directory)
        cls = "" if rel == "." else rel.split(os.sep)[0]
        found += [(cls, os.path.join(root, n)) for n in sorted(names) if n.lower().endswith(IMAGE_EXTENSIONS)]
    found.sort()
    classes = sorted({c for c, _ in found})
    index = {c: i for i, c in enumerate(classes)}
    return [f for _, f in found], np.array([index[c] for c, _ in found], np.int64), classes


def load_images(files, size, *, channels=3) -> np.ndarray:
    """Image files (a list of paths, or a directory) as an in-memory (N, channels, H, W) float32 batch in
    [0, 1], each converted to RGB (channels=3) or grey (1) and resized bilinearly to size (int or (H, W))."""
    from PIL import Image
    if isinstance(files, (str, os.PathLike)):
        files = list_images(files)[0]
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 (grey) or 3 (RGB), got {channels!r}")
    H, W = (size, size) if np.isscalar(size) else tuple(size)
    out = np.empty((len(files), channels, H, W), np.float32)
    for n, f in enumerate(files):
        with Image.open(f) as im:
            a = np.asarray(im.convert("RGB" if channels == 3 else "L").resize((W, H), Image.BILINEAR))
        out[n] = (a.reshape(H, W, channels).transpose(2, 0, 1) / np.float32(255)).astype(np.float32)
    return out


def image_folder(directory, size, *, channels=3, chunk_size=256) -> ImageFolder:
    """A directory tree of PNG/JPEG files as a lazy Dask array (chunks of chunk_size images, each read and
    resized by load_images when computed), with the labels its class subfolders give."""
    import dask
    import dask.array as da
    files, y, classes = list_images(directory)
    if not files:
        raise ValueError(f"{os.fspath(directory)}: no {'/'.join(IMAGE_EXTENSIONS)} images found")
    H, W = (size, size) if np.isscalar(size) else tuple(size)
    read = dask.delayed(load_images, pure=True)
    blocks = [da.from_delayed(read(tuple(files[i:i + chunk_size]), (H, W), channels=channels),
                              (len(files[i:i + chunk_size]), channels, H, W), dtype=np.float32)
              for i in range(0, len(files), chunk_size)]
    return ImageFolder(da.concatenate(blocks), y, classes, files)


def open_array(path, *, chunk_size=512):
    """An NCHW array on disk as a lazy Dask array chunked along N: a .npy file (memory-mapped, chunk_size
    images per chunk) or a Zarr store (its own chunks, via dask.array.from_zarr). uint8 is scaled to [0, 1]."""
    import dask
    import dask.array as da
    path = os.fspath(path)
    if path.endswith(".npy"):
        mm = np.load(path, mmap_mode="r")
        read = dask.delayed(_npy_rows, pure=True)
        x = da.concatenate([da.from_delayed(read(path, i, min(i + chunk_size, len(mm))),
                                            (min(chunk_size, len(mm) - i),) + mm.shape[1:], dtype=mm.dtype)
                            for i in range(0, len(mm), chunk_size)])
    elif os.path.isdir(path):
        x = da.from_zarr(path)
    else:
        raise ValueError(f"path: expected a .npy file or a Zarr store (a directory), got {path!r}")
    if x.ndim != 4:
        raise ValueError(f"{path}: expected NCHW images (N, C, H, W), got shape {x.shape}")
    return (x.astype(np.float32) / np.float32(255)) if x.dtype == np.uint8 else x


def _npy_rows(path, start, stop):
    """Rows start:stop of a .npy file, read through a memory map (the graph holds the path, not the data)."""
    return np.array(np.load(path, mmap_mode="r")[start:stop])
