"""``ntkdiagrams sample``: Monte Carlo estimates from sampled finite-width networks.

    ntkdiagrams sample --activation tanh --depth 3 --width 32 --samples 10000 --stats K,G1,Theta,Theta1,V --out mc.json
    ntkdiagrams sample --rules resmlp --param xi=1 --param C_W=0.6 --depth 4 --out res.json
    ntkdiagrams sample --samples 1000000 --chunk 4096 --scheduler local:2 --out mc.npz   # dask (the dask extra)

Statistics are named as in the rule file and in ``evaluate``; the sampled means E[zz] and E[H] are
stored as "K+G1" and "Theta+Theta1" (what ``compare`` sets against K + G1/n and Θ + Θ1/n).  Writes :func:`ntkdiagrams.sampling.sampler.save_result`'s layout.  Building the parser imports
nothing heavy; :func:`run` imports the sampler when it runs.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import InputError, NtkDiagramsError
from .common import add_memory_argument, add_model_arguments, add_param_argument, check_memory, model_from_args
from .files import check_output_file

__all__ = ["DEFAULT_STATS", "add_parser", "run"]

#: ``ntkdiagrams.sampling.sampler.DEFAULT_STATS``, restated so that building the parser imports no
#: numpy (tests/test_cli.py checks that the two agree)
DEFAULT_STATS = ("K+G1", "Theta+Theta1", "V", "A", "B", "D", "F")
#: the --stats default in rule-file names (K, G1 -> K+G1; Theta, Theta1 -> Theta+Theta1)
DEFAULT_REQUEST = "K,G1,Theta,Theta1,V,A,B,D,F"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sample`` (sets ``func=run``)."""
    p = subparsers.add_parser(
        "sample", help="Monte Carlo estimates of the statistics from sampled networks",
        description="Sample finite-width networks and estimate the statistics of the rule file (K, G1, "
                    "Theta, Theta1, V, A, B, D, F, P, Q, R, S, T, U; the names evaluate uses) at every "
                    "layer with batch-means standard errors (definitions: docs/conventions.md §3). "
                    "One width cannot separate K from G1/n: the sampled E[zz] is stored as 'K+G1' "
                    "(= K + G1/n + O(1/n^2)) and the sampled E[H] as 'Theta+Theta1' (= Theta + "
                    "Theta1/n + O(1/n^2)); compare sets them against those sums. "
                    "Ctrl-C writes the finished batches.")
    add_model_arguments(p)
    p.add_argument("--rules", default="mlp",
                   help="rule file: a built-in name (mlp, resmlp, mlp_nobias) or a path (default mlp); "
                        "the sampler builds its networks from the file's layer map")
    add_param_argument(p)
    p.add_argument("--samples", type=int, default=10000, help="number of networks (default 10000)")
    p.add_argument("--batches", type=int, default=30,
                   help="batches for the batch-means standard error (default 30)")
    p.add_argument("--stats", default=DEFAULT_REQUEST,
                   help="comma-separated rule-file names or 'all' (default K,G1,Theta,Theta1,V,A,B,D,F); "
                        "K and G1 both give 'K+G1', Theta and Theta1 'Theta+Theta1'. Deprecated: G "
                        "(= K+G1) and NTK (= Theta+Theta1), accepted for now")
    p.add_argument("--chunk", type=int, default=None, help="networks per vectorised chunk")
    p.add_argument("--streams", choices=("one", "chunks"), default="one",
                   help="one random stream for the run (default; the networks do not depend on --chunk) or "
                        "one per chunk (what --scheduler uses: the same --seed, --samples, --batches and "
                        "--chunk give the same numbers in one process and on any cluster)")
    p.add_argument("--scheduler", default=None, metavar="local[:W]|ADDRESS",
                   help="run the network chunks as dask tasks (the dask extra): 'local' or 'local:W' starts "
                        "a cluster of W worker processes on this machine, an ADDRESS (tcp://host:8786) uses "
                        "a running one; implies --streams chunks (default: one process, no dask)")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.add_argument("--out", required=True, help="output FILE.json or FILE.npz")
    add_memory_argument(p)
    p.set_defaults(func=run, settings=None)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``sample``: 0 on success, 2 on bad input (nothing written), 130 if interrupted
    (the finished batches are written with meta complete = false)."""
    from ..sampling.sampler import parse_stats, sample, sample_memory, save_result

    try:
        out = check_output_file(args.out, "--out", (".json", ".npz"))
        model = model_from_args(args)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            stats = parse_stats(args.stats)
        for w in caught:
            print(f"ntkdiagrams sample: note: {w.message}", file=sys.stderr)
        if args.chunk is not None and args.chunk < 1:
            raise InputError(f"--chunk must be a positive integer; got {args.chunk}")
        n0, output = model.inputs.shape[1], "json" if out.lower().endswith(".json") else None
        check_memory(lambda n: sample_memory(n, n0, model.width, model.depth, stats, batches=max(args.batches, 2),
                                             chunk=args.chunk, output=output),
                     model.inputs.shape[0], args, f"sample --stats {args.stats} at depth {model.depth}")
        result = sample(model, args.samples, seed=args.seed, batches=args.batches, stats=stats,
                        chunk=getattr(args, "chunk", None),
                        progress=not getattr(args, "quiet", False), allow_partial=True,
                        streams=getattr(args, "streams", "one"), scheduler=getattr(args, "scheduler", None))
        if result["meta"]["batches"] == 0:
            print("sample: interrupted before the first batch finished; nothing written",
                  file=sys.stderr)
            return 130
        save_result(result, out)
    except NtkDiagramsError as exc:
        print(f"ntkdiagrams sample: error: {exc}", file=sys.stderr)
        return 2
    if not result["meta"]["complete"]:
        print(f"sample: interrupted; wrote {result['meta']['batches']} finished batches "
              f"({result['meta']['samples']} networks) to {out}", file=sys.stderr)
        return 130
    return 0
