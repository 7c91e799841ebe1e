"""Closed forms: put a concrete activation into a recursion; Isserlis for polynomials.

:func:`substitute_activation` replaces every σ^{(k)}(z_α) inside the Gaussian expectations of
a recursion by the k-th derivative of a concrete activation.  When the integrand is then a
polynomial in the z's (deep linear networks, σ = z, or any polynomial activation), the
expectation is done exactly by Isserlis' theorem (:func:`ntkdiagrams.language.algebra.isserlis`,
shared with the shortcut fields of residual networks),

    ⟨z_{β1} ⋯ z_{β2m}⟩_K = Σ_{pairings} Π K_{β β'} ,

so the recursion becomes a closed form in the layer-ℓ kernel: the textbook results for deep
linear networks (PDLT §3) follow from the rule file with no integral left.
"""
from __future__ import annotations

import sympy as sp

from ..language.algebra import ActivationDerivative, GaussianExpectation, Z, isserlis


def substitute_activation(expr: sp.Expr, activation_expr: sp.Expr, kernel_cls=None) -> sp.Expr:
    """Insert σ(z) = ``activation_expr`` (a sympy expression in ``activations.z``).

    With ``kernel_cls`` (the K tensor class), polynomial expectations are evaluated by
    Isserlis' theorem; others stay as ⟨…⟩_K of the concrete function."""
    from .activations import z as zsym

    def concrete(ge: GaussianExpectation):
        f, layer = ge.args
        reps = {}
        for ad in f.atoms(ActivationDerivative):
            k, arg = ad.args
            reps[ad] = sp.diff(activation_expr, zsym, int(k)).subs(zsym, arg)
        g = sp.expand(f.xreplace(reps))
        if kernel_cls is not None and _is_polynomial(g):
            return isserlis(g, layer, kernel_cls)
        return GaussianExpectation(g, layer) if g.has(Z) else g

    return sp.expand(expr.replace(lambda e: isinstance(e, GaussianExpectation), concrete))


def _is_polynomial(g: sp.Expr) -> bool:
    zs = sorted(g.atoms(Z), key=sp.default_sort_key)
    return bool(zs) and g.is_polynomial(*zs) or not g.has(Z)
