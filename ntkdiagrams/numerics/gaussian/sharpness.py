"""Sharpness of a factor: how fast the fast path's rules converge on it, relative to tanh.

The ladders of :mod:`.ladder` map a slope s (the factor varies as f(s u) along a Cholesky
coordinate) to a rule; their bounds were measured on the tanh family (tanh, sech², tanh·sech²),
whose poles at ±iπ/2 set the convergence of Gauss rules.  Smoother factors converge faster:
softplus and the sigmoid have their poles at ±iπ, GELU is entire.  The factor's *sharpness*
κ_f ≤ 1 is the slope ratio at which f is integrated as accurately as the tanh family: the ladder
is entered with the slope κ_f s instead of s (:func:`.ladder.slopes`), so that f's transition
width 1/(κ_f s) plays the role of tanh's 1/s.

Calibration (1-D, once per factor; stored with the quadrature tables, :mod:`.stored`).  Test
integrands h(u) = f(s (u − k)) · (1 + ½ tanh(a u + b)) with the rule of each rung (b_r, n_r) of
the ladders, split at a point c of the split grid, the transition k at the split (the factor
that the coordinate owns) or anywhere in [−3, 3] (a factor inside); error relative to
∫ φ |h|, against composite 12-point Gauss–Legendre on 360 panels of [−9, 9] (exact to rounding
for these slopes).  For each rung, ε_r = the tanh family's worst error at the slope b_r, and

    s_f(r) = the largest slope ≥ b_r (on a grid of ratio :data:`SHARPNESS_GRID_RATIO`) up to
             which f's worst error stays ≤ ε_r,     κ_r = b_r / s_f(r),

    κ_f = clip( safety_f · max_r κ_r ,  SHARPNESS_MIN, 1 ),

over the split rungs with b_r > :data:`SHARPNESS_FROM` (the rungs a mapped slope can reach).

The safety factor covers what one factor times a smooth weight does not show: in a tuple of
four factors at large variance several transitions fall inside one coordinate's rule.  Whether
the 1-D ratio carries over to such products depends on the factor's analytic kind (a Gauss
rule's error is set by the integrand's singularities in the complex plane):

* the logistic family (:func:`logistic`: exponential forms R(e^{κz}) and elementary forms built
  from them and log(1 + e^{κz+λ}): the sigmoid, softplus, swish and their derivatives) has its
  singularities at a finite distance from the real axis, like tanh's, and a product of several
  transitions has the nearest of its factors' singularities: the 1-D ratio carries over with a
  smaller safety, safety_f = :data:`SHARPNESS_SAFETY_LOGISTIC` = 1.25 (every four-input tuple of
  the benchmark grid's rank-3 first layers and of a second layer within 1e-8 of the scale against
  uniform rules; at 1.0 swish's merged tuples reached 2.0e-8 and softplus's σ⁴ 1.1e-8:
  scripts/validate_sharpness.py, docs/gaussian.md), for the members whose ratio is at most
  :data:`SHARPNESS_LOGISTIC_BELOW` (transitions at least twice as wide as tanh's: the sigmoid's,
  softplus's, swish's and their derivatives', 0.31–0.43).  The tanh family itself (ratios 0.78–1:
  the 1-D test ranks its members, while the ladders were set on four-variable tuples of all of
  them) keeps safety_f = :data:`SHARPNESS_SAFETY`, so κ = 1;
* entire factors (erf, GELU: growth e^{y²} off the real axis, and a product of four grows as the
  fourth power; sin) do not follow the 1-D ratio: safety_f = :data:`SHARPNESS_SAFETY` (erf needed
  it at 1.25, GELU at 1.0, 2026-12-02).  Under ``method="auto"`` the erf family takes its closed
  form (:mod:`.erffamily`) and meets the ladders only under ``method="fast"``.
Slopes up to :data:`SHARPNESS_FROM` (in units of the bounds) keep the ladder's own rungs: there
the small Gauss rules converge irregularly, and those rungs cost little.  Beyond it the slope
enters the ladder as max(κ s, just above SHARPNESS_FROM) (:func:`.ladder.rule_codes`), so a
slope that the ladder gives a rung ≤ SHARPNESS_FROM never gets fewer nodes than before.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import sympy as sp

from ..activations import z
from .elementary import ATOM_EXPO, ATOM_SOFTPLUS, elementary_form
from .factors import Factor, prepare_factor
from .rules import SPLIT_C, SPLIT_DC, rule_for_code, split_index
from .stored import stored

__all__ = ["SHARPNESS_FROM", "SHARPNESS_GRID_RATIO", "SHARPNESS_MIN", "SHARPNESS_SAFETY",
           "SHARPNESS_SAFETY_LOGISTIC", "SHARPNESS_LOGISTIC_BELOW", "calibration_slopes", "logistic", "rung_ratios", "sharpness"]

#: slopes (in units of the rungs' bounds) up to this rung bound of both ladders keep the
#: ladder's rungs (κ = 1 there); only the rungs beyond it are calibrated
SHARPNESS_FROM = 0.303
#: κ_f = safety × the worst 1-D ratio, clipped to [SHARPNESS_MIN, 1]: the safety of entire
#: factors (erf, GELU, sin) and of the logistic family (:func:`logistic`)
SHARPNESS_SAFETY = 1.5
SHARPNESS_SAFETY_LOGISTIC = 1.25
#: ... for logistic factors whose worst 1-D ratio is at most this (module docstring)
SHARPNESS_LOGISTIC_BELOW = 0.5
SHARPNESS_MIN = 0.35
#: ratio of the slope grid of the calibration
SHARPNESS_GRID_RATIO = 1.08
#: number of test integrands (half with the transition at the split point)
_TRIALS = 24
_PANELS, _GL = 360, 12


def calibration_slopes(rungs: tuple) -> np.ndarray:
    """The grid of slopes: ratio SHARPNESS_GRID_RATIO, up to the last rung's bound / SHARPNESS_MIN."""
    top = max(b for b, _ in rungs) / SHARPNESS_MIN * SHARPNESS_GRID_RATIO
    n = int(math.ceil(math.log(top / 0.02) / math.log(SHARPNESS_GRID_RATIO)))
    return 0.02 * SHARPNESS_GRID_RATIO ** np.arange(n + 1)


