"""``ntkdiagrams train``: the O(1/n) prediction of gradient descent on width-n networks.

    ntkdiagrams train --activation tanh --depth 4 --width 64 --train X.npy --targets Y.npy --test Xt.npy \\
                      --lr 0.2 --steps 1,10,100,inf --out train.json

Without ``--train``/``--targets`` a built-in toy problem is used (3 training inputs drawn with
``--seed``, targets sin(x₀), 1 test input).  ``--lr`` is the global step η; ``--lr-fraction f``
sets η = f · 2/λ_max(Θ_AA) (default 0.5).  Writes
:meth:`ntkdiagrams.training.prediction.TrainingPrediction.write`'s layout (JSON or npz), or prints a
table.  Building the parser imports nothing heavy.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import InputError
from .common import add_network_arguments, add_param_argument, parse_params
from .files import check_output_file, check_rules_option, load_npy

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train`` (sets ``func=run``)."""
    p = subparsers.add_parser(
        "train", help="predict gradient descent on width-n networks: mean and covariance of the outputs at O(1/n)",
        description="Full-batch gradient descent on the squared loss (docs/training.md): for each number of "
                    "steps T the ensemble mean and covariance of the outputs (training inputs first, then test "
                    "inputs; output neuron 0 unless --all-neurons) as the infinite-width value (kernel gradient "
                    "descent), the coefficient of 1/n, and the prediction infinite + correction/n at --width.")
    add_network_arguments(p, width=64)
    p.add_argument("--rules", default="mlp", help="rule file (default mlp)")
    add_param_argument(p)
    p.add_argument("--train", help="a .npy file with the (n_A, n0) training inputs")
    p.add_argument("--targets", help="a .npy file with the (n_A,) or (n_A, n_out) targets")
    p.add_argument("--test", help="a .npy file with the (n_B, n0) test inputs (optional)")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in toy data (default 0)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--lr", type=float, default=None, help="global step η")
    rate.add_argument("--lr-fraction", type=float, default=None,
                      help="η as a fraction of the largest stable step 2/λ_max(Θ_AA) (default 0.5)")
    p.add_argument("--steps", default="1,10,100,inf", help="comma-separated step counts, 'inf' = converged "
                                                           "(default 1,10,100,inf)")
    p.add_argument("--all-neurons", action="store_true", help="report every output neuron (neuron-major)")
    p.add_argument("--without", default="", help="comma-separated O(1/n) contributions to leave out "
                                                 "(G1, Theta1, NTK-fluctuations, dNTK, ddNTK): for checks only")
    p.add_argument("--allow-kinks", action="store_true",
                   help="ReLU-type activations: compute the 1/n correction anyway (kink crossings during training "
                        "are beyond the expansion; docs/training.md), with a warning")
    p.add_argument("--degree", type=int, default=None, help="Gauss-Hermite degree (default: automatic)")
    p.add_argument("--out", help="output file .json or .npz (default: print a table)")
    p.set_defaults(func=run, settings=None)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``train``: 0 on success (bad input raises :class:`~ntkdiagrams.errors.InputError`)."""
    import numpy as np

    from ..numerics.activations import parse_activation
    from ..numerics.health import ExpansionWarning
    from ..training.dynamics import CONTRIBUTIONS
    from ..training.prediction import parse_steps, train_prediction

    if args.out:
        check_output_file(args.out, "--out", (".json", ".npz"))
    check_rules_option(args.rules)
    if args.depth < 1:
        raise InputError(f"--depth must be >= 1; got {args.depth}")
    if args.width < 1:
        raise InputError(f"--width must be >= 1; got {args.width}")
    steps = parse_steps(args.steps)
    without = [w.strip() for w in args.without.split(",") if w.strip()]
    unknown = sorted(set(without) - set(CONTRIBUTIONS))
    if unknown:
        raise InputError(f"--without: unknown contribution(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(CONTRIBUTIONS)}")
    if (args.train is None) != (args.targets is None):
        raise InputError("give --train and --targets together (or neither, for the built-in toy problem)")
    if args.train is not None:
        xa, y = load_npy(args.train, "--train"), load_npy(args.targets, "--targets")
        xb = load_npy(args.test, "--test") if args.test else None
    else:
        rng = np.random.default_rng(args.seed)
        xa, xb = rng.standard_normal((3, 3)), rng.standard_normal((1, 3))
        y = np.sin(xa[:, 0])
    hyper = {k: getattr(args, k) for k in ("cb", "cw", "lb", "lw") if getattr(args, k) is not None}
    act = parse_activation(args.activation)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExpansionWarning)
        pred = train_prediction(act, args.depth, xa, y, xb, lr=args.lr, lr_fraction=args.lr_fraction, steps=steps,
                                width=args.width, params=parse_params(args.param) or None, rules=args.rules,
                                all_neurons=args.all_neurons, include=[c for c in CONTRIBUTIONS if c not in without],
                                degree=args.degree, settings=args.settings, allow_kinks=args.allow_kinks, **hyper)
    for w in caught:
        print(f"ntkdiagrams train: warning: {w.message}", file=sys.stderr)
    if args.out:
        pred.write(args.out)
        print(f"wrote {args.out}", file=sys.stderr)
        return 0
    n = pred.width
    print(f"η = {pred.meta['lr']:.6g} ({pred.meta['lr_fraction']:.3g} of the largest stable step), width n = {n}; "
          f"outputs: {pred.meta['n_train']} training then {pred.meta['n_test']} test input(s)")
    for s in pred.steps:
        label = "inf" if s == float("inf") else str(int(s))
        print(f"T = {label}")
        for name, fn in (("mean", pred.mean), ("var", lambda t, part="infinite": np.diag(pred.cov(t, part)))):
            inf, corr, pr = fn(s), fn(s, "correction"), fn(s, "prediction")
            print(f"  {name:4s} infinite   " + " ".join(f"{v: .6f}" for v in inf))
            print(f"  {name:4s} 1/n coeff. " + " ".join(f"{v: .6f}" for v in corr))
            print(f"  {name:4s} at n={n:<5d}" + " ".join(f"{v: .6f}" for v in pr))
    return 0
