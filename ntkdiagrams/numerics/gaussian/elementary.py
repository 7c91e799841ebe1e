"""Elementary forms: a smooth factor without an exponential form, written as data.

The compiled kernel (:mod:`.compiled`) cannot call sympy or numpy functions of a factor; it
evaluates factors from numbers.  :mod:`.factors` gives it the exponential forms
g(z) = R(e^{κz}) (tanh, sigmoid, …).  This module gives it the rest of the smooth activations
in use — GELU, erf, softplus, swish, sin and their derivatives, powers and products — as a short
sum of terms

    g(z) = Σ_t P_t(z) · Π_{a ∈ atoms(t)} B_a(z),

P_t a polynomial in z and each atom B_a one of a fixed set of functions with numeric
parameters (κ, λ, μ), evaluated by code in the kernel:

=========  ==============================================  ===============================
code       B(z)                                            from
=========  ==============================================  ===============================
ERF        erf(κ z + λ)                                    GELU = z/2 (1 + erf(z/√2)), erf
GAUSS      exp(κ z² + λ z)                                  derivatives of erf and GELU
SOFTPLUS   μ + log(1 + e^{κ z + λ})  (evaluated stably)    softplus
SIN, COS   sin(κ z + λ), cos(κ z + λ)                       sin
EXPO       R(e^{κ z}), an :class:`.factors.ExponentialForm`  swish = z · sigmoid, softplus'
=========  ==============================================  ===============================

An atom may repeat in a term (erf², a power of a GELU factor).  The decomposition is structural,
with sympy's own machinery: ``sp.expand`` and ``Add.make_args`` give the terms, ``Mul.make_args``
their factors; a factor is a number, a power zᵖ, an atom (its argument read with ``sp.Poly``), a
positive integer power of an atom, or else part of the term's exponential part, and the
exponential parts of the terms with the same atoms are summed and brought to one form R(e^{κz})
by :func:`.factors.exponential_form`.  Terms with the same atoms and the same exponential part
share one polynomial.  No text is parsed and nothing is evaluated but numbers.

For speed the kernel reads a form, on |z| < FORM_TABLE_Z, from its piecewise polynomial
(:func:`form_table`, built from the form when the form is built and checked against it), and
evaluates the terms and atoms only beyond; :func:`evaluate_form` and :func:`evaluate_table`
are the numpy versions of both.

A guard against a wrong decomposition: when a form is built, it is evaluated
(:func:`evaluate_form`, numpy) against the lambdified expression at test points on
[−FORM_CHECK_RANGE, FORM_CHECK_RANGE]; if they differ by more than FORM_CHECK_TOL (relative to
the value plus its size near 0), no form is returned and the factor keeps the numpy path.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
import sympy as sp

from ..activations import lambdify_z, z
from .factors import ExponentialForm, exponential_form

__all__ = ["ATOM_COS", "ATOM_ERF", "ATOM_EXPO", "ATOM_GAUSS", "ATOM_SIN", "ATOM_SOFTPLUS",
           "Atom", "ElementaryForm", "FORM_CHECK_RANGE", "FORM_CHECK_TOL", "FORM_MAX_ATOMS",
           "FORM_MAX_TERMS", "FORM_TABLE_DEGREE", "FORM_TABLE_H", "FORM_TABLE_TOL", "FORM_TABLE_Z",
           "Term", "check_form", "elementary_form", "evaluate_form", "evaluate_table",
           "form_table", "zero_order"]

#: atom codes (the kernel's switch, :mod:`.compiled`)
ATOM_ERF, ATOM_GAUSS, ATOM_SOFTPLUS, ATOM_SIN, ATOM_COS, ATOM_EXPO = range(6)
#: at most this many terms per form and atoms per term (else: no form, the numpy path)
FORM_MAX_TERMS, FORM_MAX_ATOMS = 16, 4
#: the check of a new form against the lambdified expression: points on ±FORM_CHECK_RANGE,
#: |form − expression| ≤ FORM_CHECK_TOL (|expression| + max_{|z| ≤ 1} |expression|)
FORM_CHECK_RANGE, FORM_CHECK_TOL = 12.0, 1e-12
#: the piecewise polynomial of a form (:func:`form_table`): cells of width FORM_TABLE_H on
#: [−FORM_TABLE_Z, FORM_TABLE_Z], degree FORM_TABLE_DEGREE, accepted where it is within
#: FORM_TABLE_TOL (|g| + max_{|z| ≤ 1} |g|) of the form
FORM_TABLE_Z, FORM_TABLE_H, FORM_TABLE_DEGREE, FORM_TABLE_TOL = 32.0, 1.0 / 32.0, 7, 5e-14


class Atom(NamedTuple):
    """B(z) of code ``code`` with parameters κ, λ, μ (module docstring); ``expo`` for EXPO."""

    code: int
    kappa: float
    shift: float = 0.0
    offset: float = 0.0
    expo: ExponentialForm | None = None


class Term(NamedTuple):
    """P(z) · Π_i B_{atoms[i]}(z), P with ascending coefficients ``poly``; ``atoms`` index
    the form's atoms (a repeated index: a power)."""

    poly: tuple
    atoms: tuple


