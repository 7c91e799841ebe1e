"""Which method integrates a batch of tuples (after merging and delta expansion).

Factors of the erf family (erf, GELU, their derivatives, powers and products, up to four factors
Φ per term: :func:`.erffamily.erf_family`; any m ≥ 1, not all polynomial) go to the closed-form
orthant moments of :mod:`.erffamily` when ``method="auto"`` and no ``degree`` is given (since
2026-12-02; exact at any variance).
Trigonometric factors (σ = sin, its derivatives, powers and products: every member has a Fourier
form, :func:`.trigonometric.trigonometric`; any m ≥ 1) go to the exact finite sum of
:mod:`.trigonometric` when ``method="auto"`` and no ``degree`` is given, for the tuples where its
rounding bound is small (:data:`.trigonometric.TRIG_TOL`); the others (small variances) take the
choice below.
Piecewise-polynomial factors (ReLU family, polynomials; m ≥ 2 distinct variables) go to the
closed-form orthant moments of :mod:`.orthant` when ``method="auto"`` and their correlation matrix
is well conditioned (:func:`.orthant.well_conditioned`), the cone method otherwise.
``method="auto"`` (the default): a tuple with m ≥ 2 distinct variables whose factors are all
smooth (no Max/Min/Abs/Heaviside/δ) and not all polynomial, and whose effective variance
v = max_j C_jj α_j² κ_j² is ≤ :data:`ntkdiagrams.numerics.gaussian.ladder.FAST_MAX_VARIANCE`
(κ_j: the sharpness of block j's factors, :mod:`.sharpness`; 1 for the tanh family, and with an
explicit ``degree``), goes to
the fast path (:mod:`.fast`); every other tuple to the exact cone method (:mod:`.cone`), which
is exact for polynomial branches and integrates kinks at z = 0 exactly.
``method="exact"``: always the cone method.  ``method="fast"``: the fast path for every smooth
tuple with m ≥ 2, whatever its variance or polynomial degree.

Beyond the fast path's bound the cone method at its default degree is not accurate for smooth
factors (measured at variance 45: 2e-6 … 1e-3 of the scale Π⟨f²⟩^{1/2} for four variables,
1e-6 … 2e-5 for two; docs/gaussian.md): ``method="auto"`` without a ``degree`` warns there with
:class:`.cone.AccuracyWarning`.
"""
from __future__ import annotations

import numpy as np

from ...errors import UnsupportedError
from .blocks import Block, all_polynomial, all_smooth
from .cone import integrate_exact, warn_default_degree
from .context import Quadrature
from .erffamily import erf_family, integrate_erf_family
from .fast import integrate_fast
from .ladder import FAST_MAX_VARIANCE, block_sharpness, effective_variance
from .orthant import integrate_orthant, needs_strict, piecewise_polynomial, well_conditioned
from .trigonometric import integrate_trigonometric, trigonometric

__all__ = ["METHODS", "MAX_DIM", "integrate"]

#: the values of ``method``
METHODS = ("auto", "exact", "fast")
#: most distinct variables of one integral (every method: the fast path's compiled levels, the
#: orthant probabilities P₁ … P₄, the cone method's rules by dimension)
MAX_DIM = 4


def integrate(blocks: list[Block], C: np.ndarray, degree, method: str, quad: Quadrature) -> np.ndarray:
    """E[Π_b F_b(z_b)], z ~ N(0, C), C (n, m, m) non-degenerate and free of deltas, by the
    method chosen per tuple (module docstring)."""
    m = len(blocks)
    if m == 0:
        return np.ones(C.shape[0])
    if m > MAX_DIM:
        raise UnsupportedError(f"a Gaussian expectation over {m} distinct variables; the integration "
                               f"methods handle at most {MAX_DIM}")
    if method == "auto" and degree is None and not all_polynomial(blocks) and erf_family(blocks):
        quad.count("erf_family_tuples", C.shape[0])
        return integrate_erf_family(blocks, C)
    if method == "auto" and degree is None and trigonometric(blocks):
        val, done = integrate_trigonometric(blocks, C)
        quad.count("trigonometric_tuples", int(np.sum(done)))
        if np.all(done):
            return val
        if np.any(done):
            rest = ~done
            val[rest] = _by_quadrature([b.take(rest) for b in blocks], C[rest], degree, method, quad)
            return val
    return _by_quadrature(blocks, C, degree, method, quad)


def _by_quadrature(blocks: list[Block], C: np.ndarray, degree, method: str, quad: Quadrature) -> np.ndarray:
    """The orthant moments, the fast path or the cone method (module docstring)."""
    m = len(blocks)
    if m >= 2 and method == "auto" and piecewise_polynomial(blocks):
        good = well_conditioned(C, needs_strict(blocks))
        if np.all(good):
            return integrate_orthant(blocks, C)
        out = np.empty(C.shape[0])
        if np.any(good):
            out[good] = integrate_orthant([b.take(good) for b in blocks], C[good])
        out[~good] = integrate_exact([b.take(~good) for b in blocks], C[~good], degree, quad)
        return out
    if m >= 2 and method != "exact" and all_smooth(blocks) and (
            method == "fast" or not all_polynomial(blocks)):
        # with the ladders, the bound applies to the variance seen through the factors' sharpness
        kappa = block_sharpness(blocks, quad.tables) if quad.sharpness and degree is None else None
        veff = effective_variance(blocks, C, kappa)
        fast = np.ones(C.shape[0], bool) if method == "fast" else veff <= FAST_MAX_VARIANCE
        if np.all(fast):
            return integrate_fast(blocks, C, degree, quad, force=method == "fast")
        out = np.empty(C.shape[0])
        if np.any(fast):
            out[fast] = integrate_fast([b.take(fast) for b in blocks], C[fast], degree, quad,
                                       force=method == "fast")
        slow = ~fast
        if degree is None and method == "auto":
            warn_default_degree("with an effective variance (C_jj α² κ²) beyond the fast "
                                f"path's bound {FAST_MAX_VARIANCE:g}")
        out[slow] = integrate_exact([b.take(slow) for b in blocks], C[slow], degree, quad)
        return out
    return integrate_exact(blocks, C, degree, quad)
