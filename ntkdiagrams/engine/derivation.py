"""The derivation pipeline: rule file → Wick contractions → cluster diagrams → :class:`Recursion`.

:func:`derive` runs it for one tensor of a rule file (``"V"``):

* the target, e.g. ``V^{(ℓ+1)}_{α1α2α3α4}``, is isolated from its statistic's Kronecker
  decomposition by a choice of neuron indices (:func:`isolating_pattern`; docs/conventions.md §3:
  (0,0,1,1) for V) and read off at its order in 1/n;
* :func:`assemble` sums, over the Wick contractions of the layer-(ℓ+1) parameters
  (:mod:`ntkdiagrams.engine.wick`) and the groupings of their neuron sums into layer-ℓ cumulants,
  the cluster diagrams of every group (:mod:`ntkdiagrams.engine.cluster`).  Each diagram carries its
  value, so the right-hand side *is* Σ multiplicity × value over the diagrams; it is checked
  against the cumulants obtained independently by Möbius inversion of the moments;
* the first-layer value comes the same way from the rule file's ``first_layer`` map.

Correlator requests (``"E[...]"``) have their own entry point,
:func:`ntkdiagrams.engine.request.derive_request`, which uses :func:`assemble` with symbolic
neuron indices.  Results are cached in memory and on disk (:mod:`ntkdiagrams.engine.cache`, in
``Settings.cache_dir``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import sympy as sp

from ..combinatorics import set_partitions
from ..errors import UnsupportedError
from ..language.algebra import InputGram, ell
from ..language.rulefile import Leg, RuleSet, load_rules, parse_rules
from ..settings import Settings, resolve
from . import cache
from .cluster import cluster_pieces, expansion_order, group_cumulant, truncation_power
from .diagrams import Diagram, build_graph, merge_isomorphic
from .recursion import Recursion
from .wick import connected_groupings, wick_contractions


# ---- rule files ----

@lru_cache(maxsize=8)
def builtin_rules(name_or_path: str) -> RuleSet:
    """A rule file by name or path, loaded once per process."""
    return load_rules(name_or_path)


def resolve_rules(rules: RuleSet | str | None) -> RuleSet:
    """A :class:`RuleSet` from a RuleSet, a rule-file name or path, or None (the built-in ``mlp``)."""
    if rules is None:
        return builtin_rules("mlp")
    if isinstance(rules, str):
        return builtin_rules(rules)
    return rules


# ---- the entry point ----

def derive(tensor: str, rules: RuleSet | str | None = None, *, settings: Settings | None = None) -> Recursion:
    """Derive the layer-to-layer recursion of ``tensor`` (e.g. ``"V"``) from a rule file.

    ``settings``: where the derivation cache lives (``Settings.cache_dir``; None: the environment,
    :func:`ntkdiagrams.settings.resolve`).  Correlator requests ``"E[...]"`` go to
    :func:`ntkdiagrams.engine.request.derive_request`."""
    rules = resolve_rules(rules)
    if isinstance(tensor, str) and "[" in tensor:
        raise UnsupportedError(f"{tensor!r} is a correlator request, not a tensor of the rule file; "
                               "use derive_request (ntkdiagrams.derive_request) for E[...] / Ec[...]")
    if tensor not in rules.tensors:
        raise UnsupportedError(f"unknown statistic {tensor!r}; the rule file {rules.path} defines "
                               f"{sorted(rules.tensors)}")
    return derive_source(tensor, rules.path, rules.source, resolve(settings).cache_dir)


@lru_cache(maxsize=64)
def derive_source(tensor: str, path: str, source: str, cache_dir: Path | None) -> Recursion:
    """:func:`derive` from the text of a rule file, memoised per (tensor, rule file, cache folder)."""
    rules = rules_of_source(source, path)
    hit = cache.load(source, tensor, rules, cache_dir)
    if hit is not None:
        return hit
    rec = derive_uncached(tensor, rules)
    cache.store(source, rec, cache_dir)
    return rec


@lru_cache(maxsize=8)
def rules_of_source(source: str, path: str) -> RuleSet:
    """``parse_rules(source, path)`` once per process for the same text: the recursions of every
    tensor of a rule file share one :class:`RuleSet` (as those of :func:`builtin_rules` do)."""
    return parse_rules(source, path)


def clear_memory_cache() -> None:
    """Forget the recursions derived in this process (the on-disk cache is untouched)."""
    derive_source.cache_clear()
    rules_of_source.cache_clear()


def derive_uncached(tensor: str, rules: RuleSet) -> Recursion:
    """The derivation itself, bypassing every cache."""
    st = rules.statistic_of(tensor)
    term = next(t for t in st.terms if t.tensor == tensor)
    pattern = isolating_pattern(st, term)
    # name the cumulant's input labels after the tensor's slots: T(α1, α2, ...)
    rename = {a: sp.Symbol(f"alpha_{q + 1}") for q, a in enumerate(term.args)}
    legs = tuple(Leg(leg.field, tuple(pattern[i] for i in leg.neurons), tuple(rename[a] for a in leg.inputs))
                 for leg in st.legs)
    labels = tuple(rename[a] for a in term.args)
    T = rules.tensors[tensor].cls
    rec = assemble(rules, legs, term, ell, rules.width, first_layer=False)
    first = assemble(rules, legs, term, sp.Integer(0), rules.input_width, first_layer=True)
    return Recursion(tensor, st.name, term.order, labels, T(ell + 1, *labels), rec.rhs, first.rhs, rec.compact,
                     rec.diagrams, {str(k): int(v) for k, v in pattern.items()}, rules)


def isolating_pattern(statistic, term) -> dict:
    """Neuron-index values that keep ``term``'s Kronecker structure and kill the others'."""
    neurons = statistic.neuron_indices
    parent = {i: i for i in neurons}

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x
    for d in term.deltas:
        a, b = tuple(d)
        parent[find(b)] = find(a)
    # number the classes by their first neuron index, so the pattern is deterministic
    first = {}
    for i in neurons:
        first.setdefault(find(i), len(first))
    pattern = {i: sp.Integer(first[find(i)]) for i in neurons}
    for other in statistic.terms:
        if other.deltas == term.deltas:
            if other.order == term.order and other is not term:
                raise UnsupportedError(f"statistic {statistic.name}: tensors {term.tensor} and {other.tensor} "
                                       "share a Kronecker structure and an order; they cannot be separated")
            continue
        if all(pattern[a] == pattern[b] for a, b in map(tuple, other.deltas)):
            raise UnsupportedError(f"statistic {statistic.name}: no choice of neuron indices isolates "
                                   f"{term.tensor} from {other.tensor}")
    return pattern


# ---- the sum over diagrams ----

@dataclass
class Assembly:
    """The coefficient of width^{-order} of a cumulant or moment of layer-(ℓ+1) legs, over the
    target's coefficient: explicit, compact (BlobSum), and the diagrams that make it up
    (Σ multiplicity × value = rhs; empty for the first layer, a sum over the data)."""

    rhs: sp.Expr
    compact: sp.Expr
    diagrams: list


def assemble(rules: RuleSet, legs: tuple, term, layer, width, first_layer: bool, connected: bool = True,
             check_lower: bool = True, keep=None) -> Assembly:
    """Σ over Wick contractions and groupings of Π_groups κ(neuron sums), read off at
    width^{-order} and divided by the target's coefficient.

    Layer ℓ: the sum runs over diagrams, each a contraction, a grouping and one connected cluster
    piece per group (:func:`ntkdiagrams.engine.cluster.cluster_pieces`) at exactly the target
    power; the same coefficient is computed independently from the Möbius-inverted cumulants
    (:func:`ntkdiagrams.engine.cluster.group_cumulant`) and the two must agree exactly.

    ``connected``: keep the groupings that connect all legs (the joint cumulant of the legs);
    otherwise every grouping (the full moment E[Π legs]).  ``check_lower``: a piece at an order
    below the target must belong to another tensor of the statistic (a consistency check of
    :func:`derive`; correlator requests read off one order of a series and switch it off).
    ``keep``: a predicate on the Wick contractions; only those it accepts are summed (correlator
    requests take one Kronecker structure at a time)."""

    def groupings(c):
        if connected:
            return connected_groupings(c, nlegs)
        return (tuple(tuple(g) for g in part) for part in set_partitions(list(c.sums)))

    nlegs = len(legs)
    order = expansion_order(rules)
    total, total_compact = [], []
    diagrams = []
    target_power = -term.order
    labels = [leg.inputs[0] for leg in legs]
    ratios = None
    if rules.width_ratio is not None and not first_layer:
        # per-layer widths: layer ℓ has n_ℓ = r_ℓ n neurons (the fan-in of layer ℓ+1), its statistics
        # are expanded in 1/n_{ℓ−1}, and the target in 1/n_ℓ
        ratios = (rules.width_ratio(layer), rules.width_ratio(layer - 1))
    for c in wick_contractions(legs, rules, first_layer=first_layer):
        if keep is not None and not keep(c):
            continue
        if ratios is not None:
            c = replace(c, coefficient=c.coefficient.xreplace({width: ratios[0] * width}))
        pre = c.coefficient * c.deltas
        if pre == 0:
            continue
        p_coef = _n_power(c.coefficient, width)
        pre0 = sp.expand(pre * width ** (-p_coef) / term.coefficient)
        if pre0.has(width):
            raise UnsupportedError(f"internal: coefficient {c.coefficient} is not a single power of {width}")
        for grouping in groupings(c):
            sizes = [sum(len(s.indices) for s in g) for g in grouping]
            R = sum(sizes)
            if p_coef + R < target_power:
                continue  # even the leading power of these diagrams is below the target order
            if first_layer:
                per_group = [_deterministic_group(g, width) for g in grouping]
            else:
                if p_coef + truncation_power(R, order) >= target_power:
                    raise UnsupportedError(
                        f"{term.tensor}: a contribution with {R} neuron sums is only known up to "
                        f"O(n^{p_coef + truncation_power(R, order)}), which reaches the requested order "
                        + ("(it needs second-order blobs or the six-point vertex of layer ℓ)" if order == 1 else
                           f"(it needs blobs of order 1/n^{order + 1} of layer ℓ: the {2 * order + 4}-point "
                           f"vertex, the 1/n^{order + 1} parts of the lower cumulants and products of "
                           f"{order + 1} blobs, beyond the rule file's order 1/n^{order})"))
                need = p_coef + R - target_power   # the highest blob order these groups are read at
                per_group = [group_cumulant(list(g), rules, layer, width, ratios, need,
                                            target_power - p_coef - (R - r))
                             for g, r in zip(grouping, sizes)]
                pieces = [cluster_pieces(list(g), v[2], target_power - p_coef - (R - r), rules, ratios)
                          for g, v, r in zip(grouping, per_group, sizes)]
                for combo in itertools.product(*pieces):
                    power = p_coef + sum(t.power for t in combo)
                    if power != target_power:
                        continue
                    value = sp.expand(pre0 * sp.Mul(*[t.value for t in combo]))
                    compact = sp.expand(pre0 * sp.Mul(*[t.compact for t in combo]))
                    if ratios is not None:
                        value, compact = sp.expand(value * ratios[0] ** term.order), \
                            sp.expand(compact * ratios[0] ** term.order)
                    if value == 0 and compact == 0:
                        continue
                    graph = build_graph(nlegs, labels, c, grouping, combo)
                    diagrams.append(Diagram(graph, 1, power, value, compact))
            total.append(sp.expand(pre * sp.Mul(*[v[0] for v in per_group])))
            total_compact.append(sp.expand(pre * sp.Mul(*[v[1] for v in per_group])))
    by_power = _by_power(sp.Add(*total), width, expanded=True)
    if check_lower:
        for p in by_power:
            k = -p
            if k < term.order and _is_lower_order_bug(rules, term, k):
                raise UnsupportedError(f"internal: unexpected order-{k} piece in {term.tensor}")
    norm = 1 / term.coefficient if ratios is None else ratios[0] ** term.order / term.coefficient
    coefficient = sp.expand(by_power.get(target_power, sp.Integer(0)) * norm)
    compact = sp.expand(_by_power(sp.Add(*total_compact), width, expanded=True).get(target_power, sp.Integer(0))
                        * norm)
    if first_layer:
        return Assembly(coefficient, compact, [])
    rhs = sp.expand(sp.Add(*[d.value for d in diagrams]))
    rhs_compact = sp.expand(sp.Add(*[d.compact for d in diagrams]))
    if sp.expand(rhs - coefficient) != 0 or sp.expand(rhs_compact - compact) != 0:
        raise UnsupportedError(f"internal: the diagrams of {term.tensor} do not add up to the cumulant "
                               "obtained by Möbius inversion")
    return Assembly(rhs, rhs_compact, merge_isomorphic(diagrams, labeled=True))


def _n_power(expr: sp.Expr, n: sp.Symbol) -> int:
    c, p = sp.expand(expr).as_coeff_exponent(n)
    return int(p)


def _by_power(expr: sp.Expr, width, expanded: bool = False) -> dict:
    """{power of width: its non-zero coefficient} of an expanded Laurent polynomial in width.

    ``expanded``: ``expr`` is already a sum of expanded terms (an Add of expanded terms is
    expanded: Add only collects like terms), so it is not expanded again; the coefficients are
    then sums of monomials, also left as they are."""
    parts: dict = {}
    for t in sp.Add.make_args(expr if expanded else sp.expand(expr)):
        if t == 0:
            continue
        c, p = _split_power(t, width)
        if c.has(width) or not p.is_Integer:
            raise UnsupportedError(f"internal: term {t} is not a power of {width} times a coefficient")
        parts.setdefault(int(p), []).append(c)
    out = {}
    for p, cs in parts.items():
        v = sp.Add(*cs) if expanded else sp.expand(sp.Add(*cs))
        if v != 0:
            out[p] = v
    return out


def _split_power(t: sp.Expr, width) -> tuple:
    """(c, p) with t = c · width**p for a monomial t (Expr.as_coeff_exponent without its
    ``collect``, ~10× faster): the factors width**e of the product are taken out."""
    p, rest = sp.Integer(0), []
    for f in sp.Mul.make_args(t):
        b, e = f.as_base_exp()
        if b == width:
            p += e
        else:
            rest.append(f)
    return sp.Mul(*rest), p


def _is_lower_order_bug(rules, term, k):
    """A piece at a lower order than the target is legitimate only if another tensor of the
    same statistic and Kronecker structure sits at that order (K below G1)."""
    st = rules.statistic_of(term.tensor)
    return not any(t.deltas == term.deltas and t.order == k for t in st.terms)


def _deterministic_group(group, width):
    """Layer-1 neuron sums are sums over the data: Σ_j x_{j;α} x_{j;β} = n0 · x_α·x_β/n0;
    cumulants of two or more deterministic quantities vanish."""
    if len(group) > 1:
        return (sp.Integer(0), sp.Integer(0), [])
    s = group[0]
    xs = [f for f in sp.Mul.make_args(s.function)]
    if len(s.indices) != 1 or len(xs) != 2 or any(getattr(f.func, "__name__", "") != "x" for f in xs):
        raise UnsupportedError(f"first-layer insertion {s.function} is not a product of two data factors")
    v = width * InputGram(xs[0].args[1], xs[1].args[1])
    return (v, v, [])
