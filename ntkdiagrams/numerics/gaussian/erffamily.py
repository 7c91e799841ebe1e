"""The erf family (erf, GELU = z Φ(z), their derivatives, powers and products): closed forms.

A smooth factor whose elementary form (:mod:`.elementary`) holds only the atoms erf(κz) and
e^{γz²} (γ < 0) is, with erf(κz) = 2Φ(√2 κ z) − 1 expanded,

    f(z) = Σ_g P_g(z) · e^{γ_g z²} · Π_{i ∈ g} Φ(c_i z)                     (its groups g)

(GELU: one group, z Φ(z); GELU': Φ(z) + z e^{−z²/2}/√(2π); erf: 2Φ(√2 z) − 1, two groups).
Two identities make every expectation of such factors a closed form:

* **Φ is an orthant probability.**  Φ(c z) = P(ξ < c z) = E_ξ[1{y > 0}] with an independent
  ξ ~ N(0, 1) and the auxiliary variable y = sgn(c) z − ξ/|c|, jointly Gaussian with z:
  Cov(y_i, z_b) = sgn(c_i) C_{b_i b}, Cov(y_i, y_j) = sgn(c_i c_j) C_{b_i b_j} + δ_ij / c_i².
* **A Gaussian factor changes the covariance.**  With Q = diag(q_b), q_b = −2γ_b ≥ 0, S = Q^{1/2},

      E_C[h(z) e^{−zᵀQz/2}] = det(I + S C S)^{−1/2} · E_{C'}[h(z)],
      C' = C − C S (I + S C S)^{−1} S C                          (= (C⁻¹ + Q)⁻¹, C may be singular).

So for blocks F_b (products of such factors, scaled f(α z), :mod:`.blocks`), each combination
of one group per block contributes

    coef · det(I + S C S)^{−1/2} · E_{J}[Π_b z_b^{p_b} · Π_i 1{y_i > 0}],

an orthant moment of the joint Gaussian J of (z, y) with the r auxiliary variables restricted
(:class:`.orthant.OrthantMoments`: Stein's lemma down to orthant probabilities P_r, exact but for
P_4's one-dimensional integral, ≤ 1e-13).  Every auxiliary variable has its private variance
1/c_i², so the recursion's conditional variances are bounded below whatever C is (collinear or
rank-deficient inputs, any variance): no quadrature, no variance bound, no accuracy floor but
rounding (against the cone method ≤ 1e-15 of the scale Π⟨f²⟩^{1/2} where that method converges;
tests/test_gaussian_erffamily.py holds 1e-11 against quadrature references).

It applies where a combination has r ≤ :data:`MAX_INDICATORS` factors Φ (the orthant
probabilities of :mod:`.orthant` go to four variables): any tuple of up to four erf or GELU
factors and their derivatives; five or more Φ (⟨σ⁶⟩ of GELU, say) keep the other methods.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np

from .blocks import Block
from .elementary import ATOM_ERF, ATOM_GAUSS, elementary_form
from .factors import Factor
from .orthant import OrthantMoments, polynomial_product

__all__ = ["MAX_INDICATORS", "Group", "erf_factors", "erf_family", "factor_groups", "integrate_erf_family"]

#: most factors Φ in one combination (the orthant probabilities P_1 … P_4 of :mod:`.orthant`)
MAX_INDICATORS = 4


class Group:
    """P(z) e^{γ z²} Π_i Φ(c_i z): ``poly`` ascending coefficients, ``gamma`` ≤ 0, ``slopes`` the
    c_i (as numbers for a factor, as arrays (n,) over the tuples of a block)."""

    __slots__ = ("poly", "gamma", "slopes")

    def __init__(self, poly, gamma, slopes):
        self.poly, self.gamma, self.slopes = poly, gamma, tuple(slopes)


@lru_cache(maxsize=512)
def factor_groups(f: Factor) -> tuple[Group, ...] | None:
    """The groups of a factor (module docstring), or None where it is not of the erf family:
    not smooth, a delta, or an elementary form with other atoms (exponentials, softplus, sin, a
    shifted erf or Gaussian)."""
    if not f.smooth or f.delta != 0:
        return None
    if f.poly is not None:  # a polynomial: one group without Φ
        return (Group(f.poly[0], 0.0, ()),)
    form = elementary_form(f.expr)
    if form is None:
        return None
    for a in form.atoms:
        if a.shift != 0.0 or not (a.code == ATOM_ERF or (a.code == ATOM_GAUSS and a.kappa < 0)):
            return None
    groups: dict = {}
    for term in form.terms:
        atoms = [form.atoms[i] for i in term.atoms]
        gamma = sum(a.kappa for a in atoms if a.code == ATOM_GAUSS)
        erfs = [math.sqrt(2.0) * a.kappa for a in atoms if a.code == ATOM_ERF]
        # Π_i erf(κ_i z) = Π_i (2Φ(√2 κ_i z) − 1): one group per subset of the erf atoms
        for keep in itertools.product((False, True), repeat=len(erfs)):
            c = 2.0 ** sum(keep) * (-1.0) ** (len(erfs) - sum(keep))
            key = (gamma, tuple(sorted(s for s, k in zip(erfs, keep) if k)))
            poly = groups.setdefault(key, [])
            for p, v in enumerate(term.poly):
                if p >= len(poly):
                    poly.extend([0.0] * (p + 1 - len(poly)))
                poly[p] += c * v
    out = tuple(Group(tuple(poly), gamma, slopes) for (gamma, slopes), poly in groups.items()
                if any(poly))
    return out or None


def erf_family(blocks: list[Block]) -> bool:
    """Every member is of the erf family and no combination has more than MAX_INDICATORS
    factors Φ."""
    return erf_factors([f for b in blocks for f, _ in b.members])


def erf_factors(facs: list[Factor]) -> bool:
    """The product of these factors (at any variables) is of the erf family with at most
    MAX_INDICATORS factors Φ in each combination of their groups."""
    groups = [factor_groups(f) for f in facs]
    if any(g is None for g in groups):
        return False
    return sum(max(len(x.slopes) for x in g) for g in groups) <= MAX_INDICATORS


def _block_groups(b: Block) -> list[Group]:
    """The groups of a block's product Π f(α z), per tuple (coefficients, γ and slopes arrays)."""
    out = None
    for f, a in b.members:
        mine = []
        for g in factor_groups(f):
            poly = np.array(g.poly)[None, :] * a[:, None] ** np.arange(len(g.poly))
            mine.append(Group(poly, g.gamma * a * a, [c * a for c in g.slopes]))
        if out is None:
            out = mine
            continue
        out = [Group(polynomial_product(x.poly, y.poly), x.gamma + y.gamma, x.slopes + y.slopes)
               for x, y in itertools.product(out, mine)]
    return out


