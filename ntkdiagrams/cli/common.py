"""Command-line options shared by ``evaluate`` and ``sample`` (one model, one meaning).

The model options are those of docs/conventions.md §1: activation σ, depth L, hidden width n,
C_b, C_W, λ_b, λ_W, and the data set of N inputs (``--inputs FILE.npy`` or
``--random N,n0 --seed s``).  ``--param NAME=VALUE`` (repeatable; per-layer values as a comma
list ``--param C_W=1,1.2,0.8``) sets any hyper-parameter of the rule file by its symbol name
(:mod:`ntkdiagrams.numerics.hyperparameters`); ``--cb --cw --lb --lw`` are the MLP's shorthands for
C_b, C_W, λ_b, λ_W.

Building the options imports nothing beyond argparse; :func:`model_from_args` imports numpy and
the model when it runs.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from ..sampling.model import ModelSpec


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Add --activation --depth --width --cb --cw --lb --lw --inputs/--random --seed."""
    p.add_argument("--activation", default="tanh",
                   help="shortcut (tanh, relu, gelu, erf, swish, silu, sin, softplus, linear, "
                        "leaky_relu:a) or an expression in z such as 'z*tanh(z)' (default: tanh)")
    p.add_argument("--depth", type=int, default=3, help="number of layers L (default 3)")
    p.add_argument("--width", type=int, default=32, help="hidden width n (default 32)")
    p.add_argument("--cb", type=float, default=None, help="bias variance C_b (default 0)")
    p.add_argument("--cw", type=float, default=None, help="weight variance C_W (default 1)")
    p.add_argument("--lb", type=float, default=None, help="bias learning rate λ_b (default 1)")
    p.add_argument("--lw", type=float, default=None, help="weight learning rate λ_W (default 1)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--inputs", help="a .npy file with an (N, n0) array of inputs")
    src.add_argument("--random", help="N,n0: draw N standard-normal inputs of dimension n0 "
                                      "(default 2,3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


#: the values of --cb --cw --lb --lw when not given (the MLP's defaults)
SHORTHAND_DEFAULTS = {"cb": 0.0, "cw": 1.0, "lb": 1.0, "lw": 1.0}


def add_param_arguments(p: argparse.ArgumentParser) -> None:
    """Add --param NAME=VALUE (repeatable): a rule-file hyper-parameter by its symbol name."""
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyper-parameter of the rule file by its symbol name, e.g. --param xi=1 --param "
                        "C_W=0.6; per-layer values (layer 1..L) as a comma list --param C_W=1,1.2,0.8 "
                        "(repeatable)")


def params_from_args(args: argparse.Namespace) -> dict:
    """The --param values as {name: float or [floats]} (InputError for a malformed or repeated one)."""
    out: dict = {}
    for item in getattr(args, "param", None) or []:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier() or not text.strip():
            raise InputError(f"--param expects NAME=VALUE or NAME=V1,V2,... (one value per layer); got {item!r}")
        if name in out:
            raise InputError(f"--param {name} given twice")
        try:
            values = [float(t) for t in text.split(",")]
        except ValueError:
            raise InputError(f"--param {name}: {text!r} is not a number or a comma list of numbers") from None
        out[name] = values[0] if len(values) == 1 else values
    return out


def shorthands_from_args(args: argparse.Namespace) -> dict:
    """The given --cb --cw --lb --lw ({name: value}, None where not given)."""
    return {k: getattr(args, k, None) for k in SHORTHAND_DEFAULTS}


def model_from_args(args: argparse.Namespace) -> ModelSpec:
    """Build and validate a :class:`ModelSpec` from parsed arguments (raises InputError)."""
    import numpy as np

    from ..numerics.activations import parse_activation
    from ..numerics.inputs import check_inputs
    from ..sampling.model import ModelSpec

    if args.depth < 1:
        raise InputError(f"--depth must be >= 1; got {args.depth}")
    if args.width < 1:
        raise InputError(f"--width must be >= 1; got {args.width}")
    hyper = {k: (SHORTHAND_DEFAULTS[k] if v is None else v) for k, v in shorthands_from_args(args).items()}
    for name in ("cb", "cw"):
        v = hyper[name]
        if not np.isfinite(v) or v < 0:
            raise InputError(f"--{name} is a variance and must be finite and >= 0; got {v}")
    for name in ("lb", "lw"):
        v = hyper[name]
        if not np.isfinite(v):
            raise InputError(f"--{name} must be finite; got {v}")
    if args.inputs:
        try:
            x = np.load(args.inputs, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"--inputs {args.inputs}: cannot read a .npy array ({exc})") from None
    else:
        spec = args.random or "2,3"
        try:
            n_inputs, n0 = (int(t) for t in spec.split(","))
        except ValueError:
            raise InputError(f"--random expects N,n0 (two integers), got {spec!r}") from None
        if n_inputs < 1 or n0 < 1:
            raise InputError(f"--random N,n0 needs N >= 1 and n0 >= 1; got {spec!r}")
        x = np.random.default_rng(args.seed).standard_normal((n_inputs, n0))
    return ModelSpec(activation=parse_activation(args.activation), depth=args.depth,
                     width=args.width, **hyper,
                     inputs=check_inputs(x))
