"""Any correlator on request: ``E[...]`` (full moment) or ``Ec[...]`` (connected cumulant).

A request names fields of layer ℓ+1 with explicit neuron and input indices,

    E[dH(i0,i1,i2; a0,a1,a2) z(i3; a3)]          Ec[H(i1,i2; a1,a2) z(i3; a3) z(i4; a4)]

(the ``;`` separating neuron from input indices may be left out: the field's declaration in the
rule file says how many of each it takes).  The engine treats it like a statistic of the rule
file, with *symbolic* neuron indices: every Wick contraction of the layer-(ℓ+1) parameters
carries its Kronecker deltas of output neurons, so the result comes out already decomposed,

    E[…] = Σ_{o ≤ order} n^{-o} Σ_π Π_{blocks of π} δ · X_{π,o}(α…),

where π runs over the partitions of the neuron indices that the deltas enforce.  Each
coefficient X_{π,o} is a closed-form expression in the layer-ℓ statistics: its own
layer-to-layer recursion (and its first-layer value from the rule file's ``first_layer`` map).

Symmetry.  A cumulant or moment is symmetric in its legs: for a permutation g of legs of equal
fields that renames the neuron indices by ν and the input labels by λ consistently,
X_{ν(π)}(α) = X_π(α)|_{α→λ(α)}.  The Wick contractions are grouped by the δ-structure of their
own deltas, one class per orbit of these permutations is derived, and the rest are renamed
(``Ec[z z z z z z]`` at 1/n²: one of the 15 pairings, i.e. one six-point-vertex derivation, not 15).

Names.  A coefficient equal to c·T(α_σ…) for a tensor T of the rule file (same fields, same
order, some assignment σ of its slots to the request's input labels) is reported as such, so
``Ec[z(i3;a3) H(i1,i2;a1,a2) z(i4;a4)]`` is recognised as D and F; any other coefficient gets a
generated name (``M1_zzzz_1`` for the order-1 coefficient of a full moment, ``C1_…`` for a
cumulant) and its recursion.

Order.  Power counting (docs/conventions.md §4) puts a connected correlator of total weight w (z counts
1, H 2, dH 3, a ddNTK 4) at n^{1−w/2}; odd w vanishes by the sign flip of the last layer's
parameters.  The default order is the leading non-vanishing one; this engine's truncation
reaches the order of the rule file's expansions (:func:`ntkdiagrams.engine.cluster.expansion_order`:
1/n for rules/mlp.toml, where ``order=2`` and connected correlators of weight ≥ 6 are refused with
the reason; 1/n² for rules/mlp2.toml, which refuses ``order=3`` and weight ≥ 8).  A full moment at
``order=k`` holds its coefficients of order 0 … k.

Results are cached on disk like the named recursions (:mod:`ntkdiagrams.engine.cache`).  Every
coefficient's recursion carries its diagrams with their values (Σ multiplicity × value = its
right-hand side); numbers come from :func:`ntkdiagrams.numerics.evaluate.evaluate_request`.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp

from ..combinatorics import set_partitions
from ..errors import ExpressionError, UnsupportedError
from ..language.algebra import ell
from ..language.rulefile import ExpansionTerm, Leg, RuleSet, TensorSpec
from ..settings import Settings, resolve
from . import cache
from .cluster import expansion_order, field_weight
from .derivation import assemble, derive, resolve_rules
from .diagrams import Diagram
from .recursion import Recursion
from .wick import wick_contractions

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[\[\]();,*]))")
_PREFIXES = {"E": False, "Ec": True, "E_c": True}
_RESERVED = {"n", "ell", "delta", "E", "Ec", "E_c"}


@dataclass(frozen=True)
class Request:
    """A parsed correlator request.  ``legs`` use the user's index names."""

    text: str
    connected: bool
    legs: tuple                  # tuple[Leg] with sp.Symbol neuron / input indices

    @property
    def neurons(self) -> tuple:
        """The distinct neuron indices, in order of appearance."""
        return tuple(dict.fromkeys(i for leg in self.legs for i in leg.neurons))

    @property
    def labels(self) -> tuple:
        """The distinct input labels, in order of appearance: the slots of every coefficient."""
        return tuple(dict.fromkeys(a for leg in self.legs for a in leg.inputs))

    @property
    def fields(self) -> str:
        return "".join(leg.field for leg in self.legs)

    def __str__(self) -> str:
        body = " ".join(f"{leg.field}({','.join(map(str, leg.neurons))};{','.join(map(str, leg.inputs))})"
                        for leg in self.legs)
        return f"{'Ec' if self.connected else 'E'}[{body}]"

    def internal(self) -> tuple[tuple, dict, dict]:
        """Legs with engine-safe symbols (neurons ``req_i<k>``, inputs ``alpha_<k>``), and the
        maps from the internal symbols back to the user's names."""
        nmap = {i: sp.Symbol(f"req_i{k}") for k, i in enumerate(self.neurons)}
        amap = {a: sp.Symbol(f"alpha_{k + 1}") for k, a in enumerate(self.labels)}
        legs = tuple(Leg(leg.field, tuple(nmap[i] for i in leg.neurons), tuple(amap[a] for a in leg.inputs))
                     for leg in self.legs)
        return legs, {v: k for k, v in nmap.items()}, {v: k for k, v in amap.items()}


