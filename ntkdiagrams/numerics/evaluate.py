"""Numerics: derived recursions compiled into vectorised numpy evaluators.

A recursion's right-hand side is a sum of terms, each

    coefficient(C_b, C_W, …) · Π T^{(ℓ)}_{β…} · Π ⟨Π_s f_s(z_{β_s})⟩_{K^{(ℓ)}} ,

with every label β one of the target's inputs α_1…α_m (possibly repeated).  Compilation
(:class:`CompiledRecursion`) turns each term into an ``einsum`` over arrays indexed by the
inputs: repeated labels are diagonals (``'aab->ab'``), labels a factor does not touch are
broadcast, so one call updates every input-index component of the layer at once.
Coefficients are lambdified from sympy (``sympy.lambdify`` to numpy: :func:`.activations.lambdify_numpy`).

Gaussian expectations are tensors E[a_1…a_k] = ⟨f_1(z_{a_1}) ⋯ f_k(z_{a_k})⟩_K over all input
tuples (:func:`ntkdiagrams.numerics.gaussian.expectation_tensor`), computed once per layer and shared
by every term and every statistic (:class:`GaussianCache`; a permuted integrand reuses the
tensor by a transpose).  One :class:`ntkdiagrams.numerics.gaussian.Quadrature` (compiled
kernel, thread pool) serves all layers of an :func:`evaluate` call and is closed at its end.

:func:`evaluate` iterates from the first layer (the rule file's ``first_layer`` values, e.g.
K^{(1)} = C_b + C_W x·x/n0) to layer L and returns per-layer arrays whose names and index
order are those of docs/conventions.md §3.  It never returns a wrong number in silence: a
Gaussian expectation that diverges or cannot be computed accurately
(:mod:`ntkdiagrams.numerics.gaussian.growth`) and a NaN/inf in any tensor after a layer
(:func:`check_finite`) are :class:`~ntkdiagrams.errors.NumericsError`; given the width n, the
result carries the size of the 1/n corrections (:mod:`ntkdiagrams.numerics.health`).
"""
from __future__ import annotations

import functools
import json
import string
import sys
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import sympy as sp

from .activations import Activation, lambdify_numpy, parse_activation
from .gaussian import Quadrature, expectation_tensor
from .gaussian.tensor import MAX_FACTORS, check_correlations
from .activations import z as zsym
from ..language.algebra import (ActivationDerivative, BlobSum, GaussianExpectation, InputGram, LayerTensor,
                                WidthRatio, Z)
from ..language.algebra import ell as LAYER
from .closure import check_closure, closure_limits
from .health import ExpansionWarning, describe, layer_health, summary
from .inputs import check_inputs
from ..errors import InputError, NumericsError, UnsupportedError
from ..engine.derivation import derive, resolve_rules
from ..engine.recursion import Recursion
from ..engine.request import RequestResult
from ..language.rulefile import RuleSet
from ..files import atomic_output
from ..settings import Settings, resolve
from .hyperparameters import SHORTHANDS, resolve_hyperparameters
from .stein import reduce_bare_z

#: keyword names of the MLP's hyper-parameters and their rule-file symbols (:data:`.hyperparameters.SHORTHANDS`)
HYPER = SHORTHANDS

#: stand-ins for the width ratios r_ℓ and r_{ℓ−1} in the compiled coefficients of a recursion of layer ℓ+1
RATIO_SYMBOLS = (sp.Dummy("r_ell"), sp.Dummy("r_ell_minus_1"))


@dataclass(frozen=True)
class _Factor:
    kind: str           # "tensor", "gauss", "gram"
    key: object         # tensor name / tuple of univariate functions
    labels: tuple       # target-axis positions of the factor's axes


@lru_cache(maxsize=4096)
def _canonical_slots(funcs: tuple):
    """A canonical order of the factors of an expectation (shared tensors up to transposition)."""
    order = sorted(range(len(funcs)), key=lambda s: sp.srepr(funcs[s]))
    return order, tuple(funcs[s] for s in order)


