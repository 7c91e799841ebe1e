"""Stage B: cumulants of neuron sums of layer ℓ, expanded in 1/n (the layer-ℓ diagrams).

After the Wick step every layer-(ℓ+1) cumulant is a combination of cumulants of *neuron
sums* of layer ℓ, ``Y = Σ_{j1…jr} F(z_{j1}, …, H_{j1 j2}, …)``.  Their expectations follow from
the statistics the rule file declares for layer ℓ:

* the leading measure: z Gaussian with covariance δ_{jk} K (the order-0 two-point tensor), and
  every other field (the NTK H) frozen at its order-0 mean, δ_{jk} Θ;
* *blobs*: every other term of every declared expansion (G1, V, Θ1, A, B, D, F, …), each a
  vertex of order n^{-k} whose legs act on the neuron sites as its Kronecker deltas dictate.
  A z-leg is a derivative ∂/∂z_{j;β} on the site's function; an H-leg removes one H factor
  (∂/∂H); the weight of a blob is its coefficient over Π_fields (number of legs of that field)!,
  the combinatorics of the Edgeworth expansion E[Φ] = exp(Σ κ ∂^k/k!) Φ.

A moment E[Y_1 ⋯ Y_m] is the sum over *sites* — set partitions of all neuron indices into
distinct neurons, each weighted by the exact falling factorial n(n−1)⋯(n−s+1) — of the leading
value plus every single-blob correction (:func:`site_terms`).  Cumulants follow by Möbius
inversion over set partitions (:func:`group_cumulant`), and the disconnected pieces cancel
symbolically.  For S = Σ_j F(z_j) this reproduces docs/conventions.md §4:

* E[S] = n ⟨F⟩_K + ½ Σ G1_{β1β2} ⟨∂_{β1}∂_{β2}F⟩_K + ⅛ Σ V_{(β1β2)(β3β4)} ⟨∂⁴F⟩_K + O(1/n)
* κ(S1, S2) = n [⟨F1F2⟩_K − ⟨F1⟩_K⟨F2⟩_K + ¼ Σ V ⟨∂∂F1⟩_K ⟨∂∂F2⟩_K] + O(1)

with the weights ½, ⅛, ¼ generated, not typed.  Derivatives are kept two ways: resolved on the
input labels (Σ_β T_{…β…} ∂/∂z_β F = Σ_{α ∈ inputs of F} T_{…α…} ∂F/∂z_α, valid for coinciding
inputs too), and whole, as :class:`~ntkdiagrams.language.algebra.BlobSum` (the compact Σ_β form).

Cluster diagrams (:func:`cluster_pieces`).  The falling factorial is a sum over the set partitions
σ of the s sites with the Möbius function of the partition lattice,

    n(n−1)⋯(n−s+1) = Σ_{σ ∈ Π(s)} μ(0̂, σ) n^{|σ|},   μ(0̂, σ) = Π_{blocks b of σ} (−1)^{|b|−1} (|b|−1)!,

so every term of a moment splits into pieces with a single power of n, each living on the sites
merged according to σ (τ = π ∨ σ, a partition of the neuron indices).  Collected per τ,
Σ_{π ≤ τ} μ(π, τ) f(π) is the joint cumulant of the functions on each merged site (unrestricted
index sums, Leonov–Shiryaev): V's one-site diagram is n[⟨σσσσ⟩_K − ⟨σσ⟩_K⟨σσ⟩_K].  The moment is
Σ_τ n^{|τ|} g(τ), the g(τ) factorise over the components of τ, so the cumulant of a group of
neuron sums is the sum of the pieces that connect all of its sums (through merged sites or the
blob); products of two first-order blobs are O(n^{R−2}), inside the truncation.  Each piece is one
cluster diagram with its value; :mod:`ntkdiagrams.engine.derivation` checks that they add up to
the cumulant obtained by Möbius inversion.

Fixed neurons (shortcuts).  A neuron sum may use layer-ℓ fields at neurons that are not summed:
the external neuron i of a shortcut ξ z^{(ℓ)}_{i;α} (residual networks), alone or inside a sum
(``H_{ij}`` with j summed).  Write such a field as a sum over a *copy* index c with weight δ_{c i}:
each neuron sum gets its own copy of each fixed neuron it uses.  Copies are indices like the summed
ones, so the sites, the leading measure and the blobs act on them unchanged; only the weights of
the neuron placements change.  A site partition π places its sites on distinct neurons: a site
holding copies of the fixed neuron i is pinned to i (weight 1, no factor n), two sites pinned to
the same neuron or one site to two neurons are impossible (weight 0), and the s − f free sites
beside f pinned ones have (n−f)(n−f−1)⋯(n−s+1) placements.  Unrestricted placements of merged sites
τ weigh n^{#free blocks of τ} (0 where a block holds two different fixed neurons), so the Möbius
split of the cluster diagrams is the same as for summed indices with that weight, and the copies of
one neuron in different sums stay separate until τ merges them: κ(z_i, z_i) = ⟨z z⟩ − ⟨z⟩⟨z⟩ comes
out as for two summed indices.  Distinct fixed neurons must be distinct numbers (the isolating
pattern of :func:`ntkdiagrams.engine.derivation.derive`); two symbolic ones that may coincide are
refused.  Expectations of bare preactivations (at fixed neurons) are done by Isserlis' theorem (⟨z_α z_β⟩_K = K_{αβ},
odd ones vanish); mixed ones such as ⟨z_α z_β σ_γ σ_δ⟩_K stay.

Truncation: second-order blobs and undeclared cumulants (the six-point vertex, κ(H,H,z,z), …)
are O(1/n²) by the power counting of docs/conventions.md §4, so a moment or cumulant of sums with R
*summed* neuron indices in all (fixed neurons bring no n) is exact up to O(n^{R−2}) (:func:`truncation_power`); the recursion
stage refuses any request whose order that remainder could reach.

Second order (rules/mlp2.toml, a rule file whose expansions reach 1/n²: :func:`expansion_order`).
The Edgeworth expansion is kept to second order in the blobs,

    E[Φ] = ⟨Φ⟩ + Σ_b b Φ + ½ Σ_{b, b'} b b' Φ + …,

with every blob of order ≤ 2 in the single sum (G2, V1, the six-point vertex V6, Θ2, D1, F1, D6, F6)
and every ordered pair of placements of first-order blobs in the double sum (:func:`_pair_terms`,
one :class:`BlobProduct` per unordered pair: weight 1 for two different placements, ½ for one
placement twice; for one neuron ½(½G1∂² + ⅛V∂⁴)² = ⅛G1G1∂⁴ + (1/16)G1V∂⁶ + (1/128)VV∂⁸).  Both
derivative sets act on the same site functions; two blobs never take the same occurrence of a
field (Φ is linear in each).  The falling factorials are exact, so the cluster split keeps the
pieces n^{|σ|−order} down to order 2; a pair whose members act on different components of τ is
disconnected (it is the product of two first-order pieces) and drops out of the cumulant.  The
truncation moves to O(n^{R−3}), :func:`truncation_power` with the rule file's order, and the
refusals to order 3.  Stage B asks for second-order terms only where the target needs them
(``max_order``), and then checks that every cumulant that can act at that order is declared to it
(:func:`check_coverage_order`: with one NTK occurrence, κ(H), κ(H,z,z), κ(H,z,z,z,z) to 1/n², but
not κ(H,H)).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import sympy as sp

from ..language.algebra import (ActivationDerivative, BlobSum, PartialExpectation, Z, dummy_labels, gaussian,
                                integrand_labels, z_derivative)
from ..errors import UnsupportedError
from ..language.rulefile import RuleSet
from ..combinatorics import set_partitions


@dataclass(frozen=True)
class Blob:
    """One perturbation vertex: a non-leading term of a declared cumulant expansion."""

    tensor: str
    coefficient: sp.Expr            # number, already divided by Π_fields (legs of the field)!
    order: int                      # power of 1/n
    legs: tuple                     # field name of each leg
    deltas: tuple                   # pairs ((leg, neuron slot), (leg, neuron slot))
    args: tuple                     # (leg, input slot) of each tensor slot


@dataclass(frozen=True)
class BlobProduct:
    """Two (or more) perturbation vertices acting together: a term of the second-order part
    ½ (Σ_blobs)² of the Edgeworth expansion E[Φ] = exp(Σ κ ∂^k/k!) Φ.  Its legs are the members'
    legs in order; a placement lists the z-leg sites of every member, then the field occurrences
    of every member (the layout of a single :class:`Blob`'s placement, member after member)."""

    members: tuple                  # tuple[Blob], in canonical order

    @property
    def order(self) -> int:
        return sum(b.order for b in self.members)

    @property
    def legs(self) -> tuple:
        return tuple(f for b in self.members for f in b.legs)

    @property
    def tensor(self) -> str:
        return "*".join(b.tensor for b in self.members)

    def split(self, placement: tuple) -> list:
        """[(member, its z-leg sites, its occurrences)] of a placement of the product."""
        nz = [sum(1 for f in b.legs if f == "z") for b in self.members]
        no = [len(b.legs) - k for b, k in zip(self.members, nz)]
        zpart, opart = placement[:sum(nz)], placement[sum(nz):]
        out, zi, oi = [], 0, 0
        for b, kz, ko in zip(self.members, nz, no):
            out.append((b, tuple(zpart[zi:zi + kz]), tuple(opart[oi:oi + ko])))
            zi, oi = zi + kz, oi + ko
        return out


def blob_members(blob, placement: tuple) -> list:
    """[(blob, z-leg sites, occurrences)] of a single blob's or a product's placement."""
    if isinstance(blob, BlobProduct):
        return blob.split(placement)
    nz = sum(1 for f in blob.legs if f == "z")
    return [(blob, tuple(placement[:nz]), tuple(placement[nz:]))]


def _blob_key(blob: Blob) -> tuple:
    return (blob.tensor, blob.order, blob.legs, tuple(map(str, blob.deltas)), blob.args, str(blob.coefficient))


def canonical_product(members: list) -> tuple:
    """(BlobProduct, placement) of [(blob, z sites, occurrences)] with the members sorted, so that
    the same product placed the same way is one key whichever member came first."""
    members = sorted(members, key=lambda m: (_blob_key(m[0]), m[1], m[2]))
    return (BlobProduct(tuple(m[0] for m in members)),
            tuple(k for m in members for k in m[1]) + tuple(c for m in members for c in m[2]))


@dataclass(frozen=True)
class SiteTerm:
    """One term f(π) of an expectation at *distinct* neurons: the sites π (a set partition of the
    neuron indices), the leading measure or one blob placement, and its value without powers of n
    (the moment is Σ_π n(n−1)⋯(n−|π|+1) n^{−order} f(π))."""

    sites: tuple                    # tuple of tuples of neuron indices (one tuple per site)
    blob: Blob | BlobProduct | None
    placement: tuple                # for each blob leg: site (z-leg) or H occurrence (other legs)
    value: sp.Expr                  # explicit form
    compact: sp.Expr                # with the blob contraction kept as a BlobSum
    occurrences: tuple = ()         # the non-z field factors: (name, sites, inputs)
    pins: tuple = ()                # per site, the fixed neuron it is pinned to, or None (empty: none fixed)

    @property
    def order(self) -> int:
        """The power of 1/n the blob brings (0 for the leading measure)."""
        return self.blob.order if self.blob is not None else 0


@dataclass(frozen=True)
class ClusterPiece:
    """One cluster diagram of a group of neuron sums: the coefficient of n^power in their joint
    cumulant that lives on the merged sites τ with at most one blob."""

    sites: tuple                    # τ: tuple of tuples of neuron indices
    blob: Blob | None
    placement: tuple                # blob z-legs: τ-site of each; then the occurrences its other legs take
    occurrences: tuple              # (name, τ-sites, inputs) of the non-z field factors
    power: int                      # |τ| − blob order (blocks pinned to a fixed neuron bring no n)
    value: sp.Expr                  # explicit form
    compact: sp.Expr                # BlobSum form
    pins: tuple = ()                # per τ-site, the fixed neuron it is pinned to, or None


def leading_terms(rules: RuleSet) -> set:
    """(statistic, tensor) pairs that define the leading measure: K and the field means."""
    lead = {("", rules.gaussian_tensor())}
    for st in rules.statistics.values():
        if len(st.legs) == 1 and st.legs[0].field != "z":
            lead |= {("", t.tensor) for t in st.terms if t.order == 0}
    return {t for _s, t in lead}


def blobs(rules: RuleSet) -> list[Blob]:
    """Every non-leading term of every declared expansion, as a perturbation vertex."""
    lead = leading_terms(rules)
    out = []
    for st in rules.statistics.values():
        nslot = {}
        islot = {}
        for q, leg in enumerate(st.legs):
            for t, i in enumerate(leg.neurons):
                nslot[i] = (q, t)
            for t, a in enumerate(leg.inputs):
                islot[a] = (q, t)
        fields = [leg.field for leg in st.legs]
        weight = sp.Integer(1)
        for f in set(fields):
            weight *= math.factorial(fields.count(f))
        for term in st.terms:
            if term.tensor in lead and term.order == 0:
                continue
            deltas = tuple(tuple(nslot[i] for i in sorted(d, key=str)) for d in term.deltas)
            out.append(Blob(term.tensor, term.coefficient / weight, term.order, tuple(fields), deltas,
                            tuple(islot[a] for a in term.args)))
    return out


def _means(rules: RuleSet):
    """name -> function(layer, site_a, site_b, inputs) giving the order-0 mean of a field."""
    out = {}
    for st in rules.statistics.values():
        if len(st.legs) == 1 and st.legs[0].field != "z":
            leg = st.legs[0]
            out.setdefault(leg.field, None)   # declared, but no order-0 term: the mean starts at 1/n
            for t in st.terms:
                if t.order == 0:
                    out[leg.field] = (leg, t)
    return out


def expansion_order(rules: RuleSet) -> int:
    """The highest power of 1/n in the rule file's expansions: 1 for rules/mlp.toml, 2 for
    rules/mlp2.toml.  The truncation of Stage B follows it (:func:`truncation_power`)."""
    return max([t.order for st in rules.statistics.values() for t in st.terms] + [1])


def truncation_power(R: int, order: int = 1) -> int:
    """A moment or cumulant of neuron sums with R indices is known up to O(n^(R-1-order)) when
    the rule file declares the statistics to order 1/n^order: O(n^(R-2)) at first order,
    O(n^(R-3)) at second order (blobs of order ≥ order+1 and the cumulants power counting puts
    there are left out)."""
    return R - 1 - order


def _split(function: sp.Expr, site_of: dict, s: int, rules: RuleSet):
    """Per-site z-functions (in Z(α)) and the occurrences of other fields."""
    zf = [sp.Integer(1)] * s
    occ = []
    const = sp.Integer(1)
    for f in sp.Mul.make_args(sp.expand(function)):
        base, exp = f.as_base_exp()
        reps = int(exp) if (exp.is_Integer and exp > 0) else 1
        if reps == 1:
            base = f
        name = getattr(base.func, "__name__", "")
        if name in rules.fields and name != "z":
            spec = rules.fields[name]
            nr = base.args[:spec.neurons]
            ins = base.args[spec.neurons:]
            for _ in range(reps):
                occ.append((name, tuple(site_of[j] for j in nr), tuple(ins)))
            continue
        zs = [a for a in base.atoms(sp.Function) if getattr(a.func, "__name__", "") == "z"]
        if not zs:
            if base.free_symbols & set(site_of):
                raise UnsupportedError(f"factor {f} of a neuron sum is not a function of z or a declared field")
            const *= f
            continue
        sites = {site_of[a.args[0]] for a in zs}
        if len(sites) != 1:
            raise UnsupportedError(f"factor {f} mixes the preactivations of several neurons")
        k = sites.pop()
        zf[k] = zf[k] * f.xreplace({a: Z(a.args[1]) for a in zs})
    return const, zf, occ


def _falling(width, s: int):
    return sp.Mul(*[width - t for t in range(s)])


def placements(width, sites: int, pins: tuple = ()):
    """The number of ways to put the sites of a partition on distinct neurons: n(n−1)⋯(n−s+1);
    with sites pinned to fixed neurons (``pins``), (n−f)⋯(n−s+1) for f pinned sites, or 0 if two
    sites are pinned to the same neuron."""
    if not pins:
        return _falling(width, sites)
    fixed = [i for i in pins if i is not None]
    if len(set(fixed)) != len(fixed):
        return sp.Integer(0)
    return sp.Mul(*[width - t for t in range(len(fixed), sites)])


def copy_symbol(neuron, p: int) -> sp.Symbol:
    """The copy index of fixed neuron ``neuron`` in the p-th neuron sum of a group."""
    return sp.Symbol(f"fixed_{neuron}_{p}", integer=True)


def site_indices(sums: list, rules: RuleSet) -> tuple:
    """(functions, index lists, pins) of a group of neuron sums with every fixed neuron replaced by
    a copy index of its own per sum (appended to the sum's indices); ``pins`` maps copies to their
    fixed neurons (empty without fixed neurons)."""
    functions = [s.function for s in sums]
    index_lists = [tuple(s.indices) for s in sums]
    fixed = tuple(dict.fromkeys(i for s in sums for i in getattr(s, "fixed", ())))
    if not fixed:
        return functions, index_lists, {}
    if len(fixed) > 1 and not all(isinstance(i, sp.Integer) for i in fixed):
        raise UnsupportedError(f"layer-ℓ fields at the neurons {', '.join(map(str, fixed))} outside every neuron "
                               "sum (shortcut terms) meet in one cumulant, and these symbolic indices may "
                               "coincide; only distinct numbered neurons are supported (derive the tensors "
                               "of the rule file rather than a correlator request)")
    pins = {}
    for p, s in enumerate(sums):
        copies = {i: copy_symbol(i, p) for i in getattr(s, "fixed", ())}
        if not copies:
            continue
        pins.update({c: i for i, c in copies.items()})
        functions[p] = _rename_neurons(functions[p], copies, rules)
        index_lists[p] = index_lists[p] + tuple(copies.values())
    return functions, index_lists, pins


def _rename_neurons(expr: sp.Expr, mapping: dict, rules: RuleSet) -> sp.Expr:
    """Replace neuron arguments of the declared fields (z_{i;α} → z_{c;α}, H_{ij;αβ} → H_{cj;αβ})."""
    rep = {}
    for a in expr.atoms(sp.Function):
        spec = rules.fields.get(getattr(a.func, "__name__", ""))
        if spec is None:
            continue
        args = list(a.args)
        args[:spec.neurons] = [mapping.get(i, i) for i in args[:spec.neurons]]
        if tuple(args) != a.args:
            rep[a] = a.func(*args)
    return expr.xreplace(rep)


def site_terms(functions: list, index_lists: list, rules: RuleSet, layer, pins: dict | None = None,
               max_order: int = 1, min_power: int | None = None) -> list[SiteTerm]:
    """Every f(π) of E[Π_p Σ_{indices_p} F_p] at first order in the blobs: for each set
    partition π of the neuron indices into distinct neurons, the leading value and every
    single-blob placement (without the falling factorial and the blob's n^{-order}).

    ``pins``: copy index → fixed neuron.  A site pinned to two different fixed neurons is left out
    (no placement of any merging of it exists); the weight of the others is :func:`placements`.

    ``max_order`` ≥ 2 (a second-order rule file, a target that needs it): blobs up to that order,
    and the second-order term ½ (Σ_blobs)² of the Edgeworth expansion, every pair of placements of
    first-order blobs (:func:`_pair_terms`; weight 1 for two different placements, ½ for one
    placement twice, generated from the ordered pairs).  ``min_power``: blob terms whose power
    (free sites − order) is below it are left out (the caller reads off no lower power)."""
    indices = [j for idx in index_lists for j in idx]
    F = sp.Mul(*functions)
    means = _means(rules)
    all_blobs = blobs(rules)
    all_blobs = [b for b in all_blobs if b.order <= max(1, max_order)]
    # bare preactivations come from fields at fixed neurons: Isserlis needs the kernel only there
    kernel = rules.tensors[rules.gaussian_tensor()].cls if pins else None
    out = []
    for partition in set_partitions(indices):
        site_pins = ()
        if pins:
            held = [{pins[j] for j in b if j in pins} for b in partition]
            if any(len(h) > 1 for h in held):
                continue
            site_pins = tuple(next(iter(h)) if h else None for h in held)
        s = len(partition)
        site_of = {j: k for k, block in enumerate(partition) for j in block}
        const, zf, occ = _split(F, site_of, s, rules)
        lead = const * sp.Mul(*[gaussian(f, layer, kernel) for f in zf]) * \
            sp.Mul(*[_mean(o, means, layer, rules) for o in occ])
        lead = sp.expand(lead)
        sites = tuple(tuple(b) for b in partition)
        if lead != 0:
            out.append(SiteTerm(sites, None, (), lead, lead, tuple(occ), site_pins))
        free = s - sum(1 for i in site_pins if i is not None)
        for blob in all_blobs:
            if min_power is not None and free - blob.order < min_power:
                continue   # merging sites only lowers the power: this term cannot reach the target
            for placement, value, compact in _blob_placements(blob, zf, occ, means, layer, rules, kernel):
                v = sp.expand(const * value)
                if v == 0:
                    continue
                out.append(SiteTerm(sites, blob, placement, v, const * compact, tuple(occ), site_pins))
        if max_order >= 2 and (min_power is None or free - 2 >= min_power):
            first = [b for b in all_blobs if b.order == 1]
            for product, placement, value, compact in _pair_terms(first, zf, occ, means, layer, rules, kernel):
                v = sp.expand(const * value)
                if v == 0:
                    continue
                out.append(SiteTerm(sites, product, placement, v, sp.expand(const * compact), tuple(occ), site_pins))
    return out


def _single_structures(blob: Blob, zf, occ) -> list:
    """The placements (z-leg sites, chosen occurrences) of one blob on the sites, before values:
    the same filters as :func:`_blob_placements` (legs on the occurrences of their field, the
    blob's deltas respected, no derivative on a site without a z-function)."""
    s = len(zf)
    zlegs = [q for q, f in enumerate(blob.legs) if f == "z"]
    olegs = [q for q, f in enumerate(blob.legs) if f != "z"]
    out = []
    for chosen in itertools.permutations(range(len(occ)), len(olegs)):
        if any(occ[c][0] != blob.legs[q] for q, c in zip(olegs, chosen)):
            continue
        for zsites in itertools.product(range(s), repeat=len(zlegs)):
            site_of_slot = {}
            for q, k in zip(zlegs, zsites):
                site_of_slot[(q, 0)] = k
            for q, c in zip(olegs, chosen):
                for t, k in enumerate(occ[c][1]):
                    site_of_slot[(q, t)] = k
            if any(site_of_slot[a] != site_of_slot[b] for a, b in blob.deltas):
                continue
            if any(zf[k] == 1 for k in zsites):
                continue
            out.append((tuple(zsites), tuple(chosen)))
    return out


def _pair_terms(first: list, zf, occ, means, layer, rules: RuleSet, kernel=None):
    """Yield (BlobProduct, placement, explicit, compact) of the second-order Edgeworth term
    ½ Σ_{(b,p),(b',p')} b_p b'_{p'} Φ over ordered pairs of first-order blob placements.

    The ordered pairs are generated and collected per unordered pair: two different placements
    come twice (weight ½ · 2 = 1), a placement with itself once (½); a pair whose members take the
    same field occurrence vanishes (Φ is linear in each occurrence, ∂²/∂H² of one factor is 0)."""
    singles = [(b, z, c) for b in first for z, c in _single_structures(b, zf, occ)]
    weights: dict = {}
    for a in range(len(singles)):
        for b in range(len(singles)):
            if set(singles[a][2]) & set(singles[b][2]):
                continue
            key = (min(a, b), max(a, b))
            weights[key] = weights.get(key, sp.Integer(0)) + sp.Rational(1, 2)
    for (a, b), w in weights.items():
        members = [singles[a], singles[b]]
        product, placement = canonical_product(members)
        ordered = product.split(placement)
        used = {c for _b, _z, cs in ordered for c in cs}
        rest = sp.Mul(*[_mean(o, means, layer, rules) for c, o in enumerate(occ) if c not in used])
        if rest == 0:
            continue
        value, compact = _product_value(ordered, zf, occ, layer, rules, kernel)
        if value == 0:
            continue
        yield product, placement, sp.expand(w * rest * value), w * rest * compact


def _product_value(members: list, zf, occ, layer, rules: RuleSet, kernel=None) -> tuple:
    """(explicit, compact) of Π_members coefficient · T(…) acting together on the site functions:
    Σ over the input labels of every z-leg of Π T · Π_sites ⟨∂…∂ F_site⟩_K, and the same as one
    :class:`BlobSum` over dummy labels β (the tensor slot of the sum is the product of the
    members' tensors).  A leg on a site of bare preactivations (a shortcut's) is resolved in the
    compact form too (explicit form returned as compact)."""
    s = len(zf)
    coeff = sp.Mul(*[b.coefficient for b, _z, _c in members])
    legs = []            # (member index, leg q, site) of every z-leg, members in order
    for m, (b, zsites, _c) in enumerate(members):
        zq = [q for q, f in enumerate(b.legs) if f == "z"]
        legs += [(m, q, k) for q, k in zip(zq, zsites)]

    def tensors(label_of):
        out = sp.Integer(1)
        for m, (b, _z, chosen) in enumerate(members):
            olegs = [q for q, f in enumerate(b.legs) if f != "z"]
            occ_of_leg = dict(zip(olegs, chosen))

            def arg(slot):
                q, t = slot
                return label_of[(m, q)] if b.legs[q] == "z" else occ[occ_of_leg[q]][2][t]
            out *= rules.tensors[b.tensor].cls(layer, *[arg(a) for a in b.args])
        return out

    choices = [integrand_labels(zf[k]) for _m, _q, k in legs]
    cache: dict = {}

    def site_value(k, labels):
        key = (k, tuple(sorted(labels, key=sp.default_sort_key)))
        if key not in cache:
            d = zf[k]
            for a in key[1]:
                d = z_derivative(d, a)
            cache[key] = gaussian(d, layer, kernel) if d != 0 else sp.Integer(0)
        return cache[key]
    pieces = []
    for labels in itertools.product(*choices):
        per_site = [[] for _ in range(s)]
        for (m, q, k), a in zip(legs, labels):
            per_site[k].append(a)
        vals = [site_value(k, per_site[k]) for k in range(s)]
        if any(v == 0 for v in vals):
            continue
        pieces.append(tensors({(m, q): a for (m, q, _k), a in zip(legs, labels)}) * sp.Mul(*vals))
    value = sp.expand(coeff * sp.Add(*pieces))
    if value == 0:
        return value, value
    if any(_is_bare(zf[k]) for _m, _q, k in legs):
        return value, value
    # members that share no site are separate sums (so that a product of two moments' blobs is the
    # same expression as the pair on disjoint sites): group the members by shared sites; the dummies
    # of each group are numbered from β_1
    group = list(range(len(members)))
    for m1 in range(len(members)):
        for m2 in range(m1):
            if set(members[m1][1]) & set(members[m2][1]):
                old_, new_ = group[m1], group[m2]
                group = [new_ if g == old_ else g for g in group]
    betas, count = [], {}
    for m, q, _k in legs:
        count[group[m]] = count.get(group[m], 0) + 1
        alone = group.count(group[m]) == 1   # a lone member: β by leg position, as _compact_blob names them
        betas.append(sp.Symbol(f"beta_{q + 1 if alone else count[group[m]]}"))
    label_of = {(m, q): beta for (m, q, _k), beta in zip(legs, betas)}
    parts_of: dict = {}
    plain = []
    for k in range(s):
        here = [(m, beta) for (m, q, kk), beta in zip(legs, betas) if kk == k]
        if here:
            parts_of.setdefault(group[here[0][0]], []).append(PartialExpectation(zf[k], layer, *[b for _m, b in here]))
        else:
            plain.append(gaussian(zf[k], layer, kernel))
    compact = coeff * sp.Mul(*plain)
    for g in dict.fromkeys(group):
        mine = [m for m in range(len(members)) if group[m] == g]
        tens = sp.Mul(*[_member_tensor(members[m], m, label_of, occ, layer, rules) for m in mine])
        compact *= BlobSum(tens, *parts_of[g]) if g in parts_of else tens
    return value, compact


def _member_tensor(member, m, label_of, occ, layer, rules: RuleSet):
    """The tensor of member m of a blob product with its labels: dummies on z-legs, the field
    occurrence's input labels on the other legs."""
    b, _z, chosen = member
    olegs = [q for q, f in enumerate(b.legs) if f != "z"]
    occ_of_leg = dict(zip(olegs, chosen))

    def arg(slot):
        q, t = slot
        return label_of[(m, q)] if b.legs[q] == "z" else occ[occ_of_leg[q]][2][t]
    return rules.tensors[b.tensor].cls(layer, *[arg(a) for a in b.args])


def moment_value(terms: list[SiteTerm], width, ratios=None) -> tuple:
    """(explicit, compact) moment Σ_π n(n−1)⋯(n−|π|+1) n^{−order} f(π), expanded (sites pinned
    to fixed neurons: :func:`placements`).  ``ratios`` = (r_ℓ, r_{ℓ−1}) for per-layer widths: the
    sums run over n_ℓ = r_ℓ n neurons and the blobs of layer ℓ are of order 1/n_{ℓ−1}^k."""
    if ratios is None:
        scale = [placements(width, len(t.sites), t.pins) * width ** (-t.order) for t in terms]
    else:
        r_now, r_prev = ratios
        scale = [placements(r_now * width, len(t.sites), t.pins) * (r_prev * width) ** (-t.order) for t in terms]
    return (sp.expand(sp.Add(*[c * t.value for c, t in zip(scale, terms)])),
            sp.expand(sp.Add(*[c * t.compact for c, t in zip(scale, terms)])))


def _mean(o, means, layer, rules: RuleSet):
    name, sites, ins = o
    if name not in means and field_weight(rules, name) % 2:
        return sp.Integer(0)  # odd weight (the dNTK): the mean vanishes by z -> -z symmetry
    if name not in means:
        raise UnsupportedError(f"no statistic of the rule file gives the mean of field {name}")
    if means[name] is None:
        return sp.Integer(0)  # e.g. the ddNTKs: E[ddH] = O(1/n), a blob (R, S, T, U)
    leg, term = means[name]
    nmap = dict(zip(leg.neurons, sites))
    for d in term.deltas:
        a, b = tuple(d)
        if nmap[a] != nmap[b]:
            return sp.Integer(0)
    amap = dict(zip(leg.inputs, ins))
    return term.coefficient * rules.tensors[term.tensor].cls(layer, *[amap[a] for a in term.args])


def _blob_placements(blob: Blob, zf, occ, means, layer, rules: RuleSet, kernel=None):
    """Yield (placement, explicit value, compact value) of one blob on the sites."""
    zlegs = [q for q, f in enumerate(blob.legs) if f == "z"]
    olegs = [q for q, f in enumerate(blob.legs) if f != "z"]
    betas = dummy_labels(len(blob.legs))
    T = rules.tensors[blob.tensor].cls
    for zsites, chosen in _single_structures(blob, zf, occ):
        rest = sp.Mul(*[_mean(o, means, layer, rules) for c, o in enumerate(occ) if c not in chosen])
        if rest == 0:
            continue
        # tensor arguments: dummies for z-legs, the occurrence's labels for field legs
        occ_of_leg = dict(zip(olegs, chosen))

        def arg(slot, zlabel):
            q, t = slot
            return zlabel[q] if blob.legs[q] == "z" else occ[occ_of_leg[q]][2][t]
        # explicit: Σ over labels of each z-leg's site function
        choices = [integrand_labels(zf[k]) for k in zsites]
        pieces = []
        for labels in itertools.product(*choices):
            zlabel = dict(zip(zlegs, labels))
            derivs = list(zf)
            for q, k in zip(zlegs, zsites):
                derivs[k] = z_derivative(derivs[k], zlabel[q])
            if any(d == 0 for d in derivs):
                continue
            pieces.append(T(layer, *[arg(a, zlabel) for a in blob.args]) *
                          sp.Mul(*[gaussian(d, layer, kernel) for d in derivs]))
        value = sp.expand(blob.coefficient * rest * sp.Add(*pieces))
        if value == 0:
            continue
        # compact: one BlobSum over the dummy labels of the z-legs
        if zlegs:
            compact = blob.coefficient * rest * _compact_blob(T, blob, zlegs, zsites, zf, arg, betas, layer, kernel)
        else:
            tens = T(layer, *[arg(a, {}) for a in blob.args])
            compact = blob.coefficient * rest * tens * sp.Mul(*[gaussian(f, layer, kernel) for f in zf])
        yield (tuple(zsites) + tuple(chosen)), value, compact


def _is_bare(f: sp.Expr) -> bool:
    """A site function that is a polynomial in bare preactivations z (no activation): a shortcut's."""
    return f.has(Z) and not f.has(ActivationDerivative)


def _compact_blob(T, blob, zlegs, zsites, zf, arg, betas, layer, kernel):
    """Σ_β T ⟨∂_β F⟩ ⋯ with the z-legs on activation sites kept as a BlobSum over dummy labels β;
    legs on sites holding only bare z's (shortcuts) are resolved on the input labels, where the
    derivatives of the polynomial are exact and its expectation is Isserlis' (so no BlobSum ever
    integrates a bare polynomial)."""
    s = len(zf)
    bare = [q for q, k in zip(zlegs, zsites) if _is_bare(zf[k])]
    site = dict(zip(zlegs, zsites))
    if bare:  # the dummies left are numbered from β_1, so equal sums print alike
        kept = [q for q in zlegs if q not in bare]
        betas = dict(zip(kept, dummy_labels(len(kept))))
    total = sp.Integer(0)
    for labels in itertools.product(*[integrand_labels(zf[site[q]]) for q in bare]):
        fixed = dict(zip(bare, labels))
        derivs = list(zf)
        for q in bare:
            derivs[site[q]] = z_derivative(derivs[site[q]], fixed[q])
        if any(derivs[site[q]] == 0 for q in bare):
            continue
        dlabel = {q: fixed[q] if q in fixed else betas[q] for q in zlegs}
        tens = T(layer, *[arg(a, dlabel) for a in blob.args])
        parts, plain = [], []
        for k in range(s):
            legs_here = [betas[q] for q in zlegs if site[q] == k and q not in fixed]
            if legs_here:
                parts.append(PartialExpectation(zf[k], layer, *legs_here))
            else:
                plain.append(gaussian(derivs[k], layer, kernel))
        total += (BlobSum(tens, *parts) if parts else tens) * sp.Mul(*plain)
    return total


def field_weight(rules: RuleSet, name: str) -> int:
    """Power-counting weight: z counts 1, a tangent field as many as its tangent entries (H: 2)."""
    spec = rules.fields[name]
    return len(spec.tangent) if spec.tangent else 1


def check_coverage(rules: RuleSet, present: set) -> None:
    """Every cumulant of the present fields that power counting puts at O(1/n) must be declared.

    A connected correlator of fields of total weight w is O(n^{1-w/2}) (docs/conventions.md §4), odd
    weights vanish by z → -z; so the first-order truncation needs every cumulant of weight 2
    and 4.  A missing one would silently drop a 1/n term: refuse instead."""
    declared = {tuple(sorted(leg.field for leg in st.legs)) for st in rules.statistics.values()}
    names = sorted(present)
    for size in range(1, 5):
        for combo in itertools.combinations_with_replacement(names, size):
            w = sum(field_weight(rules, f) for f in combo)
            if w in (2, 4) and tuple(sorted(combo)) not in declared:
                pretty = ", ".join(combo)
                raise UnsupportedError(
                    f"rule file {rules.path} declares no statistic for the cumulant κ({pretty}), which is "
                    f"O(1/n^{w // 2 - 1}) by power counting and enters this recursion; declare it in "
                    "[statistics] (see docs/conventions.md §3)")


def check_coverage_order(rules: RuleSet, functions, max_order: int) -> None:
    """Second-order truncation: every cumulant that can act on these neuron sums at O(1/n^k),
    k ≤ ``max_order``, must be declared, and its expansion must reach that order.

    A cumulant of total weight w starts at O(1/n^{w/2−1}); at order k it needs the weights
    w ≤ 2k + 2 (the six-point vertex, κ(H, z, z, z, z), … at k = 2) and, for the declared ones,
    the terms of order k − (w/2 − 1) beyond their leading order (G2, V1, Θ2, D1, F1, …).  A blob
    leg on a field other than z removes one occurrence of it, so a cumulant with more legs on such
    a field than the sums hold occurrences cannot act and is not required."""
    count: dict = {}
    for f in functions:
        for fac in sp.Mul.make_args(sp.expand(f)):
            base, e = fac.as_base_exp()
            name = getattr(base.func, "__name__", "")
            if name in rules.fields and name != "z":
                count[name] = count.get(name, 0) + (int(e) if e.is_Integer else 1)
    present = sorted(_fields_in(functions, rules))
    declared = {}
    for st in rules.statistics.values():
        declared[tuple(sorted(leg.field for leg in st.legs))] = max(t.order for t in st.terms)
    for size in range(1, 2 * max_order + 3):
        for combo in itertools.combinations_with_replacement(present, size):
            if any(combo.count(f) > count.get(f, 0) for f in set(combo) if f != "z"):
                continue
            w = sum(field_weight(rules, f) for f in combo)
            lead = w // 2 - 1
            if w % 2 or lead > max_order:
                continue
            key = tuple(sorted(combo))
            pretty = ", ".join(combo)
            if key not in declared:
                raise UnsupportedError(
                    f"rule file {rules.path} declares no statistic for the cumulant κ({pretty}), which is "
                    f"O(1/n^{lead}) by power counting and enters this recursion at order 1/n^{max_order}; "
                    "declare it in [statistics] (see docs/conventions.md §3, §9)")
            if declared[key] < max_order:
                raise UnsupportedError(
                    f"rule file {rules.path}: the expansion of κ({pretty}) stops at order 1/n^{declared[key]}, "
                    f"but this recursion needs it to order 1/n^{max_order}; declare its 1/n^{max_order} terms "
                    "(docs/conventions.md §9)")


def _fields_in(functions, rules: RuleSet) -> set:
    out = set()
    for f in functions:
        for a in f.atoms(sp.Function):
            name = getattr(a.func, "__name__", "")
            if name in rules.fields:
                out.add(name)
    return out


def group_cumulant(sums: list, rules: RuleSet, layer, width, ratios=None, max_order: int = 1,
                   min_power: int | None = None):
    """κ(Y_1, …, Y_m) by Möbius inversion of moments; returns (explicit, compact, the f(π) of the
    full moment E[Y_1 ⋯ Y_m], from which :func:`cluster_pieces` builds the diagrams).

    ``max_order``: the highest blob order the caller reads off (2: second-order blobs and pairs
    of first-order blobs, :func:`site_terms`).  ``min_power`` (used at second order): the lowest
    power of n of the cumulant the caller reads; a block of the Möbius sum with R_b of the R free
    indices then needs no blob term below min_power − (R − R_b) (the other blocks bring at most
    n^{R − R_b}), so those are not computed (the returned values are exact from min_power up)."""
    functions, index_lists, pins = site_indices(sums, rules)
    check_coverage(rules, _fields_in(functions, rules))
    if max_order >= 2:
        check_coverage_order(rules, functions, max_order)
    cache = {}

    def free(block):
        return sum(1 for p in block for j in index_lists[p] if j not in pins)

    def moment(block):
        key = tuple(block)
        if key not in cache:
            low = None
            if max_order >= 2 and min_power is not None:
                low = min_power - (free(range(len(sums))) - free(block))
            terms = site_terms([functions[p] for p in block], [index_lists[p] for p in block], rules, layer, pins,
                               max_order, low)
            cache[key] = moment_value(terms, width, ratios) + (terms,)
        return cache[key]

    m = len(sums)
    explicit, compact = [], []
    for part in set_partitions(list(range(m))):
        k = len(part)
        mu = (-1) ** (k - 1) * math.factorial(k - 1)
        if max_order >= 2 and min_power is not None:   # only the powers the caller reads
            explicit.append(mu * _truncated_product([moment(b)[0] for b in part], width, min_power))
            compact.append(mu * _truncated_product([moment(b)[1] for b in part], width, min_power))
            continue
        explicit.append(sp.expand(mu * sp.Mul(*[moment(b)[0] for b in part])))
        compact.append(sp.expand(mu * sp.Mul(*[moment(b)[1] for b in part])))
    return sp.Add(*explicit), sp.Add(*compact), moment(list(range(m)))[2]


def _powers(expr: sp.Expr, width) -> dict:
    """{power of width: coefficient} of an expanded Laurent polynomial in width."""
    out: dict = {}
    for t in sp.Add.make_args(expr):
        if t == 0:
            continue
        p, rest = 0, []
        for f in sp.Mul.make_args(t):
            b, e = f.as_base_exp()
            if b == width and e.is_Integer:
                p += int(e)
            else:
                rest.append(f)
        out.setdefault(p, []).append(sp.Mul(*rest))
    return {p: sp.Add(*cs) for p, cs in out.items()}


def _truncated_product(factors: list, width, min_power: int) -> sp.Expr:
    """Π factors (expanded Laurent polynomials in width), expanded, keeping only the powers
    ≥ ``min_power``: the Möbius products of second-order moments, whose low powers nobody reads."""
    acc = {0: sp.Integer(1)}
    rest_max = [max(_powers(f, width) or {0: 0}) for f in factors]
    split = [_powers(f, width) for f in factors]
    for q, parts in enumerate(split):
        later = sum(rest_max[q + 1:])
        new: dict = {}
        for p1, c1 in acc.items():
            for p2, c2 in parts.items():
                if p1 + p2 + later < min_power:
                    continue
                new.setdefault(p1 + p2, []).append(sp.expand(c1 * c2))
        acc = {p: sp.Add(*cs) for p, cs in new.items()}
    return sp.Add(*[c * width ** p for p, c in acc.items()])


def partition_moebius(blocks) -> int:
    """μ(0̂, σ) of the partition lattice: Π_{blocks b} (−1)^{|b|−1} (|b|−1)!."""
    out = 1
    for b in blocks:
        out *= (-1) ** (len(b) - 1) * math.factorial(len(b) - 1)
    return out


def cluster_pieces(sums: list, terms: list[SiteTerm], min_power: int | None = None,
                   rules: RuleSet | None = None, ratios=None) -> list[ClusterPiece]:
    """The connected cluster diagrams of the joint cumulant κ(Y_1, …, Y_m) of neuron sums.

    ``terms`` are the f(π) of the full moment (:func:`site_terms`).  Each term's falling factorial
    is split as Σ_σ μ(0̂, σ) n^{|σ|} over the set partitions σ of its sites; the piece of σ goes to
    the merged sites τ (π's sites joined by σ), with the blob's legs following their sites.  Pieces
    with the same τ and blob placement are one diagram, of value Σ μ(π, τ) f(π) at the power
    n^{|τ| − order}; only those connecting all m sums are kept (the others cancel in the cumulant),
    and only powers ≥ ``min_power`` (the others cannot reach the requested order).  Sites pinned
    to fixed neurons (``SiteTerm.pins``; ``rules`` names the fields whose neurons are copied, see
    :func:`site_indices`) bring no n, and σ never merges two sites pinned to different neurons.
    With per-layer widths (``ratios`` = (r_ℓ, r_{ℓ−1})) a piece's n_ℓ^{#free} n_{ℓ−1}^{−order} is
    n^power r_ℓ^{#free} r_{ℓ−1}^{−order}: the r's go into its value."""
    index_lists = [tuple(s.indices) for s in sums] if rules is None else site_indices(sums, rules)[1]
    owner = {j: p for p, idx in enumerate(index_lists) for j in idx}
    pos = {j: k for k, j in enumerate(j for idx in index_lists for j in idx)}
    m = len(sums)
    acc: dict = {}
    for rank, t in enumerate(terms):
        s = len(t.sites)
        nz = sum(1 for f in t.blob.legs if f == "z") if t.blob is not None else 0
        npinned = sum(1 for i in t.pins if i is not None)
        if min_power is not None and s - npinned - t.order < min_power:
            continue  # merging only lowers the power
        for sigma in set_partitions(list(range(s))):
            if npinned:
                held = [{t.pins[k] for k in b if t.pins[k] is not None} for b in sigma]
                if any(len(h) > 1 for h in held):
                    continue  # no neuron is two fixed neurons
                power = sum(1 for h in held if not h) - t.order
            else:
                power = len(sigma) - t.order
            if min_power is not None and power < min_power:
                continue
            merged = [sorted((j for k in b for j in t.sites[k]), key=pos.__getitem__) for b in sigma]
            tau = tuple(tuple(b) for b in sorted(merged, key=lambda b: pos[b[0]]))
            site_of = {j: q for q, b in enumerate(tau) for j in b}
            new = [site_of[t.sites[k][0]] for k in range(s)]
            placement = tuple(new[k] for k in t.placement[:nz]) + tuple(t.placement[nz:])
            blob = t.blob
            if isinstance(blob, BlobProduct):   # the members' order after the merge: one key per product
                blob, placement = canonical_product(blob.split(placement))
            occurrences = tuple((name, tuple(new[k] for k in sites), ins) for name, sites, ins in t.occurrences)
            if not _connects(tau, blob, placement, nz, occurrences, owner, m):
                continue
            key = (tau, blob, placement)
            entry = acc.setdefault(key, [(1, rank), occurrences, power, [], _tau_pins(t, sigma, merged, tau, pos)])
            if len(sigma) == s:
                entry[0] = min(entry[0], (0, rank))   # the unmerged term itself: it sets the order
            entry[3].append((partition_moebius(sigma), t))
    out = []
    # in the order of the terms f(π) with π = τ (the order of the site partitions)
    for (tau, blob, placement), (_rank, occurrences, power, parts, pins) in sorted(acc.items(), key=lambda kv: kv[1][0]):
        value = sp.expand(sp.Add(*[mu * t.value for mu, t in parts]))
        compact = sp.expand(sp.Add(*[mu * t.compact for mu, t in parts]))
        if value == 0 and compact == 0:
            continue
        if ratios is not None:
            order = blob.order if blob is not None else 0
            scale = ratios[0] ** (power + order) * ratios[1] ** (-order)
            value, compact = sp.expand(scale * value), sp.expand(scale * compact)
        out.append(ClusterPiece(tau, blob, placement, occurrences, power, value, compact, pins))
    return out


def _tau_pins(t: SiteTerm, sigma, merged, tau, pos) -> tuple:
    """Per τ-site the fixed neuron it is pinned to (None: free); () without fixed neurons."""
    if not t.pins:
        return ()
    by_first = {}
    for b, block in zip(sigma, merged):
        held = {t.pins[k] for k in b if t.pins[k] is not None}
        by_first[block[0]] = next(iter(held)) if held else None
    return tuple(by_first[block[0]] for block in tau)


def _connects(tau, blob, placement, nz, occurrences, owner, m) -> bool:
    """Whether merged sites τ (and the blob, which joins every site it acts on) link all m sums."""
    parent = list(range(m))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    def join(groups):
        roots = {find(owner[j]) for block in groups for j in block}
        first = roots.pop() if roots else None
        for r in roots:
            parent[r] = first
    for block in tau:
        join([block])
    if blob is not None:
        for _b, zsites, chosen in blob_members(blob, placement):   # each member joins its own sites
            touched = set(zsites)
            for c in chosen:
                touched.update(occurrences[c][1])
            join([tau[k] for k in touched])
    return len({find(p) for p in range(m)}) == 1