class ElementaryForm(NamedTuple):
    """g(z) = Σ terms (module docstring); ``atoms``: the distinct atoms, each evaluated once
    per point; ``table``: the piecewise polynomial of :func:`form_table`, or None;
    ``power``: q of g = z^q h on the table."""

    atoms: tuple
    terms: tuple
    table: np.ndarray | None = None
    power: int = 0


class _NoForm(Exception):
    """The expression does not decompose into the atoms."""


def elementary_form(g: sp.Expr) -> ElementaryForm | None:
    """The :class:`ElementaryForm` of a smooth expression g in z, or None where g has no such
    form or the form fails the check against the lambdified g.

    >>> f = elementary_form(sp.erf(z) * z)
    >>> [a.code for a in f.atoms], f.terms
    ([0], (Term(poly=(0.0, 1.0), atoms=(0,)),))
    >>> elementary_form(sp.atan(z)) is None
    True
    """
    try:
        return _form_cached(g)
    except TypeError:  # an unhashable argument
        return None


@lru_cache(maxsize=512)
def _form_cached(g: sp.Expr) -> ElementaryForm | None:
    if not isinstance(g, sp.Expr) or g.free_symbols - {z}:
        return None
    try:
        form = _decompose(g)
        if not check_form(form, g):
            return None
        table, q = form_table(form, lambdify_z(g))
        return form._replace(table=table, power=q)
    except (_NoForm, ArithmeticError, LookupError, TypeError, ValueError, NotImplementedError,
            AttributeError, sp.polys.polyerrors.BasePolynomialError):
        return None  # sympy could not bring g into that form: the numpy path


def _linear(arg: sp.Expr):
    """(κ, λ) with arg = κ z + λ, κ ≠ 0; _NoForm otherwise."""
    p = sp.Poly(arg, z)
    if p.degree() != 1:
        raise _NoForm
    lam, kap = (float(c) for c in reversed(p.all_coeffs()))
    return kap, lam


def _atom(f: sp.Expr) -> tuple[Atom, float] | None:
    """(atom, constant factor) for an atom f, None when f is not one."""
    if not f.has(z):
        return None
    if f.func == sp.erf:
        return Atom(ATOM_ERF, *_linear(f.args[0])), 1.0
    if f.func in (sp.sin, sp.cos):
        return Atom(ATOM_SIN if f.func == sp.sin else ATOM_COS, *_linear(f.args[0])), 1.0
    if f.func == sp.exp:
        arg = sp.expand(f.args[0])
        if not arg.is_polynomial(z):
            raise _NoForm
        p = sp.Poly(arg, z)
        if p.degree() != 2:
            return None  # e^{κz}: part of the exponential part
        c0, c1, c2 = (float(c) for c in reversed(p.all_coeffs()))
        return Atom(ATOM_GAUSS, c2, c1), float(np.exp(c0))
    if f.func == sp.log:
        # log(a + b e^{κz+λ₀}) = log a + log(1 + e^{κz + λ₀ + log(b/a)}), a, b > 0
        a, rest = f.args[0].as_independent(z, as_Add=True)
        b, e = rest.as_independent(z, as_Add=False)
        if e.func != sp.exp or not (a.is_number and b.is_number) or not (a > 0 and b > 0):
            raise _NoForm
        kap, lam = _linear(sp.expand(e.args[0]))
        return Atom(ATOM_SOFTPLUS, kap, lam + float(sp.log(b / a)), float(sp.log(a))), 1.0
    return None