@lru_cache(maxsize=4)
def _trials():
    """The fixed test integrands: (split row, transition k, reference nodes X and φ-weights,
    the smooth weight at X, its parameters)."""
    rng = np.random.default_rng(7)
    xg, wg = np.polynomial.legendre.leggauss(_GL)
    out = []
    for i in range(_TRIALS):
        c, d, k2 = rng.uniform(-3, 3), rng.uniform(-0.025, 0.025), rng.uniform(-3, 3)
        a, b = rng.uniform(-0.5, 0.5), rng.uniform(-1, 1)
        g = int(split_index(c))
        k = -SPLIT_C + g * SPLIT_DC + d if i % 2 == 0 else k2
        br = np.unique(np.concatenate([np.linspace(-9, 9, _PANELS + 1), [k, -SPLIT_C + g * SPLIT_DC]]))
        lo, hi = br[:-1, None], br[1:, None]
        X = ((hi - lo) / 2 * xg + (hi + lo) / 2).ravel()
        W = ((hi - lo) / 2 * wg).ravel() * np.exp(-X * X / 2) / math.sqrt(2 * math.pi)
        out.append((g, k, X, W, 1 + 0.5 * np.tanh(a * X + b), a, b))
    return out


def _errors(f, rungs: tuple, S: np.ndarray) -> np.ndarray:
    """E[r, i]: the worst relative error of rung r's rule at slope S[i] over the test integrands."""
    E = np.zeros((len(rungs), S.size))
    with np.errstate(all="ignore"):
        for g, k, X, W, weight, a, b in _trials():
            H = np.broadcast_to(f(S[:, None] * (X[None] - k)), (S.size, X.size)) * weight
            ref, scale = H @ W, np.abs(H) @ W
            for r, (_, code) in enumerate(rungs):
                U, Wr = rule_for_code(code)
                row = g if U.shape[0] > 1 else 0
                u = U[row]
                h = (np.broadcast_to(f(S[:, None] * (u[None] - k)), (S.size, u.size))
                     * (1 + 0.5 * np.tanh(a * u + b)))
                err = np.abs(h @ Wr[row] - ref) / np.maximum(scale, 1e-300)
                E[r] = np.maximum(E[r], np.where(np.isfinite(err), err, np.inf))
    return E


@lru_cache(maxsize=4)
def _reference(rungs: tuple, folder: Path | None) -> np.ndarray:
    """ε_r: the tanh family's worst error at each rung's bound (the larger of its two grid
    neighbours)."""
    def compute():
        S = calibration_slopes(rungs)
        E = np.maximum.reduce([_errors(prepare_factor(e).plus, rungs, S)
                               for e in (sp.tanh(z), 1 / sp.cosh(z) ** 2, sp.tanh(z) / sp.cosh(z) ** 2)])
        eps = np.empty(len(rungs))
        for r, (b, _) in enumerate(rungs):
            i = int(np.searchsorted(S, b))
            eps[r] = np.max(E[r, max(i - 1, 0):i + 1])
        return (eps,)
    return stored(folder, "sharpness_reference", (rungs,), compute)[0]


def rung_ratios(factor: Factor, rungs: tuple, folder: Path | None = None) -> np.ndarray:
    """κ_r = b_r / s_f(r) per rung (module docstring); 1 where f is not better than tanh at b_r."""
    eps = _reference(rungs, folder)

    def compute():
        S = calibration_slopes(rungs)
        E = _errors(factor.plus, rungs, S)
        out = np.ones(len(rungs))
        for r, (b, _) in enumerate(rungs):
            i0 = int(np.searchsorted(S, b))
            ok = E[r, i0:] <= eps[r]
            j = ok.size if ok.all() else int(np.argmin(ok))
            if j > 0:
                out[r] = b / S[i0 + j - 1]
        return (out,)
    return stored(folder, "sharpness", (rungs, str(factor.expr)), compute)[0]


def logistic(factor: Factor) -> bool:
    """Whether a smooth factor is of the logistic family (module docstring): an exponential form
    R(e^{κz}), or an elementary form (:mod:`.elementary`) whose atoms are all exponential forms
    or log(1 + e^{κz+λ}), times polynomials.

    >>> [logistic(prepare_factor(e)) for e in (sp.log(1 + sp.exp(z)), z / (1 + sp.exp(-z)), sp.erf(z))]
    [True, True, False]
    """
    if factor.expo is not None:
        return True
    form = elementary_form(factor.expr) if factor.smooth else None
    return form is not None and all(a.code in (ATOM_EXPO, ATOM_SOFTPLUS) for a in form.atoms)


@lru_cache(maxsize=256)
def sharpness(factor: Factor, rungs: tuple, folder: Path | None = None) -> float:
    """κ_f of the module docstring (1 for factors that are not smooth: they do not take the
    fast path)."""
    if not factor.smooth:
        return 1.0
    ratio = float(np.max(rung_ratios(factor, rungs, folder)))
    wide = ratio <= SHARPNESS_LOGISTIC_BELOW and logistic(factor)
    safety = SHARPNESS_SAFETY_LOGISTIC if wide else SHARPNESS_SAFETY
    return float(min(1.0, max(SHARPNESS_MIN, safety * ratio)))