def _fail(text: str, pos: int, msg: str):
    raise ExpressionError(f"request {text!r}, column {pos + 1}: {msg}\n  {text}\n  {' ' * pos}^")


def parse_request(text: str, rules: RuleSet) -> Request:
    """Parse ``E[field(neurons; inputs) …]`` / ``Ec[…]`` against the fields of ``rules``.

    Errors (:class:`ExpressionError`) give the column of the offending part."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("empty correlator request; expected e.g. 'E[z(i1;a1) z(i2;a2)]'")
    toks = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            _fail(text, pos + len(text[pos:]) - len(text[pos:].lstrip()), f"unexpected character {text[pos:].lstrip()[0]!r}")
        kind = "name" if m.group("name") else "punct"
        toks.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    toks.append(("end", "", len(text)))
    k = 0

    def peek():
        return toks[k]

    def take(kind=None, value=None, what=""):
        nonlocal k
        t = toks[k]
        if (kind and t[0] != kind) or (value and t[1] != value):
            found = "the end" if t[0] == "end" else repr(t[1])
            _fail(text, t[2], f"expected {what or value or kind}, found {found}")
        k += 1
        return t

    _kind, prefix, ppos = take("name", what="'E[' or 'Ec['")
    if prefix not in _PREFIXES:
        _fail(text, ppos, f"a request starts with E[ (full moment) or Ec[ (connected cumulant), not {prefix!r}")
    take("punct", "[", what="'['")
    legs, neuron_names, input_names = [], {}, {}
    while True:
        t = peek()
        if t[0] == "punct" and t[1] == "]" and legs:
            take()
            break
        if t[0] == "punct" and t[1] == "*" and legs:
            take()
            continue
        if t[0] == "end":
            _fail(text, t[2], "missing the closing ']'" if legs else "expected a field such as z(i1;a1)")
        _kind, fname, fpos = take("name", what="a field such as z(i1;a1)")
        if fname not in rules.fields:
            _fail(text, fpos, f"unknown field {fname!r}; the rule file {rules.path} declares "
                              f"{', '.join(sorted(rules.fields))}")
        spec = rules.fields[fname]
        take("punct", "(", what=f"'(' after {fname}")
        groups = [[]]
        while True:
            t = peek()
            if t[0] == "name":
                take()
                groups[-1].append(t)
            elif t[1] == ",":
                take()
            elif t[1] == ";" and len(groups) == 1:
                take()
                groups.append([])
            elif t[1] == ")":
                take()
                break
            else:
                _fail(text, t[2], f"expected an index name, ',', ';' or ')' in {fname}(…), found "
                                  f"{'the end' if t[0] == 'end' else repr(t[1])}")
        if len(groups) == 1:
            flat = groups[0]
            groups = [flat[:spec.neurons], flat[spec.neurons:]]
        nn, ni = len(groups[0]), len(groups[1])
        if (nn, ni) != (spec.neurons, spec.inputs):
            _fail(text, fpos, f"field {fname} takes {spec.neurons} neuron and {spec.inputs} input indices "
                              f"({fname}(i1,…;a1,…)), got {nn} and {ni}")
        for group, mine, other, what in ((groups[0], neuron_names, input_names, "neuron"),
                                         (groups[1], input_names, neuron_names, "input")):
            for _kind, nm, npos in group:
                if nm in _RESERVED or nm.startswith("_") or nm in rules.symbols or nm in rules.fields:
                    _fail(text, npos, f"index name {nm!r} is reserved")
                if nm in other:
                    _fail(text, npos, f"{nm!r} is used both as a neuron index and as an input label")
                mine.setdefault(nm, sp.Symbol(nm))
        legs.append(Leg(fname, tuple(neuron_names[t[1]] for t in groups[0]),
                        tuple(input_names[t[1]] for t in groups[1])))
    if peek()[0] != "end":
        _fail(text, peek()[2], "unexpected text after the closing ']'")
    return Request(text, _PREFIXES[prefix], tuple(legs))


# ----------------------------------------------------------------------------------------
# the engine run and the Kronecker decomposition
# ----------------------------------------------------------------------------------------

def _partition_of(term: sp.Expr, neurons: tuple):
    """Split a term into (partition of the neuron indices enforced by its deltas, rest)."""
    parent = {i: i for i in neurons}

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x
    rest = []
    for f in sp.Mul.make_args(term):
        base, _exp = f.as_base_exp()
        if isinstance(base, sp.KroneckerDelta):
            a, b = base.args
            if a not in parent or b not in parent:
                raise UnsupportedError(f"internal: Kronecker delta {base} on non-external indices")
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[rb] = ra
        else:
            rest.append(f)
    blocks = {}
    for i in neurons:
        blocks.setdefault(find(i), []).append(i)
    part = tuple(sorted((tuple(b) for b in blocks.values() if len(b) > 1), key=lambda b: neurons.index(b[0])))
    return part, sp.Mul(*rest)


def decompose(expr: sp.Expr, neurons: tuple) -> dict:
    """{partition: coefficient} of an expression that is a sum of Kronecker-delta products."""
    out: dict = {}
    for term in sp.Add.make_args(sp.expand(expr)):
        if term == 0:
            continue
        part, rest = _partition_of(term, neurons)
        out[part] = out.get(part, sp.Integer(0)) + rest
    return {p: sp.expand(v) for p, v in out.items() if sp.expand(v) != 0}


def _raw(req: Request, rules: RuleSet, order: int, cache_dir: Path | None, part: tuple):
    """The engine's coefficient of n^{-order} in the Kronecker structure ``part`` (a partition of the
    internal neuron symbols, deltas kept): a cached :class:`Recursion`-shaped record with ``rhs``,
    ``compact``, ``initial`` and the diagrams (values with their deltas).  Only the Wick contractions
    whose deltas make ``part`` are summed: the others belong to other structures."""
    legs, _nback, _aback = req.internal()
    neurons = tuple(dict.fromkeys(i for leg in legs for i in leg.neurons))
    key = "request:" + ("Ec" if req.connected else "E") + "[" + " ".join(
        f"{leg.field}({','.join(map(str, leg.neurons))};{','.join(map(str, leg.inputs))})" for leg in legs) + \
        f"]@{order}|" + ";".join(",".join(map(str, b)) for b in part)
    hit = cache.load(rules.source, key, rules, cache_dir)
    if hit is not None:
        return hit
    labels = tuple(dict.fromkeys(a for leg in legs for a in leg.inputs))
    term = ExpansionTerm(frozenset(), key, labels, sp.Integer(1), order)

    def keep(c):
        return _partition_of(c.deltas, neurons)[0] == part
    layer = assemble(rules, legs, term, ell, rules.width, first_layer=False, connected=req.connected,
                     check_lower=False, keep=keep)
    first = assemble(rules, legs, term, sp.Integer(0), rules.input_width, first_layer=True,
                     connected=req.connected, check_lower=False, keep=keep)
    rec = Recursion(key, "request", order, labels, sp.Integer(0), layer.rhs, first.rhs, layer.compact,
                    layer.diagrams, {}, rules)
    cache.store(rules.source, rec, cache_dir)
    return rec


def _structures_of_contractions(legs: tuple, rules: RuleSet, neurons: tuple) -> list:
    """The Kronecker structures (partitions of the neuron symbols) that the Wick contractions of
    the layer-(ℓ+1) parameters produce, at layer ℓ+1 and at layer 1; sorted."""
    parts = set()
    for first_layer in (False, True):
        for c in wick_contractions(legs, rules, first_layer=first_layer):
            if c.coefficient * c.deltas != 0:
                parts.add(_partition_of(c.deltas, neurons)[0])
    return sorted(parts, key=lambda p: (-len(p), [tuple(map(str, b)) for b in p]))


def _leg_symmetries(legs: tuple) -> list:
    """The permutations g of the legs that keep each leg's field and rename the indices
    consistently: (g, ν, λ) with leg k ↦ leg g(k), ν and λ bijections of the neuron symbols and
    of the input labels with (f_k, ν(i_k), λ(a_k)) = leg g(k).  A cumulant or moment is symmetric
    in its legs, so the coefficient of the Kronecker structure ν(π) is that of π with its input
    labels renamed by λ:  X_{ν(π)}(α) = X_π(α)|_{α → λ(α)}."""
    by_field: dict = {}
    for k, leg in enumerate(legs):
        by_field.setdefault(leg.field, []).append(k)
    groups = list(by_field.values())
    out = []
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        g = {}
        for src, dst in zip(groups, perms):
            g.update(zip(src, dst))
        nu, lam, ok = {}, {}, True
        for k, leg in enumerate(legs):
            img = legs[g[k]]
            for table, xs, ys in ((nu, leg.neurons, img.neurons), (lam, leg.inputs, img.inputs)):
                for x, y in zip(xs, ys):
                    ok = ok and table.setdefault(x, y) == y
        if ok and len(set(nu.values())) == len(nu) and len(set(lam.values())) == len(lam):
            out.append((g, nu, lam))
    return out


def _act(part: tuple, nu: dict, neurons: tuple) -> tuple:
    """ν(π), normalised like :func:`_partition_of` (blocks in the order of the neurons)."""
    blocks = [tuple(sorted((nu[i] for i in b), key=neurons.index)) for b in part]
    return tuple(sorted(blocks, key=lambda b: neurons.index(b[0])))


def _orbits(parts: list, symmetries: list, neurons: tuple) -> dict:
    """{structure: (representative, (g, ν, λ))} with ν(representative) = structure; a
    representative maps to itself with the identity."""
    out: dict = {}
    for p in parts:
        if p in out:
            continue
        for sym in symmetries:
            q = _act(p, sym[1], neurons)
            if q in parts and q not in out:
                out[q] = (p, sym)
        out.setdefault(p, (p, symmetries[0]))
    return out


def _relabel_diagram(d: Diagram, g: dict, subs: dict) -> Diagram:
    """A diagram of the representative structure as the diagram of its image: leg k becomes leg
    g(k) (node ``("leg", k)``, or its ``repr`` in a graph read back from the cache), the legs'
    labels and the values' neuron indices and input labels renamed by ``subs``."""
    names = {}
    for k, v in g.items():
        names[("leg", k)] = ("leg", v)
        names[repr(("leg", k))] = repr(("leg", v))
    import networkx as nx

    graph = nx.relabel_nodes(d.graph, {u: names[u] for u in d.graph if u in names}, copy=True)
    by_name = {str(x): str(y) for x, y in subs.items()}
    for _node, data in graph.nodes(data=True):
        if data.get("kind") == "leg" and "label" in data:
            data["label"] = by_name.get(data["label"], data["label"])
    value = None if d.value is None else d.value.xreplace(subs)
    compact = None if d.compact is None else d.compact.xreplace(subs)
    return Diagram(graph, d.multiplicity, d.power, value, compact, [_relabel_diagram(m, g, subs) for m in d.members])


