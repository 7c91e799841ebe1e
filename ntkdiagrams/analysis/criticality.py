"""Criticality: the critical (C_b, C_W) of an activation, its universality class, and the
depth scaling of the first-order tensors there (PDLT ch. 5, 8, 9, 11; single input).

Kernel map and susceptibilities (one input, z ~ N(0, K), ⟨·⟩_K its expectation)::

    K' = f(K) = C_b + C_W ⟨σ²⟩_K
    χ_∥(K) = df/dK = (C_W / 2K²) ⟨σ² (z² − K)⟩_K  = C_W ⟨σ'² + σσ''⟩_K
    χ_⊥(K) = C_W ⟨σ'²⟩_K

Criticality is a fixed point K* = f(K*) with χ_∥(K*) = χ_⊥(K*) = 1, C_b ≥ 0, C_W > 0.

Search (:func:`critical_point`).  For a trial K > 0, χ_⊥ = 1 fixes C_W(K) = 1/⟨σ'²⟩_K and the
fixed-point equation fixes C_b(K) = K − ⟨σ²⟩_K/⟨σ'²⟩_K.  Then χ_∥ − χ_⊥ = C_W ⟨σσ''⟩_K, so the
remaining condition χ_∥ = 1 is the root condition

    h(K) = ⟨σ σ''⟩_K = 0,      accepted where C_b(K) ≥ 0.

h is scanned on a logarithmic K grid (default 1e-4 … 100) and its sign changes are refined by
Brent's method.  The expectations are the package's one-dimensional Gaussian expectations
(:func:`ntkdiagrams.numerics.gaussian.expectation_tensor`: the half-line rule split at z = 0), so kinks
and Dirac deltas of σ'' (ReLU family) are exact, never smoothed; ``precise=True`` refines the
root by Newton steps with mpmath quadrature at 20 digits (smooth activations).

The limit K* → 0 is handled analytically from the Taylor coefficients σ_p = σ^{(p)}(0) (σ
analytic at 0).  With ⟨z^{2m}⟩_K = (2m−1)!! K^m, at C_b = 0, C_W = 1/σ_1²::

    f(K) = K + a_1 K² + a_2 K³ + …,   a_1 = σ_3/σ_1 + (3/4)(σ_2/σ_1)²
    χ_⊥(K) = 1 + b_1 K + …,           b_1 = σ_3/σ_1 + (σ_2/σ_1)²

(PDLT §5.3.3).  Conditions implemented for the **K* = 0 class**: σ(0) = 0 (K = 0 is then a
fixed point at C_b = 0), σ'(0) ≠ 0 (χ_⊥(0) = C_W σ_1² = 1 needs a finite C_W; χ_∥(0) = 1
follows), and the first non-zero a_j is negative (K = 0 attracts from K > 0:
K^(ℓ) ≈ 1/(−a_1 ℓ) for j = 1).  With a_j > 0 the point K = 0 is formally critical but repelling
(SWISH, GELU) and is listed as a rejected candidate.

Classes (``CriticalPoint.universality``):

* ``"scale-invariant"``: σ = a₊z (z > 0), a₋z (z < 0); C_b = 0, C_W = 2/(a₊² + a₋²), every K is
  a fixed point with χ_∥ = χ_⊥ = 1 (h ≡ 0).
* ``"K*=0"``: as above (tanh, erf, sin).
* ``"half-stable"``: a root K* > 0 of h with C_b ≥ 0.  There ΔK' = ΔK + a_1 ΔK² + … with
  a_1 = f''(K*)/2, so the fixed point attracts from one side only (below when a_1 > 0) and
  χ_⊥ = 1 + b_1 ΔK, b_1 = dχ_⊥/dK.  PDLT §5.3.4 (SWISH, GELU).
* ``"none"``: no critical point with C_b ≥ 0 (softplus, sigmoid, …).

In both power-law cases K approaches K* like ΔK ≈ −1/(a_1 ℓ) and χ_⊥ ≈ 1 − p_⊥/ℓ with
p_⊥ = b_1/a_1, so Θ-type products over layers scale like ℓ^{−p_⊥}.

Depth scaling (:func:`depth_scaling`): the engine's recursions (:func:`ntkdiagrams.numerics.evaluate.
evaluate`) for one input at the critical point, normalised to dimensionless ratios

    G1/K, V/K², Θ1/Θ, A/Θ², B/Θ², D/(ΘK), F/(ΘK), P/Θ², Q/Θ², R·K/Θ³, S·K/Θ³, T·K/Θ³, U·K/Θ³

(each the coefficient of 1/n; dimensions: z ~ √K, H ~ Θ, dH ~ Θ²/√K, ddH ~ Θ³/K), with a fit
r(ℓ) ≈ c ℓ^p over the tail ℓ ∈ [L/2, L] and the linear slope dr/dℓ there.

Only the MLP (rules/mlp.toml) is covered: the kernel map above is the MLP's, so both functions
refuse any other rule file (``rules=``; :func:`require_mlp`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import sympy as sp

from ..numerics.activations import Activation, parse_activation
from ..numerics.activations import z as zsym
from ..errors import ActivationError, InputError, UnsupportedError

__all__ = ["CriticalPoint", "DepthScaling", "critical_point", "depth_scaling", "gaussian_1d",
           "susceptibilities", "RATIOS"]

#: K grid of the root scan (log-spaced, inclusive) and its number of points
K_MIN, K_MAX, K_POINTS = 1e-4, 100.0, 300
_KINKS = (sp.Max, sp.Min, sp.Abs, sp.Heaviside, sp.sign, sp.Piecewise, sp.DiracDelta)


# ---------------------------------------------------------------- Gaussian expectations

def require_mlp(rules, what: str) -> None:
    """UnsupportedError unless ``rules`` (a name, path or RuleSet; None = mlp) is the built-in MLP
    (the same rule-file text): criticality is implemented for the MLP only."""
    if rules is None or (isinstance(rules, str) and rules == "mlp"):
        return
    from ..language.rulefile import RuleSet, load_rules
    rs = rules if isinstance(rules, RuleSet) else load_rules(rules)
    if rs.source != load_rules("mlp").source:
        raise UnsupportedError(f"{what}: criticality is implemented for the MLP of rules/mlp.toml only; "
                               f"rule file {rs.name!r} ({rs.path}) is not supported")


def _activation(activation) -> Activation:
    if isinstance(activation, Activation):
        return activation
    if not isinstance(activation, str):
        raise ActivationError(f"activation must be a name or an expression in z, got {activation!r}")
    return parse_activation(activation)


def gaussian_1d(f: sp.Expr, Ks) -> np.ndarray:
    """⟨f(z)⟩_K for z ~ N(0, K), for each K of ``Ks`` (all > 0), by the package's quadrature.

    ``f`` is a sympy expression in :data:`ntkdiagrams.numerics.activations.z` (kinks at 0 and DiracDelta(z)
    allowed).  Values that overflow in floating point come back as NaN.  One variable: the
    compiled kernel and the thread pool play no part, so no settings are read."""
    from ..numerics.gaussian import expectation_tensor
    from ..settings import Settings
    K = np.atleast_1d(np.asarray(Ks, dtype=float))
    if K.ndim != 1 or np.any(~np.isfinite(K)) or np.any(K <= 0):
        raise InputError("the variances K must be finite and > 0")
    out = np.empty_like(K)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for a in range(0, len(K), 32):  # diagonal kernels in blocks: cheap kernel checks
            out[a:a + 32] = expectation_tensor([f], np.diag(K[a:a + 32]), settings=Settings(threads=1))
    return np.where(np.isfinite(out), out, np.nan)


def _mp_expect(f: sp.Expr, K, dps: int = 20):
    """⟨f⟩_K by mpmath quadrature at ``dps`` digits (smooth f only), split at 0, ±4σ, ±8σ."""
    import mpmath as mp
    if f.has(*_KINKS):
        raise UnsupportedError("the mpmath reference handles smooth activations only")
    fn = sp.lambdify(zsym, f, modules="mpmath")
    with mp.workdps(dps):
        s = mp.sqrt(mp.mpf(K))
        return mp.quad(lambda u: fn(s * u) * mp.npdf(u), [-mp.inf, -8, -4, 0, 4, 8, mp.inf])


def _integrands(act: Activation) -> dict:
    s, s1, s2 = act.derivative(0), act.derivative(1), act.derivative(2)
    return {"g0": s ** 2, "g1": s1 ** 2, "h": sp.expand(s * s2), "gz": s ** 2 * zsym ** 2}


def susceptibilities(activation, K, cb: float, cw: float) -> dict:
    """f(K) = C_b + C_W⟨σ²⟩_K, χ_∥ = (C_W/2K²)⟨σ²(z²−K)⟩_K and χ_⊥ = C_W⟨σ'²⟩_K at one K > 0.

    χ_∥ uses the (z² − K) form (no derivative of σ), so it is exact for kinked activations."""
    act = _activation(activation)
    f = _integrands(act)
    K = float(K)
    g0, g1, gz = (float(gaussian_1d(f[k], [K])[0]) for k in ("g0", "g1", "gz"))
    return {"K": K, "f": cb + cw * g0, "chi_parallel": cw * (gz - K * g0) / (2 * K * K),
            "chi_perp": cw * g1}


# ---------------------------------------------------------------- small-K expansion

def _taylor(act: Activation, order: int = 8):
    """σ_p = σ^{(p)}(0), p < order, exact sympy numbers, or None if σ is not analytic at 0."""
    if act.expr.has(*_KINKS):
        return None
    try:
        ser = sp.series(act.expr, zsym, 0, order).removeO()
        poly = sp.Poly(ser, zsym)
    except Exception:  # noqa: BLE001 - sympy cannot expand: no analytic K* = 0 analysis
        return None
    coeffs = [poly.coeff_monomial(zsym ** p) for p in range(order)]
    if any(not c.is_number or not c.is_finite for c in coeffs):
        return None
    return [sp.nsimplify(c * sp.factorial(p)) if c.is_Rational else c * sp.factorial(p)
            for p, c in enumerate(coeffs)]


def _gauss_moments(poly_expr: sp.Expr, K: sp.Symbol, max_m: int) -> sp.Expr:
    """Replace z^{2m} → (2m−1)!! K^m, odd powers → 0, truncated at K^{max_m}."""
    p = sp.Poly(sp.expand(poly_expr), zsym)
    out = sp.Integer(0)
    for (deg,), c in p.terms():
        if deg % 2 == 0 and deg // 2 <= max_m:
            out += c * sp.factorial2(deg - 1) * K ** (deg // 2) if deg else c
    return sp.expand(out)


def _small_k(act: Activation) -> dict | None:
    """Series of the kernel map and χ_⊥ at C_b = 0, C_W = 1/σ_1² around K = 0 (σ(0) = 0)."""
    sig = _taylor(act)
    if sig is None:
        return None
    out = {"sigma": [float(s) for s in sig[:4]]}
    if sig[0] != 0 or sig[1] == 0:
        return out
    Ks = sp.Symbol("K", positive=True)
    M = 3  # up to K^3 in f (needs σ_5), K^2 in χ_⊥
    ser = sum(sig[p] / sp.factorial(p) * zsym ** p for p in range(len(sig)))
    cw = 1 / sig[1] ** 2
    fK = sp.expand(cw * _gauss_moments(sp.expand(ser ** 2), Ks, M))
    dser = sp.diff(ser, zsym)
    chi = sp.expand(cw * _gauss_moments(sp.expand(dser ** 2), Ks, M - 1))
    a = [sp.nsimplify(fK.coeff(Ks, j + 1)) for j in range(1, M)]        # a_1, a_2
    b = [sp.nsimplify(chi.coeff(Ks, j)) for j in range(1, M)]            # b_1, b_2
    out.update({"cw": cw, "a": a, "b": b, "linear_coeff": sp.nsimplify(fK.coeff(Ks, 1))})
    return out


# ---------------------------------------------------------------- critical point

@dataclass(frozen=True)
class CriticalPoint:
    """The critical point of an activation (PDLT ch. 5), or the report that none exists.

    Attributes
    ----------
    activation: its text.
    universality: ``"scale-invariant"``, ``"K*=0"``, ``"half-stable"`` or ``"none"``.
    cb, cw: the critical C_b, C_W (None for ``"none"``).
    K_star: the fixed point (0.0 for the K*=0 class; None for scale-invariant: every K ≥ 0).
    chi_parallel, chi_perp: χ_∥, χ_⊥ at (K*, C_b, C_W), computed back from the expectations
        (at K = 1 for scale-invariant activations; the K → 0 limit for the K*=0 class).
    a1: ΔK^(ℓ+1) = ΔK + a1 ΔK² + …  (f''(K*)/2; the K*=0 class: σ_3/σ_1 + ¾(σ_2/σ_1)²).
    b1: χ_⊥ = 1 + b1 ΔK + …  (dχ_⊥/dK at K*).
    p_perp: b1/a1: χ_⊥^(ℓ) ≈ 1 − p_perp/ℓ on the attracting side.
    attracts_from: ``"above"``, ``"below"`` or ``"both"`` (marginal line, scale-invariant).
    candidates: every solution of the criticality conditions found, accepted or not, as dicts
        (K_star, cb, cw, a1, accepted, why).
    notes: what was checked and how.
    """

    activation: str
    universality: str
    cb: float | None
    cw: float | None
    K_star: float | None
    chi_parallel: float | None = None
    chi_perp: float | None = None
    a1: float | None = None
    b1: float | None = None
    p_perp: float | None = None
    attracts_from: str | None = None
    candidates: tuple = ()
    notes: tuple = ()

    @property
    def critical(self) -> bool:
        return self.universality != "none"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["candidates"] = [dict(c) for c in self.candidates]
        d["notes"] = list(self.notes)
        return d

    def text(self) -> str:
        fmt = lambda v: "-" if v is None else f"{v:.10g}"  # noqa: E731
        lines = [f"activation {self.activation}: universality class {self.universality}"]
        if self.critical:
            ks = "any K >= 0 (line of fixed points)" if self.K_star is None else fmt(self.K_star)
            lines.append(f"  C_b = {fmt(self.cb)}, C_W = {fmt(self.cw)}, K* = {ks}")
            lines.append(f"  chi_parallel = {fmt(self.chi_parallel)}, chi_perp = {fmt(self.chi_perp)}")
            if self.a1 is not None:
                lines.append(f"  a1 = {fmt(self.a1)}, b1 = {fmt(self.b1)}, p_perp = b1/a1 = {fmt(self.p_perp)}, "
                             f"attracts from {self.attracts_from}")
        for c in self.candidates:
            lines.append(f"  candidate K* = {fmt(c['K_star'])}: C_b = {fmt(c['cb'])}, C_W = {fmt(c['cw'])}, "
                         f"{'accepted' if c['accepted'] else 'rejected'} ({c['why']})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _scan(act: Activation, Ks: np.ndarray) -> dict:
    f = _integrands(act)
    vals = {k: gaussian_1d(f[k], Ks) for k in ("g0", "g1", "h")}
    return vals


def _h_scalar(act: Activation):
    f = _integrands(act)["h"]
    return lambda K: float(gaussian_1d(f, [K])[0])


def _newton_mp(act: Activation, K0: float, steps: int = 3) -> float:
    """Newton steps K ← K − h/h' on h(K) = ⟨σσ''⟩_K with mpmath quadrature (h' = ⟨σσ''(z²−K)⟩/2K²)."""
    fh = _integrands(act)["h"]
    K = K0
    for _ in range(steps):
        h = float(_mp_expect(fh, K))
        dh = float(_mp_expect(sp.expand(fh * (zsym ** 2 - K)), K)) / (2 * K * K)
        step = h / dh
        K -= step
        if abs(step) < 1e-13 * K:
            break
    return K


def _point_at(act: Activation, K: float, precise: bool = False) -> dict:
    """C_W, C_b, χ's, a1 = f''/2 and b1 = dχ_⊥/dK at a trial K > 0 (χ_⊥ = 1 imposed)."""
    f = _integrands(act)
    if precise:
        g0, g1, h = (float(_mp_expect(f[k], K)) for k in ("g0", "g1", "h"))
        gz = float(_mp_expect(f["gz"], K))
    else:
        g0, g1, h, gz = (float(gaussian_1d(f[k], [K])[0]) for k in ("g0", "g1", "h", "gz"))
    cw = 1.0 / g1
    cb = K - g0 / g1

    # derivatives in K of the χ's: d⟨F⟩/dK = ⟨F (z² − K)⟩ / (2K²); f''/2 = ½ dχ_∥/dK
    def dK(expr):
        return float(gaussian_1d(sp.expand(expr * (zsym ** 2 - K)), [K])[0]) / (2 * K * K)
    dchi_perp = cw * dK(f["g1"])
    dchi_par = cw * dK(sp.expand(f["g1"] + f["h"])) if not act.has_delta(2) else \
        _fd(lambda k: cw * (float(gaussian_1d(f["gz"], [k])[0]) - k * float(gaussian_1d(f["g0"], [k])[0]))
            / (2 * k * k), K)
    return {"K_star": K, "cb": cb, "cw": cw, "chi_parallel": cw * (gz - K * g0) / (2 * K * K),
            "chi_perp": cw * g1, "h": h, "a1": 0.5 * dchi_par, "b1": dchi_perp}


