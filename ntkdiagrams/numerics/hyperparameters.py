"""Numerical values of a rule file's hyper-parameters, layer by layer.

A rule file declares its hyper-parameters as ``[symbols.NAME]`` (mlp.toml: C_b, C_W, λ_b, λ_W;
resmlp.toml adds the shortcut weight ξ) and, optionally, per-layer widths ``[model] width_ratio
= "r"`` (docs/rules.md).  Values are given by those names,

    params = {"C_W": 0.6, "xi": 1.0, "C_b": [0.0, 0.1, 0.1, 0.1]}

each a number (every layer) or a list of one value per layer 1..L.  Which layer an entry is for
(docs/conventions.md §1, §3):

* a symbol: entry ℓ−1 is the value in the map that makes layer ℓ, i.e. the hyper-parameter of
  the parameters of layer ℓ (C_b^{(ℓ)}, C_W^{(ℓ)}, λ^{(ℓ)}) and the shortcut weight of
  z^{(ℓ)} = ξ^{(ℓ)} z^{(ℓ−1)} + ….  Entry 0 acts on the data (layer 1); a symbol that the
  first-layer map does not use (ξ) ignores it.
* the width ratio r: entry ℓ−1 is r_ℓ = n_ℓ / n, the width of hidden layer ℓ.  The map that makes
  layer ℓ+1 uses r_ℓ and r_{ℓ−1}; r_0 only multiplies layer-1 tensors of order ≥ 1, which vanish
  (the first layer is Gaussian), and is set to 1; the last entry r_L enters no statistic of layers
  ≤ L (layer-L statistics are expanded in 1/n_{L−1}), so L − 1 values r_1 … r_{L−1} may be given
  instead of L (as for the sampler's ModelSpec).

Defaults: :data:`MLP_DEFAULTS` (C_b = 0, C_W = 1, λ_b = λ_W = 1) for those names where the rule
file declares them, overridden by a rule file's own ``[symbols.X] default``; any other symbol (ξ,
r) has no default.  :data:`SHORTHANDS` are the keyword names of the MLP (cb, cw, lb, lw).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import InputError
from ..language.rulefile import RuleSet

__all__ = ["MLP_DEFAULTS", "SHORTHANDS", "HyperParameters", "default_values", "resolve_hyperparameters"]

#: keyword shorthands of the MLP (``evaluate(cb=…)``, ``--cb``) and the rule-file symbols they set
SHORTHANDS = {"cb": "C_b", "cw": "C_W", "lb": "lambda_b", "lw": "lambda_W"}

#: defaults of the MLP's hyper-parameters, used where a rule file declares these names
MLP_DEFAULTS = {"C_b": 0.0, "C_W": 1.0, "lambda_b": 1.0, "lambda_W": 1.0}


def _where(rules: RuleSet) -> str:
    return f"rule file {rules.name!r} ({rules.path})"


def _names(rules: RuleSet) -> list[str]:
    """The names a value can be given for: the declared symbols and the width ratio."""
    out = list(rules.symbols)
    if rules.width_ratio is not None:
        out.append(rules.width_ratio.ratio_name)
    return out


@dataclass(frozen=True)
class HyperParameters:
    """Per-layer values of a rule file's hyper-parameters (see the module docstring).

    ``values``: name → tuple of ``depth`` floats (entry ℓ−1 for layer ℓ), for every name that has a
    value; ``given``: the names the caller set (the others are defaults)."""

    rules: RuleSet
    depth: int
    values: dict
    given: frozenset

    @property
    def ratio(self) -> str | None:
        """The name of the rule file's width ratio, or None."""
        return self.rules.width_ratio.ratio_name if self.rules.width_ratio is not None else None

    def layer(self, names, ell: int) -> tuple:
        """Values of ``names`` in the map that makes layer ``ell`` (1 ≤ ell ≤ depth); NaN for a
        name without a value (it must not enter: see :meth:`require`)."""
        return tuple(self.values[k][ell - 1] if k in self.values else float("nan") for k in names)

    def ratios(self, ell: int) -> tuple:
        """(r_ℓ, r_{ℓ−1}) for the map that makes layer ℓ+1 (r_0 = 1: it multiplies vanishing tensors)."""
        r = self.values.get(self.ratio) if self.ratio is not None else None
        if r is None:
            return (float("nan"), float("nan"))
        return (r[ell - 1], r[ell - 2] if ell >= 2 else 1.0)

    def require(self, used: Mapping[str, list]) -> None:
        """InputError naming every symbol that enters a recursion (``used``: name → the tensors
        whose recursions hold it) and has no value."""
        missing = [k for k in used if k not in self.values]
        if missing:
            parts = [f"{k} (in the recursion of {', '.join(sorted(set(used[k])))})" for k in missing]
            example = ", ".join(f"{k!r}: …" for k in missing)
            flags = " ".join(f"--param {k}=…" for k in missing)
            raise InputError(f"{_where(self.rules)}: no value for {'; '.join(parts)}; give it as "
                             f"params={{{example}}} (command line: {flags}), a number or one per layer "
                             f"1..{self.depth}")

    def meta(self) -> dict:
        """Name → value (a number when equal in every layer, else the list) for JSON files."""
        out = {}
        for k, v in self.values.items():
            out[k] = v[0] if all(x == v[0] for x in v) else list(v)
        return out


