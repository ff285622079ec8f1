"""fastconv.vis: visualising what a fastconv.nn CNN computes. Every routine takes a model and NumPy
inputs (NCHW) and returns NumPy arrays; a layer is named by its name ("3") or its index. The dataset-wide
routines (top_activations, activation_stats, occlusion, codes, tsne) also stream a Dask array or an
iterable of batches (see _stream), returning what the in-memory call returns; local_cluster starts a
dask.distributed cluster of worker processes for them.

backprop     saliency, gradient, guided_backprop, deconvnet, project — one backward mechanism, three ReLU rules
features     filters, activations, top_activations, activation_stats, feature_evolution
perturbation occlusion (Zeiler & Fergus maps; per-pixel mode = Captum's Occlusion)
synthesis    class_model, deep_dream, neural_style
embedding    tsne, codes
receptive    receptive_field, effective_receptive_field, invariance
spectrum     filter_spectrum, aliasing (frequency content, dead filters, shift-equivariance error)
architecture architecture_selection (Zeiler & Fergus's first-layer experiment)
attack       adversarial (minimal targeted perturbation), fgsm, pgd (Captum's FGSM / PGD semantics)
image        PNG grids and plots (save_top_grid: the top-k figure); report: the HTML page
(The applications built on these — the demo report, `fastconv visualize` — live in fastconv.app.)
"""
from .architecture import architecture_selection
from .attack import Attack, adversarial, fgsm, pgd
from .backprop import class_gradient, deconvnet, gradient, guided_backprop, project, saliency
from .embedding import codes, tsne
from .features import (ActivationStats, TopActivations, activation_stats, activations, feature_evolution, filters,
                       top_activations)
from .perturbation import occlusion
from ._stream import local_cluster
from .spectrum import Aliasing, FilterSpectrum, aliasing, filter_spectrum
from .receptive import effective_receptive_field, infer_input_shape, invariance, receptive_field
from .synthesis import class_model, deep_dream, gram, neural_style

__all__ = [
    "saliency", "gradient", "guided_backprop", "deconvnet", "project", "class_gradient",
    "filters", "activations", "top_activations", "TopActivations", "activation_stats",
    "ActivationStats", "feature_evolution", "occlusion",
    "class_model", "deep_dream", "neural_style", "gram", "tsne", "codes",
    "receptive_field", "effective_receptive_field", "infer_input_shape", "invariance",
    "adversarial", "fgsm", "pgd", "Attack", "filter_spectrum", "FilterSpectrum", "aliasing", "Aliasing",
    "architecture_selection", "local_cluster",
]
