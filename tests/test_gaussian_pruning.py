"""Pruning of negligible quadrature points in the compiled kernels (numerics/gaussian/pruning.py):
the envelopes and thresholds, and the kernels against the numpy path, which does not prune."""
import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import z
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor, pruning
from ntkdiagrams.numerics.gaussian.factors import prepare_factor
from ntkdiagrams.numerics.gaussian.pruning import (ENVELOPE_STEP, PRUNE_MARGIN, PRUNE_TOLERANCE, envelope,
                                                   envelope_ratio, prune_thresholds)
from ntkdiagrams.settings import Settings

SOFTPLUS = sp.log(1 + sp.exp(z))


def test_envelope_is_the_running_maximum():
    """max_{|z| ≤ r} |f|: softplus and tanh are monotone in |z| on their larger side, so the
    envelope is f at r rounded up to the grid; a bump (sech²) keeps its maximum at 0; a factor that
    overflows within r has an infinite envelope."""
    r = np.array([0.0, 0.3, 2.0, 17.5])
    up = np.ceil(r / ENVELOPE_STEP) * ENVELOPE_STEP
    assert np.allclose(envelope(prepare_factor(SOFTPLUS), r), np.log1p(np.exp(up)), rtol=1e-14)
    assert np.allclose(envelope(prepare_factor(sp.tanh(z)), r), np.tanh(up), rtol=1e-14)
    assert np.allclose(envelope(prepare_factor(1 / sp.cosh(z) ** 2), r), 1.0, rtol=1e-14)
    assert np.isinf(envelope(prepare_factor(sp.exp(z ** 2 / 4)), np.array([60.0]))[0])


def test_ratio_and_threshold():
    """env(|α|R)/env(2|α|σ) and thr = PRUNE_TOLERANCE/(N · PRUNE_MARGIN · ratio): bounded factors
    prune at ~PRUNE_TOLERANCE/N, a linear one a few times less, e^{3z} nothing worth counting,
    and a ratio that is not finite not at all."""
    R, sd = np.array([30.0]), np.array([2.5])
    tanh = envelope_ratio(prepare_factor(sp.tanh(z)), 1.0, R, sd)
    soft = envelope_ratio(prepare_factor(SOFTPLUS), 1.0, R, sd)
    expo = envelope_ratio(prepare_factor(sp.exp(3 * z)), 1.0, R, sd)
    assert abs(tanh[0] - np.tanh(30.0) / np.tanh(5.0)) < 1e-12
    assert 5.0 < soft[0] < 7.0  # ≈ R / 2σ
    assert expo[0] > 1e30
    ratio = np.array([tanh[0], soft[0], expo[0], np.inf, np.nan])
    thr = prune_thresholds(ratio, np.full(5, 1e4))
    assert np.allclose(thr[:3], PRUNE_TOLERANCE / (1e4 * PRUNE_MARGIN * ratio[:3]), rtol=1e-15)
    assert np.all(thr[3:] == 0.0)


def _kernel(n=6, var=6.0, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    K = X @ X.T / 3
    return K * var / np.max(np.diag(K))


@pytest.mark.parametrize("factors", [[SOFTPLUS] * 4, [SOFTPLUS, SOFTPLUS, sp.tanh(z), sp.tanh(z)]])
def test_pruned_kernels_agree_with_the_numpy_path(factors, monkeypatch):
    """Four factors at variance 6 (|x|²/n0 = 3, C_W = 2): nested rule (rank-3 kernel: the last
    variable deterministic) and two-factor forms (full-rank kernel).  The compiled kernels prune at
    their thresholds and agree with the numpy path, which does not, to 1e-13; with a tolerance
    of 1e-3 they prune points that matter (the threshold reaches the kernels)."""
    pytest.importorskip("numba")
    for K in (_kernel(), _kernel() + 0.5 * np.eye(6)):
        out = {}
        for name, settings in (("jit", Settings(jit=True)), ("numpy", Settings(jit=False))):
            with Quadrature(settings, compiled_min_points=0) as quad:
                out[name] = expectation_tensor(factors, K, quadrature=quad)
                if name == "jit":
                    assert quad.stats["compiled_tuples"] > 0
        scale = np.max(np.abs(out["numpy"]))
        assert np.max(np.abs(out["jit"] - out["numpy"])) < 1e-13 * scale
        monkeypatch.setattr(pruning, "PRUNE_TOLERANCE", 1e-3)
        with Quadrature(Settings(jit=True), compiled_min_points=0) as quad:
            coarse = expectation_tensor(factors, K, quadrature=quad)
        monkeypatch.undo()
        assert np.max(np.abs(coarse - out["numpy"])) > 1e-9 * scale
