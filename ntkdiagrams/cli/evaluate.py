"""``ntkdiagrams evaluate``: the derived recursions iterated for a data set (numbers).

    ntkdiagrams evaluate --activation tanh --depth 5 --width 32 --random 4,3 --out pred.json
    ntkdiagrams evaluate --rules resmlp --param xi=1 --param C_W=0.6 --depth 4 --out pred.json
    ntkdiagrams evaluate --request 'E[z(i1;a1) z(i2;a2)]' --order 1 --out pred.json

Writes :func:`ntkdiagrams.numerics.evaluate.write_result`'s layout (JSON or npz), or prints the
first component of every tensor per layer.  Building the parser imports nothing heavy.
"""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import InputError
from .common import add_model_arguments, add_param_arguments, model_from_args, params_from_args, \
    shorthands_from_args

__all__ = ["KINKS", "add_parser", "run"]

#: the meanings of P…U for activations with kinks (``ntkdiagrams.numerics.evaluate.KINKS``, restated
#: so that building the parser imports no numpy; tests/test_cli.py checks that the two agree)
KINKS = ("per-network", "distributional")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``evaluate`` (sets ``func=run``)."""
    p = subparsers.add_parser("evaluate", help="evaluate derived recursions for a data set (numbers)")
    add_model_arguments(p)
    add_param_arguments(p)
    p.add_argument("--stats", default="K,G1,V", help="comma-separated tensors, or 'all' (default K,G1,V)")
    p.add_argument("--request", help="a correlator request 'E[...]' / 'Ec[...]' instead of --stats: every "
                                     "coefficient of its decomposition (see `ntkdiagrams derive 'E[...]'`)")
    p.add_argument("--order", type=int, default=None, help="with --request: highest power of 1/n kept")
    p.add_argument("--degree", type=int, default=None, help="Gauss-Hermite degree (default: automatic)")
    p.add_argument("--kinks", default="per-network", choices=KINKS,
                   help="activations with kinks: P…U as expectations of per-network objects (default, "
                        "what `sample` measures) or distributional (keeping the δ(z) terms)")
    p.add_argument("--rules", default="mlp", help="rule file (default mlp)")
    p.add_argument("--out", help="output file .json or .npz (default: print a summary)")
    p.set_defaults(func=run, settings=None)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate``: 0 on success (bad input raises :class:`~ntkdiagrams.errors.InputError`)."""
    from ..language.rulefile import load_rules
    from ..numerics.evaluate import evaluate, evaluate_request
    from ..numerics.hyperparameters import resolve_hyperparameters

    model = model_from_args(args)
    if args.out and not (args.out.endswith(".json") or args.out.endswith(".npz")):
        raise InputError(f"--out must end in .json or .npz; got {args.out!r}")
    rules = load_rules(args.rules)
    hyper = dict(params=params_from_args(args), **shorthands_from_args(args))
    # the values by symbol name, for the meta (evaluate checks the same way)
    values = resolve_hyperparameters(rules, model.depth, hyper["params"],
                                     {k: v for k, v in hyper.items() if k != "params"}).meta()
    stats = "all" if args.stats == "all" else [s.strip() for s in args.stats.split(",") if s.strip()]
    if args.request:
        from ..engine.request import derive_request
        res = derive_request(args.request, rules, order=args.order, settings=args.settings)
        stats = [res.key(st) for st in res.structures]
        layers = evaluate_request(res, model.activation, model.depth, model.inputs, **hyper, degree=args.degree,
                                  progress=True, kinks=args.kinks, settings=args.settings)
        layers = [{k: v for k, v in layer.items() if k == "layer" or k in stats} for layer in layers]
        meta = {**_model_meta(model, values), "request": args.request, "order": res.order, "rules": args.rules,
                "structures": [{"tensor": res.key(st), "deltas": [[str(i) for i in b] for b in st.deltas],
                                "order": st.order, "args": [str(a) for a in st.args],
                                "coefficient": str(st.coefficient), "named": st.named} for st in res.structures],
                "labels": [str(a) for a in res.request.labels], "package_version": __version__,
                "kind": "prediction"}
        return _emit(args, meta, layers)
    layers = evaluate(model.activation, model.depth, model.inputs, **hyper, stats=stats, rules=rules,
                      degree=args.degree, progress=True, kinks=args.kinks, settings=args.settings)
    meta = {**_model_meta(model, values), "stats": stats, "rules": args.rules, "degree": args.degree,
            "kinks": args.kinks, "package_version": __version__, "kind": "prediction"}
    return _emit(args, meta, layers)


def _model_meta(model, values: dict) -> dict:
    """The model's meta with the hyper-parameters by symbol name (``params``: a number, or the list of
    per-layer values); cb/cw/lb/lw only where the rule file declares C_b, C_W, λ_b, λ_W."""
    from ..numerics.hyperparameters import SHORTHANDS

    meta = model.meta()
    for short, sym in SHORTHANDS.items():
        if sym in values:
            meta[short] = values[sym]
        else:
            meta.pop(short, None)
    meta["params"] = values
    return meta


def _emit(args, meta, layers) -> int:
    """Write ``--out``, or print the first component of every tensor per layer."""
    import numpy as np

    from ..numerics.evaluate import write_result

    if args.out:
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