def _pieces(req: Request, rules: RuleSet, order: int, cache_dir: Path | None) -> tuple:
    """({structure: rhs}, {structure: compact}, {structure: initial}, {structure: diagrams}) of the
    coefficient of n^{-order}.  The Wick contractions are taken by the Kronecker structure of their
    own deltas; each orbit of those under the legs' symmetries (:func:`_leg_symmetries`) is derived
    once, at its representative, and renamed onto the others (``Ec[z z z z z z]`` at 1/n²: one of
    the 15 pairings instead of all of them).  A class of contractions may feed coarser structures
    (deltas from layer ℓ's own statistics): the results are summed structure by structure."""
    legs, _nback, _aback = req.internal()
    neurons = tuple(dict.fromkeys(i for leg in legs for i in leg.neurons))
    symmetries = _leg_symmetries(legs)
    orbit = _orbits(_structures_of_contractions(legs, rules, neurons), symmetries, neurons)
    sums = ({}, {}, {})
    diagrams: dict = {}
    reps: dict = {}
    for part, (rep, (g, nu, lam)) in orbit.items():
        if rep not in reps:   # decomposed once; the δs come off before the labels are renamed
            raw = _raw(req, rules, order, cache_dir, rep)
            reps[rep] = ([decompose(e, neurons) for e in (raw.rhs, raw.compact, raw.initial)],
                         split_diagrams(raw.diagrams, neurons))
        parts, raw_diagrams = reps[rep]
        for out, pieces in zip(sums, parts):
            for q, v in pieces.items():
                out.setdefault(_act(q, nu, neurons), []).append(v if part == rep else v.xreplace(lam))
        for q, ds in raw_diagrams.items():
            diagrams.setdefault(_act(q, nu, neurons), []).extend(
                ds if part == rep else [_relabel_diagram(d, g, lam) for d in ds])
    rhs, compact, initial = ({q: v[0] if len(v) == 1 else sp.expand(sp.Add(*v)) for q, v in d.items()} for d in sums)
    rhs, compact, initial = ({q: v for q, v in d.items() if v != 0} for d in (rhs, compact, initial))
    parts = sorted(set(rhs) | set(initial), key=lambda p: (-len(p), [tuple(map(str, b)) for b in p]))
    return rhs, compact, initial, diagrams, _orbits(parts, symmetries, neurons)


