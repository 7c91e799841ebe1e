"""Symbolic objects of the recursions: activation derivatives, Gaussian expectations, tensors.

All are sympy ``Function`` subclasses, so ``sympy.latex``, ``str`` and ``diff`` work on
them with no string pasting:

* :class:`ActivationDerivative` ``(k, x)``: σ^{(k)}(x).  ``diff`` raises k, so the Leibniz
  rule of ∂/∂z_β acting on products of activations is sympy's own.
* :class:`Z` ``(α)``: the layer-ℓ preactivation of one neuron on input α, the integration
  variable of a Gaussian expectation.
* :class:`GaussianExpectation` ``(f, ℓ)``: ⟨f⟩_{K^{(ℓ)}} = E[f(z)] for z ~ N(0, K^{(ℓ)}) over
  the inputs that f touches (PDLT's ⟨·⟩_K).
* layer tensors (K, G1, V, ...): made by :func:`tensor_class` with their index symmetries;
  arguments are put in canonical order at construction, so like terms merge by themselves
  (the ``AntiSymmetricTensor.__new__`` idea of sympy.physics.secondquant).
* :class:`InputGram` ``(α1, α2)``: x_{α1}·x_{α2}/n_0, the data of the first layer.
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import sympy as sp
from sympy.core.function import AppliedUndef

ell = sp.Symbol("ell", integer=True, positive=True)


def _with_power(latex_method):
    """sympy's printer asks a function raised to a power for its LaTeX with ``exp=``; wrap."""
    def _latex(self, printer, exp=None):
        tex = latex_method(self, printer)
        return tex if exp is None else r"\left(%s\right)^{%s}" % (tex, exp)
    return _latex


class ActivationDerivative(sp.Function):
    """σ^{(k)}(x): the k-th derivative of the activation evaluated at x."""

    nargs = 2
    is_real = True

    def fdiff(self, argindex=2):
        if argindex != 2:
            raise sp.ArgumentIndexError(self, argindex)
        k, x = self.args
        return ActivationDerivative(k + 1, x)

    @property
    def order(self) -> int:
        return int(self.args[0])

    @_with_power
    def _latex(self, printer):
        k, x = self.args
        k = int(k)
        mark = {0: "", 1: "'", 2: "''", 3: "'''"}.get(k, f"^{{({k})}}")
        arg = x.args[0] if isinstance(x, Z) else x
        return r"\sigma%s_{%s}" % (mark, printer._print(arg))

    def _sympystr(self, printer):
        k, x = self.args
        arg = x.args[0] if isinstance(x, Z) else x
        return "sigma" + "'" * int(k) + f"[{printer._print(arg)}]" if int(k) < 4 else \
            f"sigma^({int(k)})[{printer._print(arg)}]"


class Z(sp.Function):
    """The preactivation of one layer-ℓ neuron on input α: a Gaussian integration variable."""

    nargs = 1
    is_real = True
    _diff_wrt = True  # ∂/∂z_α is taken with respect to these objects

    @_with_power
    def _latex(self, printer):
        return r"z_{%s}" % printer._print(self.args[0])

    def _sympystr(self, printer):
        return f"z[{printer._print(self.args[0])}]"


def sigma(x, k: int = 0):
    """σ^{(k)}(x) as a sympy object."""
    return ActivationDerivative(sp.Integer(k), x)


def integrand_labels(expr: sp.Expr) -> list:
    """The input labels α of the variables Z(α) an integrand depends on, in canonical order."""
    return sorted({a.args[0] for a in expr.atoms(Z)}, key=sp.default_sort_key)


class GaussianExpectation(sp.Function):
    """⟨f⟩_{K^{(ℓ)}}: the expectation of f(z) for z ~ N(0, K^{(ℓ)}).

    Arguments ``(f, ℓ)``; f is a monomial in activation derivatives σ^{(k)}(Z(α)).
    Use :func:`gexp` to build it: it applies linearity and pulls constants out."""

    nargs = 2
    is_commutative = True
    is_real = True

    @property
    def integrand(self) -> sp.Expr:
        return self.args[0]

    @property
    def layer(self):
        return self.args[1]

    @property
    def labels(self) -> list:
        return integrand_labels(self.args[0])

    @_with_power
    def _latex(self, printer):
        f, layer = self.args
        return r"\left\langle %s \right\rangle_{K^{(%s)}}" % (printer._print(f), printer._print(layer))

    def _sympystr(self, printer):
        f, layer = self.args
        return f"<{printer._print(f)}>_K({printer._print(layer)})"


