"""t-SNE of a layer's codes (van der Maaten & Hinton 2008): by default the penultimate layer's output, the
features the classifier reads. openTSNE is used when installed (faster), else scikit-learn's TSNE."""
from __future__ import annotations

from functools import partial

import numpy as np

from . import _core, _stream


@_core.takes_model
def codes(model, data, layer=None, batch_size=256, progress=False):
    """(N, D) flattened activations of `layer` (default: the penultimate layer) for every image of data (an
    array, (x, y) pair, Dataset, Dask array or iterable of batches; the codes themselves are kept in memory)."""
    if layer is None:
        layer = len(model) - 2
    return _stream.map_reduce(model, _stream.images(data), partial(_batch_codes, layer=layer), _stream.concat,
                              batch_size=batch_size, progress=progress, desc="codes")


def _batch_codes(model, x, start, *, layer):
    return _core.forward_to(model, x, layer).reshape(len(x), -1).copy()


@_core.takes_model
def tsne(model, data, layer=None, perplexity=30.0, seed=0, batch_size=256):
    """2-D t-SNE embedding (N, 2) of the codes of `layer` (default: penultimate) of data (array, (x, y)
    pair, Dataset, Dask array or iterable of batches). Plot it with fastconv.vis.image.save_scatter
    (coloured by class, optional thumbnails)."""
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
