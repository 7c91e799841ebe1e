"""Four-point Lagrange interpolation, shared by the numpy path (:mod:`.table`) and the
compiled kernel (:mod:`.compiled`, which compiles these very functions), so that both
interpolate the table of G(μ, s) with the same formulas.

On the nodes −1, 0, 1, 2 the interpolant of y₋₁, y₀, y₁, y₂ is p(t) = Σ_k ℓ_k(t) y_k; on the
cell [0, 1] it is the cubic c₀ + c₁ t + c₂ t² + c₃ t³.  Its error is
|p(t) − y(t)| ≤ max|y⁗| · |(t+1) t (t−1) (t−2)| / 4! ≤ max|y⁗| · h⁴ · 9/384 on the cell, with h the
grid spacing (here in table units, h = 1).
"""
from __future__ import annotations

__all__ = ["cubic_coefficients", "lagrange4"]


def lagrange4(t):
    """4-point Lagrange weights (ℓ₋₁, ℓ₀, ℓ₁, ℓ₂) of the nodes −1, 0, 1, 2 at t (numpy arrays
    or, compiled by numba, scalars).

    >>> lagrange4(0.0)
    (-0.0, 1.0, 0.0, -0.0)
    """
    return ((-t * (t - 1) * (t - 2) / 6), ((t + 1) * (t - 1) * (t - 2) / 2),
            (-(t + 1) * t * (t - 2) / 2), ((t + 1) * t * (t - 1) / 6))


def cubic_coefficients(ym, y0, y1, y2):
    """Coefficients (c₀, c₁, c₂, c₃) in x of the cubic through (−1, ym), (0, y0), (1, y1),
    (2, y2): the interpolant on the table cell [i, i+1] (numpy arrays or scalars).

    >>> cubic_coefficients(-1.0, 0.0, 1.0, 8.0)   # x³
    (0.0, 0.0, 0.0, 1.0)
    """
    return (y0, -ym * (1 / 3) - y0 * 0.5 + y1 - y2 * (1 / 6), (ym + y1) * 0.5 - y0,
            (y0 - y1) * 0.5 + (y2 - ym) * (1 / 6))
