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
    tangents: tuple = ()  # learning-rate contractions (parameter, summed index or None) made inside a leg


@dataclass(frozen=True)
class Propagator:
    """A contracted pair of parameters, joining external legs ``legs``."""

    parameter: str
    legs: tuple         # (leg_a, leg_b)
    sum_index: sp.Symbol | None   # the neuron sum the pair feeds (None for biases)


@dataclass(frozen=True)
class NeuronSum:
    """Y = Σ_{j1…jr} F(fields at j1…jr): one random variable of layer ℓ.

    Usually r = 1 (S = Σ_j σ_{j;α1} σ_{j;α2}); a factor that links two neuron indices (an
    off-diagonal NTK H_{jk}) makes them one compound sum Σ_{j,k}."""

    indices: tuple
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
    if layer_map is None or leg.field != layer_map.field:
        raise UnsupportedError(f"no layer map for field {leg.field!r}")
    subs = {layer_map.neuron: leg.neurons[0], layer_map.input: leg.inputs[0]}
    for j in layer_map.sum_indices:
        subs[j] = sp.Symbol(f"{j.name}_{k}", integer=True)
    rhs = layer_map.rhs.xreplace(subs)
    return monomials(rhs, rules)


def _combine(*monos, extra=()) -> Monomial:
    """The product of monomials (and extra layer-ℓ factors)."""
    return Monomial(sp.Mul(*[m.coefficient for m in monos]), tuple(p for m in monos for p in m.parameters),
                    tuple(j for m in monos for j in m.sums), tuple(f for m in monos for f in m.factors) + tuple(extra),
                    tuple(t for m in monos for t in m.tangents))


def _z_derivatives(m: Monomial, order: int = 1):
    """∂/∂z^{(ℓ)}_{j;α} of a monomial, for every layer-ℓ preactivation it contains (ordered
    pairs of them for ``order = 2``): yields (derivative monomial, neuron indices differentiated)."""
    F = sp.Mul(*m.factors)
    atoms = sorted((a for a in F.atoms(sp.Function)
                    if getattr(a.func, "__name__", "") == "z" and a.args[0] in m.sums), key=sp.default_sort_key)
    for combo in itertools.product(atoms, repeat=order):
        d = F
        for a in combo:
            d = sp.diff(d, a)
        if d != 0:
            yield Monomial(m.coefficient, m.parameters, m.sums, (d,), m.tangents), tuple(a.args[0] for a in combo)


def _learning_rate_contractions(m1: Monomial, m2: Monomial, rules: RuleSet, fan_in):
    """Σ_P λ_P ∂_P m1 ∂_P m2 over the parameters of layer ℓ+1: a derivative removes one occurrence
    P[idx] and leaves Π_slots δ(idx_s, idx'_s); the sum over idx' identifies the two occurrences'
    indices ('out' slots give a Kronecker delta of external neurons, 'in' slots merge sums)."""
    for o1, (p1, idx1) in enumerate(m1.parameters):
        for o2, (p2, idx2) in enumerate(m2.parameters):
            if p1 != p2 or rules.parameters[p1].learning_rate is None:
                continue
            pspec = rules.parameters[p1]
            coeff = m1.coefficient * m2.coefficient * pspec.learning_rate.xreplace({rules.width: fan_in})
            rename, summed = {}, None
            for kind, x, y in zip(pspec.indices, idx1, idx2):
                if kind == "out":
                    coeff *= sp.KroneckerDelta(x, y)
                else:
                    rename[y] = x
                    summed = x
            rest1 = [pr for n_, pr in enumerate(m1.parameters) if n_ != o1]
            rest2 = [(q, tuple(rename.get(t, t) for t in ix)) for n_, (q, ix) in enumerate(m2.parameters) if n_ != o2]
            sums = tuple(m1.sums) + tuple(j for j in m2.sums if j not in rename)
            factors = tuple(m1.factors) + tuple(f.xreplace(rename) for f in m2.factors)
            yield Monomial(coeff, tuple(rest1 + rest2), sums, factors,
                           tuple(m1.tangents) + tuple(m2.tangents) + ((p1, summed),))


