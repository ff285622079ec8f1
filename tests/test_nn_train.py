"""Optimizers, fit/evaluate, checkpoints, save/load and the `fastconv train` command."""
import os

import numpy as np
import pytest

import fastconv as fc
from fastconv import data, nn
from fastconv.nn import serialize
from nn_helpers import every_layer_net

SYN = data.synthetic(n=240, num_classes=3, channels=1, size=8, seed=0)


def small_cnn(rng=0, dtype=np.float32, dropout=0.0):
    return nn.models.seed_cnn(1, 3, 8, channels=(4, 6), dropout=dropout, rng=rng, dtype=dtype)


class OneParam:
    """A 'model' with one parameter, for checking update rules against hand-written formulas."""

    def __init__(self, value):
        self.p, self.g = np.array(value, np.float64), np.zeros(len(value))

    def parameters(self):
        yield "p", self.p, self.g


GRADS = [np.array([0.5, -1.0]), np.array([0.2, 0.3]), np.array([-0.7, 0.1])]


def test_sgd_update_rule():
    m = OneParam([1.0, 2.0])
    opt = nn.SGD(m, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
    p, buf = np.array([1.0, 2.0]), None
    for g in GRADS:
        m.g[...] = g
        opt.step()
        d = g + 0.01 * p
        buf = d.copy() if buf is None else 0.9 * buf + d
        p = p - 0.1 * (d + 0.9 * buf)
        np.testing.assert_allclose(m.p, p, rtol=1e-14)
    plain = OneParam([1.0, 2.0])
    nn.SGD(plain, lr=0.5).step()                 # zero grad: no move
    assert np.array_equal(plain.p, [1.0, 2.0])
    opt.zero_grad()
    assert not m.g.any()
    with pytest.raises(ValueError, match="nesterov"):
        nn.SGD(m, lr=0.1, nesterov=True)


def test_adam_update_rule():
    m = OneParam([1.0, 2.0])
    opt = nn.Adam(m, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    p, mom, v = np.array([1.0, 2.0]), 0.0, 0.0
    for t, g in enumerate(GRADS, 1):
        m.g[...] = g
        opt.step()
        g = g + 0.1 * p
        mom = 0.8 * mom + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        p = p - 0.01 / (1 - 0.8 ** t) * mom / (np.sqrt(v) / np.sqrt(1 - 0.99 ** t) + 1e-6)
        np.testing.assert_allclose(m.p, p, rtol=1e-13)


def test_optimizer_accepts_triples_and_follows_astype():
    model = small_cnn()
    snapshot = nn.SGD(list(model.parameters()), lr=0.1)
    before = model[0].weight.copy()
    model[0].weight_grad[...] = 1.0
    snapshot.step()
    np.testing.assert_allclose(model[0].weight, before - 0.1, rtol=1e-6)
    opt = nn.Adam(model)
    model.astype(np.float64)
    loss_fn = nn.SoftmaxCrossEntropy()
    loss_fn(model(SYN.train.x[:8].astype(np.float64)), SYN.train.y[:8])
    model.backward(loss_fn.backward())
    opt.step()
    assert all(v.dtype == np.float64 for _, v, _ in model.parameters())
    with pytest.raises(ValueError, match="no parameters"):
        nn.SGD(nn.Sequential(nn.ReLU()), lr=0.1)


def test_fit_learns_and_is_reproducible():
    runs = []
    for _ in range(2):
        model = small_cnn(rng=1, dropout=0.2)
        hist = nn.fit(model, SYN.train, SYN.test, epochs=3, batch_size=16, optimizer=nn.Adam(model, 1e-2),
                      seed=5, progress=False)
        runs.append((hist, model.state_dict()))
    (h1, s1), (h2, s2) = runs
    assert h1["train_loss"] == h2["train_loss"] and h1["val_acc"] == h2["val_acc"]
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)
    assert set(h1) >= {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "time"} and h1["epoch"] == [1, 2, 3]
    assert h1["val_acc"][-1] >= 0.9 and h1["train_loss"][-1] < h1["train_loss"][0]
    model = small_cnn(rng=1, dropout=0.2)
    h3 = nn.fit(model, SYN.train, epochs=1, batch_size=16, optimizer=nn.Adam(model, 1e-2), seed=6, progress=False)
    assert h3["train_loss"][0] != h1["train_loss"][0] and h3["val_acc"] == [None]
    loss, acc = nn.evaluate(model, SYN.test)
    assert np.isfinite(loss) and 0 <= acc <= 1 and not model.training


def test_fit_progress_bar_and_callbacks(capsys):
    pytest.importorskip("tqdm")
    model = small_cnn()
    seen = []
    hist = nn.fit(model, SYN.train, SYN.test, epochs=5, batch_size=64, optimizer=nn.SGD(model, 0.05),
                  callbacks=[lambda m, e, logs: seen.append((e, logs["val_acc"])) or e == 2], progress=True,
                  augment=lambda xb, rng: data.random_shift(xb, rng, 1))
    assert [e for e, _ in seen] == [1, 2] and len(hist["epoch"]) == 2     # True from a callback stops
    err = capsys.readouterr()
    assert "epoch 2: loss" in err.out + err.err


def test_fit_errors_name_the_problem():
    model = small_cnn()
    x, y = SYN.train
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 3\).*\[0, 3\]"):
        nn.fit(model, (x, np.where(np.arange(len(y)) == 7, 3, y)), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"labels.*\[-1, \d\]"):
        nn.fit(model, (x, y), (SYN.test.x, SYN.test.y - 1), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"layer '0' \(Conv2d\) with input shape \(1, 2, 8, 8\)"):
        nn.fit(model, (np.zeros((4, 2, 8, 8), np.float32), np.zeros(4, int)), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"layer '7' \(Linear\).*\(N, 24\)"):
        nn.fit(model, (np.zeros((4, 1, 16, 16), np.float32), np.zeros(4, int)), epochs=1, progress=False)
    x_nan = x.copy()
    x_nan[5] = np.nan
    with pytest.raises(FloatingPointError, match=r"loss became nan at epoch 1, batch \d+.*learning rate"):
        nn.fit(model, (x_nan, y), epochs=1, batch_size=16, progress=False)
    model[7].bias[0] = np.inf
    with pytest.raises(FloatingPointError, match="loss became (nan|inf) at epoch 1, batch 0"):
        nn.fit(model, (x, y), epochs=1, progress=False)
    with pytest.raises(ValueError, match="same, non-zero length"):
        nn.fit(model, (x, y[:-1]), epochs=1, progress=False)


