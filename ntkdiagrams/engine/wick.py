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

A layer map may also use layer-ℓ fields outside every neuron sum, at the leg's own neuron: the
shortcut ``ξ z^{(ℓ)}_{i;α}`` of a residual network.  Such a factor is a random variable of layer ℓ
at a *fixed* neuron (the external index i: no sum, no factor n); it becomes a
:class:`NeuronSum` without summed indices whose ``fixed`` neurons Stage B treats as sites that are
given, not summed.  Fields at fixed neurons also occur inside neuron sums, e.g. ``H^{(ℓ)}_{i j}`` in
the NTK's chain rule ``ξ W_{i' j} σ'_j H^{(ℓ)}_{i j}``.

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

from ..combinatorics import set_partitions
from ..errors import UnsupportedError
from ..language.rulefile import Leg, RuleSet


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
    legs: tuple         # external legs attached to this sum (propagators, or factors they own)
    fixed: tuple = ()   # neurons of layer ℓ the function uses that are not summed (external indices)
    shortcuts: tuple = ()  # (leg, fixed neuron): the leg whose factor reaches that neuron directly


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


def _pair_slots(spec, idx1, idx2):
    """Pair two occurrences of a parameter, P[idx1] with P[idx2]: its 'out' slots (neurons of
    layer ℓ+1) give Kronecker deltas of external indices, its 'in' slots (neurons of layer ℓ)
    identify summed indices.  Returns (product of deltas, [(kept, identified)] index pairs).
    Used by Wick contractions (covariance) and learning-rate contractions (tangent fields)."""
    deltas, same = sp.Integer(1), []
    for kind, u, v in zip(spec.indices, idx1, idx2):
        if kind == "out":
            deltas *= sp.KroneckerDelta(u, v)
        else:
            same.append((u, v))
    return deltas, same


def tangent_monomials(leg: Leg, k: int, rules: RuleSet, layer_map, first_layer: bool) -> list[Monomial]:
    """A tangent field of layer ℓ+1 (NTK, dNTK, ddNTKs) from the layer map, by the chain rule.

    The rule file gives each tangent field a derivative pattern: slot s is ∂_{labels_s} z_{i_s;a_s},
    and every label is a sum over parameters weighted by its learning rate, occurring in exactly
    two slots (the NTK: [[μ], [μ]]; the dNTK: [[μ, ν], [μ], [ν]]).  Each label runs either over
    the parameters θ of layer ℓ+1 or over the lower ones φ:

    * θ: the two slots carrying it each lose one occurrence of the same parameter, contracted with
      its learning rate (λ_b, or λ_W/n with the neuron indices identified);
    * φ: by the chain rule (Faà di Bruno) a slot's φ-labels are split into blocks B, each block
      giving ∂^{|π|}F/∂z_{j_1}⋯∂z_{j_|π|} · Π_B ∂_B z^{(ℓ)}_{j_B}; the layer-ℓ factors ∂_B z^{(ℓ)}, linked
      by their labels, form connected components, and each component is one layer-ℓ tangent
      field, recognised by matching it against the declared patterns.

    For the NTK this is H^{(ℓ+1)} = Σ_θ λ_θ ∂_θz ∂_θz + Σ ∂z/∂z_{j1} ∂z/∂z_{j2} H^{(ℓ)}_{j1j2}; for the
    dNTK it gives the four terms of docs/conventions.md §2.  Nothing about these fields is typed in."""
    spec = rules.fields[leg.field]
    pattern = spec.derivatives
    if not pattern:
        raise UnsupportedError(f"field {leg.field!r} has no [fields.{leg.field}] derivatives pattern")
    fan_in = rules.input_width if first_layer else rules.width
    slot_monos = []
    for s_idx in range(len(pattern)):
        subs = {layer_map.neuron: leg.neurons[s_idx], layer_map.input: leg.inputs[s_idx]}
        for j in layer_map.sum_indices:
            subs[j] = sp.Symbol(f"{j.name}_{k}{'abcdefgh'[s_idx]}", integer=True)
        slot_monos.append(monomials(layer_map.rhs.xreplace(subs), rules))
    labels = sorted({x for slot in pattern for x in slot})
    out: list[Monomial] = []
    for kinds in itertools.product(("theta", "phi"), repeat=len(labels)):
        kind = dict(zip(labels, kinds))
        per_slot = []
        for s_idx, slot in enumerate(pattern):
            theta = [x for x in slot if kind[x] == "theta"]
            phi = [x for x in slot if kind[x] == "phi"]
            per_slot.append(list(_slot_expansions(slot_monos[s_idx], theta, phi, leg.inputs[s_idx])))
        for combo in itertools.product(*per_slot):
            mono = _assemble_tangent(combo, pattern, kind, rules, fan_in)
            if mono is not None:
                out.append(mono)
    return out