class GaussianCache:
    """Gaussian-expectation tensors of one layer, computed once and shared.

    ``quadrature``: the :class:`ntkdiagrams.numerics.gaussian.Quadrature` that computes them
    (owned by the caller, who closes it); None: a fresh one per tensor, from the environment's
    settings (:func:`ntkdiagrams.settings.resolve`)."""

    def __init__(self, K: np.ndarray, degree: int | None = None,
                 quadrature: Quadrature | None = None):
        self.K = K
        self.degree = degree
        self.quadrature = quadrature
        if quadrature is not None:
            # a kernel of the recursion: the O(N²) check of its correlations instead of the
            # eigenvalues (|ρ| ≤ 1 is what pairs need; larger tuples factor their own blocks)
            quadrature.remember("kernel", K, check_correlations)
        self._store: dict = {}
        self.computed = 0

    def get(self, funcs: tuple) -> np.ndarray:
        order, canon = _canonical_slots(funcs)
        if canon not in self._store:
            self._store[canon] = expectation_tensor(list(canon), self.K, degree=self.degree,
                                                    quadrature=self.quadrature)
            self.computed += 1
        arr = self._store[canon]
        # arr axes follow ``canon``; put them back in the order of ``funcs``
        inverse = np.argsort(order)
        return np.transpose(arr, inverse) if len(funcs) > 1 else arr

    def hermite(self, key, prev: dict) -> np.ndarray:
        """Σ_β T_β Π ⟨∂_β F⟩ by integration by parts (see :mod:`ntkdiagrams.numerics.hermite`), cached."""
        from .hermite import contract_blob
        if ("hermite", key) not in self._store:
            tensor, args, sites, axes = key
            # a product of blob tensors (two blobs on one site, order 1/n²): their outer product
            arr = prev[tensor] if isinstance(tensor, str) else \
                functools.reduce(np.multiply.outer, [prev[t] for t in tensor])
            self._store[("hermite", key)] = contract_blob(arr, args, list(sites), self.K,
                                                          lambda fs, K: self.get(tuple(fs)), axes)
        return self._store[("hermite", key)]


#: Meanings of the dNTK/ddNTK statistics for activations with kinks (see :func:`per_network`).
KINKS = ("per-network", "distributional")


def per_network(expr: sp.Expr) -> sp.Expr:
    """The recursion of an expectation of per-network objects, for an activation with kinks.

    The forward equations of the tangent fields (dH, ddIH, ddIIH; docs/conventions.md §2) carry the
    second and third derivatives σ^{(2)}(z_j), σ^{(3)}(z_j) of single neurons.  For ReLU-like σ
    these are δ(z_j) and δ'(z_j): zero for almost every network, so the objects of §2, network by
    network, have no such terms, and neither has their expectation (what the sampler measures).
    In the compact form every explicit σ^{(k≥2)} comes from that chain rule (the 1/n corrections
    to the law of z are kept as blob sums Σ_β T ⟨∂_β F⟩ and integrated by parts), so dropping them
    gives the per-network statistics; derivatives inside blob sums stay (they act on a smooth
    density).

    ``kinks="distributional"`` keeps the δ terms instead: the derivative of the *expected* NTK
    along a parameter step.  For kinked σ the two differ, because a step of size η moves a
    fraction O(η) of the neurons across the kink, each with an O(1) jump of σ^{(1)}."""
    def high(e):
        return isinstance(e, ActivationDerivative) and int(e.args[0]) >= 2

    def drop(f):
        return f.replace(high, lambda e: sp.S.Zero)
    rep = {}
    for b in expr.atoms(BlobSum):
        fs = [pe.args[0] for pe in b.sites]
        new = [drop(f) for f in fs]
        if any(f == 0 for f in new):
            rep[b] = sp.S.Zero
        elif new != fs:
            raise UnsupportedError(f"blob sum {b}: a site mixes chain-rule derivatives of σ additively")
    for g in expr.atoms(GaussianExpectation):
        f = drop(g.args[0])
        if f != g.args[0]:
            rep[g] = sp.S.Zero if f == 0 else g.func(f, *g.args[1:])
    return sp.expand(expr.xreplace(rep))


