"""fit / evaluate / predict: mini-batch training of a Sequential with SoftmaxCrossEntropy.

Data is an `(x, y)` pair of arrays (x NCHW or (N, features), y integer labels) or any object with
`.x` and `.y`. `fit` is reproducible given `seed` (it seeds the shuffling and, for its duration, the
generator Dropout draws from) and the initial weights.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import _random
from .loss import SoftmaxCrossEntropy, check_labels


def _xy(data, what):
    if hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
    else:
        try:
            x, y = data
        except (TypeError, ValueError):
            raise TypeError(f"{what}: expected an (x, y) pair of arrays, got {type(data).__name__}") from None
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{what}: x and y must have the same, non-zero length, got {x.shape} and {y.shape}")
    return x, y


def predict(model, x, batch_size=256):
    """Logits for every sample of x, in eval mode (the model's mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        return np.concatenate([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def evaluate(model, data, batch_size=256, loss_fn=None):
    """(mean loss, accuracy) of the model on data, in eval mode."""
    x, y = _xy(data, "data")
    logits = predict(model, x, batch_size)
    loss = (loss_fn or SoftmaxCrossEntropy())(logits, y)
    return loss, float(np.mean(logits.argmax(axis=1) == y))


def fit(model, train, val=None, epochs=10, batch_size=64, optimizer=None, callbacks=(), seed=None,
        checkpoint_dir=None, progress=True, loss_fn=None, augment=None):
    """Train `model` in place (left in eval mode afterwards); returns the history dict.

    optimizer: a fastconv.nn optimizer (default Adam(model, 1e-3)). callbacks: callables
    `cb(model, epoch, logs)` run after each epoch (logs: that epoch's history entries); one returning
    True stops training. checkpoint_dir: after each epoch the model is saved (atomically) to
    `<dir>/epoch_<k>.npz`. progress: a tqdm bar (loss, accuracy, images/s) when tqdm is installed.
    augment: `augment(x_batch, rng) -> x_batch` applied to each training batch (e.g. data.random_shift),
    rng being fit's seeded generator. Raises FloatingPointError when the loss stops being finite.
    """
    from .optim import Adam
    from .serialize import save

    x, y = _xy(train, "train")
    val_xy = None if val is None else _xy(val, "val")
    optimizer = optimizer if optimizer is not None else Adam(model, lr=1e-3)
    loss_fn = loss_fn or SoftmaxCrossEntropy()
    _check_data(model, x, y, val_xy)
    shuffle_rng = np.random.default_rng(seed)
    history = {"epoch": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [], "time": []}
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
    with _random.seeded(None if seed is None else seed + 1):
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            loss, acc = _train_epoch(model, x, y, batch_size, optimizer, loss_fn, shuffle_rng, augment,
                                     _progress(progress, len(x), f"epoch {epoch}/{epochs}"), epoch)
            logs = {"epoch": epoch, "train_loss": loss, "train_acc": acc, "val_loss": None, "val_acc": None}
            if val_xy is not None:
                logs["val_loss"], logs["val_acc"] = evaluate(model, val_xy, max(batch_size, 256), loss_fn)
            logs["time"] = time.perf_counter() - start
            for key, value in logs.items():
                history[key].append(value)
            if progress:
                _report(logs)
            if checkpoint_dir is not None:
                save(model, os.path.join(checkpoint_dir, f"epoch_{epoch:03d}.npz"))
            if any([cb(model, epoch, logs) is True for cb in callbacks]):
                break
    model.eval()
    return history


def _check_data(model, x, y, val_xy):
    """Fail before training: the input shape (named by layer) and the label range, for train and val."""
    was_training = model.training
    try:
        num_classes = model.eval()(x[:1]).shape[1]
        check_labels(y, len(y), num_classes)
        if val_xy is not None:
            model(val_xy[0][:1])
            check_labels(val_xy[1], len(val_xy[1]), num_classes)
    finally:
        model.train(was_training)


def _train_epoch(model, x, y, batch_size, optimizer, loss_fn, rng, augment, bar, epoch):
    model.train()
    order = rng.permutation(len(x))
    total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    try:
        for b, i in enumerate(range(0, len(x), batch_size)):
            idx = order[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, rng)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at epoch {epoch}, batch {b} (learning rate "
                                         f"{getattr(optimizer, 'lr', '?')}): lower the learning rate or check the "
                                         "data for NaN/inf")
            optimizer.zero_grad()
            model.backward(loss_fn.backward())
            optimizer.step()
            total_loss += loss * len(idx)
            correct += int(np.sum(logits.argmax(axis=1) == yb))
            seen += len(idx)
            if bar is not None:
                bar.update(len(idx))
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}",
                                img_s=f"{seen / (time.perf_counter() - start):.0f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return total_loss / seen, correct / seen


def _report(logs):
    line = (f"epoch {logs['epoch']}: loss {logs['train_loss']:.4f} acc {logs['train_acc']:.4f}"
            + ("" if logs["val_acc"] is None else f" val_loss {logs['val_loss']:.4f} val_acc {logs['val_acc']:.4f}")
            + f" ({logs['time']:.1f} s)")
    try:
        from tqdm.auto import tqdm
        tqdm.write(line)
    except ImportError:
        print(line)


def _progress(enabled, total, desc):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="img", leave=False)
