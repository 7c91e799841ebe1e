"""Command-line options shared by ``evaluate`` and ``sample`` (one model, one meaning).

The model options are those of docs/conventions.md §1: activation σ, depth L, hidden width n,
C_b, C_W, λ_b, λ_W, and the data set of N inputs (``--inputs FILE.npy`` or
``--random N,n0 --seed s``).  A subcommand that takes a rule file's hyper-parameters by name
adds ``--param NAME=VALUE`` (:func:`add_param_argument`; per-layer values as NAME=V1,V2,…); there
--cb/--cw/--lb/--lw are shorthands for C_b, C_W, lambda_b, lambda_W, and their defaults apply to
the symbols the rule file declares.

Building the options imports nothing beyond argparse; :func:`model_from_args` imports numpy and
the model when it runs.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import InputError
from .files import load_npy

if TYPE_CHECKING:  # pragma: no cover
    from ..sampling.model import ModelSpec


def add_network_arguments(p: argparse.ArgumentParser, width: int = 32) -> None:
    """Add --activation --depth --width (default ``width``) --cb --cw --lb --lw."""
    p.add_argument("--activation", default="tanh",
                   help="shortcut (tanh, relu, gelu, erf, swish, silu, sin, softplus, linear, "
                        "leaky_relu:a) or an expression in z such as 'z*tanh(z)' (default: tanh)")
    p.add_argument("--depth", type=int, default=3, help="number of layers L (default 3)")
    p.add_argument("--width", type=int, default=width, help=f"hidden width n (default {width})")
    p.add_argument("--cb", type=float, default=None, help="bias variance C_b (default 0)")
    p.add_argument("--cw", type=float, default=None, help="weight variance C_W (default 1)")
    p.add_argument("--lb", type=float, default=None, help="bias learning rate λ_b (default 1)")
    p.add_argument("--lw", type=float, default=None, help="weight learning rate λ_W (default 1)")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Add --activation --depth --width --cb --cw --lb --lw --inputs/--random --seed."""
    add_network_arguments(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--inputs", help="a .npy file with an (N, n0) array of inputs")
    src.add_argument("--random", help="N,n0: draw N standard-normal inputs of dimension n0 "
                                      "(default 2,3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


#: the defaults of the MLP shorthands
SHORTHAND_DEFAULTS = {"cb": 0.0, "cw": 1.0, "lb": 1.0, "lw": 1.0}
_SHORTHAND_SYMBOLS = {"cb": "C_b", "cw": "C_W", "lb": "lambda_b", "lw": "lambda_W"}


def add_param_argument(p: argparse.ArgumentParser) -> None:
    """Add --param NAME=VALUE (repeatable; per-layer values as NAME=V1,V2,...)."""
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a hyper-parameter of the rule file by its symbol name, e.g. --param xi=1 "
                        "--param C_W=0.6 (repeatable); one value per layer l = 1..L as NAME=V1,V2,...")


def parse_params(items) -> dict:
    """{name: float or list of floats} from --param items (raises InputError)."""
    import math

    out: dict = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not text.strip():
            raise InputError(f"--param expects NAME=VALUE or NAME=V1,V2,... (one value per layer); got {item!r}")
        if name in out:
            raise InputError(f"--param {name} given twice")
        vals = []
        for t in text.split(","):
            try:
                v = float(t)
            except ValueError:
                raise InputError(f"--param {name}: {t.strip()!r} is not a number") from None
            if not math.isfinite(v):
                raise InputError(f"--param {name}: {t.strip()!r} is not a finite number")
            vals.append(v)
        out[name] = vals[0] if len(vals) == 1 else vals
    return out


def model_from_args(args: argparse.Namespace, loaded: dict | None = None) -> ModelSpec:
    """Build and validate a :class:`ModelSpec` from parsed arguments (raises InputError).
    ``loaded``: a dict that receives the :class:`~ntkdiagrams.language.rulefile.RuleSet` read for
    ``--param`` under ``"rules"`` (so that the caller parses the rule file only once)."""
    import numpy as np

    from ..numerics.activations import parse_activation
    from ..numerics.inputs import check_inputs
    from ..sampling.model import ModelSpec

    if args.depth < 1:
        raise InputError(f"--depth must be >= 1; got {args.depth}")
    if args.width < 1:
        raise InputError(f"--width must be >= 1; got {args.width}")
    for name in ("cb", "cw"):
        v = getattr(args, name)
        if v is not None and (not np.isfinite(v) or v < 0):
            raise InputError(f"--{name} is a variance and must be finite and >= 0; got {v}")
    for name in ("lb", "lw"):
        v = getattr(args, name)
        if v is not None and not np.isfinite(v):
            raise InputError(f"--{name} must be finite; got {v}")
    if isinstance(args.seed, bool) or args.seed < 0:
        raise InputError(f"--seed must be a non-negative integer; got {args.seed}")
    hyper = {k: getattr(args, k) for k in SHORTHAND_DEFAULTS if getattr(args, k) is not None}
    rules, params = None, None
    if hasattr(args, "param"):  # a rule file's hyper-parameters by name
        from ..language.rulefile import load_rules

        rules = getattr(args, "rules", None) or "mlp"
        params = parse_params(args.param)
        ruleset = load_rules(rules)
        if loaded is not None:
            loaded["rules"] = ruleset
        declared = ruleset.symbols
        for k, v in SHORTHAND_DEFAULTS.items():
            if k not in hyper and _SHORTHAND_SYMBOLS[k] in declared and _SHORTHAND_SYMBOLS[k] not in params:
                hyper[k] = v
    else:
        hyper = {**SHORTHAND_DEFAULTS, **hyper}
    if args.inputs:
        x = load_npy(args.inputs, "--inputs")
        try:
            x = check_inputs(x)
        except InputError as exc:
            raise InputError(f"--inputs {args.inputs}: {exc}") from None
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
                     width=args.width, cb=hyper.get("cb"), cw=hyper.get("cw"), lb=hyper.get("lb"),
                     lw=hyper.get("lw"), inputs=check_inputs(x), rules=rules, params=params or None)


