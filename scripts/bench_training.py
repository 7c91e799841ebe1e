#!/usr/bin/env python
"""Benchmark of the gradient-descent ground truth (ntkdiagrams.sampling.training): networks·steps per second.

Default: tanh MLP, L = 4, n = 64, N = 6 inputs (4 training, 2 test), output width 1, S = 1000
networks, T = 100 steps (one forward and one backward pass per step, all networks of a chunk at once).

    python scripts/bench_training.py [--width n] [--depth L] [--train 4] [--test 2] [--samples S]
                                     [--steps T] [--chunk C] [--out-width 1] [--activation tanh]

The figure printed, networks·steps/s, divides S·T by the wall time of train_ensemble (which also draws
the networks and computes their empirical NTK once); use it to size a validation run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.sampling.model import ModelSpec  # noqa: E402
from ntkdiagrams.sampling.training import train_ensemble  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--train", type=int, default=4)
    p.add_argument("--test", type=int, default=2)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--chunk", type=int, default=None)
    p.add_argument("--out-width", type=int, default=1)
    p.add_argument("--activation", default="tanh")
    p.add_argument("--lr-fraction", type=float, default=0.5, help="η as a fraction of 2/λ_max of the mean NTK")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    n0 = 3
    xtr = rng.normal(size=(a.train, n0)) / np.sqrt(n0)
    xte = rng.normal(size=(a.test, n0)) / np.sqrt(n0)
    y = rng.normal(size=(a.train, a.out_width))
    m = ModelSpec(parse_activation(a.activation), depth=a.depth, width=a.width, cb=0.0, cw=1.0, lb=1.0, lw=1.0)
    probe = train_ensemble(m, xtr, y, xte, lr=1e-3, steps=[0], samples=64, batches=2, out_width=a.out_width)
    lr = a.lr_fraction * probe.meta["stable_lr"]
    t0 = time.perf_counter()
    r = train_ensemble(m, xtr, y, xte, lr=lr, steps=[a.steps], samples=a.samples, chunk=a.chunk,
                       out_width=a.out_width)
    wall = time.perf_counter() - t0
    print(f"train_ensemble: {a.activation}, L = {a.depth}, n = {a.width}, N = {a.train + a.test} "
          f"({a.train} train, {a.test} test), out_width {a.out_width}, S = {a.samples}, T = {a.steps}, "
          f"chunk {r.meta['chunk']}, η = {lr:.4g}")
    print(f"  {wall:.2f} s, {a.samples * a.steps / wall:,.0f} networks·steps/s")


if __name__ == "__main__":
    main()