class CompiledRecursion:
    """A :class:`Recursion` compiled for one activation into einsum plans.

    ``symbols``: the arguments of the coefficient functions, in the order of the ``hyper`` values
    of :meth:`__call__`: the rule file's symbols and, for per-layer widths, :data:`RATIO_SYMBOLS`
    (r_ℓ, r_{ℓ−1}).  ``used``: the names of those that occur in a coefficient.

    ``kernel``: the class of the rule file's Gaussian tensor K (default: from ``rec.rules``).  Bare
    preactivations in expectations (shortcut fields) are then integrated by parts into kernel
    entries and derivatives of σ where σ is smooth enough (:mod:`ntkdiagrams.numerics.stein`), and
    otherwise integrated as the identity factor z."""

    def __init__(self, rec: Recursion, activation: Activation, symbols: Sequence[sp.Symbol],
                 blob_method: str = "auto", kinks: str = "per-network", kernel=None):
        self.rec = rec
        self.labels = rec.labels
        self.symbols = tuple(symbols)
        self.used: set = set()
        # activations with kinks: keep blob contractions whole (integration by parts);
        # blob_method "hermite"/"explicit" forces one way (tests compare the two)
        if blob_method not in ("auto", "hermite", "explicit"):
            raise InputError(f"blob_method must be auto, hermite or explicit; got {blob_method!r}")
        self.kinked = activation.has_delta(2) if blob_method == "auto" else blob_method == "hermite"
        rhs = rec.compact if (self.kinked and rec.compact is not None) else rec.rhs
        if kinks not in KINKS:
            raise InputError(f"kinks must be one of {', '.join(KINKS)}; got {kinks!r}")
        if kinks == "per-network" and activation.has_delta(2):
            rhs = per_network(rec.compact if rec.compact is not None else rec.rhs)
        if kernel is None and rec.rules is not None:
            kernel = rec.rules.tensors[rec.rules.gaussian_tensor()].cls
        if kernel is not None:
            rhs = reduce_bare_z(rhs, kernel, lambda f: not any(activation.has_delta(int(a.args[0]))
                                                               for a in f.atoms(ActivationDerivative)))
        self.terms = [c for t in sp.Add.make_args(rhs) if t != 0 for c in self._compile_term(t, activation)]
        self.initial_terms = [c for t in sp.Add.make_args(rec.initial) if t != 0
                              for c in self._compile_term(t, activation)]

    def _axis(self, label) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise UnsupportedError(f"label {label} of {self.rec.tensor}'s recursion is not a target input") from None

    def _compile_term(self, term: sp.Expr, act: Activation) -> list:
        """One term → [(coefficient function, factors)] (a blob sum may expand into several)."""
        blobs = [f for f in sp.Mul.make_args(term) if isinstance(f, BlobSum)]
        if blobs:
            b = blobs[0]
            if self.kinked:
                rest = sp.Mul(*[f for f in sp.Mul.make_args(term) if f is not b])
                out = self._compile_term(rest, act)
                return [(fn, facs + [self._hermite_factor(b, act)]) for fn, facs in out]
            return [c for t in sp.Add.make_args(sp.expand(term.xreplace({b: b.doit()})))
                    for c in self._compile_term(t, act)]
        coeff, factors = sp.Integer(1), []
        for f in sp.Mul.make_args(term):
            base, exp = f.as_base_exp()
            reps = int(exp) if (exp.is_Integer and exp > 0 and not base.is_number) else None
            if reps is None:
                base, reps = f, 1
            if isinstance(base, LayerTensor):
                factors += [_Factor("tensor", base.tensor_name, tuple(self._axis(a) for a in base.labels))] * reps
            elif isinstance(base, GaussianExpectation):
                fac = self._gauss_factor(base, act)
                if self.kinked and any(fn.has(sp.DiracDelta) and max_derivative_order(base) >= 3
                                       for fn in fac.key[0]):
                    raise UnsupportedError(f"{self.rec.tensor}: expectation {base} needs a derivative of a "
                                           f"Dirac delta of {act.name!r}")
                factors += [fac] * reps
            elif isinstance(base, InputGram):
                factors += [_Factor("gram", None, tuple(self._axis(a) for a in base.args))] * reps
            else:
                coeff *= f
        coeff = self._ratios(coeff)
        extra = coeff.free_symbols - set(self.symbols)
        self.used |= coeff.free_symbols & set(self.symbols)
        if extra:
            raise UnsupportedError(f"{self.rec.tensor}: coefficient {coeff} has symbols {extra} with no value")
        fn = lambdify_numpy(self.symbols, coeff)
        fn.expr = coeff  # the coefficient as sympy, for generated code (ntkdiagrams.generation)
        return [(fn, factors)]

    def _ratios(self, coeff: sp.Expr) -> sp.Expr:
        """Width ratios r(ℓ), r(ℓ−1) of the recursion's layer ℓ → :data:`RATIO_SYMBOLS`."""
        ratios = coeff.atoms(WidthRatio)
        if not ratios:
            return coeff
        rep = {}
        for r in ratios:
            shift = sp.expand(r.args[0] - LAYER)
            if shift not in (0, -1):
                raise UnsupportedError(f"{self.rec.tensor}: width ratio {r} is not of layer ℓ or ℓ−1")
            rep[r] = RATIO_SYMBOLS[0] if shift == 0 else RATIO_SYMBOLS[1]
        return coeff.xreplace(rep)

    def _hermite_factor(self, b: BlobSum, act: Activation) -> _Factor:
        """A whole blob sum, to be integrated by parts (see :mod:`ntkdiagrams.numerics.hermite`)."""
        summed = []
        sites = []
        for pe in b.sites:
            f, layer, *betas = pe.args
            grouped = self._gauss_factor(GaussianExpectation(f, layer), act)
            funcs, labels = grouped.key
            if len(labels) > MAX_FACTORS:
                raise UnsupportedError(f"{self.rec.tensor}: blob site {f} on more than {MAX_FACTORS} inputs")
            for x in betas:
                if x not in summed:
                    summed.append(x)
            sites.append((tuple(labels), tuple(funcs), tuple(summed.index(x) for x in betas)))
        # the blob tensor, or a product of them (two blobs on one site): the outer product
        tensors = []
        for t in sp.Mul.make_args(b.tensor):
            base, exp = t.as_base_exp()
            if not (isinstance(base, LayerTensor) and exp.is_Integer and exp > 0):
                raise UnsupportedError(f"{self.rec.tensor}: blob sum {b} with tensor factor {t}")
            tensors += [base] * int(exp)
        args = tuple(("leg", summed.index(a)) if a in summed else ("label", a)
                     for t in tensors for a in t.args[1:])
        axes = tuple(sorted({lab for labels, _f, _l in sites for lab in labels} |
                            {x for kind, x in args if kind == "label"}, key=str))
        name = tensors[0].tensor_name if len(tensors) == 1 else tuple(t.tensor_name for t in tensors)
        return _Factor("hermite", (name, args, tuple(sites), axes), axes)

    @staticmethod
    def _gauss_factor(ge: GaussianExpectation, act: Activation) -> _Factor:
        """⟨Π f(z_β)⟩_K as one univariate function of z per distinct label β: σ^{(k)}(z_β) is the
        activation's k-th derivative, a bare preactivation z_β (shortcut fields) the identity z."""
        per_label: dict = {}
        for f in sp.Mul.make_args(ge.integrand):
            base, exp = f.as_base_exp()
            if isinstance(base, Z):
                zarg, fn = base, zsym
            elif isinstance(base, ActivationDerivative) and isinstance(base.args[1], Z):
                zarg, fn = base.args[1], act.derivative(int(base.args[0]))
            else:
                raise UnsupportedError(f"cannot evaluate integrand factor {f}")
            per_label.setdefault(zarg.args[0], []).append(fn ** exp)
        labels = sorted(per_label, key=str)
        funcs = tuple(sp.Mul(*per_label[a]) for a in labels)
        return _Factor("gauss", (funcs, tuple(labels)), tuple(labels))

    def coefficients(self, hyper: tuple, initial: bool = False):
        """(c, factors) of every term whose coefficient c is nonzero at the layer's ``hyper``;
        NumericsError when a coefficient overflows."""
        for fn, factors in (self.initial_terms if initial else self.terms):
            try:
                c = float(fn(*hyper))
            except OverflowError:
                raise NumericsError(f"a coefficient of the recursion overflows in floating point for the "
                                    f"hyper-parameters {hyper}", reason="not finite") from None
            if c != 0:
                yield c, factors

    def __call__(self, prev: dict, cache: GaussianCache | None, hyper: tuple, n_inputs: int,
                 gram: np.ndarray | None = None, initial: bool = False) -> np.ndarray:
        m = len(self.labels)
        out = np.zeros((n_inputs,) * m)
        letters = string.ascii_lowercase
        target = letters[:m]
        for c, factors in self.coefficients(hyper, initial):
            arrays, subs = [], []
            for fac in factors:
                if fac.kind == "tensor":
                    arrays.append(prev[fac.key])
                    axes = fac.labels
                elif fac.kind == "hermite":
                    arrays.append(cache.hermite(fac.key, prev))
                    axes = tuple(self._axis(a) for a in fac.labels)
                elif fac.kind == "gram":
                    arrays.append(gram)
                    axes = fac.labels
                else:
                    funcs, labels = fac.key
                    arrays.append(cache.get(funcs))
                    axes = tuple(self._axis(a) for a in labels)
                subs.append("".join(letters[a] for a in axes))
            missing = set(range(m)) - {a for s in subs for a in (letters.index(ch) for ch in s)}
            for a in sorted(missing):
                arrays.append(np.ones(n_inputs))
                subs.append(letters[a])
            if arrays:
                out += c * np.einsum(",".join(subs) + "->" + target, *arrays, optimize=True)
            else:
                out += c
        return out