def add_memory_argument(p: argparse.ArgumentParser) -> None:
    """Add --max-memory GIB (the memory a run may use; default: what is available now)."""
    p.add_argument("--max-memory", type=float, default=None, metavar="GIB",
                   help="memory the run may use, in GiB (default: the memory available now, MemAvailable "
                        "of /proc/meminfo); a run whose estimate is larger is refused before it starts")


def memory_budget(args: argparse.Namespace) -> tuple[int | None, str]:
    """(bytes the run may use or None if unknown, where that number comes from)."""
    import math

    from ..numerics.memory import available_memory

    limit = getattr(args, "max_memory", None)
    if limit is not None:
        if not math.isfinite(limit) or limit <= 0:
            raise InputError(f"--max-memory must be a positive number of GiB; got {limit}")
        return int(limit * 2 ** 30), "allowed by --max-memory"
    return available_memory(), "available now"


def check_memory(estimate, n_inputs: int, args: argparse.Namespace, what: str) -> int:
    """Refuse (InputError) a run whose estimated memory ``estimate(N)`` exceeds the budget, with the
    estimate and the largest N that fits.  Returns the estimate in bytes."""
    from ..numerics.memory import format_bytes, largest_fitting

    need = estimate(n_inputs)
    budget, source = memory_budget(args)
    if budget is None or need <= budget:
        return need
    best = largest_fitting(estimate, budget, n_inputs)
    fits = (f"the largest N that fits is {best}" if best else "not even N = 1 fits")
    raise InputError(f"not enough memory: {what} for N = {n_inputs} inputs needs about {format_bytes(need)}, "
                     f"more than the {format_bytes(budget)} {source}; {fits} "
                     "(--max-memory GIB sets the limit)")
