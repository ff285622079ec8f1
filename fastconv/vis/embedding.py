"""t-SNE of a layer's codes (van der Maaten & Hinton 2008): by default the penultimate layer's output, the
features the classifier reads. openTSNE is used when installed (faster), else scikit-learn's TSNE."""
from __future__ import annotations

import numpy as np

from . import _core
from .features import _images


def codes(model, data, layer=None, batch_size=256):
    """(N, D) flattened activations of `layer` (default: the penultimate layer) for every image."""
    x = _images(data)
    if layer is None:
        layer = len(model) - 2
    with _core.evaluating(model):
        parts = [_core.forward_to(model, _core.as_batch(model, x[sl]), layer).reshape(sl.stop - sl.start, -1).copy()
                 for sl in _core.chunks(len(x), batch_size)]
    return np.concatenate(parts)


def tsne(model, data, layer=None, perplexity=30.0, seed=0, batch_size=256):
    """2-D t-SNE embedding (N, 2) of the codes of `layer` (default: penultimate) of data (array, (x, y)
    pair or Dataset). Plot it with fastconv.vis.image.save_scatter (coloured by class, optional thumbnails)."""
    z = codes(model, data, layer, batch_size).astype(np.float64)
    perplexity = min(perplexity, max(1.0, (len(z) - 1) / 3))
    try:
        from openTSNE import TSNE as OpenTSNE
        return np.asarray(OpenTSNE(perplexity=perplexity, random_state=seed, n_jobs=1).fit(z))
    except ImportError:
        pass
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    if z.shape[1] > 50 and len(z) > 50:   # the usual PCA-to-50 preprocessing: same neighbours, faster
        z = PCA(50, random_state=seed).fit_transform(z)
    return TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed).fit_transform(z)