def gexp(expr: sp.Expr, layer) -> sp.Expr:
    """⟨expr⟩ at ``layer``: linear in ``expr``, constants (numbers, tensors) pulled out."""
    expr = sp.expand(expr)
    out = sp.Integer(0)
    for term in sp.Add.make_args(expr):
        inside, outside = [], []
        for f in sp.Mul.make_args(term):
            (inside if f.has(Z) else outside).append(f)
        if inside:
            out += sp.Mul(*outside) * GaussianExpectation(sp.Mul(*inside), layer)
        else:
            out += term
    return out


def gaussian(expr: sp.Expr, layer, kernel=None) -> sp.Expr:
    """:func:`gexp`, and with the kernel class K (the rule file's Gaussian tensor) the expectations
    of polynomials in bare preactivations done by Isserlis' theorem,
    ⟨z_{β1} ⋯ z_{β2m}⟩_K = Σ_{pairings} Π K_{ββ'} (odd ones vanish): the shortcut fields of residual
    networks.  Integrands with activations stay as they are."""
    out = gexp(expr, layer)
    if kernel is None:
        return out
    rep = {g: isserlis(g.args[0], g.args[1], kernel) for g in out.atoms(GaussianExpectation)
           if not g.args[0].has(ActivationDerivative)}
    return sp.expand(out.xreplace(rep)) if rep else out


def isserlis(poly: sp.Expr, layer, kernel) -> sp.Expr:
    """⟨poly(z)⟩ for z ~ N(0, K^{(layer)}), ``poly`` a polynomial in :class:`Z`, by Isserlis' theorem."""
    total = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(poly)):
        coeff, labels = sp.Integer(1), []
        for f in sp.Mul.make_args(term):
            base, e = f.as_base_exp()
            if isinstance(base, Z) and e.is_Integer and e > 0:
                labels += [base.args[0]] * int(e)
            elif f.has(Z):
                raise ValueError(f"isserlis: {f} is not a power of a preactivation")
            else:
                coeff *= f
        total += coeff * _pairings(tuple(labels), layer, kernel)
    return sp.expand(total)


def _pairings(labels: tuple, layer, kernel) -> sp.Expr:
    if not labels:
        return sp.Integer(1)
    if len(labels) % 2:
        return sp.Integer(0)
    first, rest = labels[0], labels[1:]
    return sp.Add(*[kernel(layer, first, rest[k]) * _pairings(rest[:k] + rest[k + 1:], layer, kernel)
                    for k in range(len(rest))])


class WidthRatio(sp.Function):
    """r_ℓ = n_ℓ / n: the width of hidden layer ℓ relative to the rule file's width symbol n, for rule
    files with per-layer widths (``[model] width_ratio``).  Argument: the layer.  Made per name by
    :func:`width_ratio_class`."""

    nargs = 1
    is_positive = True
    ratio_name = "r"
    latex_name = "r"

    @_with_power
    def _latex(self, printer):
        return r"%s_{%s}" % (self.latex_name, printer._print(self.args[0]))

    def _sympystr(self, printer):
        return f"{self.ratio_name}^({printer._print(self.args[0])})"


@lru_cache(maxsize=None)
def width_ratio_class(name: str, latex: str | None = None):
    """The sympy class of the width ratio ``name`` (one class per name and LaTeX name)."""
    return type(name, (WidthRatio,), {"ratio_name": name, "latex_name": latex or name})


