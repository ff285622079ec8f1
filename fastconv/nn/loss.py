"""SoftmaxCrossEntropy: PyTorch's CrossEntropyLoss (mean over the batch) on raw logits."""
from __future__ import annotations

import numpy as np


class SoftmaxCrossEntropy:
    """loss = mean_n( logsumexp(z_n) − z_n[y_n] ); backward() -> dL/dz = (softmax(z) − onehot(y)) / N."""

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def forward(self, logits, labels) -> float:
        z = np.asarray(logits)
        if z.ndim != 2 or z.shape[0] < 1:
            raise ValueError(f"SoftmaxCrossEntropy: expected logits of shape (N, num_classes), got {z.shape}")
        y = check_labels(labels, z.shape[0], z.shape[1])
        with np.errstate(invalid="ignore", over="ignore"):   # non-finite logits give a non-finite loss, reported by fit
            shifted = z - z.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            log_p = shifted - log_norm
        self.probs, self.labels = np.exp(log_p), y
        return float(-log_p[np.arange(len(y)), y].mean())

    def backward(self):
        if getattr(self, "probs", None) is None:
            raise RuntimeError("SoftmaxCrossEntropy: backward() called before forward()")
        dz = self.probs.copy()
        dz[np.arange(len(self.labels)), self.labels] -= 1
        dz /= len(self.labels)
        return dz


def check_labels(labels, n: int, num_classes: int) -> np.ndarray:
    """labels as an int64 vector of length n with values in [0, num_classes); ValueError otherwise."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels: expected shape ({n},) to match the logits' batch, got {y.shape}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"labels: expected integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels: expected class indices in [0, {num_classes}) for logits with {num_classes} "
                         f"classes, got values in [{y.min()}, {y.max()}]")
    return y.astype(np.int64, copy=False)
