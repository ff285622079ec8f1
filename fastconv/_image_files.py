"""Image files and arrays on disk (re-exported by fastconv.data): list_images and load_images read PNG/JPEG
files with Pillow into an in-memory NCHW batch (optionally normalised, e.g. with ImageNet's statistics);
image_folder and open_array give lazy Dask arrays chunked along N for the dataset-wide visualizations.
Pillow, Dask and Zarr are imported only inside the functions that use them.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

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


def _some_images(directory):
    """list_images(directory), a ValueError if it finds none."""
    found = list_images(directory)
    if not found[0]:
        raise ValueError(f"{os.fspath(directory)}: no {'/'.join(IMAGE_EXTENSIONS)} images found")
    return found


# Per-channel (mean, std) of RGB in [0, 1] that pretrained models expect: ImageNet's is what torchvision's
# AlexNet/VGG weights were trained with.
NORMALIZATIONS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def _normalization(mean, std, channels):
    """(mean, std) as (channels, 1, 1) float64 arrays, or None for no normalisation."""
    if isinstance(mean, str):
        if mean not in NORMALIZATIONS:
            raise ValueError(f"mean: expected one of {sorted(NORMALIZATIONS)} or per-channel values, got {mean!r}")
        mean, preset_std = NORMALIZATIONS[mean]
        std = preset_std if std is None else std
    if mean is None and std is None:
        return None
    stats = []
    for name, v, default in (("mean", mean, 0.0), ("std", std, 1.0)):
        a = np.asarray(default if v is None else v, np.float64)
        if a.ndim > 1 or a.size not in (1, channels):
            raise ValueError(f"{name}: expected one value or {channels} (one per channel), got shape {a.shape}")
        stats.append(np.broadcast_to(a.reshape(-1), (channels,)).reshape(channels, 1, 1))
    if not np.all(stats[1] > 0):
        raise ValueError(f"std: expected positive values, got {np.ravel(stats[1]).tolist()}")
    return stats


def load_images(paths_or_dir, size, mean=None, std=None, *, channels=3, dtype=np.float32) -> np.ndarray:
    """Image files (a list of paths, or a directory searched as list_images does) as an in-memory
    (N, channels, H, W) batch: each converted to RGB (channels=3) or grey (1), resized bilinearly by Pillow to
    size (int or (H, W)), scaled to [0, 1], then normalised per channel to (x - mean) / std.

    mean: None (no normalisation), a preset name from NORMALIZATIONS ('imagenet', which also sets std), or
    one value / one per channel; std likewise (default 1)."""
    from PIL import Image, UnidentifiedImageError
    files = _some_images(paths_or_dir)[0] if isinstance(paths_or_dir, (str, os.PathLike)) else list(paths_or_dir)
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {np.dtype(dtype)}")
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 (grey) or 3 (RGB), got {channels!r}")
    stats = _normalization(mean, std, channels)
    H, W = (size, size) if np.isscalar(size) else tuple(size)
    out = np.empty((len(files), channels, H, W), dtype)
    for n, f in enumerate(files):
        try:
            with Image.open(f) as im:
                a = np.asarray(im.convert("RGB" if channels == 3 else "L").resize((W, H), Image.BILINEAR))
        except FileNotFoundError:
            raise
        except (UnidentifiedImageError, OSError) as e:   # a truncated or non-image file
            raise ValueError(f"{os.fspath(f)}: not a readable image ({e})") from e
        a = a.reshape(H, W, channels).transpose(2, 0, 1) / 255.0
        out[n] = a if stats is None else (a - stats[0]) / stats[1]
    return out


def image_folder(directory, size, *, channels=3, chunk_size=256) -> ImageFolder:
    """A directory tree of PNG/JPEG files as a lazy Dask array (chunks of chunk_size images, each read and
    resized by load_images when computed), with the labels its class subfolders give."""
    import dask
    import dask.array as da
    files, y, classes = _some_images(directory)
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
