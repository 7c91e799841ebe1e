"""Factor preparation: a univariate factor f(z) made ready for integration.

A factor is a sympy expression in :data:`ntkdiagrams.numerics.activations.z` (an activation
derivative σ^{(k)}, a power or product of them; docs/conventions.md for σ and z).  It is split as

    f(z) = g(z) + c δ(z),       c = h(0) for the delta part δ(z) h(z),

so that δ(z)·Max(0, z) = 0, and g is cut into its two analytic *branches* g₊ (z > 0) and g₋
(z < 0), each continued to the whole line: Max(0, z) → z | 0, Heaviside(z) → 1 | 0, smooth
functions unchanged.  g(0) uses Heaviside(0) = 1/2 (sympy's convention).  Kinks must sit at z = 0;
only DiracDelta(z) itself (first order) is accepted.

Growth.  Each factor carries the quadratic growth rates c± = limsup log|g|/z² of its branches at
±∞ (:func:`.growth.quadratic_growth`), from which :func:`.growth.check_integrable` tells whether
an expectation of factors converges and can be computed accurately.

Exponential forms.  A smooth g may be a rational function of one exponential,

    g(z) = R(E),   E = e^{κz},   R = P/Q with polynomials P, Q of degree ≤ d,

as tanh z = (E − 1)/(E + 1) with E = e^{2z}, sech² z = 4E/(E + 1)², the sigmoid and all their
powers and derivatives.  It gives the addition theorem g(μ + s u) = R(e^{κμ} · e^{κsu}), which
the fast path uses to evaluate a factor on many nodes with one multiplication and a rational
function per point instead of a transcendental function (:mod:`.nested`, :mod:`.compiled`).
E^d must stay far from overflow (e^{709}): the addition theorem is used only where
|κz|·d ≤ :data:`EXPO_MAX_EXPONENT`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, NamedTuple

import sympy as sp

from ..activations import lambdify_numpy, lambdify_z, z
from .growth import quadratic_growth
from ...errors import InputError, UnsupportedError

__all__ = ["EXPO_MAX_EXPONENT", "KINK_FUNCTIONS", "ExponentialForm", "Factor", "as_sympy",
           "canonical_z", "exponential_form", "parity", "prepare_factor"]

#: Bound on |κ z|·d for evaluating a factor R(e^{κz}) (R of degree d) by its addition
#: theorem: E^d must stay far from overflow (e^709).
EXPO_MAX_EXPONENT = 600.0

#: sympy functions with a kink or jump; after branching at z = 0 none may remain.
KINK_FUNCTIONS = (sp.Max, sp.Min, sp.Heaviside, sp.Abs, sp.sign, sp.Piecewise)


class ExponentialForm(NamedTuple):
    """g(z) = R(E), E = e^{κz}, R = num/den rational of degree d (coefficients ascending)."""

    kappa: float
    R: Callable
    degree: int
    num: tuple
    den: tuple


@dataclass(frozen=True, eq=False)
class Factor:
    """A univariate factor f(z) = g(z) + c δ(z) with analytic branches of g on z > 0 / z < 0.

    Compared by identity: :func:`prepare_factor` returns one object per expression, and the
    tables of the fast path are cached per object."""

    expr: sp.Expr
    delta: float            # c
    at0: float              # g(0), Heaviside(0) = 1/2
    plus: Callable          # g on z > 0, continued analytically to all z
    minus: Callable         # g on z < 0
    smooth: bool            # plus and minus are the same expression
    zero_plus: bool         # g ≡ 0 on z > 0
    zero_minus: bool
    degree: int | None      # polynomial degree of the branches, None if not polynomial
    expo: ExponentialForm | None = None  # g(z) = R(e^{κz}) (smooth factors only)
    growth: tuple = (0.0, 0.0)  # (c₊, c₋): limsup log|g|/z² at ±∞, None where unknown (.growth)
    poly: tuple | None = None   # polynomial branches: (coefficients of g₊, of g₋), ascending
    parity: int = 0             # smooth g without delta: +1 even, −1 odd (shown symbolically), else 0


def as_sympy(expr, what: str) -> sp.Basic:
    """A sympy object, or a plain int/float made into one; anything else (text!) is refused:
    user text goes through :mod:`ntkdiagrams.language.expressions`, never through sympify."""
    if isinstance(expr, sp.Basic):
        return expr
    if isinstance(expr, bool) or not isinstance(expr, (int, float)):
        raise InputError(f"{what} {expr!r} is not a sympy expression (parse text with ntkdiagrams.language.expressions first)")
    return sp.Integer(expr) if isinstance(expr, int) else sp.Float(expr)


def canonical_z(expr) -> sp.Expr:
    """The factor as an expression in the activation variable z (a plain ``Symbol('z')``
    without assumptions is renamed to it); InputError for other symbols."""
    e = as_sympy(expr, "factor")
    if not isinstance(e, sp.Expr):
        raise InputError(f"factor {expr!r} is not a sympy expression in z")
    other = e.free_symbols - {z}
    # a plain Symbol('z') without assumptions is accepted as the activation variable
    ren = {s: z for s in other if getattr(s, "name", None) == "z"}
    if ren:
        e = e.xreplace(ren)
        other = e.free_symbols - {z}
    if other:
        raise InputError(f"factor {e} contains symbols {sorted(map(str, other))} other than z; "
                         "factors must be univariate expressions in ntkdiagrams.numerics.activations.z")
    return e


def _branch(g: sp.Expr, sign: int) -> sp.Expr:
    zs = sp.Symbol("zbranch", positive=True)
    b = g.subs(z, sign * zs)
    b = b.subs(zs, sign * z)
    return b


_E = sp.Symbol("E_", positive=True)


def exponential_form(g: sp.Expr) -> ExponentialForm | None:
    """:class:`ExponentialForm` (κ, R, d, …) with g(z) = R(e^{κz}) for a rational function R
    of degree d, or None.

    κ is the greatest common divisor of the rates of the exponentials in g (rewritten with
    exp), and E^step replaces E when R only contains powers of E^step; R is kept factored
    (fewer operations, no cancellation in (E − 1)²).

    >>> e = exponential_form(sp.tanh(z))
    >>> e.kappa, e.degree, e.num, e.den
    (2.0, 1, (-1.0, 1.0), (1.0, 1.0))
    >>> exponential_form(sp.erf(z)) is None
    True
    """
    try:
        return _exponential_form_of(g)
    except (sp.PolynomialError, TypeError, ValueError, NotImplementedError, AttributeError):
        return None  # sympy could not bring it into that form: factors are evaluated directly


def _exponential_form_of(g: sp.Expr):
    if g.is_polynomial(z):
        return None
    r = g.rewrite(sp.exp)
    exps = [e for e in r.atoms(sp.exp) if e.has(z)]
    if not exps:
        return None
    coefs = []
    for e in exps:
        c = sp.cancel(e.args[0] / z)
        if c.free_symbols or not c.is_Rational:
            return None
        coefs.append(c)
    kappa = functools.reduce(sp.gcd, coefs)
    R = r.xreplace({e: _E ** (c / kappa) for e, c in zip(exps, coefs)})
    if R.has(z):
        return None
    R = sp.cancel(sp.together(R))
    num, den = sp.fraction(R)
    if not (num.is_polynomial(_E) and den.is_polynomial(_E)):
        return None
    powers = [m[0] for q in (num, den) for m in sp.Poly(q, _E).monoms()]
    step = functools.reduce(math.gcd, powers, 0) or 1
    if step > 1:  # R(E) = R₂(E^step): use E^step as the variable
        num, den = (q.xreplace({_E: _E ** sp.Rational(1, step)}) for q in (num, den))
        kappa *= step
    d = max(sp.degree(num, _E), sp.degree(den, _E))
    R = sp.factor(num) / sp.factor(den)  # factored: fewer operations, no cancellation in (E - 1)²
    coeffs = [tuple(float(c) for c in reversed(sp.Poly(q, _E).all_coeffs())) for q in (num, den)]
    return ExponentialForm(float(kappa), lambdify_numpy(_E, R), int(d), *coeffs)


@lru_cache(maxsize=512)
def prepare_factor(e: sp.Expr) -> Factor:
    """The :class:`Factor` of an expression in z (see the module docstring); cached, so that
    equal expressions give the same object.  UnsupportedError for deltas other than
    DiracDelta(z), powers of deltas, kinks away from z = 0 and branches that are not finite."""
    for d in e.atoms(sp.DiracDelta):
        if len(d.args) != 1 or d.args[0] != z:
            raise UnsupportedError(
                f"factor {e}: only DiracDelta(z) itself is supported, not {d} "
                "(derivatives of delta or deltas at other points)")
    D = sp.Symbol("DELTA_MARKER")
    e2 = e.subs(sp.DiracDelta(z), D) if e.has(sp.DiracDelta) else e
    if e2.has(sp.DiracDelta):
        raise UnsupportedError(f"factor {e}: nested Dirac delta")
    regular = e2.subs(D, 0)
    delta = 0.0
    if e2.has(D):
        h = sp.diff(e2, D)
        if h.has(D):
            raise UnsupportedError(f"factor {e}: a power or nested function of DiracDelta(z) "
                                   "is not a distribution")
        h0 = h.subs(z, 0)
        try:
            delta = float(h0)
        except TypeError:
            raise UnsupportedError(f"factor {e}: the coefficient of DiracDelta(z) has no value "
                                   f"at z = 0 ({h0})") from None
        if not math.isfinite(delta):
            raise UnsupportedError(f"factor {e}: the coefficient of DiracDelta(z) is infinite at 0")
    plus = _branch(regular, +1)
    minus = _branch(regular, -1)
    for b in (plus, minus):
        if b.has(*KINK_FUNCTIONS):
            raise UnsupportedError(
                f"factor {e}: piecewise functions must have their kinks at z = 0 "
                f"(branch {b} still contains a kink)")
        if b.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            raise UnsupportedError(f"factor {e}: branch {b} is not finite")
    try:
        at0 = float(regular.subs(z, 0))
    except TypeError:
        raise UnsupportedError(f"factor {e}: no finite value at z = 0") from None
    degree = None
    if plus.is_polynomial(z) and minus.is_polynomial(z):
        degree = int(max(sp.degree(plus, z) if plus != 0 else 0,
                         sp.degree(minus, z) if minus != 0 else 0))
    poly = None
    if degree is not None:
        poly = tuple(tuple(float(c) for c in reversed(sp.Poly(b, z).all_coeffs())) if b != 0
                     else (0.0,) for b in (plus, minus))
    smooth = sp.simplify(plus - minus) == 0
    fp = lambdify_z(plus)
    fm = fp if smooth else lambdify_z(minus)
    growth = (-math.inf if plus == 0 else quadratic_growth(plus, +1),
              -math.inf if minus == 0 else quadratic_growth(minus, -1))
    return Factor(expr=e, delta=delta, at0=at0, plus=fp, minus=fm, smooth=smooth,
                  zero_plus=(plus == 0), zero_minus=(minus == 0), degree=degree,
                  expo=exponential_form(plus) if smooth else None, growth=growth, poly=poly,
                  parity=parity(plus) if smooth and delta == 0 else 0)


def parity(g: sp.Expr) -> int:
    """+1 when g(−z) = g(z), −1 when g(−z) = −g(z), shown by sympy's expansion of g(−z) ∓ g(z)
    (tanh, erf, sin, Gaussians and their derivatives, powers and products: sympy writes
    f(−z) = ±f(z) itself); 0 otherwise (no claim)."""
    r = g.subs(z, -z)
    if sp.expand(r - g) == 0:
        return 1
    if sp.expand(r + g) == 0:
        return -1
    return 0
