"""``ntkdiagrams critical``: critical point, universality class and depth scaling of an activation.

    ntkdiagrams critical --activation tanh [--depth 40] [--stats V,A] [--json]

The numbers are :mod:`ntkdiagrams.analysis.criticality`'s.  Building the parser imports nothing heavy.
"""
from __future__ import annotations

import argparse

from ..errors import InputError

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``critical`` (sets ``func=run``)."""
    p = subparsers.add_parser("critical",
                              help="critical point, universality class and depth scaling of an activation")
    p.add_argument("--activation", default="tanh", help="shortcut or expression in z (default tanh)")
    p.add_argument("--depth", type=int, default=40, help="depth L of the scaling table (default 40; 0: none)")
    p.add_argument("--stats", default="all", help="comma-separated tensors of the table (default all)")
    p.add_argument("--k1", type=float, default=None, help="first-layer kernel K^(1) (default: see docs)")
    p.add_argument("--lb", type=float, default=1.0, help="lambda_b (default 1)")
    p.add_argument("--lw", type=float, default=1.0, help="lambda_W (default 1)")
    p.add_argument("--precise", action="store_true", help="refine non-zero K* with mpmath (smooth activations)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--rules", default="mlp", help="rule file (default mlp; criticality is implemented for the "
                                                  "MLP only and refuses others)")
    p.set_defaults(func=run, settings=None)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``critical``: print the critical point and, with --depth > 0, the depth-scaling table."""
    import json
    import math

    from ..analysis.criticality import critical_point, depth_scaling

    if args.depth < 0:
        raise InputError(f"--depth must be >= 0; got {args.depth}")
    for name in ("lb", "lw", "k1"):
        v = getattr(args, name)
        if v is not None and not math.isfinite(v):
            raise InputError(f"--{name} must be finite; got {v}")
    cp = critical_point(args.activation, precise=args.precise, rules=args.rules)
    table = None
    if args.depth and cp.critical:
        table = depth_scaling(args.activation, args.depth, stats=args.stats, point=cp, k1=args.k1,
                              lb=args.lb, lw=args.lw, rules=args.rules)
    if args.json:
        print(json.dumps({"critical_point": cp.to_dict(), "depth_scaling": table.to_dict() if table else None}))
    else:
        print(cp.text())
        if table is not None:
            print(table.text())
    return 0