def split_diagrams(diagrams: list, neurons: tuple) -> dict:
    """{partition: diagrams} of a request's diagrams by the Kronecker structure of their values,
    the deltas stripped (each diagram has one: the deltas of its Wick contraction)."""
    out: dict = {}
    for d in diagrams:
        parts = decompose(d.value, neurons) or decompose(d.compact, neurons)
        if len(parts) != 1:
            raise UnsupportedError(f"internal: a diagram of {len(parts)} Kronecker structures")
        (part, value), = parts.items()
        compact = decompose(d.compact, neurons).get(part, sp.Integer(0))
        out.setdefault(part, []).append(Diagram(d.source, d.multiplicity, d.power, value, compact))
    return out


def weight(req: Request, rules: RuleSet) -> int:
    return sum(field_weight(rules, leg.field) for leg in req.legs)


@dataclass
class Structure:
    """One term δ-structure × n^{-order} × tensor of a request's decomposition."""

    deltas: tuple            # blocks of equal neuron indices (user names); singletons left out
    order: int
    name: str                # a rule-file tensor or a generated name
    args: tuple              # the tensor's arguments (user input labels)
    coefficient: sp.Expr     # structure = coefficient · name(args)
    named: bool              # True: a tensor of the rule file
    recursion: object        # Recursion of this coefficient (slots = the request's input labels)
    expansion: tuple = ()    # full moments: ((coefficient, ((tensor, args), ...)), ...) through cumulants

    def delta_text(self) -> str:
        return " ".join(f"δ({','.join(map(str, b))})" for b in self.deltas) or "1"

    def term_text(self) -> str:
        c = "" if self.coefficient == 1 else f"{self.coefficient}·"
        d = f"{self.delta_text()} · " if self.deltas else ""
        return f"{d}{c}{self.name}({','.join(map(str, self.args))})"

    def satisfied_by(self, pattern: dict) -> bool:
        """Whether neuron values ``pattern`` (user index name → int) make every delta 1."""
        return all(len({pattern[str(i)] for i in b}) == 1 for b in self.deltas)


