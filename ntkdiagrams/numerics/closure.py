"""Refuse the tensors a shortcut leaves open (docs/conventions.md §8, :mod:`ntkdiagrams.engine.closure`).

With a shortcut ξ z^{(ℓ)}_k in the layer map, a neuron remembers its own past, and the
first-order tensors of one-neuron statistics (G1, Θ1, R, S, T, U; every O(1/n) tensor when σ is
not odd) miss single-neuron cumulants from the layer after the first shortcut on.  Layer 2 is
exact (layer 1 is Gaussian); the leading tensors (K, Θ) are exact at every layer; so are all
tensors when every shortcut into a layer ℓ ≥ 2 is zero (ξ = 0: the MLP) or σ is linear
(σ'' = 0: every function of the neuron's past stays quadratic).

    limits = closure_limits(rules, activation, hp, names, depth)   # tensor -> first open layer
    check_closure(limits, allow=False)                               # UnsupportedError / warning
"""
from __future__ import annotations

import warnings

import sympy as sp

from .activations import Activation, z
from .hyperparameters import HyperParameters
from ..engine.closure import open_tensors, shortcut_coefficients
from ..errors import UnsupportedError
from ..language.rulefile import RuleSet

__all__ = ["ClosureWarning", "check_closure", "closure_limits"]


class ClosureWarning(UserWarning):
    """A tensor is evaluated beyond the layer where its first-order recursion closes."""


def _first_memory_layer(rules: RuleSet, hp: HyperParameters, depth: int) -> int | None:
    """The first layer ℓ ≥ 2 whose map has a nonzero shortcut (its neurons remember layer ℓ−1),
    or None."""
    coeffs = shortcut_coefficients(rules)
    keys = list(rules.symbols)
    symbols = [rules.symbols[k] for k in keys]
    for ell in range(2, depth + 1):
        values = {s: sp.Float(v) for s, v in zip(symbols, hp.layer(keys, ell))}
        for c in coeffs.values():
            v = c.xreplace(values)
            if not v.is_zero:
                return ell
    return None


def closure_limits(rules: RuleSet, activation: Activation, hp: HyperParameters, names, depth: int,
                   requires=None) -> dict:
    """Tensor → the first layer where its value misses first-order terms, for the tensors of
    ``names`` that the shortcut leaves open (through ``requires(t)``, the tensors its recursion
    needs); empty when everything closes up to ``depth``."""
    if sp.diff(activation.expr, z, 2) == 0:
        return {}
    memory = _first_memory_layer(rules, hp, depth)
    if memory is None or memory + 1 > depth:
        return {}
    open_ = open_tensors(rules, activation.odd)
    out = {}
    for t in names:
        needed = set(requires(t)) if requires is not None else {t}
        if needed & open_:
            out[t] = memory + 1
    return out


def check_closure(limits: dict, rules: RuleSet, activation: Activation, allow: bool = False) -> None:
    """UnsupportedError naming the open tensors and the layer they open at, or (``allow``) a
    :class:`ClosureWarning` saying the same."""
    if not limits:
        return
    first = min(limits.values())
    names = sorted(limits)
    if activation.odd:
        kind, exact = "the one-neuron corrections (G1, Θ1, R, S, T, U)", ", and V, A, B, D, F, P, Q at every layer"
    else:
        kind, exact = f"all O(1/n) tensors (σ = {activation.name} is not odd: the neuron sign symmetry breaks too)", ""
    msg = (f"rule file {rules.name!r}: {', '.join(names)} {'lacks' if len(names) == 1 else 'lack'} first-order "
           f"terms from layer {first} on.  With a shortcut a neuron remembers its own past, and {kind} then "
           "involve single-neuron cumulants that no tensor of the rule file holds (docs/conventions.md §8, "
           f"docs/validation/resmlp_closure.md).  Exact: layers ≤ {first - 1}, K and Θ at every layer{exact}")
    if not allow:
        raise UnsupportedError(msg + f".  Ask for depth ≤ {first - 1}, or pass allow_incomplete=True "
                               "(command line: --allow-incomplete) to compute them anyway")
    warnings.warn(msg, ClosureWarning, stacklevel=3)
