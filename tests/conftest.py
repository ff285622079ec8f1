"""Shared fixtures: the backend parametrizations and the derandomized hypothesis profile.

`backend`     every available backend except the NumPy reference (ids are the backend names); the
              tests using it compare that backend against backend='numpy'. Skips when only numpy exists.
`any_backend` every available backend, numpy included: for checks against outside truth
              (scipy.signal, finite differences, naive loops, torch).
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