def _fd(fn, K: float) -> float:
    """Central difference with one Richardson step."""
    d = 1e-3 * K
    d1 = (fn(K + d) - fn(K - d)) / (2 * d)
    d2 = (fn(K + d / 2) - fn(K - d / 2)) / d
    return (4 * d2 - d1) / 3


def _brent(fn, a: float, b: float, fa: float, fb: float, tol: float = 1e-13) -> float:
    from scipy.optimize import brentq
    return float(brentq(fn, a, b, xtol=tol * max(abs(a), 1e-300), rtol=1e-15, maxiter=200))


def critical_point(activation, *, k_min: float = K_MIN, k_max: float = K_MAX, points: int = K_POINTS,
                   precise: bool = False, rules=None) -> CriticalPoint:
    """Find the critical (C_b, C_W) of an activation, or report that none exists.

    Parameters
    ----------
    activation: a shortcut (``tanh``, ``relu``, ``gelu``, ``leaky_relu:0.2``, …), an expression
        in z, or an :class:`~ntkdiagrams.numerics.activations.Activation`.
    k_min, k_max, points: the log-spaced K grid on which h(K) = ⟨σσ''⟩_K is scanned for sign
        changes (a root where h touches 0 without changing sign is not found; stated in notes).
    precise: refine non-zero roots by Newton steps with mpmath quadrature at 20 digits
        (smooth activations), an independent check of the package's quadrature.
    rules: the rule file (None or ``"mlp"``); any other is refused (MLP only).

    Returns a :class:`CriticalPoint`.  Formulas: module docstring.  Examples
    --------
    >>> cp = critical_point("relu")
    >>> cp.universality, cp.cb, cp.cw
    ('scale-invariant', 0.0, 2.0)
    """
    require_mlp(rules, "critical_point")
    act = _activation(activation)
    if not (isinstance(points, (int, np.integer)) and points >= 3):
        raise InputError(f"points must be an integer >= 3; got {points!r}")
    if not (0 < k_min < k_max < np.inf):
        raise InputError(f"need 0 < k_min < k_max < inf; got k_min={k_min!r}, k_max={k_max!r}")
    notes: list[str] = []

    # 1. scale-invariant: exact from the activation's slopes
    if act.scale_invariant is not None:
        ap, am = (float(v) for v in act.scale_invariant)
        cw = 2.0 / (ap * ap + am * am)
        chk = susceptibilities(act, 1.0, 0.0, cw)
        notes.append(f"sigma = {ap:g} z (z > 0), {am:g} z (z < 0): <sigma^2>_K = (a+^2 + a-^2) K/2, so at "
                     "C_b = 0, C_W = 2/(a+^2 + a-^2) every K is a fixed point with chi_par = chi_perp = 1 "
                     f"(checked numerically at K = 1: f(1) = {chk['f']:.15g})")
        return CriticalPoint(act.name, "scale-invariant", 0.0, cw, None, chk["chi_parallel"], chk["chi_perp"],
                             0.0, 0.0, None, "both", (), tuple(notes))

    candidates: list[dict] = []

    # 2. K* -> 0 analytically
    small = _small_k(act)
    if small is None:
        notes.append("sigma is not analytic at 0 (or sympy cannot expand it): no K* = 0 analysis")
    else:
        s0, s1 = small["sigma"][0], small["sigma"][1]
        if s0 != 0:
            notes.append(f"sigma(0) = {s0:.6g} != 0: K = 0 is not a fixed point for any C_b >= 0")
        elif s1 == 0:
            notes.append("sigma(0) = 0 but sigma'(0) = 0: chi_perp(0) = C_W sigma'(0)^2 = 0, no K* = 0 criticality")
        else:
            a1, a2 = (float(a) for a in small["a"])
            b1 = float(small["b"][0])
            lead = next(((j + 1, a) for j, a in enumerate((a1, a2)) if a != 0), (None, 0.0))
            attracting = lead[1] < 0
            why = (f"K = 0 is a fixed point at C_b = 0, C_W = 1/sigma'(0)^2 with chi_par = chi_perp = 1; "
                   f"f(K) = K + a1 K^2 + a2 K^3 + ..., a1 = {a1:.6g}, a2 = {a2:.6g}: "
                   + ("attracting from K > 0" if attracting else
                      "repelling for K > 0 (no power-law approach)" if lead[0] else "a1 = a2 = 0: undecided"))
            candidates.append({"K_star": 0.0, "cb": 0.0, "cw": float(small["cw"]), "a1": a1, "b1": b1,
                               "accepted": bool(attracting), "why": why})

    # 3. K* > 0: roots of h(K) = <sigma sigma''>_K with C_b >= 0
    Ks = np.logspace(math.log10(k_min), math.log10(k_max), int(points))
    vals = _scan(act, Ks)
    h, g0, g1 = vals["h"], vals["g0"], vals["g1"]
    ok = np.isfinite(h) & np.isfinite(g0) & np.isfinite(g1) & (g1 > 0)
    if not ok.all():
        notes.append(f"{int((~ok).sum())} of {len(Ks)} grid points gave no finite value (overflow) and were skipped")
    scale = np.where(ok, np.abs(g1), np.nan)
    rel = h / scale
    hfun = _h_scalar(act)
    idx = np.flatnonzero(ok)
    for i, j in zip(idx[:-1], idx[1:]):
        if np.sign(rel[i]) * np.sign(rel[j]) < 0 and max(abs(rel[i]), abs(rel[j])) > 1e-12:
            try:
                K0 = _brent(hfun, Ks[i], Ks[j], h[i], h[j])
            except ValueError as exc:
                notes.append(f"root refinement in [{Ks[i]:.6g}, {Ks[j]:.6g}] failed: {exc}")
                continue
            if precise:
                try:
                    K0 = _newton_mp(act, K0)
                except UnsupportedError:
                    notes.append("precise=True: mpmath refinement needs a smooth activation; kept the package value")
            pt = _point_at(act, K0, precise=precise and not act.expr.has(*_KINKS))
            accepted = pt["cb"] >= -1e-12 and pt["cw"] > 0
            why = ("C_b >= 0" if accepted else f"C_b = {pt['cb']:.6g} < 0")
            candidates.append({"K_star": K0, "cb": max(pt["cb"], 0.0) if accepted else pt["cb"],
                               "cw": pt["cw"], "a1": pt["a1"], "b1": pt["b1"], "accepted": bool(accepted),
                               "why": why, "_pt": pt})
    notes.append(f"scanned h(K) = <sigma sigma''>_K for sign changes on {len(Ks)} log-spaced K in "
                 f"[{k_min:g}, {k_max:g}] (double roots, where h touches 0, are not detected)")
    if precise:
        notes.append("non-zero roots refined by Newton steps with mpmath quadrature (20 digits); C_b, C_W "
                     "and the chi's there from mpmath too")

    acc = [c for c in candidates if c["accepted"]]
    zero = [c for c in acc if c["K_star"] == 0.0]
    nonzero = [c for c in acc if c["K_star"] > 0]
    clean = tuple({k: v for k, v in c.items() if k != "_pt"} for c in candidates)
    if zero:
        c = zero[0]
        if nonzero:
            others = ", ".join(f"{x['K_star']:.6g}" for x in nonzero)
            notes.append(f"also critical at K* = {others} (see candidates)")
        return CriticalPoint(act.name, "K*=0", 0.0, c["cw"], 0.0, 1.0, 1.0, c["a1"], c["b1"],
                             c["b1"] / c["a1"] if c["a1"] else None, "above", clean, tuple(notes))
    if nonzero:
        c = nonzero[0]
        if len(nonzero) > 1:
            notes.append("several non-zero critical points; reporting the smallest K*")
        pt = c["_pt"]
        a1, b1 = pt["a1"], pt["b1"]
        side = "below" if a1 > 0 else "above" if a1 < 0 else "undecided (a1 = 0)"
        return CriticalPoint(act.name, "half-stable", c["cb"], c["cw"], c["K_star"], pt["chi_parallel"],
                             pt["chi_perp"], a1, b1, b1 / a1 if a1 else None, side, clean, tuple(notes))
    reasons = [c["why"] for c in candidates]
    notes.append("no critical point with C_b >= 0 and C_W > 0" + (f" ({'; '.join(reasons)})" if reasons else
                                                                   ": h(K) has no sign change on the grid"))
    return CriticalPoint(act.name, "none", None, None, None, candidates=clean, notes=tuple(notes))