def _per_layer(value, depth: int, name: str, where: str, ratio: bool = False) -> tuple:
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise InputError(f"{where}: {name} must be a number or a list of numbers; got {value!r}")
    try:
        arr = np.atleast_1d(np.asarray(value, dtype=float))
    except (TypeError, ValueError):
        raise InputError(f"{where}: {name} must be a number or a list of numbers; got {value!r}") from None
    if arr.ndim != 1:
        raise InputError(f"{where}: {name} must be a number or a flat list; got shape {arr.shape}")
    if ratio and arr.size == depth - 1 and depth > 2:
        arr = np.append(arr, arr[-1])  # r_1 … r_{L−1}: r_L enters nothing
    if arr.size == 1:
        vals = (float(arr[0]),) * depth
    elif arr.size != depth:
        raise InputError(f"{name}: give one value or one per layer ({depth}); got {arr.size}")
    else:
        vals = tuple(float(v) for v in arr)
    if not all(np.isfinite(vals)):
        raise InputError(f"{where}: {name} must be finite; got {list(vals)}")
    return vals


def resolve_hyperparameters(rules: RuleSet, depth: int, params: Mapping | None = None,
                            shorthands: Mapping | None = None) -> HyperParameters:
    """The per-layer values for ``rules``: ``params`` by symbol name, ``shorthands`` (cb, cw, lb,
    lw → C_b, C_W, λ_b, λ_W; None entries are not given), then the defaults.

    InputError for: a name the rule file does not declare (listing its names), a shorthand whose
    symbol the rule file lacks, a symbol given both ways, a value that is not a number or one per
    layer, a value that is not finite, a width ratio ≤ 0, and a parameter whose prior variance
    (``[parameters.P] variance``) is negative in some layer."""
    where = _where(rules)
    names = _names(rules)
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise InputError(f"params must be a dict {{name: value}}; got {type(params).__name__}")
    given = {}
    for k, v in params.items():
        if k not in names:
            hint = f" ({k} is the keyword shorthand for {SHORTHANDS[k]})" if k in SHORTHANDS else ""
            raise InputError(f"{where}: unknown hyper-parameter {k!r}{hint}; its names are "
                             f"{', '.join(names) or '(none)'}")
        given[k] = v
    for short, v in (shorthands or {}).items():
        if v is None:
            continue
        sym = SHORTHANDS[short]
        if sym not in rules.symbols:
            raise InputError(f"{where}: {short} sets {sym}, which this rule file does not declare; "
                             f"its names are {', '.join(names) or '(none)'}")
        if sym in given:
            raise InputError(f"{sym} given twice: by its shorthand {short} (--{short}) and by name (params, "
                             f"--param {sym}=…); give one")
        given[sym] = v
    ratio = rules.width_ratio.ratio_name if rules.width_ratio is not None else None
    values = {k: _per_layer(v, depth, k, where, ratio=k == ratio) for k, v in given.items()}
    for k, v in default_values(rules).items():
        values.setdefault(k, (v,) * depth)
    hp = HyperParameters(rules, depth, values, frozenset(given))
    if hp.ratio is not None and hp.ratio in values and min(values[hp.ratio]) <= 0:
        raise InputError(f"{where}: the width ratios {hp.ratio} must be > 0; got {list(values[hp.ratio])}")
    _check_variances(hp)
    return hp


def default_values(rules: RuleSet) -> dict:
    """Name → default value of the rule file's symbols that have one: a ``[symbols.X] default``,
    else :data:`MLP_DEFAULTS` for the MLP's names (the sampler's model uses the same defaults)."""
    out = {}
    for k in rules.symbols:
        if k in rules.symbol_defaults:
            out[k] = rules.symbol_defaults[k]
        elif k in MLP_DEFAULTS:
            out[k] = MLP_DEFAULTS[k]
    return out


def _check_variances(hp: HyperParameters) -> None:
    """Every prior variance (at n = n0 = 1, so C_W/n counts as C_W) must be >= 0 in every layer
    where all its symbols have values."""
    rules = hp.rules
    scale = {rules.width: 1, rules.input_width: 1}
    for p in rules.parameters.values():
        var = p.variance.xreplace(scale)
        syms = sorted(s.name for s in var.free_symbols)
        if any(s not in hp.values for s in syms):
            continue
        for ell in range(1, hp.depth + 1):
            at = dict(zip(syms, hp.layer(syms, ell)))
            v = float(var.xreplace({rules.symbols[s]: at[s] for s in syms}))
            if v < 0:
                shown = ", ".join(f"{s} = {at[s]:g}" for s in syms)
                raise InputError(f"{_where(rules)}: the prior variance {p.variance} of parameter {p.name} is "
                                 f"negative in layer {ell} ({shown}): a variance must be >= 0")
