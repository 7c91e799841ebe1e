"""Feynman diagrams as ``networkx.MultiGraph`` s, merged up to isomorphism.

One diagram is one term of the expansion of a layer-(ℓ+1) cumulant: a Wick contraction of
the layer's parameters (Stage A, :mod:`ntkdiagrams.engine.wick`), a grouping of its neuron sums
into layer-ℓ cumulants, and one cluster diagram per group (Stage B,
:mod:`ntkdiagrams.engine.cluster`).  As a graph:

============  =====================================================================
node kind     meaning
============  =====================================================================
``leg``       an external field of layer ℓ+1 (attribute ``label``: its input α)
``insertion`` the layer-ℓ function a weight propagator feeds (attribute ``function``: its
              activation factors without labels, e.g. ``σσ`` or ``σ'σ'``)
``site``      one layer-ℓ neuron summed over (a loop: a factor n); merged sites carry the
              joint cumulant of their functions
``fixed``     a layer-ℓ neuron that is not summed: the leg's own neuron i reached by a
              shortcut ξ z^{(ℓ)}_{i} (no factor n); summed indices merged onto it sit there
``blob``      a layer-ℓ statistic (attribute ``tensor``: G1, V, …) acting on sites
============  =====================================================================

Edges: ``leg–leg`` for a bias propagator (kind ``b``), ``leg–insertion`` for a weight
propagator (kind ``W``, one edge per end, each worth C_W/n for the pair), ``insertion–site``
(kind ``at``), one ``blob–site`` edge (kind ``d``) per derivative leg of the blob: a
self-contained picture of PDLT's "⟨∂∂ σσ⟩ V ⟨∂∂ σσ⟩", and a ``leg–fixed`` edge (kind
``shortcut``) where a leg reaches a layer-ℓ field at its own neuron directly.

Every diagram carries its value, the sympy expression the Feynman rules give it (explicit, and
compact with blob contractions as Σ_β sums), so that Σ multiplicity × value over the diagrams of a
recursion is its right-hand side.

:func:`merge_isomorphic` buckets diagrams by a cheap invariant and then runs VF2
(``nx.is_isomorphic`` with categorical node and multi-edge matchers).  With ``labeled=True``
external legs keep their labels and only diagrams of equal value merge: multiplicities add and
the value stays the value of each member.  With ``labeled=False`` diagrams are grouped into
topologies; a topology's value is its members' common value, or None where they differ
(:attr:`Diagram.total` is always the sum of multiplicity × value over the members).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy as sp

from ..language.algebra import ActivationDerivative
from .cluster import BlobProduct, blob_members, copy_symbol

if TYPE_CHECKING:
    import networkx as nx

#: networkx (~0.1 s of import) is imported where a graph is built or compared: a recursion read
#: back from the derivation cache and only evaluated never needs it (:class:`NodeLinkGraph`).


@dataclass(frozen=True)
class NodeLinkGraph:
    """A diagram's graph in networkx's node-link form (as the derivation cache stores it), made
    a ``networkx.MultiGraph`` on first use of :attr:`Diagram.graph`."""

    data: dict

    def build(self) -> "nx.MultiGraph":
        import networkx as nx

        return nx.node_link_graph(self.data, edges="edges", multigraph=True)


@dataclass
class Diagram:
    """A diagram with its multiplicity, power of n and value (a sympy expression per member:
    the coefficient of n^power it contributes, explicit; ``compact`` with blob contractions kept as
    :class:`~ntkdiagrams.language.algebra.BlobSum`).  The first argument is the graph (a
    ``networkx.MultiGraph``, or a :class:`NodeLinkGraph` built into one on first use of
    :attr:`graph`)."""

    source: "nx.MultiGraph | NodeLinkGraph"
    multiplicity: int
    power: int
    value: sp.Expr | None
    compact: sp.Expr | None = None
    members: list = field(default_factory=list, repr=False)

    @property
    def graph(self) -> "nx.MultiGraph":
        """The diagram's MultiGraph (built from the node-link form on first use)."""
        if isinstance(self.source, NodeLinkGraph):
            self.source = self.source.build()
        return self.source

    @property
    def total(self) -> sp.Expr:
        """Σ multiplicity × value of the diagram (over its members if they differ)."""
        if self.value is not None or not self.members:
            return self.multiplicity * self.value
        return sp.Add(*[m.total for m in self.members])

    @property
    def total_compact(self) -> sp.Expr:
        """:attr:`total` in the compact (BlobSum) form."""
        if self.compact is not None or not self.members:
            return self.multiplicity * self.compact
        return sp.Add(*[m.total_compact for m in self.members])

    def copy(self) -> "Diagram":
        """A fresh diagram with the same graph, multiplicity, power and values (no members)."""
        return Diagram(self.source, self.multiplicity, self.power, self.value, self.compact)

    def describe(self) -> str:
        """A one-line summary: which propagators, sites and blobs, and the power of n."""
        g = self.graph
        kinds = Counter(d["kind"] for _, d in g.nodes(data=True))
        props = Counter(d["kind"] for *_e, d in g.edges(data=True) if d["kind"] in ("b", "W"))
        nW = props["W"] // 2
        kind = dict(g.nodes(data="kind"))
        lam_edges = [(kind[u], kind[v]) for u, v, d in g.edges(data=True) if d["kind"].startswith("lambda_")]
        lam = sum(1 for a, b in lam_edges if a == b == "leg") + \
            sum(1 for a, b in lam_edges if "insertion" in (a, b)) // 2
        blobs = sorted(d.get("tensor", "") for _, d in g.nodes(data=True) if d["kind"] == "blob")
        parts = []
        if props["b"]:
            parts.append(f"{props['b']} bias propagator{'s' * (props['b'] > 1)}")
        if nW:
            parts.append(f"{nW} weight propagator{'s' * (nW > 1)}")
        if lam:
            parts.append(f"{lam} learning-rate contraction{'s' * (lam > 1)}")
        parts.append(f"{kinds['site']} neuron site{'s' * (kinds['site'] != 1)}")
        if kinds["fixed"]:
            short = sum(1 for *_e, d in g.edges(data=True) if d["kind"] == "shortcut")
            parts.append(f"{kinds['fixed']} fixed neuron{'s' * (kinds['fixed'] != 1)} "
                         f"({short} shortcut{'s' * (short != 1)})")
        if blobs:
            parts.append("blob " + ", ".join(blobs))
        else:
            multi = [s for s, d in g.nodes(data=True) if d["kind"] == "site" and g.degree(s) > 1]
            if multi:
                parts.append("Gaussian connected site")
        pw = "n^0" if self.power == 0 else f"n^{self.power}"
        return f"x{self.multiplicity}  [{pw}]  " + "; ".join(parts)