# ---------------------------------------------------------------- depth scaling

#: statistic -> (label, powers of (K, Θ) dividing it): ratio = T · K^-k · Θ^-t
RATIOS: dict = {
    "G1": ("G1/K", 1, 0), "V": ("V/K^2", 2, 0), "Theta1": ("Theta1/Theta", 0, 1),
    "A": ("A/Theta^2", 0, 2), "B": ("B/Theta^2", 0, 2), "D": ("D/(Theta K)", 1, 1),
    "F": ("F/(Theta K)", 1, 1), "P": ("P/Theta^2", 0, 2), "Q": ("Q/Theta^2", 0, 2),
    "R": ("R K/Theta^3", -1, 3), "S": ("S K/Theta^3", -1, 3), "T": ("T K/Theta^3", -1, 3),
    "U": ("U K/Theta^3", -1, 3),
}
_BASE = ["K", "G1", "V", "Theta", "Theta1", "A", "B", "D", "F"]
_GROUPS = [["P", "Q"], ["R"], ["S", "T", "U"]]


@dataclass
class DepthScaling:
    """Ratios r(ℓ) of :data:`RATIOS` at a critical point, per layer, with tail fits.

    ``ratios[name]`` is an array over layers 1..L; ``fits[name]`` holds ``p`` (log-log slope of
    |r| over the tail), ``c`` (r ≈ c ℓ^p), ``slope`` (linear dr/dℓ over the tail), ``value``
    (r at ℓ = L) and ``kind`` ("power", "zero", "constant", "sign change"; see :func:`fit_tail`);
    ``leading`` the same fits of K^(ℓ) and Θ^(ℓ); ``unavailable`` maps statistics the engine
    refused to the reason."""

    activation: str
    point: CriticalPoint
    cb: float
    cw: float
    lb: float
    lw: float
    k1: float
    depth: int
    tail: tuple
    K: np.ndarray
    Theta: np.ndarray
    ratios: dict
    fits: dict
    leading: dict
    unavailable: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"activation": self.activation, "critical_point": self.point.to_dict(), "cb": self.cb,
                "cw": self.cw, "lb": self.lb, "lw": self.lw, "K1": self.k1, "depth": self.depth,
                "tail": list(self.tail), "K": self.K.tolist(), "Theta": self.Theta.tolist(),
                "ratios": {k: v.tolist() for k, v in self.ratios.items()}, "fits": self.fits,
                "leading": self.leading, "unavailable": self.unavailable}

    def text(self) -> str:
        lo, hi = self.tail
        lines = [f"depth scaling at C_b = {self.cb:.10g}, C_W = {self.cw:.10g} (lambda_b = {self.lb:g}, "
                 f"lambda_W = {self.lw:g}), one input with K^(1) = {self.k1:.6g}, L = {self.depth}; "
                 f"fit r ~ c l^p over l = {lo}..{hi}",
                 f"K^(L) = {self.K[-1]:.6g} ({_pstr(self.leading['K'])}), Theta^(L) = {self.Theta[-1]:.6g} "
                 f"({_pstr(self.leading['Theta'])})",
                 f"{'ratio':>14} {'r(L)':>13} {'p':>8} {'c':>12} {'dr/dl':>12}  note"]
        for name, fit in self.fits.items():
            label = RATIOS[name][0]
            if fit["kind"] == "zero":
                lines.append(f"{label:>14} {fit['value']:13.6g} {'-':>8} {'-':>12} {'-':>12}  identically 0 "
                             f"(max |r| = {fit['max_abs']:.2g})")
                continue
            p = "-" if fit["p"] is None else f"{fit['p']:8.4f}"
            c = "-" if fit["c"] is None else f"{fit['c']:12.6g}"
            slope = "-" if fit["slope"] is None else f"{fit['slope']:12.6g}"
            note = fit["kind"] if fit["kind"] != "power" else ("p from |r| (increments change sign)"
                                                                 if fit["method"] == "values" else "")
            if fit["kind"] == "constant":
                note = f"constant (relative variation {fit['rel_variation']:.1g} over l = {lo}..{hi}: rounding)"
            lines.append(f"{label:>14} {fit['value']:13.6g} {p:>8} {c:>12} {slope:>12}  {note}")
        for name, why in self.unavailable.items():
            lines.append(f"{RATIOS[name][0]:>14}  unavailable: {why}")
        return "\n".join(lines)