def _slot_expansions(monos, theta, phi, a):
    """∂_θ… ∂_φ… of one slot: yields (monomial, {θ-label: parameter occurrence}, lower factors)."""
    for m in monos:
        for occ in itertools.permutations(range(len(m.parameters)), len(theta)):
            rest = tuple(p for n_, p in enumerate(m.parameters) if n_ not in occ)
            theta_occ = {x: m.parameters[o] for x, o in zip(theta, occ)}
            F = sp.Mul(*m.factors)
            if not phi:
                yield Monomial(m.coefficient, rest, m.sums, (F,)), theta_occ, ()
                continue
            # z at a summed neuron (Σ_j W σ(z_j)) or at the leg's own neuron (a shortcut ξ z_i)
            atoms = sorted((t for t in F.atoms(sp.Function)
                            if getattr(t.func, "__name__", "") == "z"), key=sp.default_sort_key)
            for blocks in set_partitions(list(phi)):
                for chosen in itertools.product(atoms, repeat=len(blocks)):
                    d = F
                    for t in chosen:
                        d = sp.diff(d, t)
                    if d == 0:
                        continue
                    lower = tuple((frozenset(b), t.args[0], a) for b, t in zip(blocks, chosen))
                    yield Monomial(m.coefficient, rest, m.sums, (d,)), theta_occ, lower


def _assemble_tangent(combo, pattern, kind, rules: RuleSet, fan_in):
    """Join the slot expansions: learning-rate contractions for θ-labels, layer-ℓ tangent fields
    for the components of φ-linked lower factors.  None if the combination vanishes."""
    coeff = sp.Mul(*[m.coefficient for m, _t, _l in combo])
    rename: dict = {}
    tangents = []
    for x in sorted(kind):
        if kind[x] != "theta":
            continue
        (s1, s2) = [s for s, slot in enumerate(pattern) if x in slot]
        (p1, idx1), (p2, idx2) = combo[s1][1][x], combo[s2][1][x]
        pspec = rules.parameters[p1]
        if p1 != p2 or pspec.learning_rate is None:
            return None
        coeff *= pspec.learning_rate.xreplace({rules.width: fan_in})
        deltas, same = _pair_slots(pspec, idx1, idx2)
        coeff *= deltas
        rename.update({v: u for u, v in same})
        tangents.append((p1, same[-1][0] if same else None))

    def rn(e):
        for _ in range(4):  # follow chains of identifications
            e2 = e.xreplace(rename) if hasattr(e, "xreplace") else rename.get(e, e)
            if e2 == e:
                return e
            e = e2
        return e
    params = tuple((p, tuple(rn(i) for i in idx)) for m, _t, _l in combo for p, idx in m.parameters)
    sums = tuple(dict.fromkeys(rn(j) for m, _t, _l in combo for j in m.sums))
    factors = [rn(f) for m, _t, _l in combo for f in m.factors if f != 1]
    lower = [(lab, rn(j), a) for _m, _t, low in combo for lab, j, a in low]
    for comp in _components(lower):
        field = _match_field(comp, rules)
        if field is None:
            return None
        factors.append(field)
    tangents = tuple((p, rn(j) if j is not None else None) for p, j in tangents)
    return Monomial(coeff, params, sums, tuple(factors), tangents)


def _components(lower):
    """Group layer-ℓ derivative factors into components linked by shared labels."""
    comps = []
    for item in lower:
        linked = [c for c in comps if any(item[0] & other[0] for other in c)]
        merged = [item] + [x for c in linked for x in c]
        comps = [c for c in comps if c not in linked] + [merged]
    return comps