class InputGram(sp.Function):
    """x_{α1}·x_{α2}/n_0: the normalised inner product of two inputs (layer-1 data)."""

    nargs = 2
    is_real = True

    def _canonical(cls, a, b):
        if sp.default_sort_key(b) < sp.default_sort_key(a):
            return cls(b, a)
        return None

    eval = classmethod(_canonical)  # sympy's construction hook (a classmethod named so)

    @_with_power
    def _latex(self, printer):
        a, b = (printer._print(x) for x in self.args)
        return r"\frac{x_{%s}\cdot x_{%s}}{n_0}" % (a, b)

    def _sympystr(self, printer):
        a, b = (printer._print(x) for x in self.args)
        return f"(x[{a}].x[{b}]/n0)"


class LayerTensor(sp.Function):
    """Base class of layer tensors T^{(ℓ)}_{α1...αk}: arguments ``(ℓ, α1, ..., αk)``.

    Subclasses carry ``tensor_name``, ``latex_name`` and ``symmetries`` (a tuple of
    permutations of the input slots under which the tensor is invariant)."""

    tensor_name = "T"
    latex_name = "T"
    symmetries: tuple = ()
    is_real = True

    def _canonical(cls, layer, *labels):
        canon = canonical_order(tuple(labels), cls.symmetries)
        if canon != tuple(labels):
            return cls(layer, *canon)
        return None

    eval = classmethod(_canonical)  # sympy's construction hook: canonical argument order

    @property
    def layer(self):
        return self.args[0]

    @property
    def labels(self) -> tuple:
        return self.args[1:]

    @_with_power
    def _latex(self, printer):
        layer, *labels = self.args
        idx = " ".join(printer._print(a) for a in labels)
        name, lay = self.latex_name, printer._print(layer)
        if name.endswith("}") and "^{" in name:  # e.g. G^{\{1\}}: one superscript, not two
            base, sup = name.split("^{", 1)
            return r"%s^{%s(%s)}_{%s}" % (base, sup[:-1], lay, idx)
        return r"%s^{(%s)}_{%s}" % (name, lay, idx)

    def _sympystr(self, printer):
        layer, *labels = self.args
        return f"{self.tensor_name}^({printer._print(layer)})[{','.join(printer._print(a) for a in labels)}]"


@lru_cache(maxsize=100_000)
def canonical_order(labels: tuple, symmetries: tuple) -> tuple:
    """The smallest (by sympy sort key) image of ``labels`` under the symmetry group (memoised;
    each label's sort key computed once)."""
    group = permutation_group(symmetries, len(labels))
    keys = [sp.default_sort_key(x) for x in labels]
    best = min(group, key=lambda p: tuple(keys[p[i]] for i in range(len(labels))))
    return tuple(labels[best[i]] for i in range(len(labels)))


@lru_cache(maxsize=None)
def permutation_group(gens: tuple, k: int) -> tuple:
    """All permutations generated by ``gens`` (a group acting on k slots)."""
    ident = tuple(range(k))
    group = {ident}
    frontier = [ident]
    while frontier:
        new = []
        for g in frontier:
            for h in gens:
                gh = tuple(g[h[i]] for i in range(k))
                if gh not in group:
                    group.add(gh)
                    new.append(gh)
        frontier = new
    return tuple(sorted(group))


def tensor_class(name: str, nlabels: int, symmetries=(), latex: str | None = None):
    """The sympy class of a layer tensor with the given slot symmetries: one class per
    (name, slots, symmetries, LaTeX name), so equal tensors compare equal."""
    return _tensor_class(name, nlabels, tuple(tuple(p) for p in symmetries), latex)


@lru_cache(maxsize=None)
def _tensor_class(name: str, nlabels: int, symmetries: tuple, latex: str | None):
    return type(name, (LayerTensor,), {"tensor_name": name, "latex_name": latex or name, "nargs": nlabels + 1,
                                       "symmetries": symmetries})


def is_field_application(expr, name: str) -> bool:
    return isinstance(expr, AppliedUndef) and expr.func.__name__ == name


def all_permutations(k: int):
    return itertools.permutations(range(k))