def _decompose(g: sp.Expr) -> ElementaryForm:
    # per term: (power of z, atoms) -> Σ coefficient · exponential part
    parts: dict = {}
    for term in sp.Add.make_args(sp.expand(g)):
        c, p, atoms, expo = 1.0, 0, [], sp.Integer(1)
        for f in sp.Mul.make_args(term):
            if not f.has(z):
                c *= float(f)
                continue
            base, n = f.as_base_exp()
            if base == z and n.is_Integer and n > 0:
                p += int(n)
                continue
            if not (n.is_Integer and n > 0):
                base, n = f, sp.Integer(1)
            got = _atom(base)
            if got is None:
                expo *= f
                continue
            atom, const = got
            c *= const ** int(n)
            atoms += [atom] * int(n)
        if len(atoms) > FORM_MAX_ATOMS:
            raise _NoForm
        key = (p, tuple(sorted(atoms, key=lambda a: a[:4])))
        parts[key] = parts.get(key, sp.Integer(0)) + sp.Float(c) * expo
    # per (atoms, exponential part): the polynomial in z
    polys: dict = {}
    forms: dict = {None: None}  # exponential part -> its form
    for (p, atoms), e in parts.items():
        e = sp.cancel(sp.together(e))
        if e == 0:
            continue
        if e.has(z):
            if e not in forms:
                forms[e] = exponential_form(e)
            if forms[e] is None:
                raise _NoForm
            c, key = 1.0, (atoms, e)
        else:
            c, key = float(e), (atoms, None)
        coef = polys.setdefault(key, {})
        coef[p] = coef.get(p, 0.0) + c
    terms, distinct = [], {}
    for (atoms, e), coef in polys.items():
        ef = forms[e]
        poly = [0.0] * (max(coef) + 1)
        for p, c in coef.items():
            poly[p] = c
        if ef is not None:
            atoms = atoms + (Atom(ATOM_EXPO, ef.kappa, expo=ef),)
        if len(atoms) > FORM_MAX_ATOMS:
            raise _NoForm
        terms.append(Term(tuple(poly), tuple(distinct.setdefault(a, len(distinct)) for a in atoms)))
    if not terms or len(terms) > FORM_MAX_TERMS:
        raise _NoForm
    return ElementaryForm(tuple(distinct), tuple(terms))


def _atom_values(a: Atom, x: np.ndarray) -> np.ndarray:
    import scipy.special

    if a.code == ATOM_ERF:
        return scipy.special.erf(a.kappa * x + a.shift)
    if a.code == ATOM_GAUSS:
        return np.exp(x * (a.kappa * x + a.shift))
    if a.code == ATOM_SOFTPLUS:
        t = a.kappa * x + a.shift
        return a.offset + (np.maximum(t, 0.0) + np.log1p(np.exp(-np.abs(t))))
    if a.code in (ATOM_SIN, ATOM_COS):
        return (np.sin if a.code == ATOM_SIN else np.cos)(a.kappa * x + a.shift)
    # EXPO: P(E)/Q(E) with E = e^{−|κx|} (coefficient rows P, Q for κx ≤ 0, reversed above)
    ef = a.expo
    d = ef.degree
    num = np.zeros(d + 1)
    den = np.zeros(d + 1)
    num[:len(ef.num)], den[:len(ef.den)] = ef.num, ef.den
    t = ef.kappa * x
    e = np.exp(-np.abs(t))
    pos = t > 0
    return (np.where(pos, np.polyval(num, e), np.polyval(num[::-1], e))
            / np.where(pos, np.polyval(den, e), np.polyval(den[::-1], e)))


def evaluate_form(form: ElementaryForm, x) -> np.ndarray:
    """g(x) from its form, in numpy (the same formulas as the kernel's)."""
    x = np.asarray(x, dtype=float)
    b = [_atom_values(a, x) for a in form.atoms]
    out = np.zeros_like(x)
    for t in form.terms:
        v = np.polyval(np.asarray(t.poly)[::-1], x)
        for i in t.atoms:
            v = v * b[i]
        out += v
    return out


def check_form(form: ElementaryForm, g: sp.Expr) -> bool:
    """The guard: the form equals the lambdified g at test points (where g is finite)."""
    x = np.concatenate([np.linspace(-FORM_CHECK_RANGE, FORM_CHECK_RANGE, 193),
                        np.linspace(-1.0, 1.0, 41) + 1e-3])
    with np.errstate(all="ignore"):
        ref = np.broadcast_to(np.asarray(lambdify_z(g)(x), dtype=float), x.shape)
        got = evaluate_form(form, x)
    ok = np.isfinite(ref)
    if not np.all(np.isfinite(got[ok])) or np.count_nonzero(ok) < x.size // 2:
        return False
    near = np.abs(ref[ok & (np.abs(x) <= 1.0)])
    scale = float(np.max(near)) if near.size else 0.0
    return bool(np.all(np.abs(got[ok] - ref[ok]) <= FORM_CHECK_TOL * (np.abs(ref[ok]) + scale)))


def _chebyshev_to_monomial(deg: int) -> np.ndarray:
    """(deg + 1)²: row k = the monomial coefficients of T_k (integers, exact)."""
    out = np.zeros((deg + 1, deg + 1))
    for k in range(deg + 1):
        c = np.polynomial.chebyshev.cheb2poly(np.eye(deg + 1)[k])
        out[k, :c.size] = c
    return out


