#!/usr/bin/env python
"""Benchmark of the O(1/n) training prediction (issue 17's target: 8 training points, 2 test points,
L = 5, T = 1000 in under 10 s).  After a warm-up call per activation (derivations loaded from the cache, kernels
compiled: once per process), prints the time of the statistics (nd.evaluate of the 14 output-layer
tensors), of the dynamics (training.dynamics.solve) and the total, per activation.

    python scripts/bench_training_prediction.py [--activations relu,tanh,gelu] [--train 8] [--test 2]
                                               [--depth 5] [--steps 1000] [--out-width 1]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ntkdiagrams.numerics.evaluate import evaluate  # noqa: E402
from ntkdiagrams.training.dynamics import solve  # noqa: E402
from ntkdiagrams.training.tensors import TRAINING_STATISTICS, combine  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--activations", default="relu,tanh,gelu")
    p.add_argument("--train", type=int, default=8)
    p.add_argument("--test", type=int, default=2)
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--out-width", type=int, default=1)
    p.add_argument("--cw", type=float, default=None, help="C_W (default: 2 for relu, 1 otherwise)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    n0 = 8
    x = rng.standard_normal((args.train + args.test, n0))
    x *= np.sqrt(n0) / np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.standard_normal((args.train, args.out_width)) * 0.5
    print(f"# training prediction: {args.train} training + {args.test} test inputs (|x|²/n0 = 1), "
          f"L = {args.depth}, T = {args.steps}, n_out = {args.out_width}; load {os.getloadavg()[0]:.1f}")
    print("| σ | statistics (s) | dynamics (s) | total (s) |")
    print("|---|---|---|---|")
    for act in args.activations.split(","):
        cw = args.cw if args.cw is not None else (2.0 if act == "relu" else 1.0)
        # warm-up: load the derivations from the cache and compile the kernels (once per process)
        evaluate(act, 2, x[:2], cw=cw, stats=list(TRAINING_STATISTICS))
        t0 = time.perf_counter()
        layers = evaluate(act, args.depth, x, cw=cw, stats=list(TRAINING_STATISTICS))
        t1 = time.perf_counter()
        st = combine(layers[-1], args.out_width)
        Tr = np.arange(args.train)
        lam = np.linalg.eigvalsh(st.Theta[np.ix_(Tr, Tr)])
        solve(st, args.train, y, 1.0 / lam[-1], [args.steps])
        t2 = time.perf_counter()
        print(f"| {act} | {t1 - t0:.2f} | {t2 - t1:.2f} | {t2 - t0:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
