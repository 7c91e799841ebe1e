"""Recursions: the statistics of layer ℓ+1 as closed-form expressions in those of layer ℓ.

:func:`derive` runs the whole pipeline for one tensor of the rule file (rules → Wick
contractions → cluster diagrams → sum) and returns a :class:`Recursion`:

* the target, e.g. ``V^{(ℓ+1)}_{α1α2α3α4}``, isolated from its statistic's Kronecker
  decomposition by a choice of neuron indices (docs/conventions.md §3: (0,0,1,1) for V) and read off
  at its order in 1/n;
* the right-hand side, a sympy expression in Gaussian expectations ⟨…⟩_{K^{(ℓ)}} and the
  layer-ℓ tensors, valid for arbitrary (also coinciding) inputs α;
* the first-layer value, derived the same way from the rule file's ``first_layer`` map;
* the diagrams that contribute, with multiplicities and powers of n.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache

import sympy as sp

from ..language.algebra import InputGram, ell
from .cluster import group_cumulant, register_tensors, truncation_power
from .diagrams import Diagram, build_graph, merge_isomorphic
from ..errors import UnsupportedError
from ..language.rulefile import Leg, RuleSet, load_rules
from .wick import connected_groupings, wick_contractions


@dataclass
class Recursion:
    """T^{(ℓ+1)}(α…) = rhs(layer-ℓ statistics), with T^{(1)} = initial."""

    tensor: str
    statistic: str
    order: int
    labels: tuple
    target: sp.Expr
    rhs: sp.Expr
    initial: sp.Expr
    compact: sp.Expr = None     # rhs with blob contractions kept as Σ_β sums (BlobSum)
    diagrams: list = field(default_factory=list, repr=False)
    pattern: dict = field(default_factory=dict)
    rules: RuleSet | None = field(default=None, repr=False)

    def text(self, compact: bool = True) -> str:
        """A readable text form, one term per line: target = rhs, and the first-layer value."""
        t1 = self.target.func(1, *self.labels)
        rhs = self.compact if (compact and self.compact is not None) else self.rhs
        terms = [_str_term(t) for t in sp.Add.make_args(rhs)]
        body = "\n".join("    " + t if k == 0 else "  - " + t[1:] if t.startswith("-") else "  + " + t
                         for k, t in enumerate(terms))
        return f"{self.target} =\n{body}\n{t1} = {self.initial}"

    def latex(self, initial: bool = True, compact: bool = True) -> str:
        """Publication-ready LaTeX (an ``align`` environment body).

        ``compact`` keeps blob contractions as Σ_β sums (PDLT's form); otherwise every
        derivative is resolved on the input labels."""
        rhs = self.compact if (compact and self.compact is not None) else self.rhs
        lines = [sp.latex(self.target) + " &= " + _latex_sum(rhs)]
        if initial:
            lines.append(sp.latex(self.target.func(1, *self.labels)) + " &= " + sp.latex(self.initial))
        return " \\\\\n".join(lines)

    def diagram_table(self, labeled: bool = False) -> str:
        """The contributing diagrams (grouped into topologies unless ``labeled``)."""
        ds = merge_isomorphic([Diagram(d.graph, d.multiplicity, d.power, d.value) for d in self.diagrams],
                              labeled=labeled)
        return "\n".join(f"  D{k + 1}: {d.describe()}" for k, d in enumerate(ds))

    @property
    def layer_tensors(self) -> set:
        """Names of the layer-ℓ tensors the right-hand side uses."""
        from ..language.algebra import LayerTensor
        return {a.tensor_name for a in self.rhs.atoms(LayerTensor)}


def _latex_term(term: sp.Expr) -> str:
    """A term as 'coefficient · rest', so rational prefactors stay in front (\\frac{C_W}{4} Σ …)."""
    c, rest = term.as_independent(*[a for a in term.atoms(sp.Function)], as_Add=False)
    if rest == 1:
        return sp.latex(term)
    if c == 1:
        return sp.latex(rest)
    if c == -1:
        return "- " + sp.latex(rest)
    return sp.latex(c) + " " + sp.latex(rest)


def _str_term(term: sp.Expr) -> str:
    c, rest = term.as_independent(*[a for a in term.atoms(sp.Function)], as_Add=False)
    if rest == 1 or c == 1:
        return str(term)
    if c == -1:
        return "-" + str(rest)
    return f"{c} * {rest}" if not str(c).startswith("-") else f"-{-c} * {rest}"


def _latex_sum(expr: sp.Expr, per_line: int = 3) -> str:
    terms = sp.Add.make_args(expr)
    parts = [_latex_term(t) for t in terms]
    out = ""
    for k, p in enumerate(parts):
        if k and k % per_line == 0:
            out += " \\nonumber\\\\\n &\\quad "
        if k == 0:
            out += p
        else:
            out += (" " + p) if p.startswith("-") else (" + " + p)
    return out


def input_labels(k: int) -> tuple:
    return tuple(sp.Symbol(f"alpha_{q}") for q in range(1, k + 1))


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


def _n_power(expr: sp.Expr, n: sp.Symbol) -> int:
    c, p = sp.expand(expr).as_coeff_exponent(n)
    return int(p)


def derive(tensor: str, rules: RuleSet | str | None = None, **request_options):
    """Derive the layer-to-layer recursion of ``tensor`` (e.g. ``"V"``) from a rule file.

    A correlator request (``"E[dH(i0,i1,i2;a0,a1,a2) z(i3;a3)]"``, ``"Ec[...]"``) returns a
    :class:`ntkdiagrams.engine.request.RequestResult` instead (options ``order``, ``connected``)."""
    rules = _rules(rules)
    if isinstance(tensor, str) and "[" in tensor:
        from .request import derive_request
        return derive_request(tensor, rules, **request_options)
    if tensor not in rules.tensors:
        raise UnsupportedError(f"unknown statistic {tensor!r}; the rule file {rules.path} defines "
                               f"{sorted(rules.tensors)}")
    return _derive_cached(tensor, rules.path, rules.source)


@lru_cache(maxsize=64)
def _derive_cached(tensor: str, path: str, source: str) -> Recursion:
    from . import cache
    from ..language.rulefile import parse_rules
    rules = parse_rules(source, path)
    register_tensors(rules)
    hit = cache.load(source, tensor, rules)
    if hit is not None:
        return hit
    rec = _derive_uncached(tensor, rules)
    cache.store(source, rec)
    return rec


def _derive_uncached(tensor: str, rules: RuleSet) -> Recursion:
    st = rules.statistic_of(tensor)
    term = next(t for t in st.terms if t.tensor == tensor)
    pattern = isolating_pattern(st, term)
    # name the cumulant's input labels after the tensor's slots: T(α1, α2, ...)
    rename = {a: sp.Symbol(f"alpha_{q + 1}") for q, a in enumerate(term.args)}
    legs = tuple(Leg(leg.field, tuple(pattern[i] for i in leg.neurons), tuple(rename[a] for a in leg.inputs))
                 for leg in st.legs)
    labels = tuple(rename[a] for a in term.args)
    T = rules.tensors[tensor].cls
    (rhs, compact), diagrams = _assemble(rules, legs, term, ell, rules.width, first_layer=False)
    (initial, _), _ = _assemble(rules, legs, term, sp.Integer(0), rules.input_width, first_layer=True)
    return Recursion(tensor, st.name, term.order, labels, T(ell + 1, *labels), rhs, initial, compact,
                     diagrams, {str(k): int(v) for k, v in pattern.items()}, rules)


def _assemble(rules, legs, term, layer, width, first_layer, connected=True, check_lower=True):
    """Σ over Wick contractions and groupings of Π_groups κ(neuron sums), read off at
    width^{-order}; returns ((explicit, compact) / coefficient, contributing diagrams).

    ``connected``: keep the groupings that connect all legs (the joint cumulant of the legs);
    otherwise every grouping (the full moment E[Π legs]).  ``check_lower``: a piece at an order
    below the target must belong to another tensor of the statistic (a consistency check of
    :func:`derive`; correlator requests read off one order of a series and switch it off)."""
    import networkx as nx
    from ..combinatorics import set_partitions

    def groupings(c):
        if connected:
            return connected_groupings(c, nlegs)
        return (tuple(tuple(g) for g in part) for part in set_partitions(list(c.sums)))

    nlegs = len(legs)
    total, total_compact = [], []
    diagrams = []
    target_power = -term.order
    for c in wick_contractions(legs, rules, first_layer=first_layer):
        pre = c.coefficient * c.deltas
        if pre == 0:
            continue
        p_coef = _n_power(c.coefficient, width)
        for grouping in groupings(c):
            R = sum(len(s.indices) for g in grouping for s in g)
            if p_coef + R < target_power:
                continue  # even the leading power of these diagrams is below the target order
            if first_layer:
                per_group = [_deterministic_group(g, width) for g in grouping]
            else:
                if p_coef + truncation_power(R) >= target_power:
                    raise UnsupportedError(
                        f"{term.tensor}: a contribution with {R} neuron sums is only known up to "
                        f"O(n^{p_coef + truncation_power(R)}), which reaches the requested order "
                        "(it needs second-order blobs or the six-point vertex of layer ℓ)")
                per_group = [group_cumulant(list(g), rules, layer, width) for g in grouping]
            total.append(sp.expand(pre * sp.Mul(*[v[0] for v in per_group])))
            total_compact.append(sp.expand(pre * sp.Mul(*[v[1] for v in per_group])))
            for combo in itertools.product(*[v[2] for v in per_group]):
                power = p_coef + sum(t.power for t in combo)
                if power != target_power:
                    continue
                graph = build_graph(nlegs, [leg.inputs[0] for leg in legs], c, grouping, combo)
                if nx.is_connected(graph):
                    diagrams.append(Diagram(graph, 1, power, sp.Integer(0)))
    eps = sp.Symbol("epsilon_n", positive=True)
    total, total_compact = sp.Add(*total), sp.Add(*total_compact)
    series = sp.expand(total.xreplace({width: 1 / eps}))
    if series != 0:
        for (k,), _coef in sp.Poly(series, eps).terms():
            if check_lower and k < term.order and _is_lower_order_bug(rules, term, k):
                raise UnsupportedError(f"internal: unexpected order-{k} piece in {term.tensor}")
    coefficient = series.coeff(eps, term.order) if series != 0 else sp.Integer(0)
    compact = sp.expand(total_compact.xreplace({width: 1 / eps})).coeff(eps, term.order)
    kept = merge_isomorphic(diagrams, labeled=True)
    return (sp.expand(coefficient / term.coefficient), sp.expand(compact / term.coefficient)), kept


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


@lru_cache(maxsize=8)
def _load(name_or_path: str) -> RuleSet:
    return load_rules(name_or_path)


def _rules(rules) -> RuleSet:
    if rules is None:
        return _load("mlp")
    if isinstance(rules, str):
        return _load(rules)
    return rules