def tangent_monomials(leg: Leg, k: int, rules: RuleSet, layer_map, first_layer: bool) -> list[Monomial]:
    """A tangent field of layer ℓ+1 from the layer map, by the chain rule.

    The NTK (``tangent = ["z", "z"]``), with θ the parameters of layer ℓ+1 and φ the lower ones:

        H_{i1 i2; a1 a2} = Σ_θ λ_θ ∂_θ z_{i1} ∂_θ z_{i2} + Σ_{j1 j2} ∂z_{i1}/∂z_{j1} ∂z_{i2}/∂z_{j2} H^{(ℓ)}_{j1 j2}

    The dNTK (``tangent = ["z", "z", "z"]``), dH = Σ_{μν} λ_μ λ_ν ∂_μ∂_ν z_{i0} ∂_μ z_{i1} ∂_ν z_{i2}:
    (θ, φ) and (φ, θ) give λ_θ ∂_θ∂_{z_j} z_{i0} ∂_θ z_{i1} ∂z_{i2}/∂z_k H^{(ℓ)}_{jk} (and i1 ↔ i2);
    (φ, φ) gives ∂²z_{i0}/∂z_j∂z_k ∂z_{i1}/∂z_m ∂z_{i2}/∂z_p H_{jm} H_{kp} + ∂z_{i0}/∂z_j ∂z_{i1}/∂z_m
    ∂z_{i2}/∂z_p dH^{(ℓ)}_{jmp}; (θ, θ) needs a map nonlinear in θ and is refused.  The first
    layer has no lower parameters.  Nothing about the NTK is typed in: every term comes from the
    rule file's layer map and learning rates."""
    spec = rules.fields[leg.field]
    tangent = tuple(spec.tangent)
    fan_in = rules.input_width if first_layer else rules.width
    subs_legs = []
    for s_idx in range(len(tangent)):
        subs = {layer_map.neuron: leg.neurons[s_idx], layer_map.input: leg.inputs[s_idx]}
        for j in layer_map.sum_indices:
            subs[j] = sp.Symbol(f"{j.name}_{k}{'abc'[s_idx]}", integer=True)
        subs_legs.append(monomials(layer_map.rhs.xreplace(subs), rules))
    ntk = next((f for f, fs in rules.fields.items() if tuple(fs.tangent) == ("z", "z")), None)
    H = sp.Function(ntk) if ntk else None
    out: list[Monomial] = []
    if tangent == ("z", "z"):
        M1, M2 = subs_legs
        a1, a2 = leg.inputs
        for m1 in M1:
            for m2 in M2:
                out.extend(_learning_rate_contractions(m1, m2, rules, fan_in))
        if not first_layer:
            for d1, (j1,) in (x for m in M1 for x in _z_derivatives(m)):
                for d2, (j2,) in (x for m in M2 for x in _z_derivatives(m)):
                    out.append(_combine(d1, d2, extra=(H(j1, j2, a1, a2),)))
        return out
    if tangent == ("z", "z", "z"):
        M0, M1, M2 = subs_legs
        a0, a1, a2 = leg.inputs
        if any(len(m.parameters) > 1 for m in M0):
            raise UnsupportedError("dNTK of a layer map nonlinear in its parameters (∂_θ∂_θ z ≠ 0) is not supported")
        if first_layer:
            return out  # dH^(1) = 0: the first layer is linear in its parameters
        dH = sp.Function(leg.field)
        d0s = [x for m in M0 for x in _z_derivatives(m)]
        d1s = [x for m in M1 for x in _z_derivatives(m)]
        d2s = [x for m in M2 for x in _z_derivatives(m)]
        for d0, (j,) in d0s:
            for m1 in M1:                                     # (θ, φ)
                for lam in _learning_rate_contractions(d0, m1, rules, fan_in):
                    for d2, (kk,) in d2s:
                        out.append(_combine(lam, d2, extra=(H(j, kk, a0, a2),)))
            for m2 in M2:                                     # (φ, θ)
                for lam in _learning_rate_contractions(d0, m2, rules, fan_in):
                    for d1, (kk,) in d1s:
                        out.append(_combine(lam, d1, extra=(H(j, kk, a0, a1),)))
            for d1, (mm,) in d1s:                             # (φ, φ), through dH
                for d2, (pp,) in d2s:
                    out.append(_combine(d0, d1, d2, extra=(dH(j, mm, pp, a0, a1, a2),)))
        for m0 in M0:                                         # (φ, φ), through ∂²z/∂z∂z
            for dd0, (j, kk) in _z_derivatives(m0, order=2):
                for d1, (mm,) in d1s:
                    for d2, (pp,) in d2s:
                        out.append(_combine(dd0, d1, d2, extra=(H(j, mm, a0, a1), H(kk, pp, a0, a2))))
        return out
    raise UnsupportedError(f"field {leg.field!r}: tangent {list(tangent)} is not supported yet "
                           "(the NTK and the dNTK are; the ddNTKs come next)")