def insertion_function(function: sp.Expr, index) -> str:
    """The activation factors of a neuron sum's function at one summed index, without input
    labels: ``σσ``, ``σ'σ'``, ``σσ''``… (other fields are drawn as edges)."""
    marks = []
    for f in sp.Mul.make_args(function):
        base, exp = f.as_base_exp()
        reps = int(exp) if (exp.is_Integer and exp > 0) else 1
        if not isinstance(base, ActivationDerivative) or not base.has(index):
            continue
        k = int(base.args[0])
        marks += [k] * reps
    return "".join("σ" + ("'" * k if k < 4 else f"^({k})") for k in sorted(marks))


def build_graph(nlegs: int, labels, contraction, grouping, terms) -> nx.MultiGraph:
    """The MultiGraph of one (contraction, grouping, cluster piece per group) configuration."""
    import networkx as nx

    g = nx.MultiGraph()
    for k in range(nlegs):
        g.add_node(("leg", k), kind="leg", label=str(labels[k]))
    site_of_index = {}
    for gi, term in enumerate(terms):
        for si, block in enumerate(term.sites):
            pinned = term.pins and term.pins[si] is not None
            g.add_node(("site", gi, si), kind="fixed" if pinned else "site")
            for j in block:
                site_of_index[j] = ("site", gi, si)   # copies of fixed neurons are named per group
        for p, s in enumerate(grouping[gi]):
            for k, i in getattr(s, "shortcuts", ()):
                g.add_edge(("leg", k), site_of_index[copy_symbol(i, p)], kind="shortcut")
    function_of = {j: s.function for s in contraction.sums for j in s.indices}
    for p, prop in enumerate(contraction.propagators):
        a, b = prop.legs
        if prop.sum_index is None:
            g.add_edge(("leg", a), ("leg", b), kind=prop.parameter)
            continue
        node = ("ins", p)
        g.add_node(node, kind="insertion",
                   function=insertion_function(function_of.get(prop.sum_index, sp.Integer(1)), prop.sum_index))
        g.add_edge(("leg", a), node, kind=prop.parameter)
        g.add_edge(("leg", b), node, kind=prop.parameter)
        if prop.sum_index in site_of_index:
            g.add_edge(node, site_of_index[prop.sum_index], kind="at")
    for gi, term in enumerate(terms):
        for name, sites, _ins in term.occurrences:
            ends = [("site", gi, k) for k in sites]
            g.add_edge(ends[0], ends[-1], kind=name)
        if isinstance(term.blob, BlobProduct):   # second order: one blob node per member
            for m, (blob, zsites, chosen) in enumerate(blob_members(term.blob, term.placement)):
                bnode = ("blob", gi, m)
                g.add_node(bnode, kind="blob", tensor=blob.tensor)
                for k in zsites:
                    g.add_edge(bnode, ("site", gi, k), kind="d")
                for c in chosen:
                    name, sites, _ins = term.occurrences[c]
                    for k in sites:
                        g.add_edge(bnode, ("site", gi, k), kind="d" + name)
        elif term.blob is not None:
            bnode = ("blob", gi)
            g.add_node(bnode, kind="blob", tensor=term.blob.tensor)
            zlegs = [q for q, f in enumerate(term.blob.legs) if f == "z"]
            olegs = [q for q, f in enumerate(term.blob.legs) if f != "z"]
            for q, k in zip(zlegs, term.placement[:len(zlegs)]):
                g.add_edge(bnode, ("site", gi, k), kind="d")
            for q, c in zip(olegs, term.placement[len(zlegs):]):
                name, sites, _ins = term.occurrences[c]
                for k in sites:
                    g.add_edge(bnode, ("site", gi, k), kind="d" + name)
    return g


