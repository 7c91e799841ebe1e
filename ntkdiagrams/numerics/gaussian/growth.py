"""Quadratic growth of a factor, and whether a Gaussian expectation of factors converges.

A Gaussian expectation ⟨f₁(z_{a₁}) ⋯ f_k(z_{a_k})⟩_K exists only when the factors grow more slowly
than the Gaussian density decays.  The decisive quantity is each factor's *quadratic growth rate*

    c₊ = limsup_{z→+∞} log|f(z)| / z² ,      c₋ = limsup_{z→−∞} log|f(z)| / z² ,

(e^{z²}: c = 1; tanh, polynomials, e^{±z}: c = 0; e^{−z²/2}: c = −½; e^{z³}: c₊ = +∞).  With
c_s = max(c₊, c₋) of the factor in slot s, the covariance C = K[a, a] of the tuple written as
C = L Lᵀ (z = L u, u standard normal), the integrand behaves like exp(−½|u|² + uᵀ Lᵀ diag(c) L u),
so the expectation converges if and only if

    s = λ_max(2 Lᵀ diag(c) L) < 1 ;

for one variable s = 2 c K: ⟨f⟩ diverges when c ≥ 1/(2K) (⟨e^{4z²}⟩ for K ≥ 1/8).  Coinciding
inputs (a singular C) add their rates, as they should.  Using max(c₊, c₋) per slot is exact for
one variable and an upper bound otherwise.

Below divergence the quadrature still fails where the integrand's effective variance K/(1 − s)
is far beyond the variance its nodes are laid out for.  Measured on ⟨e^{kz²}⟩ (one variable,
k = 1, 2, 4, default degrees; exact value (1 − s)^{−1/2}): relative error 2e-14 at s = 0.5,
1.6e-9 at s = 0.6, 9e-4 at s = 0.7, and a factor 2000 at s = 0.8; for two correlated variables
(ρ = ½, fast path) 7e-11 at s = 0.5, 9e-8 at s = 0.7, 1e-3 at s = 0.9.  Tuples with
:data:`ACCURATE_GROWTH` < s < 1 are therefore refused as inaccurate.

Rates are found symbolically by :func:`quadratic_growth` (structural rules, exact for
exponentials of polynomials, polynomials, bounded functions and their products, quotients and
sums; ``sympy.limit`` of log|f|/z² was measured at 0.4–8 s per factor and is not used) and
numerically where the rules do not apply (:func:`numeric_growth`: log|f| sampled with mpmath at
10⁵ ≤ |z| ≤ 2·10⁵).
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp

from ..activations import z
from ...errors import NumericsError

__all__ = ["ACCURATE_GROWTH", "Interval", "check_integrable", "growth_excess", "numeric_growth",
           "quadratic_growth"]

#: largest s = λ_max(2 Lᵀ diag(c) L) (see the module docstring) at which the quadrature is
#: trusted: relative error ≤ 1.6e-9 measured at s = 0.6 (9e-4 at s = 0.7)
ACCURATE_GROWTH = 0.6

#: bounds on the rates used in the eigenvalue test (±∞ and super-Gaussian decay made finite)
RATE_CLIP = 1e6

#: numeric rates smaller than this in magnitude are taken as 0 (e^{κz} adds κ·1e-5 at the
#: sample points of :func:`numeric_growth`)
NUMERIC_RATE_RESOLUTION = 1e-3

#: (lower, upper) bounds of log|f|/z² as z → +∞; None: unknown
Interval = tuple

_INF = math.inf
_BOUNDED = (sp.tanh, sp.erf, sp.atan)
_OSCILLATING = (sp.sin, sp.cos)


def _polynomial_degree(e: sp.Expr):
    """(degree, leading coefficient) when e is a polynomial in z with real coefficients, else None."""
    if not e.is_polynomial(z):
        return None
    try:
        p = sp.Poly(e, z)
        return p.degree(), float(p.LC())
    except (sp.PolynomialError, TypeError, ValueError):
        return None


def _exact(r: float) -> Interval:
    return (r, r)


def _rate_of_exponent(a: sp.Expr) -> Interval:
    """Bounds of a/z² as z → +∞ for the argument a of exp(a)."""
    poly = _polynomial_degree(a)
    if poly is not None:
        deg, lead = poly
        if deg <= 1:
            return _exact(0.0)
        if deg == 2:
            return _exact(lead)
        return _exact(math.copysign(_INF, lead))
    if isinstance(a, _BOUNDED + _OSCILLATING):
        return _exact(0.0)  # a bounded exponent: e^a between two constants
    return (None, None)


def _interval(e: sp.Expr) -> Interval:
    """(lo, hi) bounds of log|e(z)| / z² as z → +∞ by structural rules; None where unknown."""
    if not e.has(z):
        try:
            v = complex(e)
        except (TypeError, ValueError):
            return (None, None)
        if not (math.isfinite(v.real) and math.isfinite(v.imag)):
            return (None, None)
        return _exact(-_INF) if v == 0 else _exact(0.0)
    if _polynomial_degree(e) is not None:
        return _exact(0.0)
    if isinstance(e, sp.Mul):
        los, his = zip(*(_interval(a) for a in e.args))
        return (_total(los), _total(his))
    if isinstance(e, sp.Add):
        parts = [_interval(a) for a in e.args]
        his = [h for _, h in parts]
        if any(h is None for h in his):
            return (None, None)
        hi = max(his)
        top = [p for p in parts if p[1] == hi]
        # the sum keeps the rate of its largest terms unless they cancel to a Gaussian tail,
        # which needs erf-like functions (1 − erf(z) ~ e^{−z²}); exponentials of polynomials,
        # polynomials and tanh cancel at most to e^{−κz} (rate 0)
        if all(lo == hi for lo, _ in top) and (len(top) == 1 or not e.has(sp.erf, sp.erfc)):
            return (hi, hi)
        return (None, hi)
    if isinstance(e, sp.Pow):
        base, p = e.args
        if p.has(z):
            return _rate_of_exponent(p * sp.log(base)) if base.is_positive and base.is_number \
                else (None, None)
        try:
            p = float(p)
        except TypeError:
            return (None, None)
        lo, hi = _interval(base)
        if p > 0:
            return (_scale(lo, p), _scale(hi, p))
        if p < 0:
            return (_scale(hi, p), _scale(lo, p))
        return _exact(0.0)
    if isinstance(e, sp.exp):
        return _rate_of_exponent(e.args[0])
    if isinstance(e, (sp.cosh, sp.sinh)):
        lo, hi = _rate_of_exponent(e.args[0])
        lo2, hi2 = _rate_of_exponent(-e.args[0])
        if hi is None or hi2 is None:
            return (None, None)
        top = max(hi, hi2)
        return (top, top) if lo == hi and lo2 == hi2 else (None, top)
    if isinstance(e, _BOUNDED):
        poly = _polynomial_degree(e.args[0])
        if poly is not None and poly[0] >= 1:
            return _exact(0.0)  # tends to a non-zero constant
        return (None, 0.0)
    if isinstance(e, _OSCILLATING):
        return (-_INF, 0.0)
    if isinstance(e, sp.Abs):
        return _interval(e.args[0])
    if isinstance(e, sp.log):
        lo, hi = _interval(e.args[0])
        if hi is None or hi == _INF:
            return (None, None)
        if lo == hi and (lo != 0 or _polynomial_degree(e.args[0]) is not None):
            return _exact(0.0)  # log a ~ r z² or ~ d log z
        return (None, 0.0)
    if isinstance(e, sp.Heaviside):
        return (-_INF, 0.0)
    return (None, None)


def _total(values):
    if any(v is None for v in values):
        return None
    if _INF in values and -_INF in values:
        return None
    return float(sum(values))


def _scale(v, p: float):
    return None if v is None else v * p


def numeric_growth(expr: sp.Expr, side: int = 1):
    """limsup log|f|/z² towards side·∞ estimated from f at side·z, 10⁵ ≤ z ≤ 2·10⁵ (mpmath: no
    overflow), where e^{κz} adds κ·10⁻⁵ and z^p adds 2.3e-9 p; magnitudes below
    :data:`NUMERIC_RATE_RESOLUTION` are 0.  A first look at 50 ≤ z ≤ 100 returns +∞ for growth
    beyond e^{100 z²} (e^{e^z} would take mpmath seconds at 10⁵).  None when f cannot be evaluated
    or vanishes at every sample (in 15 digits 1 − tanh z does, which says nothing of its rate)."""
    import mpmath

    def estimate(points):
        best = None
        for t in points:
            v = abs(fn(mpmath.mpf(side * t)))
            if v == 0:
                continue
            if not mpmath.isfinite(v):
                return _INF
            r = float(mpmath.log(v)) / float(t) ** 2
            best = r if best is None else max(best, r)
        return best

    try:
        fn = sp.lambdify(z, expr, modules="mpmath")
        first = estimate(np.linspace(50.0, 100.0, 3))
        if first is not None and first > 100:
            return _INF
        best = estimate(np.linspace(1e5, 2e5, 9))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, NameError, AttributeError):
        return None
    if best is None:
        return None
    return 0.0 if abs(best) < NUMERIC_RATE_RESOLUTION else float(best)


def quadratic_growth(expr: sp.Expr, side: int = 1):
    """The rate c = limsup log|f(z)|/z² as z → side·∞ (side = ±1) of an expression in z without
    kinks: symbolic rules where they apply, :func:`numeric_growth` otherwise; ±inf for growth or
    decay faster than any Gaussian; None when neither way finds it.

    >>> quadratic_growth(sp.exp(z**2) * sp.tanh(z)), quadratic_growth(sp.exp(-z**2 / 2), -1)
    (1.0, -0.5)
    >>> quadratic_growth(sp.tanh(z) ** 4), quadratic_growth(sp.exp(z**3), -1)
    (0.0, -inf)
    """
    e = expr if side > 0 else expr.subs(z, -z)
    _lo, hi = _interval(e)
    if hi is not None:
        return float(hi)
    return numeric_growth(expr, side)


def growth_excess(rates, C: np.ndarray) -> np.ndarray:
    """s = λ_max(2 Lᵀ diag(c) L) for covariances C = L Lᵀ of shape (n, k, k) and rates c (k,)."""
    c = np.clip(np.asarray(rates, dtype=float), -RATE_CLIP, RATE_CLIP)
    lam, U = np.linalg.eigh(C)
    L = U * np.sqrt(np.clip(lam, 0.0, None))[:, None, :]
    B = np.einsum("nsi,s,nsj->nij", L, c, L)
    return 2.0 * np.linalg.eigvalsh(B)[:, -1]


def check_integrable(factors, rates, K: np.ndarray, tuples: np.ndarray) -> None:
    """NumericsError for the first index tuple whose expectation diverges (s ≥ 1) or cannot be
    computed accurately (:data:`ACCURATE_GROWTH` < s < 1); ``rates`` are the slots' c (None:
    unknown, not checked).  The error carries ``inputs`` (the tuple) and ``reason``."""
    c = [0.0 if r is None else r for r in rates]
    if max(c) <= 0 or tuples.shape[0] == 0:
        return
    C = K[tuples[:, :, None], tuples[:, None, :]]
    s = growth_excess(c, C)
    bad = np.flatnonzero(s > ACCURATE_GROWTH)
    if bad.size == 0:
        return
    i = int(bad[0])
    inputs = tuple(int(a) for a in tuples[i])
    raise NumericsError(_message(factors, c, K, inputs, float(s[i])), inputs=inputs,
                        reason="diverges" if s[i] >= 1 else "loses accuracy", growth=float(s[i]))


def _message(factors, c, K, inputs, s: float) -> str:
    """One sentence: the expectation, its inputs, the rates against the variances, the verdict."""
    groups: list = []
    for f, a in zip(factors, inputs):
        if groups and groups[-1][0] == (f, a):
            groups[-1][1] += 1
        else:
            groups.append([(f, a), 1])
    integrand = "·".join(f"[{f}](z_{a})" + (f"^{m}" if m > 1 else "") for (f, a), m in groups)
    rates = ", ".join("∞" if r == _INF else f"{r:.4g}" for r in c)
    rates = f"c = {rates.split(', ')[0]} per factor" if len(set(c)) == 1 else f"c = ({rates}) per factor"
    distinct = sorted(set(inputs))
    variances = ", ".join(f"K_{a}{a} = {K[a, a]:.4g}" for a in distinct)
    if not all(math.isfinite(r) for r in c):
        verdict = "diverges (s = ∞)"
    elif s >= 1:
        verdict = f"diverges (s = {s:.4g} ≥ 1)"
    else:
        verdict = (f"loses accuracy (s = {s:.4g} > {ACCURATE_GROWTH}, beyond what the quadrature "
                   "resolves; it diverges at s = 1)")
    text = (f"the Gaussian expectation ⟨{integrand}⟩_K at inputs {inputs} {verdict}: log|f| grows "
            f"like c·z² with {rates} against the variance {variances}")
    if len(distinct) == 1 and all(math.isfinite(r) for r in c) and K[distinct[0], distinct[0]] > 0:
        total = sum(c)
        text += f"; on one variable s = 2·Σc·K, with Σc = {total:.4g} against 1/(2K) = " \
                f"{1 / (2 * K[distinct[0], distinct[0]]):.4g}"
    elif not all(math.isfinite(r) for r in c):
        text += " (faster than any Gaussian: c = ∞)"
    return text + " (s = λ_max(2 Lᵀ diag(c) L), C = L Lᵀ the inputs' covariance)"