def wick_contractions(legs: tuple, rules: RuleSet, first_layer: bool = False) -> list[Contraction]:
    """All Wick contractions of layer-(ℓ+1) parameters in the product of ``legs``."""
    maps = rules.first_layer if first_layer else rules.layer_maps
    per_leg = []
    for k, leg in enumerate(legs):
        if rules.fields[leg.field].tangent and "z" in maps:
            per_leg.append(tangent_monomials(leg, k, rules, maps["z"], first_layer))
            continue
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
        tangents = [(k, p, j) for k, m in enumerate(choice) for p, j in m.tangents]
        names = sorted(occurrences)
        for matchings in itertools.product(*[list(_perfect_matchings(occurrences[nm])) for nm in names]):
            out.append(_contract(rules, names, matchings, coeff, sums, factors,
                                 rules.input_width if first_layer else rules.width, tangents))
    return out


def _contract(rules, names, matchings, coeff, sums, factors, fan_in, tangents=()):
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
    for k, pname, j in tangents:  # learning-rate contractions inside one (tangent) leg
        props.append(("lambda_" + pname, (k, k), j))
    classes = {}
    for j in sums:
        classes.setdefault(find(j), []).append(j)
    # index classes linked by a common factor (an off-diagonal H_{jk}) form one compound sum
    reps = sorted(classes, key=lambda r: r.name)
    link = {r: r for r in reps}

    def lfind(r):
        while link[r] != r:
            r = link[r]
        return r
    for f in factors:
        touched = sorted({find(j) for j in sums if f.has(j)}, key=lambda r: r.name)
        for a, b in zip(touched, touched[1:]):
            link[lfind(b)] = lfind(a)
    components = {}
    for r in reps:
        components.setdefault(lfind(r), []).append(r)
    neuron_sums = []
    for comp in components.values():
        members = [j for r in comp for j in classes[r]]
        rename = {j: find(j) for j in members}
        mine = [f.xreplace(rename) for f in factors if f.has(*members)]
        attached = tuple(sorted({k for (_n, ks, s_) in props if s_ is not None and find(s_) in comp for k in ks}))
        if not mine:
            coeff *= fan_in ** len(comp)  # empty neuron sums count the neurons
            continue
        neuron_sums.append(NeuronSum(tuple(comp), sp.Mul(*mine), attached))
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
    for partition in set_partitions(sums):
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


def set_partitions(items):
    """All set partitions of a list (lists of blocks), generated recursively."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        yield [[first]] + part
        for k in range(len(part)):
            yield part[:k] + [[first] + part[k]] + part[k + 1:]