def derivable(rules: RuleSet, settings: Settings | None = None) -> list[str]:
    """The tensors of the rule file that the engine derives at the current truncation."""
    out = []
    for t in rules.tensors:
        try:
            derive(t, rules, settings=settings)
        except UnsupportedError:
            continue
        out.append(t)
    return out


def required_tensors(names: Sequence[str], rules: RuleSet, settings: Settings | None = None) -> list[str]:
    """The tensors needed to iterate ``names``: their recursions' layer-ℓ inputs, closed."""
    need, todo = [], list(names)
    gauss = rules.gaussian_tensor()
    if gauss not in todo:
        todo.append(gauss)
    while todo:
        t = todo.pop()
        if t in need:
            continue
        need.append(t)
        todo.extend(derive(t, rules, settings=settings).layer_tensors - set(need))
    order = [t for t in rules.tensors if t in need]
    return order


def max_derivative_order(expr: sp.Expr) -> int:
    """The highest activation derivative σ^{(k)} inside an expression's expectations."""
    return max((int(a.args[0]) for a in expr.atoms(ActivationDerivative)), default=0)


def evaluate(activation: str | Activation, depth: int, inputs, *, params: dict | None = None,
             cb=None, cw=None, lb=None, lw=None,
             stats: Sequence[str] | str = ("K", "G1", "V"), rules: RuleSet | str | None = None,
             degree: int | None = None, progress: bool | Callable = False,
             blob_method: str = "auto", extra: dict | None = None,
             kinks: str = "per-network", settings: Settings | None = None,
             width: int | None = None, allow_incomplete: bool = False, scheduler=None, out: str | None = None,
             block: int | None = None, meta: dict | None = None) -> Evaluation:
    """Iterate the derived recursions from layer 1 to ``depth`` for a data set.

    Parameters
    ----------
    activation: a shortcut or an expression in z (see :mod:`ntkdiagrams.numerics.activations`).
    depth: number of layers L ≥ 1.
    inputs: (N, n0) array of inputs x_α.
    params: the rule file's hyper-parameters by symbol name, e.g. ``{"C_W": 0.6, "xi": 1.0}`` for
        rules/resmlp.toml; each a number or a list of one value per layer 1..L, entry ℓ−1 being the
        value in the map that makes layer ℓ (entry 0: layer 1, from the data).  A width ratio
        (``[model] width_ratio = "r"``) is given the same way, entry ℓ−1 being r_ℓ = n_ℓ/n.
        Defaults: C_b = 0, C_W = 1, λ_b = λ_W = 1 where the rule file declares these names, and a
        rule file's ``[symbols.X] default``; a symbol that enters a needed recursion without a
        value is an InputError.  See :mod:`ntkdiagrams.numerics.hyperparameters`.
    cb, cw, lb, lw: shorthands for C_b, C_W, λ_b, λ_W (same forms); giving one of them and its
        symbol in ``params`` is an error.
    stats: tensor names (docs/conventions.md §3), or "all" for every tensor the rule file derives.
    kinks: for activations with kinks, the meaning of the dNTK/ddNTK statistics P…U:
        "per-network" (default: expectations of the objects of docs/conventions.md §2, network by network,
        as the sampler measures them) or "distributional" (keeping the δ(z) terms of the chain
        rule: the derivative of the expected NTK); see :func:`per_network`.  No effect on smooth
        σ or on K…F.
    extra: {name: Recursion} evaluated alongside (e.g. the coefficients of a correlator request,
        :mod:`ntkdiagrams.engine.request`): computed from the same layer-ℓ tensors, not fed back.
    settings: run-time settings of the Gaussian quadrature (compiled kernel, threads, allocator;
        :class:`ntkdiagrams.settings.Settings`); None: those of the environment
        (:func:`ntkdiagrams.settings.resolve`).  They never change a number.
    width: the hidden width n the result is meant for (optional, new): when given, the result
        carries the expansion health at that width (:mod:`ntkdiagrams.numerics.health`), and an
        :class:`~ntkdiagrams.numerics.health.ExpansionWarning` is issued when a ratio exceeds
        :data:`~ntkdiagrams.numerics.health.THRESHOLD`.  No effect on the numbers.
    allow_incomplete: a rule file with a shortcut (rules/resmlp.toml with ξ ≠ 0) leaves some
        first-order tensors open from layer 3 on (:mod:`ntkdiagrams.numerics.closure`): by default
        asking for them there is an UnsupportedError; True computes them anyway with a
        :class:`~ntkdiagrams.numerics.closure.ClosureWarning`, and the result's ``incomplete``
        names them.
    scheduler, out, block, meta: the blocked evaluator (:mod:`ntkdiagrams.numerics.blocked`; the
        ``dask`` extra), used when ``scheduler`` or ``out`` is given: tensors in blocks of ``block``
        inputs per axis, as zarr arrays on disk; ``scheduler`` (:mod:`ntkdiagrams.executors`: None for
        this process, ``"local[:W]"``, an address or a dask Client) runs the blocks as tasks; ``out``
        (FILE.zarr) keeps the arrays, with ``meta`` in the group's attributes, and the layer dicts
        then hold zarr arrays.  Same numbers as in memory to 1e-12; health only without ``out``.
        The result's ``blocked`` attribute: the run's figures per layer (tasks, quadrature tuples,
        bytes written and read; :func:`ntkdiagrams.numerics.blocked.evaluate_blocked`).

    Returns an :class:`Evaluation`: a list with one dict per layer, ``{"layer": ℓ, "K": (N,N),
    "G1": (N,N), "V": (N,N,N,N), …}`` (as before), with the new attributes ``health`` (None
    without ``width``; else the dict of :func:`ntkdiagrams.numerics.health.expansion_health`:
    ``{"width", "threshold", "healthy", "worst", "layers": [{"layer": ℓ, "G1": r, "V": r, …}]}``,
    ratios for every tensor the run computed, requested or needed), ``healthy`` (True/False,
    None without ``width``) and ``incomplete`` ({tensor: first layer where it misses first-order
    terms}; empty unless ``allow_incomplete``).

    Raises :class:`~ntkdiagrams.errors.NumericsError` (an InputError) naming the layer, the
    statistic and the inputs when a Gaussian expectation diverges or cannot be computed
    accurately (the activation's growth e^{c z²} against the variance:
    :mod:`ntkdiagrams.numerics.gaussian.growth`), or when a tensor has a NaN or infinite component
    (its first one is named).  No non-finite number is ever returned.
    """
    rules = resolve_rules(rules)
    settings = resolve(settings)
    if not isinstance(settings, Settings):
        raise InputError(f"settings must be a ntkdiagrams.settings.Settings; got {settings!r}")
    act = activation if isinstance(activation, Activation) else parse_activation(activation)
    if not isinstance(depth, (int, np.integer)) or depth < 1:
        raise InputError(f"depth must be an integer >= 1; got {depth!r}")
    x = check_inputs(inputs)
    names = derivable(rules, settings) if stats == "all" else list(stats)
    unknown = [s for s in names if s not in rules.tensors]
    if unknown:
        raise UnsupportedError(f"unknown or unsupported statistic(s) {unknown}; this rule file derives "
                               f"{sorted(rules.tensors)}")
    hp = resolve_hyperparameters(rules, int(depth), params, dict(cb=cb, cw=cw, lb=lb, lw=lw))
    keys = list(rules.symbols)
    symbols = [rules.symbols[k] for k in keys]
    if hp.ratio is not None:
        symbols += RATIO_SYMBOLS
    extra = dict(extra or {})
    needed = required_tensors(names + sorted(set().union(*(r.layer_tensors for r in extra.values()))), rules, settings)
    if kinks not in KINKS:
        raise InputError(f"kinks must be one of {', '.join(KINKS)}; got {kinks!r}")
    kernel = rules.tensors[rules.gaussian_tensor()].cls
    compiled = {t: CompiledRecursion(derive(t, rules, settings=settings), act, symbols, blob_method, kinks, kernel)
                for t in needed}
    extras = {t: CompiledRecursion(r, act, symbols, blob_method, kinks, kernel) for t, r in extra.items()}
    _require_values(hp, {**compiled, **extras})
    requires = {**{t: required_tensors([t], rules, settings) for t in names},
                **{t: required_tensors(sorted(r.layer_tensors), rules, settings) for t, r in extra.items()}}
    incomplete = closure_limits(rules, act, hp, list(requires), int(depth), requires.get)
    check_closure(incomplete, rules, act, allow_incomplete)
    gauss = rules.gaussian_tensor()
    N, n0 = x.shape
    gram = x @ x.T / n0
    report = _progress(progress)
    t0 = time.perf_counter()

    if width is not None and (isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1):
        raise InputError(f"width must be an integer >= 1; got {width!r}")
    health = []

    def record(layer: dict, full: dict) -> None:
        check_finite(full, layer["layer"])
        if width is not None:
            health.append((layer["layer"], layer_health(full, int(width))))

    if scheduler is not None or out is not None:  # blocks on disk, as tasks (numerics/blocked.py)
        from .blocked import evaluate_blocked
        hypers = [hp.layer(keys, ell) + (hp.ratios(max(ell - 1, 1)) if hp.ratio is not None else ())
                  for ell in range(1, depth + 1)]
        blocked, figures = evaluate_blocked(compiled, extras, names, gauss, hypers, x, degree=degree, settings=settings,
                                   scheduler=scheduler, out=out, block=block, meta=meta,
                                   progress=lambda ell, L: report(ell, L, time.perf_counter() - t0))
        if width is not None and out is None:
            for layer in blocked:
                health.append((layer["layer"], layer_health(layer, int(width))))
        result = Evaluation(blocked, summary(health, int(width)) if health else None, incomplete)
        result.blocked = figures
        if result.healthy is False:
            warnings.warn(describe(result.health), ExpansionWarning, stacklevel=2)
        return result
    hyper = hp.layer(keys, 1) + (hp.ratios(1) if hp.ratio is not None else ())
    prev = {t: compiled[t]({}, None, hyper, N, gram=gram, initial=True) for t in needed}
    more = {t: c({}, None, hyper, N, gram=gram, initial=True) for t, c in extras.items()}
    layers = [{"layer": 1, **{t: prev[t] for t in names}, **more}]
    record(layers[-1], {**prev, **more})
    # overflow warnings carry nothing that check_finite does not report, with the layer
    with Quadrature(settings) as quad, np.errstate(over="ignore", invalid="ignore"):
        for ell in range(1, depth):
            K = prev[gauss]
            cache = GaussianCache(0.5 * (K + K.T), degree, quad)
            hyper = hp.layer(keys, ell + 1) + (hp.ratios(ell) if hp.ratio is not None else ())
            more = _step(extras, prev, cache, hyper, N, ell + 1)
            prev = _step(compiled, prev, cache, hyper, N, ell + 1)
            layers.append({"layer": ell + 1, **{t: prev[t] for t in names}, **more})
            record(layers[-1], {**prev, **more})
            report(ell + 1, depth, time.perf_counter() - t0)
    result = Evaluation(layers, summary(health, int(width)) if width is not None else None, incomplete)
    if result.healthy is False:
        warnings.warn(describe(result.health), ExpansionWarning, stacklevel=2)
    return result


