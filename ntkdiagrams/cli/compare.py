"""``ntkdiagrams compare``: predictions (``evaluate``) against Monte Carlo estimates (``sample``).

    ntkdiagrams compare pred.json mc.json [--stats K,G1,V,A] [--all] [--plot fig.png] [--max-z 4]

The pairing, the unique components and the z-scores are :mod:`ntkdiagrams.analysis.compare`'s
(docs/conventions.md §6).
Building the parser imports nothing heavy.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import InputError, NtkDiagramsError
from .files import PLOT_SUFFIXES, atomic_output, check_input_file, check_output_file

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``compare PRED.json MC.json [--plot FIG.png]`` (sets ``func=run``)."""
    p = subparsers.add_parser(
        "compare", help="compare predictions with Monte Carlo estimates",
        description="Compare PRED (written by 'evaluate') with MC (written by 'sample'), both in the "
                    "rule file's names: MC K+G1 (the sampled E[zz]) vs K + G1/n, MC Theta+Theta1 (the "
                    "sampled E[H]) vs Theta + Theta1/n, V, A, B, D, F, P, Q, R, S, T, U directly. "
                    "Prints the unique components of each tensor (entries related by the tensor's "
                    "index symmetries, from the rule file and checked on both files, are listed once), "
                    "a summary per statistic and layer (components, max |z|, %% within 3 sigma) and an "
                    "overall summary line; --all lists every entry.")
    p.add_argument("pred", help="prediction JSON")
    p.add_argument("mc", help="Monte Carlo result (.json or .npz)")
    p.add_argument("--stats", default=None,
                   help="comma-separated rule-file names to compare (K or G1 select K+G1, Theta or Theta1 "
                        "select Theta+Theta1; default: every statistic in both files)")
    p.add_argument("--all", action="store_true", dest="all_entries",
                   help="list every entry instead of the unique components")
    p.add_argument("--plot", default=None, help="write a figure (needs matplotlib)")
    p.add_argument("--max-z", type=float, default=None,
                   help="exit with status 1 if some |z| exceeds this value")
    p.set_defaults(func=run, settings=None)
    return p


def run(args: argparse.Namespace) -> int:
    """0: compared (1 if --max-z is exceeded); 2: bad input or matplotlib missing."""
    try:
        check_input_file(args.pred, "prediction")
        check_input_file(args.mc, "Monte Carlo file")
        if args.plot:
            check_output_file(args.plot, "--plot", PLOT_SUFFIXES)
    except NtkDiagramsError as exc:
        print(f"ntkdiagrams compare: error: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("ntkdiagrams compare: error: --plot needs matplotlib "
                  "(pip install 'ntkdiagrams[plot]' or pip install matplotlib)", file=sys.stderr)
            return 2
    from ..analysis.compare import (compare, find_symmetries, format_table, load_prediction, not_compared, plot,
                                    summary)
    from ..sampling.sampler import load_result, parse_stats

    try:
        pred = load_prediction(args.pred)
        mc = load_result(args.mc)
        check_same_model(pred, mc, args.pred, args.mc)
        stats = None
        if args.stats:
            if not [s for s in args.stats.split(",") if s.strip()]:
                raise InputError(f"--stats: no statistic given ({args.stats!r})")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", DeprecationWarning)
                stats = set(parse_stats(args.stats))
            for w in caught:
                print(f"ntkdiagrams compare: note: {w.message}", file=sys.stderr)
        symmetries = None if getattr(args, "all_entries", False) else find_symmetries(pred, mc, stats=stats)
        rows = compare(pred, mc, stats=stats, symmetries=symmetries)
        notes = not_compared(pred, mc, stats=stats)
    except NtkDiagramsError as exc:
        print(f"ntkdiagrams compare: error: {exc}", file=sys.stderr)
        return 2
    pw, mw = (pred.get("meta") or {}).get("width"), (mc.get("meta") or {}).get("width")
    if pw is not None and mw is not None and int(pw) != int(mw):
        print(f"warning: prediction width {pw} differs from the Monte Carlo width {mw}",
              file=sys.stderr)
    if not rows:
        why = f" ({'; '.join(notes)})" if notes else ""
        print(f"ntkdiagrams compare: error: no statistic in common between the two files{why}",
              file=sys.stderr)
        return 2
    print(format_table(rows, symmetries, notes=notes))
    if args.plot:
        with atomic_output(args.plot) as tmp:
            plot(rows, tmp)
    s = summary(rows)
    if args.max_z is not None and not (s["max_abs_z"] <= args.max_z):
        return 1
    return 0


#: the model and data set of the two files must agree (the width may differ: a warning)
SAME_MODEL = ("activation", "depth", "cb", "cw", "lb", "lw", "n_inputs", "n0", "inputs")


def check_same_model(pred: dict, mc: dict, pred_path: str, mc_path: str) -> None:
    """InputError when the two files' meta describe different models or data sets."""
    pm, mm = pred.get("meta") or {}, mc.get("meta") or {}
    for key in SAME_MODEL:
        if key in pm and key in mm and pm[key] != mm[key]:
            if key == "inputs":
                raise InputError(f"{pred_path} and {mc_path} are for different data sets (their inputs differ)")
            if key == "depth":
                continue  # the common layers are compared
            raise InputError(f"{pred_path} and {mc_path} are for different models: {key} = {pm[key]!r} "
                             f"in the prediction, {mm[key]!r} in the Monte Carlo file")
