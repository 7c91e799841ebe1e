"""Trigonometric factors (σ = sin and its derivatives, products, powers): exact expectations.

A smooth factor that is a trigonometric polynomial,

    f(z) = Σ_j c_j e^{i ω_j z}      (finite sum, real frequencies ω_j, c_{−ω} = c_ω* for real f),

as sin z = (e^{iz} − e^{−iz})/2i, cos z, sin² z = ½ − ¼ e^{2iz} − ¼ e^{−2iz} and every product of
them (all derivatives σ^{(k)} of σ = sin, their powers and products), has its *Fourier form*
((c_j, ω_j), …) (:func:`fourier_form`).  For z ~ N(0, C) the characteristic function is

    E[e^{i Ωᵀ z}] = exp(−½ Ωᵀ C Ω),

so with block b carrying the members f_s(α_s z_b) (scales α per tuple from merged slots,
:mod:`.blocks`), one term j_s picked from every member s,

    E[Π_b F_b(z_b)] = Σ_{(j_s)} Π_s c_{j_s} · exp(−½ Ωᵀ C Ω),   Ω_b = Σ_{s ∈ b} α_s ω_{j_s}:

a finite sum (at most :data:`TRIG_MAX_TERMS` combinations per tuple), exact but for rounding at
any variance and for any covariance, singular ones included (no factorisation).  The quadrature
rules, by contrast, need more nodes the larger the variance, since sin oscillates.

Rounding.  The terms are bounded by Π|c| and cancel where the variance is small (sin z ≈ z:
E[sin z₁ sin z₂] = O(C) from terms of size ¼), so the sum loses ~log₁₀(Σ|terms|/|E|) digits.  Per
tuple the rounding error is bounded by ε Σ_j |term_j| (8 + ½ Σ_{ab} |Ω_a Ω_b C_ab|) (each term's
rounding, and that of its exponent), and a tuple is taken only where this is ≤ :data:`TRIG_TOL`
relative to the scale Π_s ⟨f_s(α_s z_b)²⟩^{1/2} (the Cauchy–Schwarz bound of the entry, itself
from the Fourier form: f² has the form of the convolution).  The others (small variances,
where the quadrature is at its best) stay with the other methods (:mod:`.paths`).
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import sympy as sp

from ..activations import z
from .blocks import Block

__all__ = ["TRIG_MAX_TERMS", "TRIG_TOL", "fourier_form", "integrate_trigonometric", "trigonometric"]

#: most combinations of terms (one per member) of one tuple; beyond, the other methods
TRIG_MAX_TERMS = 4096
#: a tuple is integrated here where the rounding bound (module docstring) is at most this,
#: relative to the scale Π_s ⟨f_s²⟩^{1/2}
TRIG_TOL = 1e-11
#: combinations × tuples per vectorised batch (bounds the memory: ~100 bytes each)
_BATCH = 1 << 18
_EPS = np.finfo(float).eps


@lru_cache(maxsize=512)
def fourier_form(g: sp.Expr) -> tuple[tuple[complex, float], ...] | None:
    """The terms (c_j, ω_j) of g(z) = Σ_j c_j e^{i ω_j z} (frequencies ascending, distinct), or
    None where g is not a trigonometric polynomial of z with numeric coefficients (polynomial
    factors of z, other functions, real exponentials e^{κz}, Dirac deltas, kinks).

    >>> fourier_form(sp.sin(z)**2)
    (((-0.25+0j), -2.0), ((0.5+0j), 0.0), ((-0.25+0j), 2.0))
    >>> fourier_form(sp.tanh(z)) is None, fourier_form(z * sp.sin(z)) is None
    (True, True)
    """
    if not isinstance(g, sp.Expr) or g.free_symbols - {z}:
        return None
    for f in g.atoms(sp.Function):
        if not isinstance(f, (sp.sin, sp.cos, sp.exp)):
            return None
    if any(not isinstance(a, (sp.sin, sp.cos, sp.exp)) for a in _z_carriers(g)):
        return None  # z outside sin/cos/exp (a polynomial factor)
    try:
        r = sp.expand(g.rewrite(sp.exp))
        terms: dict[float, complex] = {}
        for t in sp.Add.make_args(r):
            c, rest = t.as_independent(z, as_Add=False)
            arg = sp.Integer(0)
            for a in sp.Mul.make_args(rest):
                if a == 1:
                    continue
                base, ex = a.as_base_exp()
                if base != sp.E:
                    return None
                arg += ex
            arg = sp.expand(arg)
            w = sp.diff(arg, z)
            if w.has(z):
                return None
            a0 = sp.expand(arg - w * z)
            if a0.has(z):
                return None
            wc = complex(w)
            if wc.real != 0.0:
                return None  # a real exponential e^{κz}: not bounded
            cc = complex(c * sp.exp(a0))
            terms[wc.imag] = terms.get(wc.imag, 0j) + cc
    except (TypeError, ValueError, AttributeError, NotImplementedError, sp.PolynomialError):
        return None
    out = tuple((c, w) for w, c in sorted(terms.items()) if c != 0)
    if not out or not all(np.isfinite(c.real) and np.isfinite(c.imag) for c, _ in out):
        return None
    # a real factor: c_{−ω} = c_ω* (the sum over conjugate pairs relies on it)
    big = max(abs(c) for c, _ in out)
    if any(abs(c - out[-1 - j][0].conjugate()) > 1e-14 * big or w != -out[-1 - j][1]
                                     for j, (c, w) in enumerate(out)):
        return None
    return out


def _z_carriers(g: sp.Expr):
    """The outermost subexpressions through which g depends on z (functions of z or z itself)."""
    if g == z:
        yield g
        return
    if isinstance(g, sp.Function):
        yield g
        return
    for a in g.args:
        if a.has(z):
            yield from _z_carriers(a)


def trigonometric(blocks: list[Block]) -> bool:
    """Every member is smooth, free of deltas and has a Fourier form, and a tuple has at most
    :data:`TRIG_MAX_TERMS` combinations of terms."""
    count = 1
    for b in blocks:
        for f, _ in b.members:
            if not f.smooth or f.delta != 0:
                return False
            form = fourier_form(f.expr)
            if form is None:
                return False
            count *= len(form)
            if count > TRIG_MAX_TERMS:
                return False
    return True


def integrate_trigonometric(blocks: list[Block], C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E[Π_b F_b(z_b)], accurate) for z ~ N(0, C), C (n, m, m) (any rank), every member with a
    Fourier form (:func:`trigonometric`): the finite sum of the module docstring, and per tuple
    whether its rounding bound is ≤ :data:`TRIG_TOL` of the scale (the values of the others
    are not to be used).

    The forms of real factors are conjugate-symmetric, so the combination with every frequency
    negated contributes the complex conjugate: only the combinations whose first non-zero
    member frequency is positive are summed (twice their real part), and those with all
    frequencies zero once."""
    n, m = C.shape[0], len(blocks)
    members = [(b, fourier_form(f.expr), np.asarray(a, float)) for b, blk in enumerate(blocks)
               for f, a in blk.members]
    coef, freq = _combinations(tuple(form for _, form, _ in members))
    abscoef = np.abs(coef)
    sd = np.sqrt(np.maximum(np.einsum("nii->ni", C), 0.0))
    value = np.zeros(n)
    bound = np.zeros(n)
    per = max(1, _BATCH // max(1, coef.size))
    for lo in range(0, n, per):
        sl = slice(lo, min(n, lo + per))
        Om = np.zeros((sl.stop - lo, coef.size, m))
        for s, (b, _, a) in enumerate(members):
            Om[:, :, b] += a[sl, None] * freq[None, :, s]
        q = np.einsum("nca,nca->nc", Om @ C[sl], Om)
        # |Σ_ab Ω_a Ω_b C_ab| ≤ (Σ_a |Ω_a| √C_aa)²: the size of the exponent's rounding
        qabs = np.einsum("nca,na->nc", np.abs(Om), sd[sl]) ** 2
        e = np.exp(-0.5 * np.maximum(q, 0.0))
        value[sl] = (e @ coef).real
        bound[sl] = (e * (8.0 + 0.5 * qabs)) @ abscoef
    scale = np.ones(n)
    resolved = np.ones(n, bool)
    for b, form, a in members:
        v, floor = _mean_square(form, a * a * C[:, b, b])
        resolved &= v > floor
        scale *= np.sqrt(np.maximum(v, 0.0))
    accurate = resolved & (_EPS * bound <= TRIG_TOL * scale)
    return value, accurate


@lru_cache(maxsize=512)
def _arrays(form) -> tuple:
    """(c, ω, (Σ-coefficients, squared frequencies) of f²): the form as arrays, and the form of
    f² = Σ_{jl} c_j c_l e^{i(ω_j + ω_l)z} with equal frequency sums combined."""
    c = np.array([t[0] for t in form])
    w = np.array([t[1] for t in form])
    sums, inv = np.unique((w[:, None] + w[None, :]).ravel(), return_inverse=True)
    cc = np.zeros(sums.size, complex)
    np.add.at(cc, inv.ravel(), (c[:, None] * c[None, :]).ravel())
    return c, w, (cc.real.copy(), sums ** 2, float(np.sum(np.abs(c))) ** 2)


@lru_cache(maxsize=256)
def _combinations(forms: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The combinations (one term per member) to sum: coefficients (weight 2 for a
    conjugate pair, 1 for all frequencies zero) and frequencies (combinations, members)."""
    arrays = [_arrays(form) for form in forms]
    sizes = [arr[0].size for arr in arrays]
    idx = np.array(list(itertools.product(*(range(s) for s in sizes))), dtype=np.intp).reshape(-1, len(arrays))
    coef = np.ones(idx.shape[0], complex)
    freq = np.empty(idx.shape, float)
    for s, (c, w, _) in enumerate(arrays):
        coef = coef * c[idx[:, s]]
        freq[:, s] = w[idx[:, s]]
    nz = freq != 0
    first = np.argmax(nz, axis=1)
    lead = freq[np.arange(freq.shape[0]), first]
    keep = lead > 0
    zero = ~np.any(nz, axis=1)
    weight = np.where(zero, 1.0, 2.0)
    sel = keep | zero
    return coef[sel] * weight[sel], freq[sel]


def _mean_square(form, var: np.ndarray) -> tuple[np.ndarray, float]:
    """⟨f(x)²⟩ for x ~ N(0, var) (n,) from the Fourier form, and the level (1000 ε Σ|c|²)
    below which it is rounding."""
    cc, w2, l1 = _arrays(form)[2]
    v = np.exp(-0.5 * var[:, None] * w2[None, :]) @ cc
    return v, 1e3 * _EPS * l1