def _pstr(fit: dict) -> str:
    """The growth of a leading quantity: "p = …", or "constant" where it changes only by rounding."""
    if fit.get("kind") == "constant":
        return f"constant: relative variation {fit['rel_variation']:.1g}, no exponent"
    return "p = " + ("-" if fit.get("p") is None else f"{fit['p']:.4f}")


#: a quantity whose relative variation (max − min)/max|r| over the fitted layers is at most this
#: is reported "constant": its changes are rounding (≈ 1e-16 per operation, accumulated over the
#: layers), and an exponent fitted to them would be noise (ReLU's K: p = 1.7 from ΔK ≈ 1e-16)
CONSTANT_RTOL = 1e-9


def fit_tail(ell, r) -> dict:
    """Growth of r(ℓ) over the given layers (ℓ ascending, consecutive).

    ``p``: the exponent of r ≈ c ℓ^p + const, from a least-squares fit of log|Δr| on log ℓ
    (Δr(ℓ) = r(ℓ) − r(ℓ−1) ≈ c p ℓ^{p−1}), so a constant offset does not bias it (5(ℓ−1) gives
    exactly 1); where Δr changes sign it falls back to the fit of log|r| on log ℓ (``method``
    says which).  ``c``: r(L)/L^p.  ``slope``: least-squares dr/dℓ over the layers.  ``kind``:
    "power", "zero" (|r| < 1e-11 throughout), "constant" (relative variation
    ``rel_variation`` = (max r − min r)/max|r| ≤ :data:`CONSTANT_RTOL`: changes at the level of
    rounding; no exponent, p = c = slope = None) or "sign change" (r itself changes sign)."""
    ell = np.asarray(ell, dtype=float)
    r = np.asarray(r, dtype=float)
    slope = float(np.polyfit(ell, r, 1)[0]) if len(ell) > 1 else float("nan")
    max_abs = float(np.max(np.abs(r)))
    out = {"kind": "power", "p": None, "c": None, "method": None, "slope": slope, "value": float(r[-1]),
           "max_abs": max_abs}
    if max_abs < 1e-11:
        out["kind"] = "zero"
        return out
    out["rel_variation"] = float((np.max(r) - np.min(r)) / max_abs)
    if out["rel_variation"] <= CONSTANT_RTOL:
        out.update(kind="constant", slope=None)
        return out
    if np.any(np.sign(r) != np.sign(r[-1])) or np.any(r == 0):
        out["kind"] = "sign change"
        return out
    dr = np.diff(r)
    if len(dr) >= 2 and np.all(np.sign(dr) == np.sign(dr[-1])) and np.all(dr != 0):
        q = np.polyfit(np.log(ell[1:] - 0.5), np.log(np.abs(dr)), 1)[0]
        out.update(p=float(q + 1), method="increments")
    else:
        out.update(p=float(np.polyfit(np.log(ell), np.log(np.abs(r)), 1)[0]), method="values")
    out["c"] = float(r[-1] / ell[-1] ** out["p"])
    return out


