"""Gaussian expectations ⟨f₁ f₂ … f_k⟩_K of products of univariate functions.

:func:`expectation_tensor` returns, for factors f₁ … f_k (sympy expressions in
:data:`ntkdiagrams.numerics.activations.z`, 1 ≤ k ≤ 4) and an (N, N) kernel K, the whole tensor

    T[a₁, …, a_k] = E[ f₁(z_{a₁}) f₂(z_{a₂}) … f_k(z_{a_k}) ],   z ~ N(0, K),

for every index tuple, repeated indices included.  :func:`gaussian_expectation` does the
same for one multivariate sympy expression in given symbols.

Method
------
1. **Reduction.**  For an index tuple the k slots carry the k×k covariance
   C_st = K[a_s, a_t].  Slots whose variables coincide up to a factor
   (1 − |ρ_st| < 1e-14, e.g. a_s = a_t, or collinear inputs), are merged: z_t = (C_st/C_ss) z_s,
   and the product of their factors becomes one function of z_s.  A variable of zero variance
   is the constant 0.  What remains is m ≤ k distinct variables with a non-degenerate
   covariance.  (If it is still singular without two proportional variables, e.g.
   z₃ = z₁ + z₂, a jitter of 1e-12·max C_ss is added to its diagonal.)

2. **Dirac deltas** are never smoothed.  A factor is split as f = g + c δ(z) with g free of
   deltas and c = h(0) for the delta part δ(z)h(z) (so δ(z)·Max(0, z) = 0).  On a merged
   variable, f(αz) contributes (c/|α|) δ(z).  For every set D of delta-carrying variables,

       E[δ(z_D) Π_{b∉D} g_b(z_b)] = p_D(0) · E[Π_{b∉D} g_b(z_b) | z_D = 0],
       p_D(0) = (2π)^{-|D|/2} det(C_DD)^{-1/2},

   and the conditional law is N(0, C_RR − C_RD C_DD⁻¹ C_DR) (Schur complement), which is
   reduced again as in 1.  Regular factors sharing a variable with a delta are taken at 0,
   with the convention Heaviside(0) = 1/2 (sympy's).  Two deltas on the same variable
   (e.g. ⟨σ''_α σ''_α⟩ for ReLU) diverge: such entries are NaN and a RuntimeWarning is issued.

3. **Quadrature.**  With C = L Lᵀ (Cholesky) and z = L u, u ~ N(0, I_m), the space of u is cut
   along the m hyperplanes z_j = 0 into the 2^m orthant cones; on each cone every factor is
   one analytic *branch* (Max(0, z) → z or 0, Heaviside → 1 or 0, smooth functions unchanged),
   so kinks at z = 0 (ReLU family) are integrated exactly, and saturating smooth functions
   (tanh, erf with large variance, whose transition sits at z = 0) converge much faster
   than with Gauss–Hermite across the transition.  In polar form u = r ω,

       E = (2π)^{-m/2} Σ_cones ∫_{cone ∩ S^{m-1}} dω ∫_0^∞ r^{m-1} e^{-r²/2} Π_b g_b^{±}(r L_b·ω) dr.

   * radial: the n-point Gauss rule of the weight r^{m-1} e^{-r²/2} on [0, ∞) (computed once
     with mpmath from its moments).  When every branch is a polynomial of total degree P the
     rule with ⌊P/2⌋ + 1 points is used and the radial integral is exact.
   * m = 1: the two half-lines; nothing angular.
   * m = 2: the circle is cut at the four kink rays; Gauss–Legendre in the angle on each arc.
   * m = 3, 4: each orthant cone is a simplicial cone spanned by the columns of ±L⁻¹; its
     spherical simplex is bisected along its longest edge until every edge is ≤ 80°, then
     integrated with a collapsed (Duffy / Stroud conical) Gauss–Jacobi product rule through
     the central projection ∫_cone h du = |det V| ∫_Δ |Vt|^{-m} ∫_0^∞ r^{m-1} h(r Vt/|Vt|) dr dt.
   Symmetry: slots with identical factors are permutation-symmetric, so only sorted index
   tuples within each such group are computed.  All work is vectorised over index tuples
   (chunks of tuples bound the memory).

4. **Fast path for smooth factors** (``method="auto"``, the default): tuples with m ≥ 2
   distinct variables whose factors are all smooth (no Max/Min/Abs/Heaviside/δ), not all
   polynomial, and whose effective variance v = max_j C_jj·α_j² is ≤ FAST_MAX_VARIANCE = 3.2
   are integrated as an iterated integral in the Cholesky coordinates z = L u.  Each outer
   coordinate u_j gets its own rule, chosen from the slope s_j = max_{k≥j} |L_kj α_k| with
   which the factors vary along it (FAST_LADDER, FAST_LADDER_GH, times FAST_SLACK[m]):
   u_0 and coordinates with large slopes use a split rule — the integral over u_j (given
   u_0 … u_{j-1}) is split at the zero crossing of z_j (rounded to a grid of spacing 0.05,
   |c| ≤ 7) and each half-line uses a precomputed n-point Gauss rule of the weight φ(u) on
   [c, ∞), the iterated analogue of the orthant splitting of 3.; coordinates with slope
   ≤ FAST_GH_MAX·slack use k-point Gauss–Hermite (k points do what the split rule does
   with 2k there).  Tuples whose slopes exceed the ladder go to the exact method (3.); for
   m = 2 the ladder goes on to slope 1.79 (FAST_LADDER_M2), i.e. the whole fast range.  For
   strongly correlated inputs (deep networks) the inner coordinates have small slopes and
   need 3–6 points, so a 4-variable tuple costs ~1e3 points instead of (2n)³ ≈ 8e3.  Where
   several slots carry the same single factor, each tuple takes the order of those slots
   with the fewest points (all orders are tried).  For m ≥ 3 the innermost integral
   G(μ, s) = E[f(μ + s ξ)] of a single factor is read from a table (μ-step 0.02, s-step
   0.02, 4 × 4-point Lagrange interpolation; built once per factor, ~0.1 s).  For m = 2 both
   coordinates are integrated (no table; slack 1).  ``degree=n`` sets n nodes per side of the split rule
   in every coordinate (the previous behaviour), ``method="exact"`` forces 3.,
   ``method="fast"`` uses 4. at any variance; _STATS["fast_tuples"] counts.

Accuracy (relative error, measured by tests/test_gaussian.py and scripts/bench_gaussian.py;
see the report lines at the end of this docstring, which that script reproduces)
-------------------------------------------------------------------------------
* smooth, k = 1: E[tanh²] for K = 0.1 … 10: ≤ 1e-9.
* smooth, k = 2 (tanh, erf, gelu, swish, sin, softplus; f·f' and f·f; ρ = 0.5, 0.99, −0.33,
  identical inputs, K = 10 with ρ = 0.5) vs mpmath/adaptive references: ≤ 1e-8 (tested).
  erf arcsine kernel: ≤ 1e-9.
* smooth, k = 3 (default radial 16 × simplex 12): ~1e-10 at unit variance, ~5e-8 at
  variance 3 (vs the same rule at much higher degree and brute-force Gauss–Hermite).
* smooth, k = 4 (default radial 12 × simplex 8): ~5e-8 at unit variance, ~2e-6 at
  variance 3, 2e-7 relative on a strongly cancelling entry (1.6e-11 absolute);
  degree=16 gives ≲1e-8.  The default for k = 4 is a speed/accuracy compromise.
* fast path (4.), default settings, scripts/bench_gaussian.py --accuracy, against the
  same iterated rule without table at 20 nodes per side in all four coordinates (itself
  checked against 24: ≤ 7e-13): ⟨tanh tanh tanh tanh⟩ for every 4-tuple of distinct inputs
  of the kernels K^(2), K^(5), K^(20) of a tanh network (C_b = 0.1, C_W = 1.5, N = 16 inputs
  in 3 dimensions; variances 0.3 … 0.76, correlations −0.4 … 0.998): typical 1e-8, worst
  5e-8; the floor ~1e-8 … 2e-8 is the table interpolation.  (Before the per-coordinate node
  counts, the uniform n = 10 of the variance ladder gave up to 4e-6 on K^(2) and 1.7e-6 on
  all of K^(20), where all correlations are 0.93 … 0.998.)  Exchangeable ρ = 0.3, 0.9,
  0.995 (tanh⁴, sech²³, sech²⁴ at variance 0.52) vs 2-D Gauss–Hermite: ≤ 1e-7 (tested).
  Random covariances (tanh·tanh·tanh'·tanh', gelu, softplus; tests): ≤ 1e-6 (m = 3) /
  3e-6 (m = 4) bounds hold, measured ~5e-7 where two inputs have ρ ≈ 1 − 1e-6.
  m = 2 (σσ, σ'σ', σ''σ, σ''σ'' of tanh, variance ≤ 2.5 and ≤ 3.2, now all on the fast path
  with the rungs of FAST_LADDER_M2) vs the exact method at degree 60: ≤ 5e-13 (tested
  ≤ 1e-9); the k = 2 mpmath tests above (≤ 1e-8) run through it.
* ReLU family (products of relu, Heaviside, δ, polynomials, leaky relu), k = 1, 2: exact up
  to rounding (≤ 1e-14 against the arc-cosine kernels, E[HH] = (π−θ)/2π, E[δ relu],
  E[δδ], also at ρ = 1 − 1e-10 and for collinear inputs).  k = 3, 4: radial part exact,
  angular part ≤ 1e-10 (Sheppard's 3-orthant formula: ≤ 1e-13; 4-orthant probability
  1/5 at ρ = 1/2: 3e-12; exchangeable relu/H products vs 1-D mpmath: ≤ 1e-8 tested;
  Wick's theorem for z·z·z·z: 7e-15).

Timing (scripts/bench_gaussian.py, 2-core machine)
-------------------------------------------------
Measured on a shared machine under load (load average ~8 on 2 cores: the unchanged relu
k = 4, N = 8 case took 1.65 s against 0.7 s unloaded, so divide by ~2.4 for an idle
machine).  Before the fast path (method="exact", unloaded): tanh k = 3 / 4 at N = 16:
0.76 s / 57 s; tanh, tanh' k = 3 at N = 16: 2.1 s.  With the fast path (method="auto"):

    factors                     k    N=4     N=8     N=16
    tanh (equal)                2   0.001s  0.008s  0.025s
    tanh (equal)                3   0.002s  0.040s  0.13s
    tanh (equal)                4   0.031s  0.089s  2.9s
    tanh', tanh', tanh, tanh    3   0.008s  0.032s  0.33s
    tanh', tanh', tanh, tanh    4   0.019s  0.58s   15s
    tanh, tanh', gelu, tanh     3   0.010s  0.056s  1.3s
    tanh, tanh', gelu, tanh     4   0.038s  1.5s    34s
    relu (equal)                4   0.058s  1.65s   32s   (exact method, unchanged)

(The table above predates the per-coordinate node counts.)  ⟨tanh⁴⟩ on the N = 16 kernels
K^(1) … K^(19) of scripts/bench_evaluate.py's tanh case (the whole V recursion of
bench_evaluate's N = 16, L = 20), one thread, quiet machine: 17 s before the changes of 5.,
10–11 s after; per layer 1.0–1.4 s at K^(1), K^(2), 0.2 s at K^(19).  Repeated timings of one
call vary by ±20 % on this machine, so changes below that are not resolved.

5. **Cost per point** (what made it ~1.6× cheaper; kept in mind for further work).  The
   innermost outer level and the table lookup run ~25 array passes over all points of a
   chunk; a pass costs ~0.4 ns per float from cache, but
   * a fresh array of ≥ 128 KB costs ~10 ns per float in page faults when glibc has given
     the memory back to the OS: :func:`_keep_heap` sets M_TOP_PAD (64 MB);
   * fancy indexing ``coef[i0]`` costs 22 ns per point, ``np.take(coef, i0, axis=0)`` 1.8;
   * broadcasting with a short inner axis (the k nodes of a level) costs ~2 ns per float:
     Gauss–Hermite levels are laid out node-major, (T, k, P);
   * tanh costs 16 ns per float, exp 7.5: factors with an exponential form f = R(e^{κz})
     (tanh, sigmoid, their powers and derivatives; :func:`_exponential_form`) are evaluated
     by the addition theorem R(e^{κμ}·e^{κsu}), with the exponentials per tuple and per
     parent point, never per point;
   * two threads gain only ~1.3× (the GIL between ~60 array calls per chunk).

6. **Compiled kernel** (:mod:`ntkdiagrams.numerics.gaussian.compiled`, with numba installed: the ``fast``
   extra).  The nested sum of 4. for factors with an exponential form (tanh, sigmoid and
   their derivatives) runs depth-first in one compiled loop per tuple, in the threads of the
   pool, with the same rules, table and split points: the numbers agree with the numpy path
   to rounding (≤ 1e-13 relative, tested).  ⟨tanh⁴⟩ over the 19 layers of the N = 16
   benchmark: 9.1 s in numpy (one or two threads), 5.4 s compiled with one thread, 3.2 s
   with two.  NTKDIAGRAMS_JIT=0 switches it off; other factors always use numpy.
"""
from __future__ import annotations

