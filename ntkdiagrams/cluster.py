"""Stage B: cumulants of neuron sums of layer ℓ, expanded in 1/n (the layer-ℓ diagrams).

A neuron sum is ``S = Σ_j F(z_j)`` with F a function of one neuron's preactivations on
several inputs.  The layer-ℓ preactivations are nearly Gaussian: with the statistics that
the rule file declares, their cumulants are ``κ₂ = δ (K + G1/n)`` and
``κ₄ = (1/n) Σ_{3 pairings} δδ V``, and expectations follow from the Edgeworth operator

    E[Φ(z)] = ⟨ (1 + Σ_blobs (c/k!) Σ κ_blob ∂^k + …) Φ ⟩_K ,

where the Gaussian part ⟨·⟩_K is the order-0 two-point tensor and every other term of a
declared expansion is a *blob*: a vertex whose k derivative legs land on neuron sites as the
Kronecker deltas of its structure dictate.  The joint cumulant of m neuron sums is then a
sum over *cluster diagrams*: the insertions F_p are placed on distinct neuron sites (a
set partition; each site is a free neuron sum worth n), blobs link sites, and the diagram
must be connected.  A site reached by no blob carries the Gaussian joint cumulant of its
insertions; a site reached by blob legs carries ⟨∂_{β…} F⟩_K.  At first order in the blobs:

* m = 1:  E[S] = n ⟨F⟩_K + ½ Σ G1_{β1β2} ⟨∂_{β1}∂_{β2}F⟩_K + ⅛ Σ V_{(β1β2)(β3β4)} ⟨∂⁴F⟩_K + O(1/n)
* m = 2:  κ(S1, S2) = n [⟨F1F2⟩_K − ⟨F1⟩_K⟨F2⟩_K + ¼ Σ V_{(β1β2)(β3β4)} ⟨∂∂F1⟩_K ⟨∂∂F2⟩_K] + O(1)

(these are PHYSICS.md §4's one- and two-neuron facts; here they are *generated* from the
declared expansions, the weights ½, ⅛, ¼ come out of the enumeration).  The derivatives are
resolved explicitly: Σ_β T_{…β…} ∂/∂z_β F = Σ_{α ∈ inputs of F} T_{…α…} ∂F/∂z_α, so the
result holds for any inputs, coinciding ones included.

Truncation: blobs of higher order (the six-point vertex, products of two blobs) and the
neuron-exclusion corrections of falling factorials are not generated; they enter
κ(S_1..S_m) at relative order n^{-(2-m)}... the engine knows the first ``reliable_order(m)``
orders and raises :class:`~ntkdiagrams.errors.UnsupportedError` beyond.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import sympy as sp

from .algebra import Z, gexp, integrand_labels
from .errors import UnsupportedError
from .rules import RuleSet


@dataclass(frozen=True)
class Blob:
    """One non-Gaussian term of a declared cumulant expansion, as a perturbation vertex."""

    tensor: str
    coefficient: sp.Expr    # number
    order: int              # power of 1/n
    nlegs: int
    classes: tuple          # δ-linked leg classes: tuple of tuples of leg positions
    slot_legs: tuple        # for each tensor slot, the leg whose derivative label fills it


@dataclass(frozen=True)
class ClusterTerm:
    """One cluster diagram of a group of insertions: sites, optional blob, value."""

    sites: tuple            # tuple of tuples of insertion positions
    blob: Blob | None
    blob_sites: tuple       # for each δ-class of the blob, the site it lands on
    power: int              # power of n of the value
    value: sp.Expr          # explicit form (derivatives resolved on input labels)
    compact: sp.Expr = None  # the same with blob contractions kept as BlobSum objects


def blobs(rules: RuleSet) -> list[Blob]:
    """All perturbation vertices of layer ℓ: every declared z-cumulant term but ⟨·⟩_K's."""
    gauss = rules.gaussian_tensor()
    out = []
    for st in rules.statistics.values():
        if not all(leg.field == "z" for leg in st.legs):
            continue
        neurons = [leg.neurons[0] for leg in st.legs]
        inputs = [leg.inputs[0] for leg in st.legs]
        for t in st.terms:
            if t.tensor == gauss:
                continue
            parent = list(range(len(neurons)))
            for d in t.deltas:
                a, b = (neurons.index(x) for x in d)
                ra, rb = _root(parent, a), _root(parent, b)
                parent[rb] = ra
            classes = {}
            for q in range(len(neurons)):
                classes.setdefault(_root(parent, q), []).append(q)
            slot_legs = tuple(inputs.index(a) for a in t.args)
            out.append(Blob(t.tensor, t.coefficient, t.order, len(neurons),
                            tuple(tuple(c) for c in classes.values()), slot_legs))
    return out


