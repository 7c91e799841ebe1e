"""Bare preactivations inside Gaussian expectations, by Gaussian integration by parts.

Shortcut fields (residual networks, docs/conventions.md §8) bring bare preactivations z_γ into
the expectations of the recursions, e.g. ⟨σ_{α1} σ_{α2} z_{α3} z_{α4}⟩_K in V and D.  The
identity z has derivatives 1 and 0, and Stein's lemma for z ~ N(0, K),

    ⟨z_γ G(z)⟩_K = Σ_β K_{γβ} ⟨∂_β G(z)⟩_K        (β over the inputs G depends on),

removes them one at a time:

    ⟨z_γ z_δ σ_α σ_β⟩_K = K_γδ ⟨σ_α σ_β⟩_K + K_γα K_δα ⟨σ''_α σ_β⟩_K + K_γβ K_δβ ⟨σ_α σ''_β⟩_K
                           + (K_γα K_δβ + K_γβ K_δα) ⟨σ'_α σ'_β⟩_K .

The result holds only expectations of activation derivatives on the inputs of the σ factors
(two here, instead of a four-dimensional integral) times kernel entries K^{(ℓ)}, which the
einsum plans of :mod:`ntkdiagrams.numerics.evaluate` contract like any layer tensor.  It needs
derivatives of σ: :func:`reduce_bare_z` is applied only where the activation's derivatives that
appear have no Dirac delta (smooth σ); otherwise the expectation is integrated as it stands, the
bare z being the identity factor of the quadrature.
"""
from __future__ import annotations

import sympy as sp

from ..language.algebra import GaussianExpectation, Z, gexp, integrand_labels, z_derivative

__all__ = ["has_bare_z", "reduce_bare_z", "stein"]


def has_bare_z(integrand: sp.Expr) -> bool:
    """True when a factor of the integrand is a bare preactivation z_γ (or a power of one)."""
    return any(isinstance(f.as_base_exp()[0], Z) for f in sp.Mul.make_args(integrand))


def stein(integrand: sp.Expr, layer, kernel) -> sp.Expr:
    """⟨integrand⟩_{K^{(layer)}} with every bare z removed by Gaussian integration by parts;
    ``kernel``: the class of the Gaussian tensor K (``K(layer, γ, β)``)."""
    total = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(integrand)):
        coeff, inside = sp.Integer(1), []
        for f in sp.Mul.make_args(term):
            if f.has(Z):
                inside.append(f)
            else:
                coeff *= f
        g = sp.Mul(*inside)
        bare = next((f for f in sp.Mul.make_args(g) if isinstance(f.as_base_exp()[0], Z)), None)
        if bare is None:
            total += coeff * gexp(g, layer)
            continue
        zg = bare.as_base_exp()[0]
        rest = sp.expand(g / zg)
        gamma = zg.args[0]
        for beta in integrand_labels(rest):
            d = z_derivative(rest, beta)
            if d != 0:
                total += coeff * kernel(layer, gamma, beta) * stein(d, layer, kernel)
    return sp.expand(total)


def reduce_bare_z(expr: sp.Expr, kernel, allowed=lambda integrand: True) -> sp.Expr:
    """``expr`` with each Gaussian expectation that holds a bare z replaced by :func:`stein`'s form,
    where ``allowed(reduced integrand)`` holds for every expectation of the result (e.g. no Dirac
    delta among the activation derivatives it needs); other expectations are kept."""
    rep = {}
    for g in expr.atoms(GaussianExpectation):
        if not has_bare_z(g.integrand):
            continue
        red = stein(g.integrand, g.layer, kernel)
        if all(allowed(h.integrand) for h in red.atoms(GaussianExpectation)):
            rep[g] = red
    return sp.expand(expr.xreplace(rep)) if rep else expr
