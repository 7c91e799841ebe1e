"""Points of negligible weight: the compiled kernels' pruning threshold per tuple.

A quadrature point p of the nested rule (or of the two-factor form) carries the product w_p of its
levels' rule weights.  Far in the Gaussian tails w_p is tiny (a 48-point Gauss–Hermite rule's
outer weights reach 4e-36): in the three-level rules of the four-point tensors 27–45 % of the
points have w_p < 1e-20 (softplus, |x|²/n0 = 3, C_W = 2, every layer).  The kernels
(:func:`.compiled.nested`, :func:`.compiled.two_factor`) skip a point, or a parent node with
everything below it, where w_p < thr_t.  If |integrand| ≤ B_t at the tuple's N_t points, the
skipped points change E_t by at most N_t · thr_t · B_t; the threshold makes that a fixed fraction
of the factors' size:

    thr_t = PRUNE_TOLERANCE / (N_t · PRUNE_MARGIN · Π_k env_k(R_k) / env_k(2 σ_k)),

    |E_t − E_t(pruned)| ≤ PRUNE_TOLERANCE · Π_k env_k(2 σ_k) / PRUNE_MARGIN,

with env_k(r) = max_{|z| ≤ r} |F_k(z)| (F_k the variable's block, bounded by the product of its
members' envelopes), R_k the largest |z_k| the tuple's points reach (Σ_j |L_kj| u_max of the
levels' rules; the tabulated variable adds TABLE_REACH of its own s) and σ_k its standard
deviation.  A bounded factor (tanh, erf, σ′) has env(R)/env(2σ) ≈ 1, a linear one (softplus,
swish, GELU) ≈ R/2σ ≈ 6, a factor growing like e^{κz} e^{κ(R − 2σ)}: its tuples prune (almost)
nothing.  An envelope that is not finite gives thr = 0 (no pruning).  The envelopes are sampled
on a grid of spacing :data:`ENVELOPE_STEP`; PRUNE_MARGIN covers what the grid misses between its
points.

The numpy path (:mod:`.nested`) does not prune; the two agree to ≤ PRUNE_TOLERANCE of the scale
above plus rounding (tests/test_gaussian_pruning.py).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .factors import Factor

__all__ = ["ENVELOPE_BLOCK", "ENVELOPE_STEP", "PRUNE_MARGIN", "PRUNE_TOLERANCE", "envelope", "envelope_ratio", "prune_thresholds"]

#: the skipped points' bound, relative to Π_k env_k(2σ_k): 1e-16 until 2026-12-03; at 1e-12 the
#: four-variable tuples of softplus (3, C_W = 2) evaluate 194·10⁶ of their 310·10⁶ points instead of
#: 226·10⁶ (the cell −0.2 s), and the grid's K, G1, V moved by ≤ 1e-15, 3.5e-14, 2e-13 of each
#: tensor's largest entry (softplus, swish, tanh at |x|²/n0 = 3, C_W = 2; docs/gaussian.md), three
#: orders below the tables' interpolation (:mod:`.spacing`)
PRUNE_TOLERANCE = 1e-12
#: factor on the sampled envelopes' ratio (their grid misses the maxima between its points)
PRUNE_MARGIN = 2.0
#: spacing of the grid in z on which a factor's envelope is sampled
ENVELOPE_STEP = 1.0 / 64


#: the sampled envelope of a factor is kept on grids of a multiple of this many points
ENVELOPE_BLOCK = 4096


@lru_cache(maxsize=64)
def _running_max(f: Factor, n: int) -> np.ndarray:
    """max_{|z| ≤ i · ENVELOPE_STEP} |f(z)| for i < n (read-only), inf from the first point where f
    is not finite.  A prefix of a longer grid's is the same array of numbers."""
    z = np.arange(n) * ENVELOPE_STEP
    with np.errstate(all="ignore"):
        v = np.maximum(np.abs(np.asarray(f.plus(z), dtype=float) * np.ones(n)),
                       np.abs(np.asarray(f.plus(-z), dtype=float) * np.ones(n)))
    v = np.where(np.isnan(v), np.inf, v)
    running = np.maximum.accumulate(v)
    running.setflags(write=False)
    return running


def envelope(f: Factor, r: np.ndarray) -> np.ndarray:
    """env(r) = max_{|z| ≤ r} |f(z)| at each r ≥ 0 (any shape), on the grid z = i · ENVELOPE_STEP,
    every r rounded up to the grid; inf where f is not finite within r.  The sampled running
    maximum is kept per factor on a grid of a multiple of ENVELOPE_BLOCK points (a call per
    variable and kernel call sampled it anew: ~0.14 s of softplus (3, C_W = 2)'s cell)."""
    r = np.asarray(r, dtype=float)
    need = int(np.ceil(np.max(r, initial=0.0) / ENVELOPE_STEP)) + 1
    n = -(-need // ENVELOPE_BLOCK) * ENVELOPE_BLOCK
    running = _running_max(f, n)
    return running[np.minimum(np.ceil(r / ENVELOPE_STEP).astype(np.intp), need - 1)]


def envelope_ratio(f: Factor, a, reach: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """env_f(|α| R) / env_f(2 |α| σ) per tuple: how much larger f(α z) can be at the tuple's points
    (|z| ≤ R) than within two standard deviations; inf or NaN where that is not bounded."""
    a = np.abs(a)
    with np.errstate(all="ignore"):
        return envelope(f, a * reach) / envelope(f, 2.0 * a * sd)


def prune_thresholds(ratio: np.ndarray, points: np.ndarray) -> np.ndarray:
    """thr_t (T,) of the module docstring from Π_k env_k(R_k)/env_k(2σ_k) (T,) (products of
    :func:`envelope_ratio` over the variables' members) and the tuples' points N_t (T,); 0 (no
    pruning) where the ratio is not finite."""
    with np.errstate(all="ignore"):
        thr = PRUNE_TOLERANCE / (points * PRUNE_MARGIN * ratio)
    return np.where(np.isfinite(thr) & (thr > 0), thr, 0.0)
