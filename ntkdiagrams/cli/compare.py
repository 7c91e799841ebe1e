"""``ntkdiagrams compare``: predictions (``evaluate``) against Monte Carlo estimates (``sample``).

    ntkdiagrams compare pred.json mc.json [--stats V,A] [--plot fig.png] [--max-z 4]

The pairing and the z-scores are :mod:`ntkdiagrams.analysis.compare`'s (docs/conventions.md §6).
Building the parser imports nothing heavy.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import NtkDiagramsError

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``compare PRED.json MC.json [--plot FIG.png]`` (sets ``func=run``)."""
    p = subparsers.add_parser(
        "compare", help="compare predictions with Monte Carlo estimates",
        description="Compare PRED (written by 'evaluate') with MC (written by 'sample'): "
                    "MC G vs K + G1/n, MC NTK vs Θ + Θ1/n, connected statistics directly; "
                    "a table of z-scores and a summary line.")
    p.add_argument("pred", help="prediction JSON")
    p.add_argument("mc", help="Monte Carlo result (.json or .npz)")
    p.add_argument("--stats", default=None, help="comma-separated statistics to compare")
    p.add_argument("--plot", default=None, help="write a figure (needs matplotlib)")
    p.add_argument("--max-z", type=float, default=None,
                   help="exit with status 1 if some |z| exceeds this value")
    p.set_defaults(func=run, settings=None)
    return p


def run(args: argparse.Namespace) -> int:
    """0: compared (1 if --max-z is exceeded); 2: bad input or matplotlib missing."""
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("ntkdiagrams compare: error: --plot needs matplotlib "
                  "(pip install 'ntkdiagrams[plot]' or pip install matplotlib)", file=sys.stderr)
            return 2
    from ..analysis.compare import compare, format_table, load_prediction, plot, summary
    from ..sampling.sampler import load_result

    try:
        pred = load_prediction(args.pred)
        mc = load_result(args.mc)
        stats = None
        if args.stats:
            stats = {s.strip() for s in args.stats.split(",") if s.strip()}
        rows = compare(pred, mc, stats=stats)
    except NtkDiagramsError as exc:
        print(f"ntkdiagrams compare: error: {exc}", file=sys.stderr)
        return 2
    pw, mw = (pred.get("meta") or {}).get("width"), (mc.get("meta") or {}).get("width")
    if pw is not None and mw is not None and int(pw) != int(mw):
        print(f"warning: prediction width {pw} differs from the Monte Carlo width {mw}",
              file=sys.stderr)
    if not rows:
        print("ntkdiagrams compare: error: no statistic in common between the two files",
              file=sys.stderr)
        return 2
    print(format_table(rows))
    if args.plot:
        plot(rows, args.plot)
    s = summary(rows)
    if args.max_z is not None and not (s["max_abs_z"] <= args.max_z):
        return 1
    return 0
