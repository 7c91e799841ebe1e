"""``ntkdiagrams evaluate``: the derived recursions iterated for a data set (numbers).

    ntkdiagrams evaluate --activation tanh --depth 5 --width 32 --random 4,3 --out pred.json
    ntkdiagrams evaluate --request 'E[z(i1;a1) z(i2;a2)]' --order 1 --out pred.json
    ntkdiagrams evaluate --rules resmlp --param xi=1 --param C_W=0.6,0.7,0.8 --depth 3 --out pred.json
    ntkdiagrams evaluate --stats V --depth 5 --random 128,3 --out v.zarr [--scheduler local:2]   # out of core

``--param NAME=VALUE`` (repeatable; per-layer values as a comma list) sets a hyper-parameter of the
rule file by its symbol name; ``--cb --cw --lb --lw`` are the MLP's shorthands for C_b, C_W, λ_b,
λ_W.  ``meta["params"]`` records every value by symbol name (defaults included).

Writes :func:`ntkdiagrams.numerics.evaluate.write_result`'s layout (JSON or npz), or prints the
first component of every tensor per layer.  The expansion health at ``--width``
(:mod:`ntkdiagrams.numerics.health`) goes into ``meta["health"]``; above its threshold one
warning line on stderr names the worst statistic, its layer and ratio (exit status still 0).
Building the parser imports nothing heavy.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from .. import __version__
from ..errors import InputError
from .common import add_memory_argument, add_model_arguments, add_param_argument, check_memory, model_from_args
from .files import check_output_file, check_output_folder, check_rules_option
from .progress import LayerProgress

__all__ = ["KINKS", "add_parser", "parse_stats", "run"]

#: the meanings of P…U for activations with kinks (``ntkdiagrams.numerics.evaluate.KINKS``, restated
#: so that building the parser imports no numpy; tests/test_cli.py checks that the two agree)
KINKS = ("per-network", "distributional")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``evaluate`` (sets ``func=run``)."""
    p = subparsers.add_parser("evaluate", help="evaluate derived recursions for a data set (numbers)")
    add_model_arguments(p)
    add_param_argument(p)
    p.add_argument("--stats", default="K,G1,V", help="comma-separated tensors, or 'all' (default K,G1,V)")
    p.add_argument("--request", help="a correlator request 'E[...]' / 'Ec[...]' instead of --stats: every "
                                     "coefficient of its decomposition (see `ntkdiagrams derive 'E[...]'`)")
    p.add_argument("--order", type=int, default=None, help="with --request: highest power of 1/n kept")
    p.add_argument("--degree", type=int, default=None, help="Gauss-Hermite degree (default: automatic)")
    p.add_argument("--kinks", default="per-network", choices=KINKS,
                   help="activations with kinks: P…U as expectations of per-network objects (default, "
                        "what `sample` measures) or distributional (keeping the δ(z) terms)")
    p.add_argument("--rules", default="mlp", help="rule file (default mlp)")
    p.add_argument("--out", help="output file .json or .npz, or a FILE.zarr folder (per-layer tensors in chunks "
                                 "on disk, computed block by block: N whose tensors exceed memory; the dask "
                                 "extra) (default: print a summary)")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="with a shortcut (--rules resmlp, xi != 0): compute the tensors that miss first-order "
                        "terms from layer 3 on anyway, with a warning (docs/conventions.md §8)")
    p.add_argument("--scheduler", default=None, metavar="local[:W]|ADDRESS",
                   help="compute blocks of input tuples as dask tasks (the dask extra): 'local' or 'local:W' "
                        "starts W worker processes on this machine, an ADDRESS (tcp://host:8786) uses a running "
                        "cluster whose workers share the --out folder (default: one process, no dask)")
    p.add_argument("--block", type=int, default=None,
                   help="with --out FILE.zarr or --scheduler: inputs per block along each axis (default 32)")
    add_memory_argument(p)
    p.set_defaults(func=run, settings=None)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate``: 0 on success (bad input raises :class:`~ntkdiagrams.errors.InputError`).

    Order: the output path, the rule file, the inputs and the model, the statistics, the memory
    estimate (:func:`ntkdiagrams.numerics.memory.evaluate_memory`), and only then the numbers."""
    from ..language.rulefile import load_rules
    from ..numerics.evaluate import evaluate, evaluate_request
    from ..numerics.health import ExpansionWarning
    from ..numerics.hyperparameters import resolve_hyperparameters
    from ..numerics.memory import evaluate_memory

    zarr_out = bool(args.out) and args.out.lower().endswith(".zarr")
    if zarr_out:
        check_output_folder(args.out, "--out")
    elif args.out:
        check_output_file(args.out, "--out", (".json", ".npz", ".zarr"))
    # blocks on disk / dask tasks (ntkdiagrams.numerics.blocked): memory per task, not N^4 per tensor
    blocked = zarr_out or getattr(args, "scheduler", None) is not None
    if getattr(args, "block", None) is not None and args.block < 1:
        raise InputError(f"--block must be a positive number of inputs; got {args.block}")
    run_options = dict(scheduler=getattr(args, "scheduler", None), block=getattr(args, "block", None),
                       out=args.out if zarr_out else None, allow_incomplete=args.allow_incomplete)
    check_rules_option(args.rules)  # before model_from_args, which reads the rule file for --param
    loaded: dict = {}
    model = model_from_args(args, loaded)
    rules = loaded.get("rules") or load_rules(args.rules)  # the rule file parsed once
    # the rule file's hyper-parameters by symbol name (--param) and the MLP shorthands; their values
    # with the defaults, for the meta (evaluate resolves them the same way)
    hyper = dict(params=model.params, cb=model.cb, cw=model.cw, lb=model.lb, lw=model.lw)
    values = resolve_hyperparameters(rules, model.depth, model.params,
                                     {k: v for k, v in hyper.items() if k != "params"}).meta()
    output = "json" if args.out and args.out.lower().endswith(".json") else None
    if args.request:
        from ..engine.request import derive_request
        res = derive_request(args.request, rules, order=args.order, settings=args.settings)
        stats = [res.key(st) for st in res.structures]
        extra = {res.key(s): s.recursion for s in res.structures}
        if not blocked:
            check_memory(lambda n: evaluate_memory(n, model.depth, [], res.rules, activation=model.activation,
                                                   extra=extra, output=output),
                         model.inputs.shape[0], args, f"evaluate --request at depth {model.depth}")
        meta = {**_model_meta(model, values), "request": args.request, "order": res.order, "rules": args.rules,
                "structures": [{"tensor": res.key(st), "deltas": [[str(i) for i in b] for b in st.deltas],
                                "order": st.order, "args": [str(a) for a in st.args],
                                "coefficient": str(st.coefficient), "named": st.named} for st in res.structures],
                "labels": [str(a) for a in res.request.labels], "package_version": __version__,
                "kind": "prediction", "health": None}
        with LayerProgress(model.depth) as progress, warnings.catch_warnings():
            warnings.simplefilter("ignore", ExpansionWarning)  # the health is reported in one line by _emit
            result = evaluate_request(res, model.activation, model.depth, model.inputs, **hyper,
                                      degree=args.degree, progress=progress, kinks=args.kinks,
                                      settings=args.settings, width=model.width, meta=meta, **run_options)
        layers = [{k: v for k, v in layer.items() if k == "layer" or k in stats} for layer in result]
        meta["health"], meta["incomplete"] = result.health, result.incomplete
        return _emit(args, meta, layers)
    stats = parse_stats(args.stats, rules)
    if not blocked:
        check_memory(lambda n: evaluate_memory(n, model.depth, stats, rules, activation=model.activation,
                                               output=output),
                     model.inputs.shape[0], args, f"evaluate --stats {args.stats} at depth {model.depth}")
    meta = {**_model_meta(model, values), "stats": stats, "rules": args.rules, "degree": args.degree, "kinks": args.kinks,
            "package_version": __version__, "kind": "prediction", "health": None}
    with LayerProgress(model.depth) as progress, warnings.catch_warnings():
        warnings.simplefilter("ignore", ExpansionWarning)  # the health is reported in one line by _emit
        layers = evaluate(model.activation, model.depth, model.inputs, **hyper, stats=stats, rules=rules,
                          degree=args.degree, progress=progress, kinks=args.kinks, settings=args.settings,
                          width=model.width, meta=meta, **run_options)
    meta["health"], meta["incomplete"] = layers.health, layers.incomplete
    return _emit(args, meta, layers)


def _model_meta(model, values: dict) -> dict:
    """The model's meta with the hyper-parameters by symbol name (``params``: a number, or the list
    of per-layer values, defaults included); cb/cw/lb/lw only where the rule file declares C_b, C_W,
    λ_b, λ_W."""
    from ..numerics.hyperparameters import SHORTHANDS

    meta = model.meta()
    for short, sym in SHORTHANDS.items():
        if sym in values:
            meta[short] = values[sym]
        else:
            meta.pop(short, None)
    meta["params"] = values
    return meta


def parse_stats(text: str, rules) -> list[str] | str:
    """``--stats``: "all", or comma-separated tensor names of the rule file (InputError otherwise)."""
    if text.strip().lower() == "all":
        return "all"
    stats = [s.strip() for s in text.split(",") if s.strip()]
    if not stats:
        raise InputError(f"--stats: no statistic given ({text!r}); name tensors such as K,G1,V or 'all'")
    unknown = [s for s in stats if s not in rules.tensors]
    if unknown:
        raise InputError(f"--stats: unknown statistic(s) {', '.join(unknown)}; the rule file derives "
                         f"{', '.join(rules.tensors)} or 'all'")
    return list(dict.fromkeys(stats))


def _emit(args, meta, layers) -> int:
    """Write ``--out``, or print the first component of every tensor per layer; one warning
    line on stderr when the expansion health (``meta["health"]``) is above its threshold."""
    import numpy as np

    from ..numerics.evaluate import write_result
    from ..numerics.health import describe

    health = meta.get("health")
    if health is not None and not health["healthy"]:
        print(f"ntkdiagrams evaluate: warning: {describe(health)}", file=sys.stderr)

    if args.out:
        if not args.out.lower().endswith(".zarr"):  # a FILE.zarr is written by the blocked evaluator
            write_result(args.out, meta, layers)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        for layer in layers:
            parts = [f"layer {layer['layer']}:"]
            for name, arr in layer.items():
                if name != "layer":
                    parts.append(f"{name}[0..]={np.ravel(arr)[0]:.6g}")
            print(" ".join(parts))
    return 0