class PartialExpectation(sp.Function):
    """⟨∂_{β1}⋯∂_{βk} F⟩_{K^{(ℓ)}} with dummy labels β: arguments ``(F, ℓ, β1, …, βk)``.

    Kept unevaluated inside a :class:`BlobSum`; ``doit`` on the sum resolves the β's."""

    is_commutative = True
    is_real = True

    @_with_power
    def _latex(self, printer):
        f, layer, *betas = self.args
        ders = "".join(r"\partial_{%s}" % printer._print(b) for b in betas)
        return r"\left\langle %s\left(%s\right) \right\rangle_{K^{(%s)}}" % (ders, printer._print(f), printer._print(layer))

    def _sympystr(self, printer):
        f, layer, *betas = self.args
        ders = "".join(f"d[{printer._print(b)}]" for b in betas)
        return f"<{ders}({printer._print(f)})>_K({printer._print(layer)})"


class BlobSum(sp.Function):
    """Σ_{β1…βk} T^{(ℓ)}_{…β…} Π_sites ⟨∂_{β∈site} F_site⟩_K: one blob contracted with its sites.

    Arguments ``(T(ℓ, β…), PartialExpectation(F_1, ℓ, β…), …)`` with dummy β's.  The dummies are
    relabelled to a canonical form at construction, so the blob terms that differ only by the
    naming of summed labels (e.g. the three pairings of V) merge by themselves.  ``doit``
    gives the explicit form Σ_{β ∈ inputs of F} … with ∂/∂z_β applied by sympy."""

    is_commutative = True
    is_real = True

    def _canonical(cls, tensor, *sites):
        betas = _summed(sites)
        if len(betas) > 4:   # second-order blobs (V6, products of two blobs): no search over k! namings
            best = _site_canonical(tensor, sites, betas)
            if best != (tensor,) + tuple(sites):
                return cls(*best)
            return None
        best, best_key = None, None
        for perm in itertools.permutations(betas):
            rep = dict(zip(betas, perm))
            args = (tensor.xreplace(rep),) + tuple(_canonical_pe(s.xreplace(rep)) for s in sites)
            args = (args[0],) + tuple(sorted(args[1:], key=sp.default_sort_key))
            key = tuple(sp.default_sort_key(a) for a in args)
            if best_key is None or key < best_key:
                best, best_key = args, key
        if best != (tensor,) + tuple(sites):
            return cls(*best)
        return None

    eval = classmethod(_canonical)  # sympy's construction hook: canonical dummy labels

    @property
    def tensor(self):
        return self.args[0]

    @property
    def sites(self):
        return self.args[1:]

    def doit(self, **hints):
        tensor, *sites = self.args
        choices, order = [], []
        for s in sites:
            f, _layer, *betas = s.args
            labels = integrand_labels(f)
            for b in betas:
                order.append(b)
                choices.append(labels)
        total = sp.Integer(0)
        for values in itertools.product(*choices):
            rep = dict(zip(order, values))
            term = tensor.xreplace(rep)
            for s in sites:
                f, layer, *betas = s.args
                for b in betas:
                    f = z_derivative(f, rep[b])
                term *= gexp(sp.expand(f), layer)
            total += term
        return sp.expand(total)

    @_with_power
    def _latex(self, printer):
        tensor, *sites = self.args
        betas = " ".join(printer._print(b) for b in _summed(sites))
        body = " ".join(printer._print(a) for a in (tensor, *sites))
        return r"\sum_{%s} %s" % (betas, body)

    def _sympystr(self, printer):
        tensor, *sites = self.args
        betas = ",".join(printer._print(b) for b in _summed(sites))
        return f"Sum[{betas}]({'*'.join(printer._print(a) for a in (tensor, *sites))})"


def _summed(sites) -> list:
    """The summed (dummy) labels of a blob: those its derivatives act with."""
    out = []
    for s in sites:
        for b in s.args[2:]:
            if b not in out:
                out.append(b)
    return sorted(out, key=sp.default_sort_key)