class Evaluation(list):
    """:func:`evaluate`'s result: the list of layer dicts, with the expansion health.

    ``health``: None, or :func:`ntkdiagrams.numerics.health.expansion_health`'s dict at the
    requested width; ``healthy``: its flag (None without a width); ``incomplete``: {tensor: first
    layer where it misses first-order terms} (:mod:`ntkdiagrams.numerics.closure`)."""

    def __init__(self, layers=(), health: dict | None = None, incomplete: dict | None = None):
        super().__init__(layers)
        self.health = health
        self.incomplete = dict(incomplete or {})
        #: None, or the blocked evaluator's figures per layer (``scheduler=`` / ``out=`` runs)
        self.blocked = None

    @property
    def healthy(self) -> bool | None:
        return None if self.health is None else bool(self.health["healthy"])


def _step(compiled: dict, prev: dict, cache: GaussianCache, hyper: tuple, N: int, layer: int) -> dict:
    """Layer ``layer``'s tensors from layer ℓ = layer − 1's, in order; a NumericsError from a
    Gaussian expectation gets the layer and the statistic."""
    out = {}
    for t, c in compiled.items():
        try:
            out[t] = c(prev, cache, hyper, N)
        except NumericsError as exc:
            raise NumericsError(f"layer {layer}, {t}: {exc}", layer=layer, statistic=t, inputs=exc.inputs,
                                reason=exc.reason, growth=exc.growth) from None
    return out


