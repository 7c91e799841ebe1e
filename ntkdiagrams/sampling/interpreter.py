"""The sampler's interpreter of rule files: the declarative layer map as a forward program.

The sampler is the package's ground truth, so it reads the architecture from the rule file
itself (:mod:`ntkdiagrams.language.rulefile`: the parsed layer maps, the parameters with
their variances and learning rates, the width declarations) and shares no code with the
diagram engine.  A layer map's right-hand side (a sympy expression of the restricted parser)
is split into terms, each ``coefficient × core`` with the coefficient a product of numbers,
hyper-parameters and widths, and each core one of

=========================================  =========================================
``P(i)``, P with indices ["out"]            bias add:           z_i += c P_i
``sum(j, P(i, j) * sigma(z(j, a)))``        matrix–vector:      z_i += c Σ_j P_ij σ(z_j)
``sum(j, P(i, j) * x(j, a))`` (layer 1)     matrix–vector on the data
``z(i, a)`` (not layer 1)                   shortcut:           z_i += c z_i of layer ℓ
=========================================  =========================================

(docs/conventions.md §1, §8; exactly one matrix–vector term, at most one bias and one
shortcut per map).  Anything else is refused with an :class:`~ntkdiagrams.errors.UnsupportedError`.
A coefficient c of a parameter term is absorbed into the parameter, exactly: c P with
P ~ N(0, v) and learning rate η is the parameter P' = c P ~ N(0, c² v) with learning rate
c² η (the same function, the same NTK λ (∂z/∂P)² = c² λ (∂z/∂P')²).

Numbers: every expression (variances, learning rates, coefficients) is evaluated per layer
ℓ = 1..L with the hyper-parameters' values of that layer (by the rule file's symbol names) and
the rule file's width symbol set to the fan-in of that layer (n0 for layer 1, n_{ℓ−1} after:
``C_W / n`` is C_W/n_{ℓ−1}); the tree is walked with float arithmetic (a quotient a/b is
one division), so ``C_W / n`` gives the same float as the MLP's ``cw / fan_in``.  Hidden
widths are n, or n_ℓ = r_ℓ n with ``[model] width_ratio``; the sampler's last layer has the
two neurons 0 and 1 its statistics use.

The result, :class:`NetworkProgram`, draws ensembles (:meth:`NetworkProgram.draw`: per layer
the weights, then the bias, every network's normals contiguous) that
:mod:`ntkdiagrams.sampling.networks` runs.  For ``rules/mlp.toml`` the networks and every
per-network object are bit-identical to :func:`~ntkdiagrams.sampling.networks.draw_ensemble`'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import sympy as sp
from sympy.core.function import AppliedUndef

from ..errors import InputError, UnsupportedError
from ..language.algebra import ActivationDerivative
from ..language.rulefile import LayerMap, RuleSet, load_rules
from ..numerics.hyperparameters import default_values
from .model import ModelSpec
from .networks import Ensemble, draw_parameters

__all__ = ["Term", "MapProgram", "LayerProgram", "NetworkProgram", "interpret_map", "interpret_rules",
           "build_program", "resolve_rules", "scalar_value"]

KNOWN_TERMS = ("b(i)", "sum(j, W(i, j) * sigma(z(j, a)))", "xi * z(i, a)",
               "and in the first layer sum(j, W(i, j) * x(j, a))")


@dataclass(frozen=True)
class Term:
    """One term ``coefficient × core`` of a layer map: kind "bias", "dense" or "shortcut"."""

    kind: str
    coefficient: sp.Expr
    parameter: str | None = None   # bias, dense: the parameter's name
    source: str | None = None      # dense: "sigma" (σ(z) of layer ℓ) or "data" (x, layer 1)


@dataclass(frozen=True)
class MapProgram:
    """A layer map as terms: one dense term, an optional bias and an optional shortcut."""

    text: str
    dense: Term
    bias: Term | None
    shortcut: Term | None


def _refuse(where: str, what: str) -> UnsupportedError:
    return UnsupportedError(f"{where}: {what}; the sampler's interpreter knows the terms "
                            + ", ".join(KNOWN_TERMS) + " (times numbers and hyper-parameters)")


def _split(term: sp.Expr, where: str, free) -> tuple[sp.Expr, sp.Expr]:
    """term = coefficient × core: the core is the one factor holding a function or a sum."""
    coeff, core = [], []
    for f in sp.Mul.make_args(term):
        (core if f.has(AppliedUndef, sp.Sum, ActivationDerivative) or (f.free_symbols & free) else coeff).append(f)
    if len(core) != 1:
        raise _refuse(where, f"term {term} is not a coefficient times one parameter, sum or field")
    return sp.Mul(*coeff), core[0]


def interpret_map(lm: LayerMap, rules: RuleSet, first: bool) -> MapProgram:
    """The terms of a layer map (``first``: the first layer's map, acting on the data x)."""
    where = f"{rules.path}: [{'first_layer' if first else 'layer_map'}.{lm.field}] rhs = {lm.text!r}"
    neuron, inp = lm.neuron, lm.input
    idx = {neuron, inp, *lm.sum_indices}
    found = {"bias": [], "dense": [], "shortcut": []}
    for term in sp.Add.make_args(lm.rhs):
        coeff, core = _split(term, where, idx)
        if isinstance(core, AppliedUndef) and core.func.__name__ in rules.parameters:
            spec = rules.parameters[core.func.__name__]
            if spec.indices != ("out",) or core.args != (neuron,):
                raise _refuse(where, f"parameter term {core} outside a sum is not a bias {core.func.__name__}({neuron})")
            found["bias"].append(Term("bias", coeff, parameter=spec.name))
        elif isinstance(core, AppliedUndef) and core.func.__name__ in rules.fields:
            if first or core.func.__name__ != "z" or core.args != (neuron, inp):
                raise _refuse(where, f"field term {core} is not the shortcut z({neuron}, {inp}) of a hidden layer")
            found["shortcut"].append(Term("shortcut", coeff))
        elif isinstance(core, sp.Sum):
            found["dense"].append(_dense(core, coeff, lm, rules, first, where))
        else:
            raise _refuse(where, f"term {term} is not one of them")
    for kind, terms in found.items():
        if len(terms) > 1 or (kind == "dense" and not terms):
            raise _refuse(where, f"{len(terms)} {kind} terms (the interpreter takes "
                                 f"{'exactly one' if kind == 'dense' else 'at most one'})")
    return MapProgram(lm.text, found["dense"][0], (found["bias"] or [None])[0], (found["shortcut"] or [None])[0])


def _dense(core: sp.Sum, coeff: sp.Expr, lm: LayerMap, rules: RuleSet, first: bool, where: str) -> Term:
    if len(core.limits) != 1 or core.limits[0][0] not in lm.sum_indices or core.limits[0][1] != 1:
        raise _refuse(where, f"sum {core} is not one sum over a neuron index")
    j = core.limits[0][0]
    inner, param, source = [], None, None
    for f in sp.Mul.make_args(core.function):
        if isinstance(f, AppliedUndef) and f.func.__name__ in rules.parameters and param is None:
            spec = rules.parameters[f.func.__name__]
            if spec.indices != ("out", "in") or f.args != (lm.neuron, j):
                raise _refuse(where, f"{f} in a sum is not a weight {f.func.__name__}({lm.neuron}, {j}) "
                                     "with indices ['out', 'in']")
            param = spec.name
        elif (not first and isinstance(f, ActivationDerivative) and f.args[0] == 0
              and isinstance(f.args[1], AppliedUndef) and f.args[1].func.__name__ == "z"
              and f.args[1].args == (j, lm.input) and source is None):
            source = "sigma"
        elif (first and isinstance(f, AppliedUndef) and f.func.__name__ == "x"
              and f.args == (j, lm.input) and source is None):
            source = "data"
        elif not f.has(AppliedUndef, sp.Sum, ActivationDerivative) and j not in f.free_symbols:
            inner.append(f)
        else:
            raise _refuse(where, f"factor {f} of the sum {core}")
    if param is None or source is None:
        raise _refuse(where, f"sum {core} is not a weight times {'x(j, a)' if first else 'sigma(z(j, a))'}")
    return Term("dense", coeff * sp.Mul(*inner), parameter=param, source=source)


def interpret_rules(rules: RuleSet) -> tuple[MapProgram, MapProgram]:
    """(first layer, hidden layers) of a rule file; the sampler interprets the map of z only."""
    others = sorted(set(rules.layer_maps) - {"z"})
    if others:
        raise UnsupportedError(f"{rules.path}: layer maps of {others}: the sampler interprets the map of z only")
    if "z" not in rules.first_layer:
        raise UnsupportedError(f"{rules.path}: no [first_layer.z]; the sampler needs the first layer's map")
    return interpret_map(rules.first_layer["z"], rules, True), interpret_map(rules.layer_maps["z"], rules, False)


# ----------------------------------------------------------------------------- numbers

def scalar_value(expr: sp.Expr, values: dict, where: str = "expression") -> float:
    """The float value of a rule-file expression (numbers, symbols, + − × / and powers).

    ``values``: {symbol name: float}.  A product's factors with exponent −1 are divided out
    by one division at the end, so ``C_W / n`` is ``C_W / n`` in floating point."""
    if expr.is_Number:
        return float(expr)
    if isinstance(expr, sp.Symbol):
        if expr.name not in values:
            raise InputError(f"{where}: symbol {expr.name} has no value")
        return float(values[expr.name])
    if isinstance(expr, sp.Add):
        args = [scalar_value(a, values, where) for a in expr.args]
        total = args[0]
        for a in args[1:]:
            total = total + a
        return total
    if isinstance(expr, sp.Mul):
        num, den = None, None
        for f in expr.args:
            if isinstance(f, sp.Pow) and f.exp == -1:
                v = scalar_value(f.base, values, where)
                den = v if den is None else den * v
            else:
                v = scalar_value(f, values, where)
                num = v if num is None else num * v
        num = 1.0 if num is None else num
        return num if den is None else num / den
    if isinstance(expr, sp.Pow):
        base = scalar_value(expr.base, values, where)
        if expr.exp == -1:
            return 1.0 / base
        return float(base ** scalar_value(expr.exp, values, where))
    raise UnsupportedError(f"{where}: cannot evaluate {expr} numerically (numbers, symbols, + - * / ** only)")


@dataclass(frozen=True)
class LayerProgram:
    """Layer ℓ as numbers: z = ξ z^(ℓ−1) + b + W σ(z^(ℓ−1)) with W ~ weight_std · N(0, 1) of
    shape (width, fan_in), per-entry learning rate weight_rate, and likewise the bias
    (``bias_std = None``: no bias) and the shortcut (``shortcut = None``: none)."""

    fan_in: int
    width: int
    weight_std: float
    weight_rate: float
    bias_std: float | None
    bias_rate: float | None
    shortcut: float | None


@dataclass(frozen=True)
class NetworkProgram:
    """The forward program of a rule file for one model: its layers, and what it was built from."""

    rules: str
    layers: tuple
    params: dict      # {symbol name: value or per-layer list}, what was used

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def widths(self) -> list[int]:
        return [self.layers[0].fan_in] + [lay.width for lay in self.layers]

    def parameter_count(self) -> int:
        return sum(lay.width * lay.fan_in + (lay.width if lay.bias_std is not None else 0) for lay in self.layers)

    def draw(self, rng: np.random.Generator, count: int, x: np.ndarray) -> Ensemble:
        """``count`` networks of this program (see :func:`~ntkdiagrams.sampling.networks.draw_parameters`)."""
        W, b = draw_parameters(rng, count, self.widths, [lay.weight_std for lay in self.layers],
                               [lay.bias_std for lay in self.layers])
        return Ensemble(W=W, b=b, x=np.asarray(x, dtype=float),
                        xi=[lay.shortcut for lay in self.layers],
                        weight_rates=[lay.weight_rate for lay in self.layers],
                        bias_rates=[lay.bias_rate for lay in self.layers])

    def meta(self) -> dict:
        return {"rules": self.rules, "params": self.params, "widths": self.widths}


def resolve_rules(rules) -> RuleSet:
    """A RuleSet from a RuleSet, a built-in name or a path (None: the MLP)."""
    if rules is None:
        return load_rules("mlp")
    if isinstance(rules, RuleSet):
        return rules
    if isinstance(rules, str):
        return load_rules(rules)
    raise InputError(f"rules must be a rule-file name, a path or a RuleSet; got {type(rules).__name__}")


def _per_layer(name: str, value, L: int, allowed=None) -> list:
    allowed = allowed or (L,)
    if isinstance(value, list):
        if len(value) not in allowed:
            raise InputError(f"{name}: {len(value)} per-layer values for depth {L} (need "
                             + " or ".join(map(str, allowed)) + ")")
        return list(value) + [value[-1]] * (L - len(value))
    return [value] * L


def build_program(model: ModelSpec, n0: int) -> NetworkProgram:
    """The forward program of ``model`` (its rule file and hyper-parameters) on inputs of
    dimension ``n0``.  Raises InputError for a missing, unknown or bad value, UnsupportedError
    for a layer map the interpreter does not know."""
    rules = resolve_rules(model.rules)
    first, hidden = interpret_rules(rules)
    L, n = int(model.depth), int(model.width)
    given = model.hyper_parameters()
    ratio = rules.width_ratio.ratio_name if rules.width_ratio is not None else None
    names = set(rules.symbols) | ({ratio} if ratio else set())
    unknown = sorted(set(given) - names)
    if unknown:
        raise InputError(f"parameter(s) {', '.join(unknown)} are not symbols of rule file {rules.name} "
                         f"(its symbols: {', '.join(sorted(names)) or 'none'})")
    # the defaults of evaluate (C_b = 0, C_W = 1, λ = 1 where declared; a rule file's own defaults)
    given = {**default_values(rules), **given}
    values = {k: _per_layer(k, v, L) for k, v in given.items() if k != ratio}
    # widths: n0, hidden n_ℓ = r_ℓ n (ℓ = 1..L-1), output 2
    hidden_w = [n] * (L - 1)
    if ratio is not None and L > 1:
        if ratio not in given:
            raise InputError(f"rule file {rules.name} has per-layer widths n_l = {ratio}_l n: "
                             f"give {ratio} (one value per hidden layer)")
        rs = _per_layer(ratio, given[ratio], L - 1, (L - 1, L))[:L - 1]
        hidden_w = []
        for ell, r in enumerate(rs, 1):
            w = r * n
            if not np.isfinite(w) or abs(w - round(w)) > 1e-9 * max(1.0, abs(w)) or round(w) < 2:
                raise InputError(f"{ratio}_{ell} n = {r} × {n} = {w} is not a width >= 2")
            hidden_w.append(int(round(w)))
    widths = [int(n0)] + hidden_w + [2]
    layers = []
    for ell in range(1, L + 1):
        mp = first if ell == 1 else hidden
        vals = {k: v[ell - 1] for k, v in values.items()}
        vals[rules.width.name] = float(widths[ell - 1])          # the fan-in of layer ℓ
        vals[rules.input_width.name] = float(widths[0])
        where = f"rule file {rules.name}, layer {ell}"
        layers.append(_layer(mp, rules, vals, widths[ell - 1], widths[ell], where))
    params = {k: given[k] for k in sorted(given)}
    return NetworkProgram(rules=model.rules_name if not isinstance(model.rules, RuleSet) else rules.name,
                          layers=tuple(layers), params=params)


def _layer(mp: MapProgram, rules: RuleSet, vals: dict, fan_in: int, width: int, where: str) -> LayerProgram:
    def value(expr, what):
        v = scalar_value(expr, vals, f"{where}: {what} = {expr}")
        if not np.isfinite(v):
            raise InputError(f"{where}: {what} = {expr} is {v}; it must be finite")
        return v

    def parameter(term: Term):
        spec = rules.parameters[term.parameter]
        var = value(spec.variance, f"variance of {spec.name}")
        rate = value(spec.learning_rate, f"learning rate of {spec.name}") if spec.learning_rate is not None else 0.0
        if term.coefficient != 1:
            c = value(term.coefficient, f"coefficient of {spec.name}")
            var, rate = var * c * c, rate * c * c
        if var < 0:
            raise InputError(f"{where}: the variance of {spec.name} ({spec.variance}) is {var}; a variance "
                             "must be finite and >= 0")
        return float(np.sqrt(var)), float(rate)

    w_std, w_rate = parameter(mp.dense)
    b_std = b_rate = xi = None
    if mp.bias is not None:
        b_std, b_rate = parameter(mp.bias)
    if mp.shortcut is not None:
        if width > fan_in:
            raise InputError(f"{where}: a shortcut needs width <= fan-in; got {width} > {fan_in}")
        xi = value(mp.shortcut.coefficient, "shortcut weight")
    return LayerProgram(fan_in, width, w_std, w_rate, b_std, b_rate, xi)
