"""The ``ntkdiagrams`` command line: the parser and the dispatch.

Subcommands (one module each in :mod:`ntkdiagrams.cli`)::

    ntkdiagrams derive K G1 V [--latex] [--diagrams] [--rules FILE]
    ntkdiagrams derive 'E[dH(i0,i1,i2;a0,a1,a2) z(i3;a3)]' [--order 1] [--connected] [--latex]
    ntkdiagrams evaluate --activation tanh --depth 5 --width 32 --random 4,3 --out pred.json
    ntkdiagrams sample   --activation tanh --depth 3 --width 32 --samples 10000 --out mc.json
    ntkdiagrams compare  pred.json mc.json
    ntkdiagrams critical --activation tanh [--depth 40] [--json]

Bad input is reported in one line on stderr with exit code 2; nothing is written.

This is the entry point: :func:`main` reads the environment once
(:meth:`ntkdiagrams.settings.Settings.from_environment`) and puts the result on the parsed
arguments as ``args.settings`` for the subcommands to hand down.  Building the parser imports
no numpy, sympy or networkx; each subcommand's ``run`` imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import NtkDiagramsError
from ..settings import Settings
from . import compare, critical, derive, evaluate, sample

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: the subcommand modules, in the order of ``ntkdiagrams --help``; each has ``add_parser(subparsers)``
#: (which sets ``func`` to its ``run(args) -> exit status``)
SUBCOMMANDS = (derive, evaluate, sample, compare, critical)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ntkdiagrams`` with every subcommand."""
    p = argparse.ArgumentParser(prog="ntkdiagrams",
                                description="Feynman-diagram engine for finite-width network statistics")
    p.add_argument("--version", action="version", version=f"ntkdiagrams {__version__}")
    sub = p.add_subparsers(dest="command")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return p


def main(argv=None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit status:
    0 success, 1 ``compare --max-z`` exceeded, 2 bad input or usage, 130 ``sample`` interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        args.settings = Settings.from_environment()
        return int(args.func(args) or 0)
    except NtkDiagramsError as exc:
        print(f"ntkdiagrams {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
