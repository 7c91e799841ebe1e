"""Where the first-order tensors of a rule file close: the limits that shortcuts bring.

Stage B (:mod:`ntkdiagrams.engine.cluster`) expands every layer-ℓ expectation in the statistics
the rule file declares, and treats every undeclared cumulant as O(1/n²).  For the MLP that is
PDLT's power counting: given layer ℓ−1, the preactivations of layer ℓ are a Gaussian whose
covariance is a *neuron sum*, so the law of layer ℓ is invariant under rotations of its neurons
and every cumulant is a sum over pairings of neuron indices (docs/conventions.md §3).

A shortcut breaks that (docs/conventions.md §8).  In z^{(ℓ+1)}_k = ξ z^{(ℓ)}_k + b_k +
Σ_j W_{kj} σ(z^{(ℓ)}_j) the neuron k keeps an O(1) memory of its own past, and the neuron sum
holds the term j = k: given layer ℓ, z^{(ℓ+1)}_k is Gaussian with mean ξ z^{(ℓ)}_k and variance
s = C_b + (C_W/n) Σ_j σ(z^{(ℓ)}_j)², whose j = k term couples the variance to the neuron's own
value at O(1/n).  Writing y = z^{(ℓ)}_k and φ(y, s) = E_ε[g(ξ y + √s ε)], the single-neuron
mean of any g at layer ℓ+1 is, to O(1/n),

    E[g(z^{(ℓ+1)}_k)] = E[φ(y, s̄)] + (C_W / 2n) E[(σ(y)² − ⟨σ²⟩) g''(ξ y + √s̄ ε)]
                        + ½ Var(δs) E[∂²_s φ] + …,

and the middle term is the quadratic part of σ(y)² (which the four-point vertex V captures)
*plus* every higher Hermite component of σ² seen through the correlation ρ = ξ √(K^{(ℓ)}/K^{(ℓ+1)})
of the neuron with its own past: single-neuron ("diagonal") cumulants κ_6, κ_8, … of order 1/n
that no sum over pairings contains.  They enter the next layer through the single-neuron means,
so from layer 3 on (the shortcut into layer 2 gives it memory of layer 1) every O(1/n) correction of a one-neuron mean (G1, Θ1 and the ddNTK means
R, S, T, U) misses a term.  Connected correlators of several neurons (V, A, B, D, F, P, Q) need
the single-neuron law only at O(1), and close.  For an activation that is not odd the neuron
sign symmetry z_k → −z_k is broken as well (E[z_i z_k z_k] = ξ (C_W/n) E[y σ(y)²] ≠ 0 at layer 2
for ReLU): odd cumulants of order 1/n appear, and no O(1/n) tensor closes beyond layer 2.

docs/validation/resmlp_closure.md measures the missing term (``scripts/resmlp_closure.py``).
This module states the limits; :func:`ntkdiagrams.numerics.evaluate.evaluate` refuses tensors
beyond them unless asked to go on.

The public functions::

    shortcut_coefficients(rules)   # field -> coefficient of its shortcut (resmlp: {"z": xi})
    one_neuron_tensors(rules)      # the O(1/n) terms of one-neuron statistics
    open_tensors(rules, odd)       # the tensors that do not close beyond layer 2 with a shortcut
"""
from __future__ import annotations

import sympy as sp
from sympy.core.function import AppliedUndef

from ..language.rulefile import RuleSet

__all__ = ["one_neuron_tensors", "open_tensors", "shortcut_coefficients"]


def shortcut_coefficients(rules: RuleSet) -> dict:
    """Field name → the coefficient (a sympy expression in the rule file's symbols) of the
    layer-ℓ fields at the map's own neuron in its layer map, for every map with a shortcut.

    For rules/resmlp.toml: ``{"z": xi}``."""
    out = {}
    for name, m in rules.layer_maps.items():
        if not m.shortcut:
            continue
        own = [a for a in m.rhs.atoms(AppliedUndef) if a.func.__name__ in rules.fields and a.args[0] == m.neuron]
        coeff = sp.Integer(0)
        for term in sp.Add.make_args(m.rhs):
            if any(term.has(a) for a in own):
                coeff += term.xreplace({a: sp.Integer(1) for a in own})
        out[name] = sp.simplify(coeff)
    return out


def _one_neuron(st, term) -> bool:
    """True when the term's Kronecker deltas put every leg of a statistic on one neuron, or the
    statistic has a single leg (a mean)."""
    if len(st.legs) == 1:
        return True
    parent = {i: i for i in st.neuron_indices}

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for pair in term.deltas:
        a, *rest = list(pair)
        for b in rest:
            parent[find(b)] = find(a)
    return len({find(i) for i in st.neuron_indices}) == 1


def one_neuron_tensors(rules: RuleSet) -> set:
    """Tensors of order ≥ 1 that are corrections of one-neuron statistics: the terms of a mean
    (one leg) or of an expansion whose deltas join every leg into one neuron (G1 in
    δ_{i1 i2}(K + G1/n)).  With a shortcut they miss the diagonal cumulants (module docstring)."""
    return {t.tensor for st in rules.statistics.values() for t in st.terms
            if t.order >= 1 and _one_neuron(st, t)}


def open_tensors(rules: RuleSet, odd: bool) -> set:
    """The tensors whose recursions do not close beyond layer 2 when the shortcut is on: the
    one-neuron corrections for an odd activation, every tensor of order ≥ 1 otherwise.  Empty
    for a rule file without shortcuts."""
    if not shortcut_coefficients(rules):
        return set()
    if odd:
        return one_neuron_tensors(rules)
    return {t.tensor for st in rules.statistics.values() for t in st.terms if t.order >= 1}