@dataclass
class RequestResult:
    """The answer to a correlator request: its decomposition, recursions, evaluators."""

    request: Request
    order: int
    structures: list
    rules: RuleSet = field(repr=False, default=None)
    generated: dict = field(default_factory=dict)   # name -> TensorSpec of the generated coefficients

    def text(self) -> str:
        req = self.request
        lines = [f"{req} = " + (" + ".join(self._order_text(o) for o in self.orders) or "0")]
        for s in {s.name: s for s in self.structures}.values():
            if s.named:
                lines.append(f"  {s.name}: tensor of the rule file ({req.fields} at order 1/n^{s.order}); "
                             f"`ntkdiagrams derive {s.name}` prints its recursion")
        for s in self.structures:
            if s.expansion and not (s.named and len(s.expansion) == 1):
                lines.append(f"  {s.name}({','.join(map(str, s.args))}) = {_expansion_text(s)}   "
                             "(through the connected correlators of layer ℓ+1; checked symbolically)")
        for s in self.structures:
            if not s.named:
                lines.append(s.recursion.text(compact=True).replace("alpha_", "α"))
        return "\n".join(lines)

    @property
    def orders(self) -> list:
        return sorted({s.order for s in self.structures})

    def _order_text(self, o: int) -> str:
        terms = " + ".join(s.term_text() for s in self.structures if s.order == o)
        pre = "" if o == 0 else "(1/n) " if o == 1 else f"(1/n^{o}) "
        return f"{pre}[{terms}]"

    def latex(self) -> str:
        """LaTeX: the decomposition, then the recursion of every generated tensor."""
        req = self.request
        ab = {sp.Symbol(f"alpha_{k + 1}"): sp.Symbol(str(a)) for k, a in enumerate(req.labels)}
        parts = []
        for o in self.orders:
            terms = []
            for s in (s for s in self.structures if s.order == o):
                d = " ".join(r"\delta_{%s}" % " ".join(map(sp.latex, b)) for b in s.deltas)
                c = "" if s.coefficient == 1 else sp.latex(s.coefficient) + " "
                cls = s.recursion.target.func
                terms.append(f"{d} {c}{cls.latex_name}_{{{' '.join(map(sp.latex, s.args))}}}".strip())
            pre = "" if o == 0 else r"\frac{1}{n}" if o == 1 else r"\frac{1}{n^{%d}}" % o
            parts.append(pre + r"\left[" + " + ".join(terms) + r"\right]")
        fields = r"\,".join(r"%s_{%s;%s}" % (self.rules.fields[leg.field].latex or leg.field,
                                             " ".join(map(sp.latex, leg.neurons)), " ".join(map(sp.latex, leg.inputs)))
                            for leg in req.legs)
        head = (r"\mathbb{E}_c" if req.connected else r"\mathbb{E}") + r"\left[" + fields + r"\right]"
        out = [head + " &= " + " + ".join(parts)]
        for s in self.structures:
            if not s.named:
                out.append(s.recursion.latex())
        text = " \\\\\n".join(out)
        return text if not ab else _rename_latex(text, ab)

    def tensors(self) -> dict:
        """{name: Recursion} of every coefficient (named ones under their rule-file names)."""
        return {self.key(s): s.recursion for s in self.structures}

    @staticmethod
    def key(s: Structure) -> str:
        return f"{s.name}@{s.order}" if s.named else s.name

    def predict(self, layer: dict, pattern: dict, width: float):
        """The correlator at concrete neuron indices ``pattern`` (user name → int) from one
        layer of :func:`ntkdiagrams.numerics.evaluate.evaluate_request`:
        Σ_o n^{-o} Σ_{structures whose deltas hold} coefficient."""
        total = 0.0
        for s in self.structures:
            if s.satisfied_by(pattern):
                total = total + layer[self.key(s)] / float(width) ** s.order
        return total