def check_finite(tensors: dict, layer: int) -> None:
    """NumericsError naming the statistic, the layer and the first NaN/inf component."""
    for t, arr in tensors.items():
        arr = np.asarray(arr)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise NumericsError(
                f"layer {layer}: {t}{list(idx)} = {arr[idx]} is not finite: the recursion overflowed "
                "(a kernel growing without bound: choose a smaller C_W, fewer layers or a "
                "slower-growing activation)", layer=layer, statistic=t, inputs=idx, reason="not finite")


def _require_values(hp, compiled: dict) -> None:
    """Every rule-file symbol (or width ratio) in a compiled coefficient must have a value."""
    used: dict = {}
    for t, c in compiled.items():
        for s in c.used:
            name = hp.ratio if s in RATIO_SYMBOLS else s.name
            used.setdefault(name, []).append(t)
    hp.require(used)


def evaluate_request(result: RequestResult, activation: str | Activation, depth: int, inputs, **kwargs) -> Evaluation:
    """Every coefficient of a correlator request per layer: ``[{"layer": ℓ, name: array over the
    request's input labels (one axis per distinct label, in order of appearance)}, …]``, names as
    :meth:`~ntkdiagrams.engine.request.RequestResult.key`; keyword arguments as :func:`evaluate`
    (``params, cb, cw, lb, lw, degree, kinks, …``).  Combine with ``result.predict(layer, pattern, width)``."""
    extra = {result.key(s): s.recursion for s in result.structures}
    return evaluate(activation, depth, inputs, stats=[], rules=result.rules, extra=extra, **kwargs)