def _root(parent, x):
    while parent[x] != x:
        x = parent[x]
    return x


def reliable_order(m: int) -> int:
    """Relative orders in 1/n of κ(S_1..S_m) that first-order blobs determine exactly."""
    if m == 1:
        return 1
    if m == 2:
        return 0
    return -1


def to_gaussian(function: sp.Expr, index: sp.Symbol) -> sp.Expr:
    """Replace the fields z(j, α) of neuron ``index`` by integration variables Z(α)."""
    reps = {}
    for f in function.atoms(sp.Function):
        if getattr(f.func, "__name__", "") == "z" and len(f.args) == 2 and f.args[0] == index:
            reps[f] = Z(f.args[1])
    out = function.xreplace(reps)
    if out.has(index):
        raise UnsupportedError(f"neuron-sum insertion {function} has fields other than z at neuron {index}; "
                               "not supported yet")
    return out


def field_means(function: sp.Expr, index: sp.Symbol, rules: RuleSet, layer, max_relative: int) -> sp.Expr:
    """Replace layer-ℓ fields other than z (the NTK H_{jj}) by their order-0 mean tensor.

    E[H_{jj;a b} f(z_j)] = Θ_{ab} ⟨f⟩_K + O(1/n): enough for the leading order of a mean.  The
    1/n corrections need the H–z cumulants (Θ1, D, F) as blobs, which this truncation does not
    carry yet, so a request beyond leading order raises UnsupportedError."""
    reps = {}
    for atom in function.atoms(sp.Function):
        name = getattr(atom.func, "__name__", "")
        if name == "z" or name not in rules.fields:
            continue
        spec = rules.fields[name]
        neurons, inputs = atom.args[:spec.neurons], atom.args[spec.neurons:]
        if any(j != index for j in neurons):
            raise UnsupportedError(f"field {atom} at several neurons inside one neuron sum")
        if max_relative > 0:
            raise UnsupportedError(
                f"the 1/n correction of a statistic with the layer-ℓ field {name} needs its cumulants with z "
                "(Θ1, D, F) as blobs, which are not implemented yet (leading order only)")
        mean = None
        for st in rules.statistics.values():
            if len(st.legs) == 1 and st.legs[0].field == name:
                for t in st.terms:
                    if t.order == 0:
                        mapping = dict(zip(st.legs[0].inputs, inputs))
                        mean = t.coefficient * _TENSORS[t.tensor](layer, *[mapping[a] for a in t.args])
        if mean is None:
            raise UnsupportedError(f"no statistic of the rule file gives the mean of field {name}")
        reps[atom] = mean
    return function.xreplace(reps)


def gaussian_cumulant(insertions: list, layer) -> sp.Expr:
    """κ_K(F_1, …, F_m): the joint cumulant of functions of ONE neuron under ⟨·⟩_K."""
    total = sp.Integer(0)
    for part in _partitions(list(range(len(insertions)))):
        k = len(part)
        total += (-1) ** (k - 1) * math.factorial(k - 1) * sp.Mul(
            *[gexp(sp.Mul(*[insertions[p] for p in block]), layer) for block in part])
    return sp.expand(total)


