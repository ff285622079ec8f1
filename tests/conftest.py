"""Shared fixtures: the backend parametrizations and the derandomized hypothesis profile.

`backend`     every available backend except the NumPy reference (ids are the backend names); the
              tests using it compare that backend against backend='numpy'. Skips when only numpy exists.
`any_backend` every available backend, numpy included: for checks against outside truth
              (scipy.signal, finite differences, naive loops, torch).
`photo_dir`   scikit-learn's two sample photos as image files.
"""
import os

import numpy as np
import pytest

import fastconv as fc

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test dependency; without it only the property tests are skipped
    settings = None

if settings is not None:
    # CI must never be flaky: derandomized, no deadline (first calls may JIT-compile), modest example counts.
    settings.register_profile(
        "ci", derandomize=True, deadline=None, max_examples=25, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("dev", deadline=None, max_examples=200)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

AVAILABLE = fc.available_backends()
FAST = [name for name in AVAILABLE if name != "numpy"]


def _params(names):
    if names:
        return [pytest.param(name, id=name) for name in names]
    reason = f"only the numpy reference is available ({fc.backends.unavailable_reasons()})"
    return [pytest.param(None, id="no-fast-backend", marks=pytest.mark.skip(reason=reason))]


@pytest.fixture(scope="session", params=_params(FAST))
def backend(request):
    """A fast backend (not 'numpy') to check against the reference."""
    return request.param


@pytest.fixture(scope="session", params=_params(AVAILABLE))
def any_backend(request):
    """Any available backend, the reference included."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """scikit-learn's two sample photos (427×640 RGB) as china.png and flower.jpg (its JPEG re-encoded)."""
    Image = pytest.importorskip("PIL.Image")
    images = pytest.importorskip("sklearn.datasets").load_sample_images().images
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(images[0]).save(d / "china.png")
    Image.fromarray(images[1]).save(d / "flower.jpg", quality=95)
    return d
