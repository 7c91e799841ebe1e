"""Grid spacing of a factor's table of G(μ, s): the coarsest that reads it within a tolerance.

The table of the innermost conditional expectation G(μ, s) = E[f(μ + s ξ)] (:mod:`.table`) is
read by 6-point Lagrange interpolation in s and in μ on a grid of spacing h in both, with the error

    |G̃ − G| ≲ h⁶ (max|∂_μ⁶ G| + max|∂_s⁶ G|) · 225/46080,      ∂_s⁶ G = E[ξ⁶ f⁽⁶⁾(μ + s ξ)] ≈ 15 f⁽⁶⁾

near s = 0 (the s-direction dominates: E ξ⁶ = 15).  h = :data:`.table.TABLE_H_MU` = 0.02 was set
for the sharpest factors, the tanh family and erf'' (tanh'' is read to ~1e-8 of its scale there, at
small s).  Smoother factors reach a given error on a coarser grid, as h ∝ (max|f⁽⁶⁾|)^{−1/6}:
softplus and the sigmoid at 2.5× the spacing, sin at 2×, GELU and swish at 1.5×.  A coarser grid
is fewer entries to compute (∝ 1/h²: a softplus network at |x|²/n0 = 3, C_W = 2 grew its table in
0.25 s at h = 0.02, 0.04 s at 0.05) and shorter windows of the table for the compiled kernels to
interpolate per tuple (∝ 1/h: the three-variable tuples' main cost).

Calibration (once per factor; stored with the quadrature tables, :mod:`.stored`).  For each spacing
h of :data:`TABLE_SPACINGS`, finest first, the factor's table (:class:`.table.GrowingTable`) over
|μ| ≤ :data:`SPACING_REACH` and the first :data:`SPACING_CELLS` cells in s is read by the table's
own lookup (:func:`.table.table_lookup`) at the middle of every cell in μ, at s = 0, at the middle
of every cell in s and at 0.37 h (the mirrored rows of s < 2h), against G computed there by the
entries' own rule (:func:`.table.expectation_at`), so that only the interpolation is measured.
The error is relative to the factor's scale ⟨f²⟩^{1/2} under N(0, :data:`SPACING_MIN_VARIANCE`),
the smallest spread of the tuples that read such a table: a tuple's error from the table is about
the table's error relative to ⟨f²⟩^{1/2} at its own variance, and tuples whose tabulated variable
has a smaller variance read the finest table (:func:`finest`; GELU at variance 1e-5, ⟨f²⟩^{1/2} ≈
1.6e-3, was off by 2.5e-7 of its scale at GELU's own spacing).  The spacing of the factor is the
coarsest h such that it and every finer spacing stay within :data:`TABLE_SPACING_TOL`; a factor
that no spacing reads within it (tanh'', erf'') keeps the finest.  Measured (2026-12-03; the
calibration stops at the first spacing beyond the tolerance):

    factor     h = 0.02   0.025    0.03    0.04    0.05    0.06
    softplus   1e-12      6e-12    2e-11   9e-11   4e-10   1e-9 (beyond)
    sigmoid    4e-12      1e-11    4e-11   2e-10   9e-10   3e-9
    sin        9e-12      3e-11    1e-10   6e-10   2e-9
    GELU       8e-11      3e-10    9e-10   5e-9
    swish      2e-11      7e-11    2e-10   1e-9 (beyond)
    tanh       5e-10      2e-9
    tanh''     1e-8

Beyond the cells tested, G is smoother in both directions (the Gaussian of width s smooths f).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .factors import Factor
from .rules import rule_for_code
from .stored import stored
from .table import TABLE_H_MU, GrowingTable, expectation_at, table_lookup

__all__ = ["SPACING_CELLS", "SPACING_MIN_VARIANCE", "SPACING_REACH", "TABLE_SPACINGS", "TABLE_SPACING_TOL", "interpolation_errors",
           "finest", "per_spacing", "spacing_for", "table_spacing"]

#: the spacings a factor's table may take, finest first (the first is the default of :mod:`.table`)
TABLE_SPACINGS = (TABLE_H_MU, 0.025, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1)
#: the largest interpolation error of a table, relative to its factor's scale max_{|z|≤4}|f|
#: (module docstring); the finest spacing leaves up to 8e-9 on tanh'' at small s
TABLE_SPACING_TOL = 1e-9
#: the calibration's range of μ, |μ| ≤ SPACING_REACH, and of s, the first SPACING_CELLS cells
SPACING_REACH = 10.0
#: the scale of a factor is its root mean square under N(0, SPACING_MIN_VARIANCE), ⟨f²⟩^{1/2}; a
#: tuple whose tabulated variable has a smaller variance reads the finest table (module docstring)
SPACING_MIN_VARIANCE = 0.5
SPACING_CELLS = 12


def interpolation_errors(factor: Factor, folder: Path | None = None) -> np.ndarray:
    """The largest interpolation error of the factor's table at each spacing of
    :data:`TABLE_SPACINGS`, relative to its scale (module docstring), up to the first spacing
    beyond :data:`TABLE_SPACING_TOL` (the coarser ones are not measured: ∞); ∞ where it is not
    finite."""
    def compute():
        U, W = rule_for_code(-64, folder)  # 64-point Gauss–Hermite, weights normalised to φ
        with np.errstate(all="ignore"):
            scale = float(np.sqrt(W[0] @ factor.plus(np.sqrt(SPACING_MIN_VARIANCE) * U[0]) ** 2))
        out = np.full(len(TABLE_SPACINGS), np.inf)
        if not (np.isfinite(scale) and scale > 0):
            return (out,)
        for k, h in enumerate(TABLE_SPACINGS):
            tab, M = GrowingTable(factor, h).extent(SPACING_REACH + 4 * h, SPACING_CELLS * h)
            mu = (np.arange(-round(SPACING_REACH / h), round(SPACING_REACH / h)) + 0.5) * h
            s = np.r_[0.0, 0.37 * h, (np.arange(SPACING_CELLS) + 0.5) * h]
            with np.errstate(all="ignore"):
                exact = np.stack([expectation_at(factor, mu, sk, folder) for sk in s])
                # one "tuple" per s, whose μ reaches far enough not to be clamped
                L = np.zeros((s.size, 2, 2))
                L[:, 1, 0], L[:, 1, 1] = SPACING_REACH, s
                read = table_lookup(tab, M, np.broadcast_to((mu + M) / h, exact.shape).copy(), L, 2, h)
                err = float(np.max(np.abs(read - exact))) / scale
            out[k] = err if np.isfinite(err) else np.inf
            if not out[k] <= TABLE_SPACING_TOL:
                break
        return (out,)
    return stored(folder, "table_spacing", (TABLE_SPACINGS, TABLE_SPACING_TOL, SPACING_REACH, SPACING_CELLS,
                                            str(factor.expr)),
                  compute)[0]


@lru_cache(maxsize=256)
def table_spacing(factor: Factor, folder: Path | None = None) -> float:
    """The spacing h of the factor's table: the coarsest of :data:`TABLE_SPACINGS` that, with every
    finer one, reads it within :data:`TABLE_SPACING_TOL` of its scale (module docstring)."""
    errors = interpolation_errors(factor, folder)
    within = np.asarray(errors) <= TABLE_SPACING_TOL
    n = within.size if within.all() else int(np.argmin(within))
    return TABLE_SPACINGS[max(n - 1, 0)]


def spacing_for(factors, quad) -> float:
    """The spacing of the tables a call reads together (one kernel call, one grid): the finest of
    its factors' spacings (:func:`table_spacing`), or :data:`.table.TABLE_H_MU` where the
    :class:`.context.Quadrature` ``quad`` was made with ``spacing=False``."""
    if not quad.spacing:
        return TABLE_H_MU
    return min(table_spacing(f, quad.tables) for f in factors)


def finest(variances: np.ndarray) -> np.ndarray:
    """Mask of the tuples that read the finest table whatever their factors' spacing: those
    whose tabulated variable has a variance (``variances``) below :data:`SPACING_MIN_VARIANCE`,
    where the factor's spread may be far below the scale the spacing was calibrated against
    (gelu at variance 1e-5: ⟨gelu²⟩^{1/2} ≈ 1.6e-3)."""
    return np.asarray(variances) < SPACING_MIN_VARIANCE


def per_spacing(h: float, variances: np.ndarray, run) -> np.ndarray:
    """The values (T,) of a call whose tables have spacing h, the tuples of :func:`finest`
    (``variances`` (T,)) on the finest grid instead: ``run(sel, spacing)`` computes the tuples
    ``sel`` (a mask, or None for all) on one grid; one call where all tuples share a grid,
    else two."""
    fine = finest(variances) if h != TABLE_H_MU else np.zeros(np.shape(variances), bool)
    if not np.any(fine) or np.all(fine):
        return run(None, TABLE_H_MU if np.any(fine) else h)
    out = np.empty(fine.size)
    for sel, hs in ((fine, TABLE_H_MU), (~fine, h)):
        out[sel] = run(sel, hs)
    return out
