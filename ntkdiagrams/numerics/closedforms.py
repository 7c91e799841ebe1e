"""Closed forms: put a concrete activation into a recursion; Isserlis for polynomials.

:func:`substitute_activation` replaces every σ^{(k)}(z_α) inside the Gaussian expectations of
a recursion by the k-th derivative of a concrete activation.  When the integrand is then a
polynomial in the z's (deep linear networks, σ = z, or any polynomial activation), the
expectation is done exactly by Isserlis' theorem,

    ⟨z_{β1} ⋯ z_{β2m}⟩_K = Σ_{pairings} Π K_{β β'} ,

so the recursion becomes a closed form in the layer-ℓ kernel: the textbook results for deep
linear networks (PDLT §3) follow from the rule file with no integral left.
"""
from __future__ import annotations

import sympy as sp

from ..language.algebra import ActivationDerivative, GaussianExpectation, Z


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


def isserlis(poly: sp.Expr, layer, kernel_cls) -> sp.Expr:
    """⟨poly(z)⟩ for z ~ N(0, K^{(layer)}) by Isserlis' (Wick's) theorem."""
    total = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(poly)):
        coeff, labels = sp.Integer(1), []
        for f in sp.Mul.make_args(term):
            base, exp = f.as_base_exp()
            if isinstance(base, Z):
                labels += [base.args[0]] * int(exp)
            else:
                coeff *= f
        total += coeff * _pairings_sum(labels, layer, kernel_cls)
    return sp.expand(total)


def _pairings_sum(labels, layer, kernel_cls):
    if not labels:
        return sp.Integer(1)
    if len(labels) % 2:
        return sp.Integer(0)
    first, rest = labels[0], labels[1:]
    out = sp.Integer(0)
    for k in range(len(rest)):
        out += kernel_cls(layer, first, rest[k]) * _pairings_sum(rest[:k] + rest[k + 1:], layer, kernel_cls)
    return out