def group_cumulant(insertions: list, rules: RuleSet, layer, width, max_relative: int) -> list[ClusterTerm]:
    """Cluster diagrams of κ(S_1, …, S_m), S_p = Σ_j F_p(z_j), through relative order ``max_relative``.

    ``insertions`` are the F_p in Gaussian variables Z(α).  The value of each term includes
    its power of n (leading power 1)."""
    m = len(insertions)
    if max_relative < 0:
        return []
    if max_relative > reliable_order(m):
        need = "the six-point vertex and second-order blobs" if m >= 2 else "second-order blobs"
        raise UnsupportedError(
            f"the joint cumulant of {m} neuron sums at relative order 1/n^{max_relative} needs {need} "
            "of layer ℓ, which this truncation does not carry")
    terms = []
    all_blobs = blobs(rules)
    for sites in _partitions(list(range(m))):
        s = len(sites)
        # no blob: connected only when everything sits on one neuron
        if s == 1:
            value = width * gaussian_cumulant(insertions, layer)
            terms.append(ClusterTerm(tuple(map(tuple, sites)), None, (), 1, value, value))
        for blob in all_blobs:
            power = s - blob.order
            if 1 - power > max_relative:
                continue
            for placement in itertools.product(range(s), repeat=len(blob.classes)):
                if set(placement) != set(range(s)):
                    continue  # the blob must reach every site for a connected diagram
                value = _blob_value(blob, placement, sites, insertions, layer)
                if value == 0:
                    continue
                compact = _blob_compact(blob, placement, sites, insertions, layer)
                terms.append(ClusterTerm(tuple(map(tuple, sites)), blob, tuple(placement), power,
                                         width ** power * value, width ** power * compact))
    return terms


def _blob_value(blob: Blob, placement, sites, insertions, layer):
    """(c/k!) Σ_β T(β) Π_sites ⟨∂_{β on site} F_site⟩ for one placement of the blob's classes."""
    from .algebra import tensor_class  # local import keeps module import order simple
    site_of_leg = {}
    for cls, site in zip(blob.classes, placement):
        for q in cls:
            site_of_leg[q] = site
    site_funcs = []
    for block in sites:
        if len(block) > 1:
            raise UnsupportedError("a blob on a site with several insertions (composite operators) is "
                                   "beyond the supported order")
        site_funcs.append(insertions[block[0]])
    legs = list(range(blob.nlegs))
    choices = [integrand_labels(site_funcs[site_of_leg[q]]) for q in legs]
    T = _TENSORS[blob.tensor]
    total = sp.Integer(0)
    for betas in itertools.product(*choices):
        derivs = [site_funcs[k] for k in range(len(site_funcs))]
        for q, b in zip(legs, betas):
            k = site_of_leg[q]
            derivs[k] = sp.diff(derivs[k], Z(b))
        if any(d == 0 for d in derivs):
            continue
        total += T(layer, *[betas[q] for q in blob.slot_legs]) * sp.Mul(*[gexp(d, layer) for d in derivs])
    return sp.expand(blob.coefficient * total / math.factorial(blob.nlegs))


def _blob_compact(blob: Blob, placement, sites, insertions, layer):
    """(c/k!) Σ_β T(β) Π_sites ⟨∂_{β on site} F_site⟩ as one :class:`BlobSum` (dummy β's)."""
    from .algebra import BlobSum, PartialExpectation, dummy_labels
    betas = dummy_labels(blob.nlegs)
    site_of_leg = {q: site for cls, site in zip(blob.classes, placement) for q in cls}
    parts = []
    for k, block in enumerate(sites):
        legs = [betas[q] for q in range(blob.nlegs) if site_of_leg[q] == k]
        parts.append(PartialExpectation(insertions[block[0]], layer, *legs))
    T = _TENSORS[blob.tensor]
    body = BlobSum(T(layer, *[betas[q] for q in blob.slot_legs]), *parts)
    return blob.coefficient * body / math.factorial(blob.nlegs)


_TENSORS: dict = {}


def register_tensors(rules: RuleSet) -> None:
    """Make the sympy classes of the rule file's tensors available to the blob values."""
    for name, spec in rules.tensors.items():
        _TENSORS[name] = spec.cls


def _partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        yield [[first]] + part
        for k in range(len(part)):
            yield part[:k] + [[first] + part[k]] + part[k + 1:]
