"""fastconv.data: bundled digits, the CIFAR-10 pickle reader, .npz datasets, synthetic sets."""
import os
import pickle

import numpy as np
import pytest

from fastconv import data


def test_load_digits_shapes_range_and_fixed_split():
    pytest.importorskip("sklearn")
    d8 = data.load_digits()
    assert d8.train.x.shape == (1438, 1, 8, 8) and d8.test.x.shape == (359, 1, 8, 8) and d8.num_classes == 10
    assert d8.train.x.dtype == np.float32 and d8.train.y.dtype == np.int64
    assert d8.train.x.min() == 0 and d8.train.x.max() == 1
    assert np.bincount(d8.test.y).min() >= 35                         # stratified
    again = data.load_digits()
    assert np.array_equal(again.test.x, d8.test.x) and np.array_equal(again.train.y, d8.train.y)
    d16 = data.load_digits(16)
    assert d16.train.x.shape == (1438, 1, 16, 16) and np.array_equal(d16.test.y, d8.test.y)
    assert 0 <= d16.train.x.min() and d16.train.x.max() <= 1
    np.testing.assert_allclose(d16.train.x.mean(axis=(2, 3)), d8.train.x.mean(axis=(2, 3)), atol=0.02)
    d32 = data.load_digits(32, method="nearest")
    assert np.array_equal(d32.train.x[:, :, ::4, ::4], d8.train.x)
    with pytest.raises(ValueError, match="size"):
        data.load_digits(4)


def test_resize_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((2, 3, 8, 5)).astype(np.float32)
    out = data.resize(x, 16)
    ref = torch.nn.functional.interpolate(torch.tensor(x), size=(16, 16), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-6)
    near = torch.nn.functional.interpolate(torch.tensor(x), size=(16, 16), mode="nearest")
    np.testing.assert_array_equal(data.resize(x, 16, "nearest"), near.numpy())
    assert np.allclose(data.resize(np.full((1, 1, 8, 8), 0.3), 32), 0.3)


def test_random_shift():
    rng = np.random.default_rng(0)
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4) + 1
    out = data.random_shift(x, rng, 1)
    assert out.shape == x.shape and out.dtype == x.dtype
    for n in range(2):   # each image is a translate of the original (by at most one pixel)
        assert any(np.array_equal(out[n, 0], _shift(x[n, 0], dh, dw)) for dh in (-1, 0, 1) for dw in (-1, 0, 1))


def _shift(img, dh, dw):
    p = np.pad(img, 1)
    return p[1 + dh:1 + dh + img.shape[0], 1 + dw:1 + dw + img.shape[1]]


def _write_batch(path, images, labels, **extra):
    """One CIFAR-10 python batch, exactly as the official files: a protocol-2 pickled dict of bytes keys."""
    d = {b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in labels],
         b"data": images.reshape(len(images), -1), b"filenames": [b"x.png"] * len(images)}
    d.update(extra)
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


@pytest.fixture
def cifar_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _write_batch(root / name, rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 4))
    return tmp_path