def _rename_latex(text: str, ab: dict) -> str:
    for internal, user in ab.items():
        text = text.replace(sp.latex(internal), sp.latex(user))
    return text


def _cumulant_expansion(req: Request, structures: list, rules: RuleSet, settings: Settings) -> None:
    """For a full moment: write each coefficient through the connected correlators of its legs,
    E[Π X] = Σ_{partitions π of the legs} Π_{B∈π} κ(B), with every κ(B) decomposed by the engine
    (so into K, G1, V, Θ, … where they are named), and keep the expansion on each structure
    (``Structure.expansion``) only if it equals the engine's coefficient symbolically, at layer
    ℓ+1 and at layer 1: a check of the moment–cumulant bookkeeping of the engine."""
    if req.connected or not structures:
        return
    top = max(s.order for s in structures)
    legs, _nb, aback = req.internal()
    user_of = {str(a): a for a in req.labels}
    internal_of = {v: k for k, v in aback.items()}          # user label -> internal alpha
    terms: dict = {}                                         # (deltas, order) -> [(coef, factors, rhs, init)]
    for part in set_partitions(list(range(len(req.legs)))):
        per_block = []
        for B in part:
            sub = Request(str(req), True, tuple(req.legs[m] for m in B))
            w = weight(sub, rules)
            if w % 2:
                per_block = None
                break
            opts = [o for o in range(top + 1) if o >= max(0, w // 2 - 1)]
            if not opts or w // 2 - 1 > expansion_order(rules):
                per_block = None
                break
            found = []
            for o in opts:
                sres = derive_request(sub, rules, order=o, settings=settings)
                slab = {sp.Symbol(f"alpha_{k + 1}"): internal_of[user_of[str(a)]] for k, a in enumerate(sub.labels)}
                for s in sres.structures:
                    found.append((s, slab))
            per_block.append(found)
        if per_block is None:
            continue
        for combo in itertools.product(*per_block):
            order = sum(s.order for s, _ in combo)
            if order > top:
                continue
            blocks = [set(b) for s, _ in combo for b in s.deltas]
            merged = []
            for b in blocks:
                hit = [m for m in merged if m & b]
                for m in hit:
                    merged.remove(m)
                    b = b | m
                merged.append(b)
            key = (frozenset(frozenset(map(str, b)) for b in merged), order)
            coef = sp.Mul(*[s.coefficient for s, _ in combo])
            rhs = sp.Mul(*[s.recursion.rhs.xreplace(slab) for s, slab in combo])
            init = sp.Mul(*[s.recursion.initial.xreplace(slab) for s, slab in combo])
            factors = tuple((s.name, s.args) for s, _ in combo)
            terms.setdefault(key, []).append((coef, factors, rhs, init))
    for s in structures:
        key = (frozenset(frozenset(map(str, b)) for b in s.deltas), s.order)
        parts = terms.get(key, [])
        rhs = sp.expand(sp.Add(*[r for _c, _f, r, _i in parts]))
        init = sp.expand(sp.Add(*[i for _c, _f, _r, i in parts]))
        if parts and sp.expand(s.recursion.rhs - rhs) == 0 and sp.expand(s.recursion.initial - init) == 0:
            s.expansion = tuple((c, f) for c, f, _r, _i in parts)


def _expansion_text(s) -> str:
    def factor(name, args):
        return f"{name}({','.join(map(str, args))})"
    out = []
    for c, fs in s.expansion:
        body = "·".join(factor(*f) for f in fs)
        out.append(body if c == 1 else f"{c}·{body}")
    return " + ".join(out)


def _generated_name(req: Request, order: int, k: int) -> str:
    return f"{'C' if req.connected else 'M'}{order}_{req.fields}_{k}"


def _identify(expr: sp.Expr, initial: sp.Expr, req: Request, order: int, rules: RuleSet, labels: tuple,
              settings: Settings):
    """(tensor name, args (internal labels), coefficient) if ``expr`` is c·T(args) for a rule-file
    tensor T of a statistic with the request's fields, else None."""
    fields = sorted(leg.field for leg in req.legs)
    terms_x = sp.Add.make_args(expr)
    for st in rules.statistics.values():
        if sorted(leg.field for leg in st.legs) != fields:
            continue
        for t in st.terms:
            if t.order != order:
                continue
            try:
                rec = derive(t.tensor, rules, settings=settings)
            except UnsupportedError:
                continue
            terms_t = sp.Add.make_args(rec.rhs)
            if len(terms_t) != len(terms_x):
                continue
            for assign in itertools.product(labels, repeat=len(rec.labels)):
                if set(assign) != set(labels):
                    continue
                sub = dict(zip(rec.labels, assign))
                cand = sp.expand(rec.rhs.xreplace(sub))
                c = _ratio(expr, cand)
                if c is None:
                    continue
                if sp.expand(expr - c * cand) == 0 and sp.expand(initial - c * rec.initial.xreplace(sub)) == 0:
                    return t.tensor, assign, c
    return None


def _ratio(x: sp.Expr, y: sp.Expr):
    tx = sp.Add.make_args(x)[0]
    cx, rx = tx.as_coeff_Mul()
    for ty in sp.Add.make_args(y):
        cy, ry = ty.as_coeff_Mul()
        if ry == rx and cy != 0:
            return sp.Rational(cx) / sp.Rational(cy) if cx.is_Rational and cy.is_Rational else cx / cy
    return None


def derive_request(text: str | Request, rules: RuleSet | str | None = None, *, order: int | None = None,
                   connected: bool | None = None, settings: Settings | None = None) -> RequestResult:
    """Derive a correlator request (see the module docstring).

    ``connected`` overrides the ``E``/``Ec`` prefix; ``order`` (0 … the rule file's order) is the highest power of
    1/n kept (default: the leading non-vanishing order); ``settings``: where the derivation cache
    lives (None: the environment, :func:`ntkdiagrams.settings.resolve`)."""
    settings = resolve(settings)
    rules = resolve_rules(rules)
    req = text if isinstance(text, Request) else parse_request(text, rules)
    if connected is not None and connected != req.connected:
        req = Request(req.text, bool(connected), req.legs)
    w = weight(req, rules)
    if order is not None and (isinstance(order, bool) or not isinstance(order, int) or order < 0):
        raise ExpressionError(f"order must be a non-negative integer; got {order!r}")
    top = expansion_order(rules)
    if order is not None and order > top:
        if top == 1:
            raise UnsupportedError(f"{req}: order 1/n^{order} needs second-order blobs and the six-point vertex; "
                                   "this engine's truncation is first order in 1/n")
        raise UnsupportedError(f"{req}: order 1/n^{order} needs blobs of order 1/n^{top + 1} (the "
                               f"{2 * top + 4}-point vertex, the 1/n^{top + 1} parts of the lower cumulants, "
                               f"products of {top + 1} blobs); the rule file {rules.path} declares its statistics "
                               f"to order 1/n^{top}")
    if w % 2:
        return RequestResult(req, 0, [], rules)  # odd under the sign flip of the last layer
    if req.connected:
        lead = max(0, w // 2 - 1)
        if lead > top:
            raise UnsupportedError(f"{req}: a connected correlator of weight {w} starts at order 1/n^{lead} "
                                   "(power counting, docs/conventions.md §4), beyond this engine's "
                                   + ("first-order truncation" if top == 1 else
                                      f"truncation at order 1/n^{top} (rule file {rules.path})"))
        orders = [lead] if order is None else ([order] if order >= lead else [])
    else:
        orders = list(range(order + 1)) if order else [0]
    legs, nback, aback = req.internal()
    labels = tuple(dict.fromkeys(a for leg in legs for a in leg.inputs))
    pieces = {o: _pieces(req, rules, o, settings.cache_dir) for o in orders}
    if not req.connected and order is None and not pieces[0][0] and not pieces[0][2]:
        # the full moment vanishes at order 0: its leading order is 1/n
        pieces = {1: _pieces(req, rules, 1, settings.cache_dir)}
    structures = []
    generated = {}
    counter = itertools.count(1)
    for o, (rhs, compact, initial, diagrams, orbit) in sorted(pieces.items()):
        parts = sorted(set(rhs) | set(initial), key=lambda p: (-len(p), [tuple(map(str, b)) for b in p]))
        found = {}
        for part in parts:      # representatives first: the other structures of an orbit are renamed
            rep, (_g, _nu, lam) = orbit[part]
            if rep in found:
                hit = found[rep]
                found[part] = hit and (hit[0], tuple(lam[a] for a in hit[1]), hit[2])
            else:
                found[part] = _identify(rhs.get(part, sp.Integer(0)), initial.get(part, sp.Integer(0)), req, o,
                                        rules, labels, settings)
        for part in parts:
            x, x0 = rhs.get(part, sp.Integer(0)), initial.get(part, sp.Integer(0))
            user_part = tuple(tuple(nback[i] for i in b) for b in part)
            if found[part]:
                name, args, c = found[part]
                named = True
                # the coefficient's recursion has the request's slots: a slot-symmetry-free class
                spec = TensorSpec(name, len(labels), rules.tensors[name].latex, "", ())
            else:
                name, args, c, named = _generated_name(req, o, next(counter)), labels, sp.Integer(1), False
                spec = TensorSpec(name, len(labels), name.replace("_", r"\_"), f"coefficient of {req}", ())
                generated[name] = spec
            rec = Recursion(name, str(req), o, labels, spec.cls(ell + 1, *labels), x, x0,
                            compact.get(part, x), diagrams.get(part, []), {}, rules)
            structures.append(Structure(user_part, o, name, tuple(aback[a] for a in args), c, named, rec))
    _cumulant_expansion(req, structures, rules, settings)
    return RequestResult(req, max(pieces) if pieces else 0, structures, rules, generated)
