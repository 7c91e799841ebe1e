"""Lagrange interpolation on 4 and 6 points, shared by the numpy path (:mod:`.table`) and the
compiled kernel (:mod:`.compiled`, which compiles these very functions), so that both
interpolate the table of G(μ, s) with the same formulas.

On the nodes −1, 0, 1, 2 the interpolant of y₋₁, y₀, y₁, y₂ is p(t) = Σ_k ℓ_k(t) y_k; on the
cell [0, 1] it is the cubic c₀ + c₁ t + c₂ t² + c₃ t³.  Its error is
|p(t) − y(t)| ≤ max|y⁗| · |(t+1) t (t−1) (t−2)| / 4! ≤ max|y⁗| · h⁴ · 9/384 on the cell, with h the
grid spacing (here in table units, h = 1).  On the nodes −2 … 3 (:func:`lagrange6`,
:func:`quintic_coefficients`; the table since 2026-12-01) the error is
≤ max|y⁽⁶⁾| · |(t+2)(t+1) t (t−1)(t−2)(t−3)| / 6! ≤ max|y⁽⁶⁾| · h⁶ · 225/46080 on the cell.
"""
from __future__ import annotations

__all__ = ["cubic_coefficients", "lagrange4", "lagrange6", "quintic_coefficients"]


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


def lagrange6(t):
    """6-point Lagrange weights (ℓ₋₂, ℓ₋₁, ℓ₀, ℓ₁, ℓ₂, ℓ₃) of the nodes −2 … 3 at t (numpy arrays
    or, compiled by numba, scalars).

    >>> [float(w) for w in lagrange6(1.0)]
    [-0.0, 0.0, -0.0, 1.0, 0.0, -0.0]
    """
    a, b, c, d, e, f = t + 2, t + 1, t, t - 1, t - 2, t - 3
    # ℓ_k = (Π_{j≠k} (t − t_j)) / Π_{j≠k} (t_k − t_j): prefix and suffix products of the factors
    # and the reciprocal denominators: 18 multiplications and no division (the compiled kernel
    # reads the table by these weights per point; a division costs several multiplications)
    ab, ef = a * b, e * f
    abc, def_ = ab * c, d * ef
    abcd, cdef = abc * d, c * def_
    return (-(1 / 120) * (b * cdef), (1 / 24) * (a * cdef), -(1 / 12) * (ab * def_),
            (1 / 12) * (abc * ef), -(1 / 24) * (abcd * f), (1 / 120) * (abcd * e))


def quintic_coefficients(ym2, ym1, y0, y1, y2, y3):
    """Coefficients (c₀ … c₅) in x of the quintic through (−2, ym2), (−1, ym1), (0, y0), (1, y1),
    (2, y2), (3, y3): the interpolant on the table cell [i, i+1] (numpy arrays or scalars).

    >>> [float(c) for c in quintic_coefficients(-32.0, -1.0, 0.0, 1.0, 32.0, 243.0)]   # x⁵
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    """
    return (y0,
            ym2 * (1 / 20) - ym1 * 0.5 - y0 * (1 / 3) + y1 - y2 * 0.25 + y3 * (1 / 30),
            -ym2 * (1 / 24) + ym1 * (2 / 3) - y0 * 1.25 + y1 * (2 / 3) - y2 * (1 / 24),
            -(ym2 + ym1) * (1 / 24) + y0 * (5 / 12) - y1 * (7 / 12) + y2 * (7 / 24) - y3 * (1 / 24),
            (ym2 + y2) * (1 / 24) - (ym1 + y1) * (1 / 6) + y0 * 0.25,
            -ym2 * (1 / 120) + ym1 * (1 / 24) - y0 * (1 / 12) + y1 * (1 / 12) - y2 * (1 / 24)
            + y3 * (1 / 120))