def _site_canonical(tensor, sites, betas) -> tuple:
    """The canonical naming of many dummies (second-order blobs: V6, products of two blobs).

    The sum Σ_β Π T(…β…) Π_sites ⟨∂_{β∈site} F_site⟩ depends only on which site each tensor slot's
    β differentiates: write every slot as the rank of its site, put each tensor's slots in the
    canonical order of its symmetry group and sort the tensors; the smallest such form over the
    orderings of sites with equal functions is the canonical one, and its β's are named β_1, β_2, …
    slot by slot.  Equal sums get equal arguments, with a search over site orderings only (no
    k! over the dummies)."""
    factors = []
    for fac in sp.Mul.make_args(tensor):
        base, e = fac.as_base_exp()
        factors += [base] * (int(e) if e.is_Integer and e > 0 else 1)
    site_of = {b: k for k, st in enumerate(sites) for b in st.args[2:]}
    keys = [sp.default_sort_key((st.args[0], st.args[1], len(st.args) - 2)) for st in sites]
    ranks = sorted(range(len(sites)), key=lambda k: keys[k])
    groups = [list(g) for _key, g in itertools.groupby(ranks, key=lambda k: keys[k])]
    best = None
    for choice in itertools.product(*[itertools.permutations(g) for g in groups]):
        rank = {k: r for r, k in enumerate(k for g in choice for k in g)}
        forms = []
        for fac in factors:
            labels = tuple(sp.Integer(rank[site_of[a]]) if a in site_of else a for a in fac.args[1:])
            canon = canonical_order(labels, type(fac).symmetries)
            forms.append((sp.default_sort_key((sp.Symbol(type(fac).tensor_name), fac.args[0], canon)), type(fac),
                          fac.args[0], canon))
        forms.sort(key=lambda f: f[0])
        key = tuple(f[0] for f in forms)
        if best is None or key < best[0]:
            best = (key, forms, rank)
    _key, forms, rank = best
    names = iter(dummy_labels(len(betas)))
    per_site = {r: [] for r in range(len(sites))}
    built = []
    for _k, cls, layer, canon in forms:
        args = []
        for a in canon:
            if isinstance(a, sp.Integer) and a not in betas:
                b = next(names)
                per_site[int(a)].append(b)
                args.append(b)
            else:
                args.append(a)
        built.append(cls(layer, *args))
    by_rank = {r: k for k, r in rank.items()}
    parts = tuple(PartialExpectation(sites[by_rank[r]].args[0], sites[by_rank[r]].args[1], *per_site[r])
                  for r in range(len(sites)))
    return (sp.Mul(*built),) + parts


def _canonical_pe(pe):
    f, layer, *betas = pe.args
    return PartialExpectation(f, layer, *sorted(betas, key=sp.default_sort_key))


def dummy_labels(k: int) -> tuple:
    """β_1 … β_k: the summed labels of blob legs."""
    return tuple(sp.Symbol(f"beta_{q}") for q in range(1, k + 1))


def expand_blobs(expr: sp.Expr) -> sp.Expr:
    """The explicit form: every :class:`BlobSum` resolved into labelled terms."""
    return sp.expand(expr.replace(lambda e: isinstance(e, BlobSum), lambda e: e.doit()))


@lru_cache(maxsize=200_000)
def z_derivative(expr: sp.Expr, label) -> sp.Expr:
    """∂/∂z_label of a polynomial in σ^{(k)}(z_α): the Leibniz rule, memoised.

    Equal to ``sympy.diff(expr, Z(label))`` on such expressions (tested), but without sympy's
    general machinery, which dominates the cost of deriving the NTK statistics."""
    if isinstance(expr, sp.Add):
        return sp.Add(*[z_derivative(t, label) for t in expr.args])
    if isinstance(expr, sp.Mul):
        args = expr.args
        out = []
        for k, f in enumerate(args):
            d = z_derivative(f, label)
            if d != 0:
                out.append(sp.Mul(*args[:k], d, *args[k + 1:]))
        return sp.Add(*out)
    if isinstance(expr, sp.Pow):
        base, e = expr.args
        if e.is_Integer and e > 0:
            d = z_derivative(base, label)
            return e * base ** (e - 1) * d if d != 0 else sp.Integer(0)
        return sp.diff(expr, Z(label))
    if isinstance(expr, ActivationDerivative):
        k, x = expr.args
        return ActivationDerivative(k + 1, x) if x == Z(label) else (
            sp.Integer(0) if not x.has(Z(label)) else sp.diff(expr, Z(label)))
    if not expr.has(Z(label)):
        return sp.Integer(0)
    return sp.diff(expr, Z(label))