def _invariant(g: nx.MultiGraph, labeled: bool):
    nodes = sorted((d["kind"], d.get("tensor", ""), d.get("function", ""), d.get("label", "") if labeled else "",
                    g.degree(v))
                   for v, d in g.nodes(data=True))
    edges = sorted(d["kind"] for *_e, d in g.edges(data=True))
    return (tuple(nodes), tuple(edges))


def merge_isomorphic(diagrams: list[Diagram], labeled: bool = True) -> list[Diagram]:
    """Merge isomorphic diagrams; multiplicities add.

    ``labeled``: legs keep their input labels and only diagrams of equal value (explicit and
    compact) merge, so multiplicity × value stays the contribution.  Otherwise diagrams are grouped
    into topologies, and a topology's value is its members' common value, or None where they
    differ (use :attr:`Diagram.total`)."""
    import networkx as nx
    from networkx.algorithms.isomorphism import categorical_multiedge_match, categorical_node_match

    attrs = ["kind", "tensor", "function", "label"] if labeled else ["kind", "tensor", "function"]
    nm = categorical_node_match(attrs, [None] * len(attrs))
    em = categorical_multiedge_match("kind", None)
    buckets: dict = {}
    out: list[Diagram] = []
    for d in diagrams:
        key = (_invariant(d.graph, labeled), d.power) + ((d.value, d.compact) if labeled else ())
        for rep in buckets.setdefault(key, []):
            if nx.is_isomorphic(rep.graph, d.graph, node_match=nm, edge_match=em):
                rep.multiplicity += d.multiplicity
                if rep.value is not None and rep.value != d.value:
                    rep.value = None
                if rep.compact is not None and rep.compact != d.compact:
                    rep.compact = None
                rep.members.append(d)
                break
        else:
            new = Diagram(d.graph, d.multiplicity, d.power, d.value, d.compact, [d])
            buckets[key].append(new)
            out.append(new)
    return out
