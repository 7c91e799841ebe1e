"""Command-line options shared by ``evaluate`` and ``sample`` (one model, one meaning).

The model options are those of PHYSICS.md §1: activation σ, depth L, hidden width n,
C_b, C_W, λ_b, λ_W, and the data set of N inputs (``--inputs FILE.npy`` or
``--random N,n0 --seed s``).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from .activations import Activation, parse_activation
from .errors import InputError


@dataclass(frozen=True)
class ModelSpec:
    """The model of PHYSICS.md §1 with its data set."""

    activation: Activation
    depth: int
    width: int
    cb: float
    cw: float
    lb: float
    lw: float
    inputs: np.ndarray  # shape (N, n0)

    def meta(self) -> dict:
        return {"activation": self.activation.name, "depth": self.depth, "width": self.width,
                "cb": self.cb, "cw": self.cw, "lb": self.lb, "lw": self.lw,
                "n_inputs": int(self.inputs.shape[0]), "n0": int(self.inputs.shape[1]),
                "inputs": self.inputs.tolist()}


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Add --activation --depth --width --cb --cw --lb --lw --inputs/--random --seed."""
    p.add_argument("--activation", default="tanh",
                   help="shortcut (tanh, relu, gelu, erf, swish, silu, sin, softplus, linear, "
                        "leaky_relu:a) or an expression in z such as 'z*tanh(z)' (default: tanh)")
    p.add_argument("--depth", type=int, default=3, help="number of layers L (default 3)")
    p.add_argument("--width", type=int, default=32, help="hidden width n (default 32)")
    p.add_argument("--cb", type=float, default=0.0, help="bias variance C_b (default 0)")
    p.add_argument("--cw", type=float, default=1.0, help="weight variance C_W (default 1)")
    p.add_argument("--lb", type=float, default=1.0, help="bias learning rate λ_b (default 1)")
    p.add_argument("--lw", type=float, default=1.0, help="weight learning rate λ_W (default 1)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--inputs", help="a .npy file with an (N, n0) array of inputs")
    src.add_argument("--random", help="N,n0: draw N standard-normal inputs of dimension n0 "
                                      "(default 2,3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def check_inputs(x) -> np.ndarray:
    """Validate a data set: a finite 2-D float array of shape (N, n0) with N, n0 ≥ 1."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"inputs must be a numeric (N, n0) array: {exc}") from None
    if arr.ndim != 2:
        raise InputError(f"inputs must be a 2-D array of shape (N, n0); got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"inputs must have N >= 1 rows and n0 >= 1 columns; got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise InputError(f"inputs contain NaN or inf ({int(bad.sum())} entries; first at row {r}, column {c})")
    return arr


def model_from_args(args: argparse.Namespace) -> ModelSpec:
    """Build and validate a :class:`ModelSpec` from parsed arguments (raises InputError)."""
    if args.depth < 1:
        raise InputError(f"--depth must be >= 1; got {args.depth}")
    if args.width < 1:
        raise InputError(f"--width must be >= 1; got {args.width}")
    for name in ("cb", "cw"):
        v = getattr(args, name)
        if not np.isfinite(v) or v < 0:
            raise InputError(f"--{name} is a variance and must be finite and >= 0; got {v}")
    for name in ("lb", "lw"):
        v = getattr(args, name)
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
                     width=args.width, cb=args.cb, cw=args.cw, lb=args.lb, lw=args.lw,
                     inputs=check_inputs(x))