def _evaluate_groups(act, depth, x, hyper, stats) -> tuple[list[dict], dict]:
    """Evaluate ``stats``; if the engine refuses some, retry group by group and record why."""
    from ..numerics.evaluate import evaluate
    try:
        return evaluate(act, depth, x, stats=stats, **hyper), {}
    except UnsupportedError:
        pass
    base = [s for s in stats if s in _BASE]
    layers = evaluate(act, depth, x, stats=base, **hyper)
    unavailable = {}
    for group in _GROUPS:
        want = [s for s in group if s in stats]
        if not want:
            continue
        try:
            extra = evaluate(act, depth, x, stats=want, **hyper)
        except UnsupportedError as exc:
            unavailable.update({s: str(exc) for s in want})
            continue
        for a, b in zip(layers, extra):
            a.update({s: b[s] for s in want})
    return layers, unavailable


def depth_scaling(activation, depth: int = 40, stats: Sequence[str] | str = "all", *,
                  point: CriticalPoint | None = None, cb: float | None = None, cw: float | None = None,
                  k1: float | None = None, lb: float = 1.0, lw: float = 1.0,
                  tail: float = 0.5, rules=None) -> DepthScaling:
    """The normalised first-order tensors per layer at criticality, and their growth with ℓ.

    Parameters
    ----------
    activation: as for :func:`critical_point`.
    depth: number of layers L ≥ 3.
    stats: names from :data:`RATIOS` or ``"all"``; statistics the engine refuses for this
        activation (e.g. P…U with kinks) are reported in ``unavailable`` and left out.
    point: a :class:`CriticalPoint` (default: :func:`critical_point` of the activation).
    cb, cw: override the critical values (both or neither).
    k1: the first-layer kernel K^(1) (one input of dimension 1, x² = (k1 − C_b)/C_W); default
        K* for a half-stable point, 1 otherwise (K*=0 class: K flows to 0 like 1/(−a1 ℓ)).
    lb, lw: λ_b, λ_W.
    tail: the fits use ℓ from ⌈tail·L⌉ to L.
    rules: the rule file (None or ``"mlp"``); any other is refused (MLP only).

    Ratios: :data:`RATIOS` (coefficients of 1/n, normalised by the leading K^(ℓ), Θ^(ℓ) of the
    same layer).
    """
    require_mlp(rules, "depth_scaling")
    act = _activation(activation)
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 3:
        raise InputError(f"depth must be an integer >= 3 for a depth scaling; got {depth!r}")
    if not 0 < tail < 1:
        raise InputError(f"tail must be in (0, 1); got {tail!r}")
    names = list(RATIOS) if stats == "all" else ([s.strip() for s in stats.split(",")] if isinstance(stats, str)
                                                 else list(stats))
    bad = [s for s in names if s not in RATIOS]
    if bad or not names:
        raise InputError(f"unknown statistic(s) {bad}; choose from {', '.join(RATIOS)} or 'all'")
    if (cb is None) != (cw is None):
        raise InputError("give both cb and cw, or neither")
    if point is None:
        point = critical_point(act)
    if cb is None:
        if not point.critical:
            raise InputError(f"{act.name!r} has no critical point ({point.notes[-1]}); pass cb and cw to "
                             "evaluate the depth scaling elsewhere")
        cb, cw = point.cb, point.cw
    for v, nm in ((cb, "cb"), (cw, "cw")):
        if not (np.isfinite(v) and v >= 0):
            raise InputError(f"{nm} must be finite and >= 0; got {v!r}")
    if k1 is None:
        k1 = point.K_star if (point.universality == "half-stable" and point.K_star) else 1.0
    if not (np.isfinite(k1) and k1 >= cb and cw > 0):
        raise InputError(f"k1 = K^(1) must be >= C_b = {cb:g} (and C_W > 0); got {k1!r}")
    x = np.array([[math.sqrt((k1 - cb) / cw)]])
    stats_needed = list(dict.fromkeys(["K", "Theta"] + [s for s in _BASE if s in names] +
                                      [s for s in names if s not in _BASE]))
    hyper = dict(cb=cb, cw=cw, lb=lb, lw=lw)
    layers, unavailable = _evaluate_groups(act, int(depth), x, hyper, stats_needed)
    K = np.array([float(np.ravel(la["K"])[0]) for la in layers])
    Th = np.array([float(np.ravel(la["Theta"])[0]) for la in layers])
    ell = np.arange(1, depth + 1)
    lo = max(2, int(math.ceil(tail * depth)))
    sel = ell >= lo
    ratios, fits = {}, {}
    for s in names:
        if s not in layers[0]:
            continue
        _label, kp, tp = RATIOS[s]
        r = np.array([float(np.ravel(la[s])[0]) for la in layers]) / (K ** kp * Th ** tp)
        ratios[s] = r
        fits[s] = fit_tail(ell[sel], r[sel])
    leading = {"K": fit_tail(ell[sel], K[sel]), "Theta": fit_tail(ell[sel], Th[sel])}
    return DepthScaling(act.name, point, float(cb), float(cw), float(lb), float(lw), float(k1), int(depth),
                        (lo, int(depth)), K, Th, ratios, fits, leading, unavailable)
