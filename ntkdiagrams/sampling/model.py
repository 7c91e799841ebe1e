"""A network and its data set, as the sampler takes them (the model of docs/conventions.md §1, §8).

The architecture is a rule file (``rules``: a built-in name such as ``"resmlp"``, a path, or a
loaded :class:`~ntkdiagrams.language.rulefile.RuleSet`; default the MLP of ``rules/mlp.toml``)
and its hyper-parameters are given by the rule file's symbol names in ``params``:

    ModelSpec(act, depth=4, width=32, inputs=x, rules="resmlp",
              params={"xi": 0.7, "C_b": 0.0, "C_W": [1.0, 0.6, 0.6, 0.6], "lambda_b": 1, "lambda_W": 1})

A value is a number (every layer) or a list of one number per layer ℓ = 1..L (the parameters
of layer ℓ and the shortcut into layer ℓ; ξ of layer 1 is not used).  A rule file with
per-layer widths (``[model] width_ratio = "r"``) takes the ratios r_ℓ of hidden layers
n_ℓ = r_ℓ n under that name (L − 1 values, or L with the last unused: the sampler's output layer
has 2 neurons).  ``cb, cw, lb, lw`` are the MLP's shorthands for C_b, C_W, λ_b (``lambda_b``)
and λ_W (``lambda_W``); positional use ``ModelSpec(act, depth, width, cb, cw, lb, lw, x)`` is
the MLP as before.  The values are checked against the rule file by
:func:`ntkdiagrams.sampling.interpreter.build_program` (when sampling).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import InputError
from ..numerics.activations import Activation

__all__ = ["ModelSpec", "SHORTHANDS"]

#: the MLP shorthands and the rule-file symbols they stand for
SHORTHANDS = {"cb": "C_b", "cw": "C_W", "lb": "lambda_b", "lw": "lambda_W"}


@dataclass(frozen=True)
class ModelSpec:
    """The model of docs/conventions.md §1 (or the rule file ``rules``) with its data set."""

    activation: Activation
    depth: int
    width: int
    cb: float | None = None
    cw: float | None = None
    lb: float | None = None
    lw: float | None = None
    inputs: np.ndarray | None = None  # shape (N, n0); required
    rules: Any = None                 # RuleSet, built-in name or path; None: "mlp"
    params: Mapping | None = None     # {rule-file symbol name: value or per-layer list}

    @property
    def rules_name(self) -> str:
        """The rule file as given (a name or path), or the loaded RuleSet's model name."""
        if self.rules is None:
            return "mlp"
        if isinstance(self.rules, str):
            return self.rules
        name = getattr(self.rules, "name", None)
        return str(name) if name is not None else str(self.rules)

    def hyper_parameters(self) -> dict:
        """{symbol name: value or list} from ``params`` and the shorthands cb, cw, lb, lw (a
        shorthand and its symbol in ``params`` must agree)."""
        out: dict = {}
        if self.params is not None:
            if not isinstance(self.params, Mapping):
                raise InputError(f"params must be a mapping of symbol names to values; got "
                                 f"{type(self.params).__name__}")
            for k, v in self.params.items():
                if not isinstance(k, str):
                    raise InputError(f"params: keys are the rule file's symbol names; got {k!r}")
                out[k] = _plain(v)
        for short, name in SHORTHANDS.items():
            v = getattr(self, short)
            if v is None:
                continue
            v = _plain(v)
            if name in out and out[name] != v:
                raise InputError(f"{short} = {v!r} and params[{name!r}] = {out[name]!r} disagree "
                                 f"({short} is a shorthand for {name})")
            out[name] = v
        return out

    def meta(self) -> dict:
        return {"activation": self.activation.name, "depth": self.depth, "width": self.width,
                "cb": self.cb, "cw": self.cw, "lb": self.lb, "lw": self.lw,
                "n_inputs": int(self.inputs.shape[0]), "n0": int(self.inputs.shape[1]),
                "inputs": self.inputs.tolist(), "rules": self.rules_name,
                "params": self.hyper_parameters()}


def _plain(v):
    """A value as plain Python: a float, or a list of floats (per layer)."""
    if isinstance(v, (str, bytes)) or isinstance(v, Mapping):
        raise InputError(f"a hyper-parameter value must be a number or a list of numbers; got {v!r}")
    arr = np.asarray(v, dtype=object)
    try:
        if arr.ndim == 0:
            return float(v)
        if arr.ndim == 1:
            return [float(t) for t in v]
    except (TypeError, ValueError):
        pass
    raise InputError(f"a hyper-parameter value must be a number or a list of numbers; got {v!r}")