def test_load_cifar10_reads_the_pickle_format(cifar_dir):
    d = data.load_cifar10(cifar_dir)                     # the parent of cifar-10-batches-py works too
    assert d.train.x.shape == (20, 3, 32, 32) and d.test.x.shape == (4, 3, 32, 32) and d.num_classes == 10
    assert d.train.x.dtype == np.float32 and d.train.y.dtype == np.int64
    with open(cifar_dir / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    row = raw[b"data"][1]                                 # 1024 red, then 1024 green, then 1024 blue, row-major
    np.testing.assert_array_equal(d.train.x[5, 0], row[:1024].reshape(32, 32).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(d.train.x[5, 2], row[2048:].reshape(32, 32).astype(np.float32) / 255.0)
    assert d.train.y[5] == raw[b"labels"][1]
    assert data.load_cifar10(cifar_dir / "cifar-10-batches-py").test.x.shape == (4, 3, 32, 32)


def test_load_cifar10_clear_errors(cifar_dir, tmp_path):
    root = cifar_dir / "cifar-10-batches-py"
    with pytest.raises(FileNotFoundError, match="not found"):
        data.load_cifar10(tmp_path / "nowhere")
    os.remove(root / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        data.load_cifar10(root)
    (root / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_3: not a CIFAR-10 python batch"):
        data.load_cifar10(root)
    _write_batch(root / "data_batch_3", np.zeros((4, 3, 16, 16), np.uint8), [0] * 4)
    with pytest.raises(ValueError, match=r"data_batch_3: b'data' must be uint8 of shape \(N, 3072\)"):
        data.load_cifar10(root)
    _write_batch(root / "data_batch_3", np.zeros((4, 3, 32, 32), np.uint8), [0, 1, 2])
    with pytest.raises(ValueError, match=r"data_batch_3: b'labels' must be 4 integers"):
        data.load_cifar10(root)
    with open(root / "data_batch_3", "wb") as f:
        pickle.dump({b"labels": [0]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"data_batch_3: expected a dict with b'data'"):
        data.load_cifar10(root)
    with open(root / "data_batch_3", "wb") as f:            # arbitrary objects are refused, never built
        pickle.dump({b"data": os.getcwd, b"labels": []}, f, protocol=2)
    with pytest.raises(ValueError, match="refusing to load"):
        data.load_cifar10(root)


def test_load_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 6, 6), dtype=np.uint8)
    y = np.arange(50) % 5
    np.savez(tmp_path / "a.npz", x=x, y=y)
    d = data.load_npz(tmp_path / "a.npz")
    assert d.train.x.shape == (40, 1, 6, 6) and d.test.x.shape == (10, 1, 6, 6) and d.num_classes == 5
    assert d.train.x.dtype == np.float32 and d.train.x.max() <= 1
    np.savez(tmp_path / "b.npz", x_train=x[:30, None] / 255.0, y_train=y[:30], x_test=x[30:, None] / 255.0,
             y_test=y[30:])
    b = data.load_npz(tmp_path / "b.npz")
    assert len(b.train.x) == 30 and np.array_equal(b.test.y, y[30:])
    np.savez(tmp_path / "c.npz", images=x)
    with pytest.raises(ValueError, match="c.npz: expected keys x, y"):
        data.load_npz(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=x, y=y[:10])
    with pytest.raises(ValueError, match=r"d.npz \[x/y\]: expected labels of shape \(50,\)"):
        data.load_npz(tmp_path / "d.npz")
    with pytest.raises(FileNotFoundError, match="e.npz"):
        data.load_npz(tmp_path / "e.npz")


def test_synthetic_is_deterministic_and_balanced():
    a, b = data.synthetic(seed=3), data.synthetic(seed=3)
    assert np.array_equal(a.train.x, b.train.x) and a.train.x.shape[1:] == (1, 8, 8)
    assert a.num_classes == 3 and np.bincount(a.test.y).min() > 0
    assert not np.array_equal(data.synthetic(seed=4).train.x, a.train.x)


# -- photos from files: load_images -------------------------------------------------------------------------
def test_load_images_reads_photos_and_normalises(photo_dir):
    d, china = photo_dir, pytest.importorskip("sklearn.datasets").load_sample_images().images[0]
    raw = data.load_images(d, (427, 640))     # the photos' own size: no resampling
    assert raw.shape == (2, 3, 427, 640) and raw.dtype == np.float32
    np.testing.assert_allclose(raw[0], china.transpose(2, 0, 1) / 255.0, rtol=1e-7)
    mean, std = data.NORMALIZATIONS["imagenet"]
    x = data.load_images([d / "china.png", d / "flower.jpg"], 224, "imagenet", dtype=np.float64)
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float64
    small = data.load_images(d, 224)
    np.testing.assert_allclose(x, (small - np.reshape(mean, (3, 1, 1))) / np.reshape(std, (3, 1, 1)), atol=1e-6)
    assert abs(x.mean()) < 1 and 0.5 < x.std() < 2      # roughly standardised, as the preset intends
    grey = data.load_images(d, (32, 48), mean=0.5, std=0.25, channels=1)
    assert grey.shape == (2, 1, 32, 48) and grey.min() >= -2 and grey.max() <= 2


def test_load_images_clear_errors(photo_dir, tmp_path):
    d = photo_dir
    with pytest.raises(ValueError, match="mean: expected one of \\['imagenet'\\]"):
        data.load_images(d, 8, "cifar")
    with pytest.raises(ValueError, match=r"mean: expected one value or 3 \(one per channel\), got shape \(2,\)"):
        data.load_images(d, 8, (0.5, 0.5))
    with pytest.raises(ValueError, match="std: expected positive"):
        data.load_images(d, 8, 0.5, (1, 0, 1))
    with pytest.raises(TypeError, match="dtype: expected float32 or float64"):
        data.load_images(d, 8, dtype=np.int32)
    with pytest.raises(ValueError, match="no .png/.jpg/.jpeg images found"):
        data.load_images(tmp_path, 8)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png: not a readable image"):
        data.load_images(tmp_path, 8)
    with pytest.raises(FileNotFoundError):
        data.load_images([tmp_path / "missing.png"], 8)