def integrate_erf_family(blocks: list[Block], C: np.ndarray) -> np.ndarray:
    """E[Π_b F_b(z_b)], z ~ N(0, C), C (n, m, m) positive semi-definite, every block of the erf
    family (:func:`erf_family`): the sum over combinations of groups of orthant moments of the
    joint Gaussian of z and the auxiliary variables (module docstring)."""
    n, m = C.shape[0], len(blocks)
    total = np.zeros(n)
    for combo in itertools.product(*(_block_groups(b) for b in blocks)):
        q = np.stack([-2.0 * g.gamma for g in combo], axis=1)           # (n, m)
        Cq, weight = _gaussian_factor(C, q)
        owners = [(b, c) for b, g in enumerate(combo) for c in g.slopes]
        r = len(owners)
        J = np.zeros((n, m + r, m + r))
        J[:, :m, :m] = Cq
        for i, (b, c) in enumerate(owners):
            s = np.sign(c)
            J[:, m + i, :m] = s[:, None] * Cq[:, b, :]
            J[:, :m, m + i] = J[:, m + i, :m]
            for j, (b2, c2) in enumerate(owners):
                J[:, m + i, m + j] = s * np.sign(c2) * Cq[:, b, b2]
            J[:, m + i, m + i] += 1.0 / (c * c)
        moments = OrthantMoments(J, tuple(range(m, m + r)))
        live = [np.nonzero(np.any(g.poly != 0, axis=0))[0] for g in combo]
        for powers in itertools.product(*live):
            coef = weight.copy()
            for g, p in zip(combo, powers):
                coef *= g.poly[:, p]
            if np.any(coef != 0):
                total += coef * moments.get(tuple(int(p) for p in powers) + (0,) * r)
    return total


def _gaussian_factor(C: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C', det(I + S C S)^{−1/2}) for the factor e^{−zᵀ diag(q) z/2}, S = diag(√q)."""
    n, m = q.shape
    if not np.any(q):
        return C, np.ones(n)
    s = np.sqrt(q)
    CS = C * s[:, None, :]                                   # C S
    M = s[:, :, None] * CS                                   # S C S
    M[:, np.arange(m), np.arange(m)] += 1.0
    Cq = C - CS @ np.linalg.solve(M, np.swapaxes(CS, 1, 2))
    Cq = 0.5 * (Cq + np.swapaxes(Cq, 1, 2))
    return Cq, np.linalg.det(M) ** -0.5