def _progress(progress):
    if callable(progress):
        return progress
    if not progress:
        return lambda *a: None

    def show(layer, depth, elapsed):
        if elapsed > 2.0 or layer == depth:
            print(f"evaluate: layer {layer}/{depth}, {elapsed:.1f} s", file=sys.stderr, flush=True)
    return show


def write_result(path: str, meta: dict, layers: list[dict]) -> None:
    """Write the JSON layout {"meta": …, "layers": [{"layer": ℓ, "K": nested lists, …}]} (layer by
    layer) or npz (keys ``layer{ℓ}/{tensor}`` plus ``meta``, a JSON string; the arrays as they
    are, no text).

    The file is written to a temporary name in the same folder and renamed (``os.replace``), so
    no partial file is ever left, also when writing fails or is interrupted; a folder that does
    not exist or cannot be written raises :class:`~ntkdiagrams.errors.InputError`."""
    with atomic_output(path) as tmp:
        if path.endswith(".json"):
            # one layer at a time (the text of json.dump of the whole document, without its
            # nested lists in memory at once); standard JSON: no NaN/Infinity tokens
            with open(tmp, "w") as fh:
                fh.write('{"meta": ')
                json.dump(meta, fh, allow_nan=False)
                fh.write(', "layers": [')
                for i, layer in enumerate(layers):
                    fh.write(", " if i else "")
                    json.dump({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in layer.items()},
                              fh, allow_nan=False)
                fh.write("]}")
        else:
            flat = {f"layer{layer['layer']}/{k}": v for layer in layers for k, v in layer.items() if k != "layer"}
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=json.dumps(meta, allow_nan=False), **flat)