def test_checkpoints_every_epoch(tmp_path):
    model = small_cnn()
    nn.fit(model, SYN.train, epochs=2, batch_size=64, checkpoint_dir=tmp_path / "ck", progress=False, seed=0)
    assert sorted(os.listdir(tmp_path / "ck")) == ["epoch_001.npz", "epoch_002.npz"]   # no temp files left
    last = nn.load(tmp_path / "ck" / "epoch_002.npz")
    for (n1, v1, _), (n2, v2, _) in zip(model.parameters(), last.parameters()):
        assert n1 == n2 and np.array_equal(v1, v2)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    model = small_cnn()
    nn.save(model, path)
    good = path.read_bytes()

    def failing_savez(f, **arrays):
        f.write(b"partial garbage")
        raise OSError("disk full")
    monkeypatch.setattr(serialize.np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        nn.save(small_cnn(rng=9), path)
    monkeypatch.undo()
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["model.npz"]
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(serialize.os, "replace", lambda a, b: (replaced.append((a, b)), real_replace(a, b)))
    nn.save(model, path)
    (tmp, final), = replaced
    assert os.path.dirname(tmp) == str(tmp_path) and final == os.fspath(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip(tmp_path, dtype):
    model = every_layer_net(dtype=dtype)
    named = nn.Sequential(("features", nn.Sequential(nn.Conv2d(1, 2, 3, padding="same", rng=0), nn.ReLU())),
                          ("pool", nn.MaxPool2d((2, 3), stride=1, padding=(1, 1), ceil_mode=True)),
                          ("flat", nn.Flatten()), ("fc", nn.Linear(2 * 9 * 8, 4, bias=False)))
    for m, x in [(model, np.random.default_rng(0).standard_normal((2, 2, 8, 8)).astype(dtype)),
                 (named.astype(dtype), np.ones((1, 1, 8, 8), dtype))]:
        nn.save(m, tmp_path / "m.npz")
        back = nn.load(tmp_path / "m.npz")
        assert repr(back) == repr(m) and back.dtype == np.dtype(dtype)
        assert [n for n, _ in back.named_layers()] == [n for n, _ in m.named_layers()]
        for (n1, v1, _), (n2, v2, _) in zip(m.parameters(), back.parameters()):
            assert n1 == n2 and v1.dtype == v2.dtype and np.array_equal(v1, v2)
        with fc.use_backend("numpy"):
            assert np.array_equal(m.eval()(x), back(x))
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastconv model"):
        nn.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "missing.npz")


def test_cli_train_digits(tmp_path, capsys):
    """A short run of `fastconv train --data digits` (16×16, 5 epochs, small CNN): a lower bar than the
    default run (20 epochs, >= 97%)."""
    pytest.importorskip("sklearn")
    from fastconv.cli import main
    out = tmp_path / "digits.npz"
    threads = fc.get_num_threads()
    try:
        assert main(["train", "--data", "digits", "--epochs", "5", "--channels", "8,16", "--lr", "3e-3",
                     "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    finally:
        fc.set_num_threads(threads)
    text = capsys.readouterr().out
    acc = float(text.split("test accuracy: ")[1].split()[0])
    assert acc >= 0.93 and "wall time:" in text
    model = nn.load(out)
    split = data.load_digits(16)
    assert nn.evaluate(model, split.test)[1] == pytest.approx(acc, abs=1e-4)


def test_cli_train_npz_and_errors(tmp_path, capsys):
    from fastconv.cli import main
    np.savez(tmp_path / "d.npz", x=(SYN.train.x * 255).astype(np.uint8), y=SYN.train.y)
    assert main(["train", "--data", "npz", "--data-path", str(tmp_path / "d.npz"), "--epochs", "1",
                 "--channels", "4,4", "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["train", "--data", "cifar10", "--data-dir", str(tmp_path / "nope"), "--no-progress"]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_digits_default_run_reaches_97_percent_within_60_s(capsys):
    """The acceptance run: `fastconv train --data digits` with its defaults (pytest -m slow)."""
    pytest.importorskip("sklearn")
    from fastconv.cli import main
    assert main(["train", "--data", "digits", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert float(text.split("test accuracy: ")[1].split()[0]) >= 0.97
    assert float(text.split("wall time: ")[1].split()[0]) < 60
