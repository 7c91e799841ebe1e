"""Stage A: integrate out the parameters of layer ℓ+1 by Wick contraction.

Each external leg ``z_{i_k;α_k}`` of layer ℓ+1 is replaced by the layer map of the rule file,
``z_{i;α} = b_i + Σ_j W_{ij} σ(z^{(ℓ)}_{j;α})``, and the product of legs is expanded into
monomials.  The parameters are zero-mean Gaussians with covariance
``Cov(P[idx], P[idx']) = variance · Π_slots δ(idx_s, idx'_s)``, so by Wick's theorem the
expectation over them is the sum over perfect matchings of parameter occurrences
(:func:`wick_contractions`).  A contraction of two weights ``W_{i_a j_a} W_{i_b j_b}`` gives
``(C_W/n) δ_{i_a i_b} δ_{j_a j_b}``: the δ on output neurons stays a Kronecker delta of the
external indices, the δ on input neurons merges two neuron sums into one.  What remains is a
product of *neuron sums* ``S = Σ_j F(z^{(ℓ)}_j)``, each a random variable of layer ℓ.

The law of total cumulance then says that the joint cumulant of the legs is the sum, over
contractions and over partitions of their neuron sums into cumulant groups, of the
*connected* configurations (legs linked by propagators, propagators by groups):
:func:`connected_groupings`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy as sp
from sympy.core.function import AppliedUndef

from .errors import UnsupportedError
from .rules import Leg, RuleSet


@dataclass(frozen=True)
class Monomial:
    """coefficient · Π parameters · Π layer-ℓ factors, summed over ``sums``."""

    coefficient: sp.Expr
    parameters: tuple   # tuple of (name, index tuple)
    sums: tuple         # summed neuron-index symbols
    factors: tuple      # layer-ℓ factors (functions of fields at summed neurons)


@dataclass(frozen=True)
class Propagator:
    """A contracted pair of parameters, joining external legs ``legs``."""

    parameter: str
    legs: tuple         # (leg_a, leg_b)
    sum_index: sp.Symbol | None   # the neuron sum the pair feeds (None for biases)


@dataclass(frozen=True)
class NeuronSum:
    """S = Σ_j F(z_j): ``function`` of the fields at neuron ``index`` of layer ℓ."""

    index: sp.Symbol
    function: sp.Expr
    legs: tuple         # external legs attached to this sum through propagators


@dataclass(frozen=True)
class Contraction:
    """One Wick contraction: coefficient · Π δ(external) · Π neuron sums."""

    coefficient: sp.Expr
    deltas: sp.Expr
    propagators: tuple
    sums: tuple         # tuple[NeuronSum]


def monomials(expr: sp.Expr, rules: RuleSet) -> list[Monomial]:
    """Split an expanded layer-map right-hand side into :class:`Monomial` s."""
    out = []
    for term in sp.Add.make_args(sp.expand(expr)):
        out.extend(_monomials_of_term(term, rules, ()))
    return out


def _monomials_of_term(term, rules, sums):
    coeff, params, factors, inner = sp.Integer(1), [], [], []
    for f in sp.Mul.make_args(term):
        if isinstance(f, sp.Sum):
            inner.append(f)
        elif isinstance(f, AppliedUndef) and f.func.__name__ in rules.parameters:
            params.append((f.func.__name__, tuple(f.args)))
        elif f.has(*sums) if sums else False:
            factors.append(f)
        elif any(isinstance(a, AppliedUndef) for a in sp.preorder_traversal(f)):
            factors.append(f)
        else:
            coeff *= f
    if not inner:
        return [Monomial(coeff, tuple(params), tuple(sums), tuple(factors))]
    if len(inner) > 1:
        s0, rest = inner[0], inner[1:]
        base = sp.Mul(coeff, *[sp.Function(p)(*i) for p, i in params], *factors, *rest)
    else:
        s0, base = inner[0], sp.Mul(coeff, *[sp.Function(p)(*i) for p, i in params], *factors)
    body, (j, *_lims) = s0.function, s0.limits[0]
    result = []
    for t in sp.Add.make_args(sp.expand(base * body)):
        result.extend(_monomials_of_term(t, rules, tuple(sums) + (j,)))
    return result


def _perfect_matchings(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for k in range(len(rest)):
        pair = (first, rest[k])
        for m in _perfect_matchings(rest[:k] + rest[k + 1:]):
            yield [pair] + m


def leg_monomials(leg: Leg, k: int, rules: RuleSet, layer_map) -> list[Monomial]:
    """The layer map of one external leg with its own neuron/input index and fresh sums."""
    if leg.field not in (layer_map and {layer_map.field} or set()):
        raise UnsupportedError(f"no layer map for field {leg.field!r} (derived fields such as the NTK "
                               "are not supported by this engine yet)")
    subs = {layer_map.neuron: leg.neurons[0], layer_map.input: leg.inputs[0]}
    for j in layer_map.sum_indices:
        subs[j] = sp.Symbol(f"{j.name}_{k}", integer=True)
    rhs = layer_map.rhs.xreplace(subs)
    return monomials(rhs, rules)


def wick_contractions(legs: tuple, rules: RuleSet, first_layer: bool = False) -> list[Contraction]:
    """All Wick contractions of layer-(ℓ+1) parameters in the product of ``legs``."""
    maps = rules.first_layer if first_layer else rules.layer_maps
    per_leg = []
    for k, leg in enumerate(legs):
        if leg.field not in maps:
            where = "first_layer" if first_layer else "layer_map"
            raise UnsupportedError(f"rule file {rules.path}: no [{where}.{leg.field}] for field {leg.field!r}; "
                                   "statistics of fields without a layer map are not supported yet")
        per_leg.append(leg_monomials(leg, k, rules, maps[leg.field]))
    out = []
    for choice in itertools.product(*per_leg):
        occurrences = {}
        for k, mono in enumerate(choice):
            for name, idx in mono.parameters:
                occurrences.setdefault(name, []).append((k, idx))
        if any(len(v) % 2 for v in occurrences.values()):
            continue
        coeff = sp.Mul(*[m.coefficient for m in choice])
        sums = [j for m in choice for j in m.sums]
        factors = [f for m in choice for f in m.factors]
        names = sorted(occurrences)
        for matchings in itertools.product(*[list(_perfect_matchings(occurrences[nm])) for nm in names]):
            out.append(_contract(rules, names, matchings, coeff, sums, factors,
                                 rules.input_width if first_layer else rules.width))
    return out


def _contract(rules, names, matchings, coeff, sums, factors, fan_in):
    parent = {j: j for j in sums}

    def find(j):
        while parent[j] != j:
            parent[j] = parent[parent[j]]
            j = parent[j]
        return j

    deltas = sp.Integer(1)
    props = []
    for name, matching in zip(names, matchings):
        spec = rules.parameters[name]
        for (ka, ia), (kb, ib) in matching:
            coeff *= spec.variance.xreplace({rules.width: fan_in})
            sum_index = None
            for kind, x, y in zip(spec.indices, ia, ib):
                if kind == "out":
                    deltas *= sp.KroneckerDelta(x, y)
                else:
                    if x not in parent or y not in parent:
                        raise UnsupportedError(f"parameter {name}: an 'in' index that is not summed")
                    rx, ry = find(x), find(y)
                    if rx != ry:
                        parent[ry] = rx
                    sum_index = x
            props.append((name, (ka, kb), sum_index))
    classes = {}
    for j in sums:
        classes.setdefault(find(j), []).append(j)
    neuron_sums = []
    for rep, members in sorted(classes.items(), key=lambda kv: kv[0].name):
        mine = [f.xreplace({m: rep for m in members}) for f in factors if f.has(*members)]
        attached = tuple(sorted({k for (_n, ks, s) in props if s is not None and find(s) == rep for k in ks}))
        if not mine:
            coeff *= fan_in  # an empty neuron sum counts the neurons
            continue
        neuron_sums.append(NeuronSum(rep, sp.Mul(*mine), attached))
    loose = [f for f in factors if not f.has(*sums)]
    if loose:
        raise UnsupportedError(f"layer-ℓ factor(s) {loose} outside every neuron sum (e.g. residual "
                               "connections) are not supported yet")
    propagators = tuple(Propagator(n, ks, find(s) if s is not None else None) for n, ks, s in props)
    return Contraction(coeff, deltas, propagators, tuple(neuron_sums))


def connected_groupings(contraction: Contraction, nlegs: int):
    """Partitions of the neuron sums into cumulant groups that connect all legs.

    Yields tuples of groups (each a tuple of :class:`NeuronSum`)."""
    sums = list(contraction.sums)
    for partition in _set_partitions(sums):
        parent = list(range(nlegs))

        def find(x):
            while parent[x] != x:
                x = parent[x]
            return x

        def union(a, b):
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[rb] = ra

        for p in contraction.propagators:
            union(*p.legs)
        for group in partition:
            legs = [k for s in group for k in s.legs]
            for a, b in zip(legs, legs[1:]):
                union(a, b)
        if len({find(k) for k in range(nlegs)}) == 1:
            yield tuple(tuple(g) for g in partition)


def _set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        yield [[first]] + part
        for k in range(len(part)):
            yield part[:k] + [[first] + part[k]] + part[k + 1:]