def _match_field(comp, rules: RuleSet):
    """The declared tangent field whose derivative pattern this component is, applied to its
    neurons and inputs in slot order (e.g. three factors ∂_{μν}z_j, ∂_μ z_m, ∂_ν z_p → dH(j, m, p))."""
    for name, spec in rules.fields.items():
        pat = spec.derivatives
        if len(pat) != len(comp):
            continue
        for perm in itertools.permutations(range(len(comp))):
            comp_labels = sorted({x for lab, _j, _a in comp for x in lab})
            pat_labels = sorted({x for slot in pat for x in slot})
            if len(comp_labels) != len(pat_labels):
                continue
            for bij in itertools.permutations(pat_labels):
                mp = dict(zip(comp_labels, bij))
                if all({mp[x] for x in comp[perm[t]][0]} == set(pat[t]) for t in range(len(pat))):
                    ordered = [comp[perm[t]] for t in range(len(pat))]
                    return sp.Function(name)(*[j for _l, j, _a in ordered], *[a for _l, _j, a in ordered])
    raise UnsupportedError(f"a product of layer-ℓ derivatives {[sorted(lab) for lab, _j, _a in comp]} matches no "
                           "declared tangent field (declare it with its derivatives pattern)")


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
        owners = [k for k, m in enumerate(choice) for _f in m.factors]
        tangents = [(k, p, j) for k, m in enumerate(choice) for p, j in m.tangents]
        names = sorted(occurrences)
        for matchings in itertools.product(*[list(_perfect_matchings(occurrences[nm])) for nm in names]):
            out.append(_contract(rules, names, matchings, coeff, sums, factors,
                                 rules.input_width if first_layer else rules.width, tangents, owners))
    return out


def field_neurons(expr: sp.Expr, rules: RuleSet) -> list:
    """The neuron arguments of the declared fields in ``expr`` (z_{j;α} → j, H_{jk;αβ} → j, k),
    in a canonical order, without repetition."""
    out = []
    for a in sorted(expr.atoms(AppliedUndef), key=sp.default_sort_key):
        spec = rules.fields.get(a.func.__name__)
        if spec is not None:
            out.extend(a.args[:spec.neurons])
    return list(dict.fromkeys(out))


def _contract(rules, names, matchings, coeff, sums, factors, fan_in, tangents=(), owners=()):
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
            out_deltas, same = _pair_slots(spec, ia, ib)
            deltas *= out_deltas
            sum_index = None
            for x, y in same:
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
        own = [q for q, f in enumerate(factors) if f.has(*members)]
        mine = [factors[q].xreplace(rename) for q in own]
        attached = {k for (_n, ks, s_) in props if s_ is not None and find(s_) in comp for k in ks}
        if not mine:
            coeff *= fan_in ** len(comp)  # empty neuron sums count the neurons
            continue
        fixed, shortcuts = _fixed_neurons([(owners[q], f) for q, f in zip(own, mine)], set(comp), rules)
        attached |= {k for k, _i in shortcuts}
        neuron_sums.append(NeuronSum(tuple(comp), sp.Mul(*mine), tuple(sorted(attached)), fixed, shortcuts))
    # layer-ℓ factors outside every neuron sum (shortcuts ξ z_i): one random variable per leg
    loose: dict = {}
    for q, f in enumerate(factors):
        if not f.has(*sums):
            loose.setdefault(owners[q], []).append(f)
    for k, fs in sorted(loose.items()):
        fixed, shortcuts = _fixed_neurons([(k, f) for f in fs], set(), rules)
        if not fixed:
            raise UnsupportedError(f"layer-ℓ factor(s) {fs} outside every neuron sum are not fields at the "
                                   "leg's own neuron")
        neuron_sums.append(NeuronSum((), sp.Mul(*fs), (k,), fixed, shortcuts))
    propagators = tuple(Propagator(n, ks, find(s) if s is not None else None) for n, ks, s in props)
    return Contraction(coeff, deltas, propagators, tuple(neuron_sums))


def _fixed_neurons(owned, summed: set, rules: RuleSet):
    """(fixed neurons, (leg, neuron) shortcuts) of factors ``owned`` = [(leg, factor)]: the neuron
    arguments of their fields that are not summed."""
    fixed, shortcuts = [], []
    for k, f in owned:
        for i in field_neurons(f, rules):
            if i in summed:
                continue
            fixed.append(i)
            shortcuts.append((k, i))
    return tuple(dict.fromkeys(fixed)), tuple(dict.fromkeys(shortcuts))


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