def zero_order(fn) -> int:
    """q ≤ 4 with g(z) ~ c z^q at 0 (c ≠ 0), read from |g| at ±1e-4 and ±1e-5; 0 where that is
    not clearly an integer."""
    with np.errstate(all="ignore"):
        v = np.abs(np.asarray(fn(np.array([1e-4, 1e-5, -1e-4, -1e-5])), dtype=float))
    if v.shape != (4,) or not np.all(np.isfinite(v)) or np.any(v == 0):
        return 0
    q = np.log10(v[[0, 2]] / v[[1, 3]])
    r = int(np.rint(q[0]))
    return r if 0 <= r <= 4 and np.all(np.abs(q - r) < 0.05) else 0


def form_table(form: ElementaryForm, fn=None) -> tuple[np.ndarray | None, int]:
    """The form as a piecewise polynomial, for the kernel, and the order q of its zero at 0:
    g(x) = x^q h(x), and on cell i, x ∈ [x_i, x_i + h] with x_i = −Z + i h,
    h(x) ≈ Σ_j c[i, j] t^j, t = 2 (x − x_i)/h − 1 ∈ [−1, 1] (Z, h, degree d: FORM_TABLE_Z,
    FORM_TABLE_H, FORM_TABLE_DEGREE).  Factoring x^q out keeps the table accurate relative to
    g near 0 (z·tanh z at variances 1e-30: deep networks whose kernel shrinks).  h is the
    interpolant at the d + 1 Chebyshev points of each cell (its Chebyshev coefficients by the
    discrete cosine sums, then the exact integer change of basis) of ``fn`` (the lambdified
    expression, the numpy path's values; the form where it is not finite); the interpolation
    error is ≤ 2 (h/4)^{d+1} max|h^{(d+1)}|/(d+1)!, i.e. ≲ 1e-21 · max|h⁽⁸⁾| at the defaults
    (d = 7, h = 1/32: 2048 cells, 128 KB), so rounding (~1e-15) is what remains.  One
    polynomial (d multiply-adds) per point instead of the transcendental functions of the
    atoms (the kernel's cost per point for GELU comes within ~1.5× of tanh's addition theorem;
    degree 8 on cells of 1/16 was ~15 % slower, degree 6 on 1/32 misses the tolerance for
    erf'²).  (None, 0) where x^q h differs from g by more than FORM_TABLE_TOL
    (|g| + |x|^q max_{|z| ≤ 1}|h|) at test points between the nodes and near 0 (the kernel then
    evaluates the form)."""
    Z, hh, d = FORM_TABLE_Z, FORM_TABLE_H, FORM_TABLE_DEGREE

    def values(x):
        with np.errstate(all="ignore"):
            v = np.broadcast_to(np.asarray(fn(x), dtype=float), x.shape) if fn is not None \
                else np.full(x.shape, np.nan)
            return np.where(np.isfinite(v), v, evaluate_form(form, x))

    q = zero_order(lambda x: values(np.asarray(x, dtype=float)))
    n = int(round(2 * Z / hh))
    theta = np.pi * (np.arange(d + 1) + 0.5) / (d + 1)
    T = np.cos(np.outer(np.arange(d + 1), theta)) * (2.0 / (d + 1))  # T_k(t_j)
    T[0] *= 0.5
    x = ((-Z + hh * (np.arange(n) + 0.5))[:, None] + 0.5 * hh * np.cos(theta)[None, :]).ravel()
    vals = (values(x) / x ** q).reshape(n, d + 1)  # x ≠ 0 at the nodes
    coef = (vals @ T.T) @ _chebyshev_to_monomial(d)
    if not np.all(np.isfinite(coef)):
        return None, 0
    small = 10.0 ** np.arange(-12.0, 0.0, 0.5)
    xt = np.concatenate([np.linspace(-Z, Z, 8 * n + 1)[1:-1] + 0.3 * hh / 8, small, -small])
    ref = values(xt)
    near = np.linspace(-1.0, 1.0, 100)  # x ≠ 0
    sh = float(np.max(np.abs(values(near) / near ** q)))
    err = np.abs(evaluate_table(coef, xt, q) - ref)
    ok = np.all(err <= FORM_TABLE_TOL * (np.abs(ref) + np.abs(xt) ** q * sh))
    return (coef, q) if bool(ok) else (None, 0)


def evaluate_table(coef: np.ndarray, x, q: int = 0) -> np.ndarray:
    """x^q times the piecewise polynomial of :func:`form_table` at x (|x| < FORM_TABLE_Z), in
    numpy (the kernel's formula)."""
    x = np.asarray(x, dtype=float)
    y = (x + FORM_TABLE_Z) * (1.0 / FORM_TABLE_H)
    c = np.floor(y).astype(np.intp)
    t = 2.0 * (y - c) - 1.0
    p = coef[c, -1]
    for j in range(coef.shape[1] - 2, -1, -1):
        p = p * t + coef[c, j]
    for _ in range(q):
        p = p * x
    return p
