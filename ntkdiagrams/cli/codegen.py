"""``ntkdiagrams codegen``: a standalone numpy or JAX module evaluating derived statistics.

    ntkdiagrams codegen K,G1,V --activation tanh [--rules mlp] --target numpy|jax --out module.py

The module is :func:`ntkdiagrams.generation.codegen`'s source; without ``--out`` it is printed.
Building the parser imports nothing heavy.
"""
from __future__ import annotations

import argparse

from .files import atomic_output, check_output_file, check_rules_option

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``codegen`` (sets ``func=run``)."""
    p = subparsers.add_parser("codegen", help="write a standalone numpy/JAX module evaluating statistics")
    p.add_argument("statistics", nargs="+", help="tensor names, e.g. K G1 V or K,G1,V")
    p.add_argument("--activation", default="tanh", help="shortcut or expression in z (default tanh)")
    p.add_argument("--rules", default="mlp", help="rule file: built-in name or path (default mlp)")
    p.add_argument("--target", default="numpy", choices=("numpy", "jax"), help="numpy (default) or jax")
    p.add_argument("--out", default=None, help="write the module to this .py file (default: print it)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``codegen``: generate the module, write it atomically (or print it)."""
    from ..generation import codegen
    from ..language.rulefile import load_rules

    if args.out is not None:
        check_output_file(args.out, "--out", (".py",))
    check_rules_option(args.rules)
    stats = [s for part in args.statistics for s in part.split(",") if s]
    source = codegen(stats, args.activation, rules=load_rules(args.rules), target=args.target,
                     settings=args.settings)
    if args.out is None:
        print(source, end="")
        return 0
    with atomic_output(args.out) as tmp:
        with open(tmp, "w") as fh:
            fh.write(source)
    return 0