import functools
import itertools
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, NamedTuple, Sequence

import numpy as np
import sympy as sp

from ..activations import lambdify_z, z
from ...errors import InputError, UnsupportedError

__all__ = ["expectation_tensor", "gaussian_expectation", "DEFAULT_DEGREE",
           "DEFAULT_DEGREE_BY_DIM", "FAST_DEGREES", "FAST_MAX_VARIANCE"]

#: Default number of quadrature nodes per dimension (radial and angular) for two-variable
#: integrals; ``degree=n`` sets both the radial and the angular degree to n for every m.
DEFAULT_DEGREE = 40
#: Default (radial, angular) nodes by the number m of distinct variables (after merging):
#: m = 1: half-line rule; m = 2: radial × Gauss–Legendre per arc; m = 3, 4: radial ×
#: per-direction degree of the collapsed simplex rule.
DEFAULT_DEGREE_BY_DIM = {1: (64, 0), 2: (DEFAULT_DEGREE, DEFAULT_DEGREE), 3: (16, 12), 4: (12, 8)}

#: Two slot variables with 1 − |ρ| below this are treated as proportional (merged).
MERGE_TOL = 1e-14
#: Maximal edge angle of a spherical simplex before it is bisected (m = 3, 4).
MAX_EDGE_ANGLE = math.radians(80.0)
#: Number of (tuple × quadrature point) evaluations per vectorised chunk.
CHUNK_POINTS = 1 << 21
#: quadrature points per chunk of the fast path (arrays of ~1 MB: the innermost level makes
#: ~20 passes over them, which is faster from cache than from memory)
FAST_CHUNK_POINTS = 1 << 17

#: diagnostics: simplices/tuples of the m = 3, 4 cone subdivision, tuples of the fast path
_STATS = {"simplices": 0, "tuples": 0, "fast_tuples": 0}

_KINK_FUNCS = (sp.Max, sp.Min, sp.Heaviside, sp.Abs, sp.sign, sp.Piecewise)


# ----------------------------------------------------------------------------------------
# factors
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _Factor:
    """A univariate factor f(z) = g(z) + c δ(z) with analytic branches of g on z>0 / z<0."""

    expr: sp.Expr
    delta: float            # c
    at0: float              # g(0), Heaviside(0) = 1/2
    plus: Callable          # g on z > 0, continued analytically to all z
    minus: Callable         # g on z < 0
    smooth: bool            # plus and minus are the same expression
    zero_plus: bool         # g ≡ 0 on z > 0
    zero_minus: bool
    degree: int | None      # polynomial degree of the branches, None if not polynomial
    expo: _Expo | None = None  # g(z) = R(e^{κz}), R rational of degree d (see below)


def _as_sympy(expr, what: str) -> sp.Basic:
    """A sympy object, or a plain int/float made into one; anything else (text!) is refused:
    user text goes through ntkdiagrams.language.expressions, never through sympify."""
    if isinstance(expr, sp.Basic):
        return expr
    if isinstance(expr, bool) or not isinstance(expr, (int, float)):
        raise InputError(f"{what} {expr!r} is not a sympy expression (parse text with ntkdiagrams.language.expressions first)")
    return sp.Integer(expr) if isinstance(expr, int) else sp.Float(expr)


def _canonical_z(expr) -> sp.Expr:
    e = _as_sympy(expr, "factor")
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


class _Expo(NamedTuple):
    """g(z) = R(E), E = e^{κz}, R = num/den rational of degree d (coefficients ascending)."""

    kappa: float
    R: Callable
    degree: int
    num: tuple
    den: tuple


def _exponential_form(g: sp.Expr):
    """:class:`_Expo` (κ, R, d, …) with g(z) = R(e^{κz}) for a rational function R of degree d,
    or None.

    tanh, sigmoid, their powers and derivatives have this form (tanh z = (E − 1)/(E + 1) with
    E = e^{2z}, sech² z = 4E/(E + 1)²).  It gives an addition theorem,
    g(μ + s v) = R(e^{κμ} · e^{κsv}), which the fast path uses to evaluate the factor on a
    Gauss–Hermite level with one multiplication and a rational function per point instead of
    a transcendental function."""
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
    return _Expo(float(kappa), sp.lambdify(_E, R, "numpy"), int(d), *coeffs)


@lru_cache(maxsize=512)
def _prepare_factor(e: sp.Expr) -> _Factor:
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
        if b.has(*_KINK_FUNCS):
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
    smooth = sp.simplify(plus - minus) == 0
    fp = lambdify_z(plus)
    fm = fp if smooth else lambdify_z(minus)
    return _Factor(expr=e, delta=delta, at0=at0, plus=fp, minus=fm, smooth=smooth,
                   zero_plus=(plus == 0), zero_minus=(minus == 0), degree=degree,
                   expo=_exponential_form(plus) if smooth else None)


# ----------------------------------------------------------------------------------------
# quadrature rules
# ----------------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _radial_rule(n: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """n-point Gauss rule for ∫_0^∞ h(r) r^p e^{-r²/2} dr (Golub–Welsch from mpmath moments)."""
    import mpmath as mp

    n, p = int(n), int(p)

    with mp.workdps(40 + 3 * n):
        mom = [mp.mpf(2) ** (mp.mpf(j + p + 1) / 2 - 1) * mp.gamma(mp.mpf(j + p + 1) / 2)
               for j in range(2 * n + 1)]
        H = mp.matrix(n + 1, n + 1)
        for i in range(n + 1):
            for j in range(n + 1):
                H[i, j] = mom[i + j]
        R = mp.cholesky(H).T
        a = np.empty(n)
        b = np.empty(max(n - 1, 0))
        for k in range(n):
            a[k] = float(R[k, k + 1] / R[k, k] - (R[k - 1, k] / R[k - 1, k - 1] if k else 0))
            if k < n - 1:
                b[k] = float(R[k + 1, k + 1] / R[k, k])
        m0 = float(mom[0])
    J = np.diag(a) + np.diag(b, 1) + np.diag(b, -1)
    x, vec = np.linalg.eigh(J)
    w = m0 * vec[0] ** 2
    return x, w


@lru_cache(maxsize=64)
def _gauss_legendre(n: int):
    return np.polynomial.legendre.leggauss(n)


@lru_cache(maxsize=32)
def _simplex_rule(dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Collapsed Gauss–Jacobi rule on the standard simplex {t ≥ 0, Σt = 1} of dimension dim.

    Returns barycentric points (Q, dim+1) and weights (Q,) summing to 1/dim!."""
    from scipy.special import roots_jacobi

    rules = []
    for i in range(dim):
        alpha = dim - 1 - i
        x, w = roots_jacobi(n, alpha, 0)
        rules.append(((1 + x) / 2, w / 2 ** (alpha + 1)))
    grids = np.meshgrid(*[r[0] for r in rules], indexing="ij")
    wgrid = np.ones_like(grids[0])
    for i, g in enumerate(np.meshgrid(*[r[1] for r in rules], indexing="ij")):
        wgrid = wgrid * g
    us = [g.ravel() for g in grids]
    t = np.empty((us[0].size, dim + 1))
    rest = np.ones_like(us[0])
    for i in range(dim):
        t[:, i] = rest * us[i]
        rest = rest * (1 - us[i])
    t[:, dim] = rest
    return t, wgrid.ravel()


# ----------------------------------------------------------------------------------------
# blocks: a product of factors of one variable, f(α z) with per-tuple scales α
# ----------------------------------------------------------------------------------------

@dataclass
class _Block:
    members: list  # list of (_Factor, alpha ndarray (n_t,))

    def take(self, sel) -> "_Block":
        return _Block([(f, a[sel]) for f, a in self.members])

    def is_zero(self, s: int) -> np.ndarray:
        """Per tuple: the branch on sign(z) = s vanishes identically."""
        out = np.zeros(self.members[0][1].shape, bool) if self.members else np.zeros(0, bool)
        for f, a in self.members:
            pos = (a * s) > 0
            out |= np.where(pos, f.zero_plus, f.zero_minus)
        return out

    def evaluate(self, zz: np.ndarray, s) -> np.ndarray:
        """Branch product at zz (n_t, ...); s: sign of the region (scalar or array
        broadcastable to zz)."""
        out = None
        for f, a in self.members:
            aa = a.reshape(a.shape + (1,) * (zz.ndim - 1))
            arg = zz if np.all(a == 1) else aa * zz
            if f.smooth:
                v = f.plus(arg)
            else:
                pos = (aa * s) > 0
                if np.all(pos):
                    v = f.plus(arg)
                elif not np.any(pos):
                    v = f.minus(arg)
                else:
                    v = np.where(pos, f.plus(arg), f.minus(arg))
            v = np.broadcast_to(v, zz.shape)
            out = np.array(v, dtype=float) if out is None else out * v
        return out

    def value_at0(self) -> np.ndarray:
        n = self.members[0][1].shape[0]
        v = np.ones(n)
        for f, _ in self.members:
            v = v * f.at0
        return v

    def poly_degree(self):
        d = 0
        for f, _ in self.members:
            if f.degree is None:
                return None
            d += f.degree
        return d


def _cholesky_jittered(C: np.ndarray, m: int):
    """Batched Cholesky factors; a covariance that is singular to rounding gets a 1e-12 relative
    jitter on its diagonal first.  Returns the (possibly jittered) covariances and the factors."""
    L, ok = _batched_cholesky(C)
    if not np.all(ok):
        bad = ~ok
        jit = 1e-12 * np.max(np.einsum("nii->ni", C[bad]), axis=1)
        C = C.copy()
        C[bad] += jit[:, None, None] * np.eye(m)
        L[bad] = _batched_cholesky(C[bad])[0]
    return C, L


def _batched_cholesky(C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors of PSD matrices (n, m, m), clamping tiny pivots to 0.

    Returns (L, ok) with ok False where a pivot was (numerically) zero."""
    n, m, _ = C.shape
    L = np.zeros_like(C)
    ok = np.ones(n, bool)
    for j in range(m):
        d = C[:, j, j] - np.sum(L[:, j, :j] ** 2, axis=1)
        tiny = d <= 1e-13 * np.maximum(C[:, j, j], 1e-300)
        ok &= ~tiny
        sd = np.sqrt(np.where(tiny, 1.0, d))
        L[:, j, j] = np.where(tiny, 0.0, sd)
        for i in range(j + 1, m):
            v = (C[:, i, j] - np.sum(L[:, i, :j] * L[:, j, :j], axis=1)) / sd
            L[:, i, j] = np.where(tiny, 0.0, v)
    return L, ok


# ----------------------------------------------------------------------------------------
# reduction (merging proportional variables) and delta expansion
# ----------------------------------------------------------------------------------------

def _group_patterns(C: np.ndarray):
    """Per tuple: zero-variance flags and proportional pairs; yield (sel, blocks, zeros)."""
    n, m, _ = C.shape
    d = np.einsum("nii->ni", C)
    scale = np.max(d, axis=1, keepdims=True)
    zero = d <= 1e-15 * np.maximum(scale, 1e-300)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    key = np.zeros(n, np.int64)
    bit = 0
    for i in range(m):
        key |= zero[:, i].astype(np.int64) << bit
        bit += 1
    for i, j in pairs:
        denom = np.sqrt(np.maximum(d[:, i] * d[:, j], 1e-300))
        prop = (1 - np.abs(C[:, i, j]) / denom < MERGE_TOL) & ~zero[:, i] & ~zero[:, j]
        key |= prop.astype(np.int64) << bit
        bit += 1
    for k in np.unique(key):
        sel = np.nonzero(key == k)[0]
        zeros = [i for i in range(m) if (k >> i) & 1]
        parent = list(range(m))

        def find(x):
            while parent[x] != x:
                x = parent[x]
            return x
        b = m
        for i, j in pairs:
            if (k >> b) & 1:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
            b += 1
        groups: dict[int, list[int]] = {}
        for i in range(m):
            if i not in zeros:
                groups.setdefault(find(i), []).append(i)
        yield sel, sorted(groups.values()), zeros


def _expect(blocks: list[_Block], C: np.ndarray, deltas: list[np.ndarray] | None,
            degree, method: str = "auto") -> np.ndarray:
    """E[Π_b (g_b(z_b) + w_b δ(z_b))] for z ~ N(0, C), C (n, m, m), vectorised over n.

    ``deltas`` are the per-block delta weights w_b (None: no deltas)."""
    n, m = C.shape[0], len(blocks)
    if m == 0:
        return np.ones(n)
    out = np.empty(n)
    for sel, groups, zeros in _group_patterns(C):
        Cs = C[sel]
        const = np.ones(sel.size)
        divergent = np.zeros(sel.size, bool)
        for i in zeros:  # deterministic z = 0
            const *= blocks[i].take(sel).value_at0()
            if deltas is not None:
                divergent |= deltas[i][sel] != 0
        new_blocks, new_w, reps = [], [], []
        for g in groups:
            rep = g[0]
            members, w_single, w_double = [], np.zeros(sel.size), np.zeros(sel.size)
            parts = []
            for t in g:
                beta = Cs[:, rep, t] / Cs[:, rep, rep]
                bt = blocks[t].take(sel)
                for f, a in bt.members:
                    members.append((f, a * beta))
                wt = deltas[t][sel] / np.abs(beta) if deltas is not None else np.zeros(sel.size)
                parts.append((wt, bt.value_at0()))
            # delta weight of the merged block: Σ_t w_t Π_{u≠t} g_u(0); δ² terms diverge
            for ti, (wt, _) in enumerate(parts):
                prod = wt.copy()
                for ui, (_, g0) in enumerate(parts):
                    if ui != ti:
                        prod *= g0
                w_single += prod
                for ui in range(ti + 1, len(parts)):
                    w_double += wt * parts[ui][0]
            divergent |= w_double != 0
            new_blocks.append(_Block(members))
            new_w.append(w_single)
            reps.append(rep)
        Cr = Cs[:, reps][:, :, reps]
        if deltas is None or not any(np.any(w != 0) for w in new_w):
            val = _integrate(new_blocks, Cr, degree, method)
        else:
            val = _delta_expand(new_blocks, new_w, Cr, degree, method)
        res = const * val
        if np.any(divergent):
            warnings.warn("Gaussian expectation with two Dirac deltas on the same variable "
                          "diverges; those entries are NaN", RuntimeWarning, stacklevel=3)
            res[divergent] = np.nan
        out[sel] = res
    return out


def _delta_expand(blocks, weights, C, degree, method="auto"):
    n, m = C.shape[0], len(blocks)
    total = np.zeros(n)
    candidates = [b for b in range(m) if np.any(weights[b] != 0)]
    for r in range(len(candidates) + 1):
        for D in itertools.combinations(candidates, r):
            R = [b for b in range(m) if b not in D]
            w = np.ones(n)
            for b in D:
                w = w * weights[b]
            live = w != 0
            if not np.any(live):
                continue
            idx = np.nonzero(live)[0]
            Cl = C[idx]
            if D:
                Dl = list(D)
                CDD = Cl[:, Dl][:, :, Dl]
                det = np.linalg.det(CDD)
                with np.errstate(divide="ignore", invalid="ignore"):
                    dens = (2 * np.pi) ** (-len(D) / 2) / np.sqrt(det)
                if R:
                    CRD = Cl[:, R][:, :, Dl]
                    CRR = Cl[:, R][:, :, R]
                    good = det > 0
                    Ccond = CRR.copy()
                    if np.any(good):
                        sol = np.linalg.solve(CDD[good], np.swapaxes(CRD[good], 1, 2))
                        Ccond[good] = CRR[good] - CRD[good] @ sol
                    Ccond = 0.5 * (Ccond + np.swapaxes(Ccond, 1, 2))
                    # clip tiny negative diagonal from rounding
                    di = np.einsum("nii->ni", Ccond)
                    di[...] = np.maximum(di, 0.0)
                    sub = [blocks[b].take(idx) for b in R]
                    inner = _expect(sub, Ccond, None, degree, method)
                else:
                    inner = np.ones(idx.size)
                val = dens * inner
            else:
                val = _integrate([blocks[b].take(idx) for b in range(m)], Cl, degree, method)
            total[idx] += w[idx] * val
    return total


# ----------------------------------------------------------------------------------------
# integration over orthant cones
# ----------------------------------------------------------------------------------------

def _degrees(blocks, m, degree):
    if degree is None:
        base, n_a = DEFAULT_DEGREE_BY_DIM[m]
    else:
        base = n_a = int(degree)
    P = 0
    for b in blocks:
        d = b.poly_degree()
        if d is None:
            P = None
            break
        P += d
    n_r = base if P is None else min(base, P // 2 + 1)
    return n_r, n_a, P


def _integrate(blocks: list[_Block], C: np.ndarray, degree, method: str = "auto") -> np.ndarray:
    m = len(blocks)
    if m == 0:
        return np.ones(C.shape[0])
    if m >= 2 and method != "exact" and _is_smooth(blocks) and (
            method == "fast" or not _is_polynomial(blocks)):
        veff = _effective_variance(blocks, C)
        fast = np.ones(C.shape[0], bool) if method == "fast" else veff <= FAST_MAX_VARIANCE
        if np.all(fast):
            return _integrate_fast(blocks, C, degree, veff, force=method == "fast")
        out = np.empty(C.shape[0])
        if np.any(fast):
            out[fast] = _integrate_fast([b.take(fast) for b in blocks], C[fast], degree, veff[fast],
                                        force=method == "fast")
        slow = ~fast
        out[slow] = _integrate([b.take(slow) for b in blocks], C[slow], degree, "exact")
        return out
    C, L = _cholesky_jittered(C, m)
    n_r, n_a, P = _degrees(blocks, m, degree)
    if P is not None and m >= 3 and degree is None:
        n_a = max(n_a, 20 if m == 3 else 12)  # polynomial branches: exact radial rule, cheap
    if m == 1:
        return _integrate_1d(blocks[0], L[:, 0, 0], n_r)
    if m == 2:
        if P is not None:
            n_a = min(n_a, max(16, P + 8))
        return _integrate_2d(blocks, L, n_r, n_a)
    return _integrate_simplices(blocks, L, n_r, n_a)


def _integrate_1d(block: _Block, s: np.ndarray, n_r: int) -> np.ndarray:
    r, w = _radial_rule(n_r, 0)
    zz = s[:, None] * r[None, :]
    v = block.evaluate(zz, 1) @ w + block.evaluate(-zz, -1) @ w
    return v / math.sqrt(2 * math.pi)


def _chunks(n: int, per: int, points: int = CHUNK_POINTS):
    step = max(1, points // max(per, 1))
    for a in range(0, n, step):
        yield slice(a, min(n, a + step))


def _integrate_2d(blocks, L, n_r, n_a):
    n = L.shape[0]
    r, wr = _radial_rule(n_r, 1)
    x, wx = _gauss_legendre(n_a)
    out = np.empty(n)
    for sl in _chunks(n, 4 * n_a * n_r):
        Lc = L[sl]
        nt = Lc.shape[0]
        base = np.arctan2(Lc[:, :, 1], Lc[:, :, 0])  # (nt, 2) normal directions
        rays = np.concatenate([base + np.pi / 2, base - np.pi / 2], axis=1) % (2 * np.pi)
        rays.sort(axis=1)
        ends = np.concatenate([rays[:, 1:], rays[:, :1] + 2 * np.pi], axis=1)  # (nt, 4)
        half = (ends - rays) / 2
        mid = (ends + rays) / 2
        phi = mid[:, :, None] + half[:, :, None] * x[None, None, :]  # (nt, 4, n_a)
        wphi = half[:, :, None] * wx[None, None, :]
        om = np.stack([np.cos(phi), np.sin(phi)], axis=-1)  # (nt, 4, n_a, 2)
        d = np.einsum("tjk,tsqk->tsqj", Lc, om)  # (nt, 4, n_a, 2): L_j·ω
        om_mid = np.stack([np.cos(mid), np.sin(mid)], axis=-1)
        sgn = np.sign(np.einsum("tjk,tsk->tsj", Lc, om_mid))  # (nt, 4, 2)
        prod = np.ones((nt, 4, n_a, n_r))
        for j, b in enumerate(blocks):
            zz = d[:, :, :, j, None] * r[None, None, None, :]
            s = sgn[:, :, j][:, :, None, None]
            prod *= b.evaluate(zz, s)
        out[sl] = np.einsum("tsqr,tsq,r->t", prod, wphi, wr) / (2 * np.pi)
    return out


def _integrate_simplices(blocks, L, n_r, n_s):
    n, m = L.shape[0], L.shape[1]
    Linv = np.linalg.inv(L)
    r, wr = _radial_rule(n_r, m - 1)
    t, wt = _simplex_rule(m - 1, n_s)
    zero = {(j, s): blocks[j].is_zero(s) for j in range(m) for s in (1, -1)}
    Vs, tids, eps_list = [], [], []
    for eps in itertools.product((1, -1), repeat=m):
        live = np.ones(n, bool)
        for j, s in enumerate(eps):
            live &= ~zero[(j, s)]
        idx = np.nonzero(live)[0]
        if idx.size == 0:
            continue
        G = Linv[idx] * np.array(eps, float)[None, None, :]
        G = G / np.linalg.norm(G, axis=1, keepdims=True)
        Vs.append(G)
        tids.append(idx)
        eps_list.append(np.broadcast_to(np.array(eps, float), (idx.size, m)))
    if not Vs:
        return np.zeros(n)
    V = np.concatenate(Vs)
    tid = np.concatenate(tids)
    E = np.concatenate(eps_list)
    cos_max = math.cos(MAX_EDGE_ANGLE)
    iu = np.triu_indices(m, 1)
    for _ in range(40):
        G = np.einsum("nki,nkj->nij", V, V)[:, iu[0], iu[1]]  # (ns, npairs) cosines
        worst = np.argmin(G, axis=1)
        split = G[np.arange(G.shape[0]), worst] < cos_max
        if not np.any(split):
            break
        si = np.nonzero(split)[0]
        a, b = iu[0][worst[si]], iu[1][worst[si]]
        va = V[si, :, a]
        vb = V[si, :, b]
        mid = va + vb
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        A = V[si].copy()
        B = V[si].copy()
        A[np.arange(si.size), :, b] = mid
        B[np.arange(si.size), :, a] = mid
        keep = ~split
        V = np.concatenate([V[keep], A, B])
        tid = np.concatenate([tid[keep], tid[si], tid[si]])
        E = np.concatenate([E[keep], E[si], E[si]])
    _STATS["simplices"] += V.shape[0]
    _STATS["tuples"] += n
    detV = np.abs(np.linalg.det(V))
    total = np.zeros(n)
    Q = t.shape[0]
    for sl in _chunks(V.shape[0], Q * n_r):
        Vc = V[sl]
        x = np.einsum("nij,qj->nqi", Vc, t)  # (ns, Q, m)
        nx = np.linalg.norm(x, axis=2)
        om = x / nx[:, :, None]
        jac = detV[sl, None] / nx ** m * wt[None, :]
        Lc = L[tid[sl]]
        d = np.einsum("nij,nqj->nqi", Lc, om)  # z-directions
        prod = None
        for j, blk in enumerate(blocks):
            bsub = blk.take(tid[sl])
            zz = d[:, :, j, None] * r[None, None, :]
            s = E[sl, j][:, None, None]
            v = bsub.evaluate(zz, s)
            prod = v if prod is None else prod * v
        val = np.sum((prod @ wr) * jac, axis=1)
        total += np.bincount(tid[sl], weights=val, minlength=n)
    return total / (2 * np.pi) ** (m / 2)


# ----------------------------------------------------------------------------------------
# fast path for smooth factors: nested split Gauss rules + tabulated innermost integral
# ----------------------------------------------------------------------------------------

#: Tuples whose largest effective variance (C_jj · α², after merging) exceeds this bound are
#: integrated by the exact cone method even when every factor is smooth (method="auto").
FAST_MAX_VARIANCE = 3.2
#: Nodes per side of the split half-line rules of the fast path, by the number m of distinct
#: variables and the largest effective variance v of a tuple: the first (bound, n) with
#: v ≤ bound is used (measured: relative error ≤ 1e-7 for m = 3, ≤ 1e-6 for m = 4).
FAST_DEGREES = {3: ((0.35, 8), (1.1, 12), (2.2, 14), (FAST_MAX_VARIANCE, 16), (math.inf, 20)),
                4: ((0.35, 8), (1.1, 10), (2.2, 12), (FAST_MAX_VARIANCE, 14), (math.inf, 20))}
#: Rules for one outer Cholesky coordinate u_j along which the factors vary with slope
#: s_j = max_k |L_kj α_k|: (bound, rule) with rule = n > 0 for the split rule with n nodes per
#: side, rule = -k for k-point Gauss–Hermite; the first rule with s_j ≤ bound × slack is used.
#: Bounds: 1-D worst case over products of up to four factors tanh, sech², tanh·sech² with
#: random offsets and slopes ≤ s_j, relative error ≤ 1e-7 (Gauss–Hermite with k points is as
#: good as the split rule with 2k there; the split rule is much better where all factors cross
#: zero at the split point, as for the outermost coordinate of strongly correlated tuples).
FAST_LADDER_GH = ((0.027, -3), (0.05, -4), (0.086, -5), (0.124, -6), (0.162, -7), (0.194, -8),
                  (0.254, -10), (0.277, -11), (0.303, -13), (0.332, -15), (0.363, -17))
FAST_LADDER = ((0.027, 3), (0.05, 4), (0.086, 5), (0.124, 6), (0.162, 7), (0.212, 8), (0.254, 9),
               (0.303, 10), (0.332, 11), (0.363, 12), (0.435, 14), (0.52, 16), (0.622, 18),
               (0.681, 20), (0.815, 24))
#: Further rungs for m = 2 (both coordinates integrated, no table), where tuples beyond
#: FAST_LADDER went to the exact cone method: measured against that method at degree 80 on
#: ⟨f g⟩ for f, g among tanh and its first three derivatives, tanh², (tanh')², with the
#: variance = bound² and both coordinates at n nodes: ≤ 3e-10 at every bound (n = 24 gives
#: 2e-10 at s = 1).
FAST_LADDER_M2 = FAST_LADDER + ((1.0, 24), (1.225, 28), (1.483, 32), (1.79, 36))
#: default slack of the ladders by the number m of distinct variables
FAST_SLACK = {2: 1.0, 3: 1.5, 4: 1.5}
#: outer coordinates j ≥ 1 with slope ≤ FAST_GH_MAX × slack use Gauss–Hermite
FAST_GH_MAX = 0.2
#: Split points c of the tabulated rules for ∫_c^∞ φ(u) h(u) du: c ∈ [-SPLIT_C, SPLIT_C]
#: with spacing SPLIT_DC (the split is exact at the rounded point; the factor's zero crossing
#: is then within SPLIT_DC/2 of the end point, which is all the rule needs).
SPLIT_C, SPLIT_DC = 7.0, 0.05
#: Bound on |κ z|·d for evaluating a factor R(e^{κz}) (R of degree d) by its addition
#: theorem: E^d must stay far from overflow (e^709).
EXPO_MAX_EXPONENT = 600.0
#: Grid spacings (in μ and in s) of the table of the innermost conditional expectation
#: G(μ, s) = E[f(μ + s ξ)], interpolated with 4 × 4-point Lagrange stencils.
TABLE_H_MU, TABLE_H_S = 0.02, 0.02
#: The table lookup clamps μ to ± TABLE_REACH standard deviations of μ (nodes beyond carry
#: a weight < e^{-TABLE_REACH²/2} ≈ 3e-18).
TABLE_REACH = 9.0
#: Nodes per side used to build the G(μ, s) table.
TABLE_DEGREE = 24


def _is_smooth(blocks) -> bool:
    return all(f.smooth and f.delta == 0 for b in blocks for f, _ in b.members)


def _is_polynomial(blocks) -> bool:
    return all(f.degree is not None for b in blocks for f, _ in b.members)


#: The three-term recurrence of the split weights is computed once up to this many terms
#: (every rule of the ladders and the table); a rule with more nodes computes its own.
SPLIT_RECURRENCE_TERMS = 40


@lru_cache(maxsize=4)
def _split_recurrence(n: int):
    """Recurrence coefficients (α_k, β_k), k < n, of the orthonormal polynomials of the weight
    φ(u) on [c, ∞) for the grid of split points c, and the masses P(ξ > c): the discretised
    Stieltjes procedure on a 400-point Gauss–Legendre discretisation.  The coefficients of
    index k do not depend on n, so every rule with ≤ n nodes shares them."""
    from scipy.special import roots_legendre

    cs = np.arange(-SPLIT_C, SPLIT_C + SPLIT_DC / 2, SPLIT_DC)
    x, w = roots_legendre(400)
    a = cs[:, None]
    b = np.maximum(cs + 7.5, 9.5)[:, None]
    X = (b - a) / 2 * x[None] + (b + a) / 2
    Wd = (b - a) / 2 * w[None] * np.exp(-X ** 2 / 2) / math.sqrt(2 * math.pi)
    G = cs.size
    alpha, beta = np.zeros((G, n)), np.zeros((G, n))
    p_prev, p = np.zeros_like(X), np.ones_like(X)
    norm = np.sum(Wd, axis=1)
    mass, norm_prev = norm.copy(), norm
    for k in range(n):
        alpha[:, k] = np.sum(Wd * X * p * p, axis=1) / norm
        if k:
            beta[:, k] = norm / norm_prev
        p_new = (X - alpha[:, k:k + 1]) * p - (beta[:, k:k + 1] * p_prev if k else 0.0)
        p_prev, p = p, p_new
        norm_prev, norm = norm, np.sum(Wd * p * p, axis=1)
        sc = np.sqrt(norm)
        p, p_prev = p / sc[:, None], p_prev / sc[:, None]
        norm, norm_prev = norm / sc ** 2, norm_prev / sc ** 2
    return cs, alpha, beta, mass


@lru_cache(maxsize=16)
def _split_rules(n: int):
    """Gauss rules of the weight φ(u) = e^{-u²/2}/√(2π) on [c, ∞) for the grid of c.

    Returns (c (G,), nodes (G, n), weights (G, n)); the weights sum to P(ξ > c).  The
    eigenvalues of the n × n Jacobi matrices of :func:`_split_recurrence` (Golub–Welsch)."""
    cs, alpha, beta, mass = _split_recurrence(max(n, SPLIT_RECURRENCE_TERMS))
    G = cs.size
    J = np.zeros((G, n, n))
    i = np.arange(n)
    J[:, i, i] = alpha[:, :n]
    J[:, i[1:], i[:-1]] = J[:, i[:-1], i[1:]] = np.sqrt(beta[:, 1:n])
    ev, V = np.linalg.eigh(J)
    return cs, ev, mass[:, None] * V[:, 0, :] ** 2


@lru_cache(maxsize=16)
def _split_rules2(n: int):
    """(nodes (G, 2n), weights (G, 2n)) of the full line split at c = grid[g]: the rule of
    [c, ∞) followed by the mirrored rule of (-∞, c]."""
    cs, X, W = _split_rules(n)
    return (np.ascontiguousarray(np.concatenate([X, -X[::-1]], axis=1)),
            np.ascontiguousarray(np.concatenate([W, W[::-1]], axis=1)))


def _split_index(c):
    """Row of the split-rule tables for split points c (rounded to the grid)."""
    return np.rint((np.clip(c, -SPLIT_C, SPLIT_C) + SPLIT_C) / SPLIT_DC).astype(np.intp)


def _split_nodes(rules, c):
    """Nodes/weights (..., 2n) of ∫ φ(u) h(u) du split at c (rounded to the rule grid);
    a rule with one row (Gauss–Hermite) does not depend on c: its (k,) nodes are returned."""
    U, W = rules
    if U.shape[0] == 1:
        return U[0], W[0]
    g = _split_index(c)
    return U[g], W[g]


def _block_eval(block: _Block, zz: np.ndarray, sel) -> np.ndarray:
    out = None
    for f, a in block.members:
        aa = a[sel].reshape((-1,) + (1,) * (zz.ndim - 1))
        v = f.plus(zz if np.all(aa == 1) else aa * zz)
        v = np.broadcast_to(v, zz.shape)
        out = np.array(v, dtype=float) if out is None else out * v
    return out


@lru_cache(maxsize=32)
def _g_table(factor: _Factor, M: float, S: float) -> np.ndarray:
    """G(μ, s) = E[f(μ + s ξ)] on μ = -M + i h_μ, s = (j - 1) h_s (j = 0 is s = -h_s ≡ h_s)."""
    mu = np.arange(-M, M + TABLE_H_MU / 2, TABLE_H_MU)
    ns = int(math.ceil(S / TABLE_H_S)) + 4
    s = np.abs(np.arange(-1, ns - 1) * TABLE_H_S)
    rules = _split_rules2(TABLE_DEGREE)
    tab = np.empty((ns, mu.size))
    tab[s == 0] = factor.plus(mu)
    for j in np.nonzero(s > 0)[0]:
        u, w = _split_nodes(rules, -mu / s[j])
        tab[j] = np.sum(w * factor.plus(mu[:, None] + s[j] * u), axis=1)
    return np.ascontiguousarray(tab.T)  # (n_mu, n_s)


def _lagrange4(t):
    """4-point Lagrange weights of the nodes −1, 0, 1, 2 at t (numpy arrays or, compiled by
    gaussian_jit, scalars)."""
    return ((-t * (t - 1) * (t - 2) / 6), ((t + 1) * (t - 1) * (t - 2) / 2),
            (-(t + 1) * t * (t - 2) / 2), ((t + 1) * t * (t - 1) / 6))


def _cubic_coefficients(ym, y0, y1, y2):
    """Coefficients (c₀, c₁, c₂, c₃) in x of the cubic through (−1, ym), (0, y0), (1, y1),
    (2, y2): the interpolant on the table cell [i, i+1] (numpy arrays or scalars)."""
    return (y0, -ym * (1 / 3) - y0 * 0.5 + y1 - y2 * (1 / 6), (ym + y1) * 0.5 - y0,
            (y0 - y1) * 0.5 + (y2 - ym) * (1 / 6))


def _effective_variance(blocks, C) -> np.ndarray:
    """Per tuple: max_j C_jj · max |α|² over the members of block j (the scale on which the
    factors vary, in units of their argument)."""
    return np.max(np.einsum("nii->ni", C) * _block_scales(blocks) ** 2, axis=1)


def _block_scales(blocks) -> np.ndarray:
    """A[t, k] = max |α| over the members of block k."""
    return np.stack([np.max(np.stack([np.abs(a) for _, a in b.members]), axis=0) for b in blocks],
                    axis=1)


def _slopes(blocks, L, scales=None) -> np.ndarray:
    """S[t, k, j] = |L_kj| · max |α| over the members of block k: how fast factor k varies
    along the Cholesky coordinate u_j."""
    amax = _block_scales(blocks) if scales is None else scales
    return np.abs(L) * amax[:, :, None]


def _fast_nodes(S: np.ndarray, outer: int, slack: float, split_ladder=FAST_LADDER) -> np.ndarray:
    """Rule codes (see FAST_LADDER) for each outer coordinate u_j, j < outer, from the slopes
    s_j = max_{k ≥ j} S_kj; u_0 always uses the split rule (split at z_0 = 0)."""
    T = S.shape[0]
    out = np.empty((T, outer), np.intp)

    def ladder(lad, sj):
        bounds = np.array([b for b, _ in lad]) * slack
        codes = np.array([c for _, c in lad] + [0])  # 0: beyond the ladder
        return codes[np.searchsorted(bounds, sj)]
    for j in range(outer):
        sj = np.max(S[:, j:, j], axis=1)
        out[:, j] = ladder(split_ladder, sj)
        if j:
            gh = sj <= min(FAST_GH_MAX, FAST_LADDER_GH[-1][0]) * slack
            out[gh, j] = ladder(FAST_LADDER_GH, sj[gh])
    return out


def _fast_cost(nodes: np.ndarray) -> np.ndarray:
    """Quadrature points per tuple of rule codes (beyond the ladder: infinite)."""
    pts = np.prod(np.where(nodes > 0, 2 * nodes, -nodes).astype(float), axis=1)
    return np.where(np.any(nodes == 0, axis=1), np.inf, pts)


@lru_cache(maxsize=64)
def _rule(code: int):
    """(U, W) of a rule code: split rules (G, 2n) per split point, or Gauss–Hermite (1, k)."""
    if code > 0:
        return _split_rules2(code)
    x, w = np.polynomial.hermite_e.hermegauss(-code)
    return x[None, :], (w / math.sqrt(2 * math.pi))[None, :]


def _integrate_fast(blocks: list[_Block], C: np.ndarray, degree, veff, slack=None,
                   force: bool = False) -> np.ndarray:
    """Smooth factors, m ≥ 2 distinct variables: nested split Gauss rules in the Cholesky
    coordinates (z = L u); for m ≥ 3 the integral over the last variable is read from a table."""
    n, m = C.shape[0], len(blocks)
    out = np.empty(n)
    # the innermost variable should be a single unscaled factor (tabulated)
    single = [j for j, b in enumerate(blocks) if len(b.members) == 1 and np.all(b.members[0][1] == 1)]
    if m < 3:
        single = []
    order = list(range(m))
    if single:
        last = single[-1]
        order = [j for j in range(m) if j != last] + [last]
    blocks = [blocks[j] for j in order]
    C = C[:, order][:, :, order]
    C, L = _cholesky_jittered(C, m)
    _STATS["fast_tuples"] += n
    outer = m - 1 if single else m
    if degree is None:
        sl = FAST_SLACK[m] if slack is None else slack
        split_ladder = FAST_LADDER_M2 if m == 2 else FAST_LADDER
        scales = _block_scales(blocks)
        nodes = _fast_nodes(_slopes(blocks, L, scales), outer, sl, split_ladder)
        # identical single unscaled factors may be taken in any order: per tuple, the order
        # of those slots with the fewest quadrature points
        same = [j for j, b in enumerate(blocks) if len(b.members) == 1
                and b.members[0][0] is blocks[-1].members[0][0] and np.all(b.members[0][1] == 1)]
        if single and len(same) > 1:
            # all other orders at once: (P·n) stacked covariances, one Cholesky, one ladder
            orders = []
            for perm in itertools.permutations(same):
                if list(perm) != same:
                    order = list(range(m))
                    for a, b in zip(same, perm):
                        order[a] = b
                    orders.append(order)
            P = len(orders)
            Cp = np.concatenate([C[:, o][:, :, o] for o in orders])
            Cp, Lp = _cholesky_jittered(Cp, m)
            # the blocks do not move (only identical unscaled slots are exchanged)
            nodes_p = _fast_nodes(_slopes(blocks, Lp, np.tile(scales, (P, 1))), outer, sl,
                                  split_ladder)
            cost_p = _fast_cost(nodes_p).reshape(P, n)
            # the first order with the fewest points (ties: the order tried first)
            cost = _fast_cost(nodes)
            best = np.argmin(cost_p, axis=0)
            better = cost_p[best, np.arange(n)] < cost
            if np.any(better):
                k = best[better] * n + np.nonzero(better)[0]
                C[better], L[better], nodes[better] = Cp[k], Lp[k], nodes_p[k]
        beyond = np.any(nodes == 0, axis=1)
        if np.any(beyond):  # slopes too large for the ladder: the exact cone method
            nodes[nodes == 0] = FAST_LADDER[-1][1]
            if not force:
                _STATS["fast_tuples"] -= int(np.sum(beyond))
                out[beyond] = _integrate([b.take(beyond) for b in blocks], C[beyond], None, "exact")
                keep = ~beyond
                if np.any(keep):
                    out[keep] = _integrate_fast_nodes([b.take(keep) for b in blocks], L[keep],
                                                      nodes[keep], m, single)
                return out
    else:
        nodes = np.full((n, outer), int(degree), np.intp)
    out[:] = _integrate_fast_nodes(blocks, L, nodes, m, single)
    return out


def _integrate_fast_nodes(blocks, L, nodes, m, single):
    out = np.empty(L.shape[0])
    tab, M = None, 0.0
    if single:
        f_last = blocks[-1].members[0][0]
        smax = float(np.max(L[:, m - 1, m - 1]))
        # table extent: s ≤ S, |μ| ≤ M (beyond: clamped; such nodes carry weight < 1e-17);
        # rounded up to fixed sizes so that one table serves many calls
        S = max(2.0, math.ceil(smax))
        mu_sd = float(np.sqrt(np.max(np.sum(L[:, m - 1, :m - 1] ** 2, axis=1))))
        M = max(20.0, 4.0 * math.ceil(9 * mu_sd / 4))
        tab = _g_table(f_last, float(M), float(S))
    jit = _nested_jit(blocks, L, nodes, m, single, tab, M)
    if jit is not None:
        return jit
    keys, inv = np.unique(nodes, axis=0, return_inverse=True)
    inv = np.ravel(inv)
    jobs = []
    for gi, key in enumerate(keys):
        idx = np.nonzero(inv == gi)[0]
        rules = [_rule(int(d)) for d in key]
        per = int(_fast_cost(key[None])[0])
        for sl in _chunks(idx.size, per, FAST_CHUNK_POINTS):
            jobs.append((idx[sl], rules))

    def run(job):
        ii, rules = job
        out[ii] = _nested(blocks, L[ii], ii, rules, tab, M)
    pool = _pool()
    if pool is None or len(jobs) < 2:
        for job in jobs:
            run(job)
    else:
        list(pool.map(run, jobs))  # numpy releases the GIL inside the array operations
    return out


@lru_cache(maxsize=64)
def _rule_bank(codes: tuple):
    """The rules of the given codes (and the one-point rule, code −1) flattened for the
    compiled kernel: (bank, lut, lo) with bank = (U, W, base, rows, width, umax) and
    lut[code − lo] the rule's index in the bank."""
    used = sorted(set(codes) | {-1})
    Us, Ws, base, rows, width, umax = [], [], [], [], [], []
    pos = 0
    for c in used:
        U, W = _rule(c)
        Us.append(U.ravel())
        Ws.append(W.ravel())
        base.append(pos)
        rows.append(U.shape[0])
        width.append(U.shape[1])
        umax.append(float(np.max(np.abs(U))))
        pos += U.size
    lo = used[0]
    lut = np.zeros(used[-1] - lo + 1, np.intp)
    for i, c in enumerate(used):
        lut[c - lo] = i
    ints = [np.array(a, np.intp) for a in (base, rows, width)]
    return (np.concatenate(Us), np.concatenate(Ws), *ints, np.array(umax)), lut, lo


def _nested_jit(blocks, L, nodes, m, single, tab, M):
    """The nested rule by the compiled kernel of :mod:`ntkdiagrams.numerics.gaussian.compiled`, or None where
    it does not apply: numba not installed, NTKDIAGRAMS_JIT=0, or a factor without an
    exponential form R(e^{κz}).  Same rules, same numbers to rounding."""
    import os
    from . import compiled as gj
    if not gj.available() or os.environ.get("NTKDIAGRAMS_JIT", "1") == "0":
        return None
    T, outer = L.shape[0], nodes.shape[1]
    factors, coefs = [], []
    nmem = np.zeros(gj.LEVELS, np.intp)
    width = max(len(b.members) for b in blocks)
    fid = np.zeros((gj.LEVELS, width), np.intp)
    alpha = np.zeros((T, gj.LEVELS, width))
    for j in range(outer):  # the tabulated block (j = m − 1 with a table) is not a level
        nmem[j] = len(blocks[j].members)
        for i, (f, a) in enumerate(blocks[j].members):
            if f.expo is None:
                return None
            if f not in factors:
                factors.append(f)
                coefs.append((f.expo.kappa, gj.exponential_coefficients(f.expo.num, f.expo.den,
                                                                        f.expo.degree)))
            fid[j, i] = factors.index(f)
            alpha[:, j, i] = a
    bank, lut, lo = _rule_bank(tuple(int(c) for c in np.unique(nodes)))
    codes = np.full((T, gj.LEVELS), lut[-1 - lo], np.intp)  # levels beyond: the one-point rule
    codes[:, :outer] = lut[nodes - lo]
    Lp = np.zeros((T, gj.LEVELS, gj.LEVELS))
    Lp[:, :m, :m] = L
    tab, tv = (np.zeros((4, 4)), -1) if tab is None else (tab, m - 1)
    try:
        return gj.nested(Lp, codes, bank, nmem, fid, alpha, coefs, outer, tab, tv, float(M),
                         TABLE_H_MU, TABLE_H_S, TABLE_REACH, SPLIT_C, SPLIT_DC, pool=_pool(),
                         groups=8 * _POOL_THREADS)
    except Exception as exc:  # numba's own errors: a broken installation, a compiler failure
        if gj.available() and isinstance(exc, gj.nb.core.errors.NumbaError):
            raise RuntimeError(f"the compiled quadrature kernel failed ({type(exc).__name__}); "
                               "set NTKDIAGRAMS_JIT=0 to use the numpy path") from exc
        raise


_POOL = None
_POOL_THREADS = 1


def _pool():
    """A shared thread pool for the fast path (``NTKDIAGRAMS_THREADS``, default: the number of
    cores available to this process, at most 8; 1 = no threads).  Chunks of tuples are
    independent and write disjoint slices of the result, so the numbers do not depend on it."""
    global _POOL, _POOL_THREADS
    if _POOL is None:
        import os
        from concurrent.futures import ThreadPoolExecutor
        _keep_heap()
        try:
            n = int(os.environ.get("NTKDIAGRAMS_THREADS", "0"))
        except ValueError:
            n = 0
        if n <= 0:
            n = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
        _POOL = ThreadPoolExecutor(max_workers=n) if n > 1 else False
        _POOL_THREADS = n
    return _POOL or None


#: bytes of free heap that glibc keeps at the top of the heap instead of returning them to
#: the OS (M_TOP_PAD); see :func:`_keep_heap`
HEAP_TOP_PAD = 64 << 20


def _keep_heap() -> None:
    """Ask glibc to keep HEAP_TOP_PAD bytes of freed heap (mallopt M_TOP_PAD) for this process.

    The fast path allocates and frees arrays of ~1 MB many thousand times per layer.  By
    default glibc hands such memory back to the OS and takes page faults to get it again; on
    small virtual machines a fault costs ~5 µs, i.e. ~10 ns per float: more than the
    arithmetic (measured: N = 16 four-point tensors 1.3–1.5× faster with the pad).  Set
    NTKDIAGRAMS_KEEP_HEAP=0 to leave the allocator alone; without glibc nothing happens."""
    import ctypes
    import ctypes.util
    import os
    if os.environ.get("NTKDIAGRAMS_KEEP_HEAP", "1") == "0":
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-2, HEAP_TOP_PAD)  # M_TOP_PAD
    except (OSError, AttributeError):  # not glibc
        pass


def _block_on_nodes(block: _Block, mu: np.ndarray, s: np.ndarray, u: np.ndarray, sel) -> np.ndarray:
    """Block j on a Gauss–Hermite level: Π_members f(α (μ + s u_k)) as (T, k, P) (node-major:
    numpy broadcasts fast along the long axis), for the running means μ (T, P), the slopes
    s (T, 1) and the level's nodes u (k,).

    A factor with an exponential form f = R(e^{κz}) is evaluated by the addition theorem
    R(e^{κα μ} e^{κα s u_k}): P + k exponentials per tuple instead of P·k tanh's."""
    out = None
    for f, a in block.members:
        ka = _expo_scale(f, a[sel], mu, s, u)
        if ka is not None:
            v = f.expo.R(np.exp(ka * mu)[:, None, :] * np.exp((ka * s) * u)[:, :, None])
        else:
            v = _block_eval(_Block([(f, a)]), mu[:, None, :] + (s * u)[:, :, None], sel)
        out = v if out is None else out * v
    return out


def _expo_scale(f: _Factor, a: np.ndarray, mu: np.ndarray, s: np.ndarray, u: np.ndarray):
    """κα (T, 1) for evaluating f(α(μ + s u)) as R(e^{κα μ} e^{κα s u}), or None when f has
    no exponential form or E^d could overflow (|κα z|·d > EXPO_MAX_EXPONENT)."""
    if f.expo is None:
        return None
    ka = f.expo.kappa * a[:, None]
    reach = np.max(np.abs(ka) * (np.max(np.abs(mu), axis=1, keepdims=True) + np.abs(s) * np.max(np.abs(u))))
    return ka if reach * f.expo.degree <= EXPO_MAX_EXPONENT else None


def _block_on_split(block: _Block, mu: np.ndarray, s: np.ndarray, U: np.ndarray, g: np.ndarray,
                    sel) -> np.ndarray | None:
    """Block j on a split-rule level, by the addition theorem of its exponential forms:
    Π f(α(μ + s U[g])) = Π R(e^{κα μ} · e^{κα s U[g]}) with e^{κα s U} tabulated per tuple
    over the rows of the rule bank (G × 2n exponentials per tuple instead of P × 2n tanh's).
    None when a factor has no exponential form or E^d could overflow."""
    T = mu.shape[0]
    G = U.shape[0]
    out = None
    for f, a in block.members:
        ka = _expo_scale(f, a[sel], mu, s, U)
        if ka is None:
            return None
        tab = np.exp((ka * s)[:, :, None] * U[None]).reshape(T * G, -1)  # (T·G, 2n)
        e = np.take(tab, g + (np.arange(T) * G)[:, None], axis=0)  # (T, P, 2n)
        e *= np.exp(ka * mu)[..., None]
        v = f.expo.R(e)
        out = v if out is None else out * v
    return out


def _nested(blocks, L, sel, rules, tab, M):
    """Σ over the nested rules of Π_j f_j(z_j) (outer levels), times G(μ_last, s_last) read
    from the table when ``tab`` is given.  L (T, m, m): Cholesky factors of the chunk's tuples.

    The mean of the tabulated variable is carried in table units x = (μ + M)/h_μ, so that
    the lookup needs no rescaling; array passes over the innermost level are what costs."""
    T, m = L.shape[0], L.shape[1]
    outer = len(rules)
    wt = np.ones((T, 1))
    Mu = [np.zeros((T, 1)) for _ in range(m)]
    Lx = L
    if tab is not None:
        Mu[m - 1] += M / TABLE_H_MU
        Lx = L.copy()
        Lx[:, m - 1, :] /= TABLE_H_MU
    for j in range(outer):
        s = L[:, j, j][:, None]
        if rules[j][0].shape[0] == 1:  # Gauss–Hermite: the same k nodes at every point
            u, w = rules[j][0][0], rules[j][1][0]
            f = _block_on_nodes(blocks[j], Mu[j], s, u, sel)  # (T, k, P)
            f *= wt[:, None, :]
            f *= w[None, :, None]
            wt = f.reshape(T, -1)
            for i in range(j + 1, m):
                Mu[i] = (Mu[i][:, None, :] + (Lx[:, i, j][:, None] * u)[:, :, None]).reshape(T, -1)
        else:  # split rule: nodes depend on the point through the split c = -μ_j/s_j
            with np.errstate(divide="ignore", invalid="ignore"):
                c = np.where(s > 0, -Mu[j] / np.where(s > 0, s, 1.0), 0.0)
            g = _split_index(c)
            U, W = rules[j]
            u, w = U[g], W[g]  # (T, P, 2n)
            f = None
            if g.shape[1] > 2 * U.shape[0]:  # many points per tuple: tabulate e^{κ s u} per tuple
                f = _block_on_split(blocks[j], Mu[j], s, U, g, sel)
            if f is None:
                f = _block_eval(blocks[j], Mu[j][..., None] + s[..., None] * u, sel)
            f *= w
            f *= wt[..., None]
            wt = f.reshape(T, -1)
            for i in range(j + 1, m):
                Mu[i] = (Mu[i][..., None] + Lx[:, i, j][:, None, None] * u).reshape(T, -1)
    if tab is None:
        return wt.sum(axis=1)
    # innermost: G(μ, s) by 4-point Lagrange interpolation in s (per tuple) and a cubic in μ
    # on each table cell, on the window of table rows that the chunk's μ values need
    n_mu, n_s = tab.shape
    x = Mu[m - 1]
    # nodes whose μ lies beyond TABLE_REACH standard deviations of μ carry a weight
    # < e^{-TABLE_REACH²/2} (Cauchy–Schwarz on u): clamp them, which keeps the window small
    reach = TABLE_REACH * np.sqrt(np.sum(L[:, m - 1, :m - 1] ** 2, axis=1))[:, None] / TABLE_H_MU
    np.clip(x, M / TABLE_H_MU - reach, M / TABLE_H_MU + reach, out=x)
    lo, hi = int(x.min()), int(x.max())
    if lo < 1 or hi > n_mu - 3:  # beyond the table (weight < 1e-17): clamped
        np.clip(x, 1.0, n_mu - 3.0, out=x)
        lo, hi = int(x.min()), int(x.max())
    lo, hi = lo - 1, hi + 2  # the 4-point stencil of cell i is rows i-1 … i+2
    xs = L[:, m - 1, m - 1] / TABLE_H_S + 1.0
    js = np.clip(np.floor(xs).astype(np.intp), 1, n_s - 3)
    ws = _lagrange4(xs - js)
    win = tab[lo:hi + 1]
    tt = sum(wk[:, None] * win[:, js + (k - 1)].T for k, wk in enumerate(ws))  # (T, nw)
    nw = tt.shape[1]
    # cubic coefficients of the 4-point interpolant on each cell [i, i+1]
    ym, y0, y1, y2 = tt[:, :-3], tt[:, 1:-2], tt[:, 2:-1], tt[:, 3:]
    coef = np.stack(_cubic_coefficients(ym, y0, y1, y2), axis=-1).reshape(-1, 4)
    i0 = x.astype(np.intp)
    x -= i0
    i0 += (np.arange(T) * (nw - 3) - 1 - lo)[:, None]
    cf = np.take(coef, i0, axis=0)  # (T, P, 4): one row per point
    g = cf[..., 3] * x
    g += cf[..., 2]
    g *= x
    g += cf[..., 1]
    g *= x
    g += cf[..., 0]
    return np.einsum("tp,tp->t", wt, g)


# ----------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------

def _check_kernel(K) -> np.ndarray:
    try:
        A = np.asarray(K, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"kernel K must be a real (N, N) array ({exc})") from None
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise InputError(f"kernel K must be a square (N, N) matrix with N >= 1, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise InputError("kernel K contains NaN or infinite entries")
    scale = max(float(np.max(np.abs(A))), 1e-300)
    if np.max(np.abs(A - A.T)) > 1e-10 * scale:
        raise InputError("kernel K is not symmetric (max |K - K^T| = "
                         f"{np.max(np.abs(A - A.T)):.3g})")
    A = 0.5 * (A + A.T)
    ev = np.linalg.eigvalsh(A)
    if ev[0] < -1e-10 * max(ev[-1], 1e-300) or np.any(np.diag(A) < 0):
        raise InputError(f"kernel K is not positive semi-definite (smallest eigenvalue {ev[0]:.3g})")
    return A


def _check_options(degree, method) -> None:
    if degree is not None and (int(degree) != degree or degree < 1):
        raise InputError(f"degree must be a positive integer, got {degree!r}")
    if method not in ("auto", "exact", "fast"):
        raise InputError(f"method must be 'auto', 'exact' or 'fast', got {method!r}")


def _prepare_factors(factors) -> list[_Factor]:
    if isinstance(factors, (sp.Basic, str)) or not isinstance(factors, Sequence):
        raise InputError("factors must be a sequence (list/tuple) of sympy expressions in z")
    k = len(factors)
    if not 1 <= k <= 4:
        raise InputError(f"expectation_tensor supports 1 to 4 factors, got {k}")
    return [_prepare_factor(_canonical_z(f)) for f in factors]


def _tensor_values(facs: list[_Factor], K: np.ndarray, tuples: np.ndarray, degree,
                   method: str = "auto") -> np.ndarray:
    C = K[tuples[:, :, None], tuples[:, None, :]]
    blocks = [_Block([(f, np.ones(tuples.shape[0]))]) for f in facs]
    deltas = [np.full(tuples.shape[0], f.delta) for f in facs]
    if not any(f.delta for f in facs):
        deltas = None
    return _expect(blocks, C, deltas, degree, method)


def expectation_tensor(factors, K, *, degree=None, method="auto") -> np.ndarray:
    """T[a₁…a_k] = E[f₁(z_{a₁}) … f_k(z_{a_k})] for z ~ N(0, K), all index tuples.

    Parameters
    ----------
    factors: 1 to 4 sympy expressions in :data:`ntkdiagrams.numerics.activations.z`; they may contain
        Max/Min/Abs/Heaviside with kinks at 0 and DiracDelta(z) (first order).
    K: (N, N) symmetric positive semi-definite covariance.
    degree: nodes per dimension of the quadrature (default :data:`DEFAULT_DEGREE_BY_DIM`;
        for the fast path: nodes per side of the split rules, default :data:`FAST_DEGREES`).
    method: ``"auto"`` (default): the fast path (nested split Gauss rules, see the module
        docstring) for tuples with ≥ 3 distinct variables whose factors are all smooth, not
        all polynomial, and whose effective variance is ≤ :data:`FAST_MAX_VARIANCE`; the
        exact cone method otherwise.  ``"exact"``: always the cone method.  ``"fast"``: the
        fast path for every smooth tuple with ≥ 3 variables, whatever its variance.

    Returns an array of shape (N,)*k.  Entries with two deltas on the same variable are NaN.

    Examples
    --------
    >>> import numpy as np, sympy as sp
    >>> from ntkdiagrams.numerics.activations import z
    >>> T = expectation_tensor([sp.Max(0, z), sp.Max(0, z)], np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> bool(abs(T[0, 0] - 0.5) < 1e-12 and abs(T[0, 1] - 1 / (2 * np.pi)) < 1e-12)
    True
    """
    facs = _prepare_factors(factors)
    A = _check_kernel(K)
    _check_options(degree, method)
    N, k = A.shape[0], len(facs)
    tuples = np.indices((N,) * k).reshape(k, -1).T
    # slots with identical factors are symmetric: compute sorted tuples only
    canon = tuples.copy()
    groups: dict = {}
    for s, f in enumerate(facs):
        groups.setdefault(f.expr, []).append(s)
    for slots in groups.values():
        if len(slots) > 1:
            canon[:, slots] = np.sort(canon[:, slots], axis=1)
    # unique rows through one integer key per tuple (np.unique(axis=0) sorts structured rows,
    # ~0.15 s for N = 16, k = 4)
    key = np.ravel_multi_index(canon.T, (N,) * k)
    ukey, inv = np.unique(key, return_inverse=True)
    uniq = np.stack(np.unravel_index(ukey, (N,) * k), axis=1)
    vals = np.empty(uniq.shape[0])
    per = 4096
    for a in range(0, uniq.shape[0], per):
        vals[a:a + per] = _tensor_values(facs, A, uniq[a:a + per], degree, method)
    return vals[np.ravel(inv)].reshape((N,) * k)


def _split_product(term: sp.Expr, variables) -> tuple[sp.Expr, dict] | None:
    coeff = sp.Integer(1)
    per: dict = {}
    for a in sp.Mul.make_args(term):
        fs = a.free_symbols & set(variables)
        if not fs:
            coeff *= a
        elif len(fs) == 1:
            v = fs.pop()
            per[v] = per.get(v, sp.Integer(1)) * a
        else:
            return None
    return coeff, per


def gaussian_expectation(expr, variables, cov, *, degree=None, method="auto") -> float:
    """E[expr] for the jointly Gaussian ``variables`` with covariance ``cov``.

    ``expr`` must be a sum of products of univariate functions of the variables (at most 4
    variables), e.g. ``tanh(x)*tanh(y)``, ``Max(0,x)*DiracDelta(y) + x*y``.

    Examples
    --------
    >>> import sympy as sp
    >>> x, y = sp.symbols("x y")
    >>> round(gaussian_expectation(x**2 * y**2, [x, y], [[1, 0.5], [0.5, 2]]), 12)
    2.5
    """
    variables = list(variables)
    if not 1 <= len(variables) <= 4 or len(set(variables)) != len(variables):
        raise InputError("variables must be 1 to 4 distinct sympy symbols")
    A = _check_kernel(cov)
    _check_options(degree, method)
    if A.shape[0] != len(variables):
        raise InputError(f"cov has shape {A.shape} but there are {len(variables)} variables")
    e = _as_sympy(expr, "expression")
    extra = e.free_symbols - set(variables)
    if extra:
        raise InputError(f"expression contains symbols {sorted(map(str, extra))} not among the variables")
    terms = []
    for t in sp.Add.make_args(e):
        sp_ = _split_product(t, variables)
        if sp_ is None:
            for t2 in sp.Add.make_args(sp.expand(t)):
                sp2 = _split_product(t2, variables)
                if sp2 is None:
                    raise UnsupportedError(f"term {t2} is not a product of univariate functions "
                                           f"of {variables}")
                terms.append(sp2)
        else:
            terms.append(sp_)
    total = 0.0
    for coeff, per in terms:
        if not per:
            total += float(coeff)
            continue
        vs = [v for v in variables if v in per]
        facs = [_prepare_factor(_canonical_z(per[v].subs(v, z))) for v in vs]
        ids = np.array([[variables.index(v) for v in vs]])
        total += float(coeff) * float(_tensor_values(facs, A, ids, degree, method)[0])
    return total
