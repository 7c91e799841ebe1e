#!/usr/bin/env python
"""Benchmark of the order-1/n² set (issue 19's targets: cold derive of the second-order set under 10 min;
evaluate N = 2, L = 10 in under 10 s).

* ``--cold``: derive every tensor of rules/mlp2.toml into an empty cache folder (one process, in order), and
  print the time per tensor and in all;
* evaluation: per activation, after a warm-up call (derivations loaded from the cache, quadrature rules built:
  once per process), ``nd.evaluate(σ, 10, x, rules="mlp2", stats=["G2", "V1", "V6", "Theta2"])`` for a fixed
  data set of N = 2 inputs (with every tensor these need: K, G1, V, Θ, Θ1, D, F, D1, F1, D6, F6).

    python scripts/bench_order2.py [--cold] [--activations tanh,relu,gelu] [--depth 10]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from ntkdiagrams.engine.derivation import clear_memory_cache, derive  # noqa: E402
from ntkdiagrams.language.rulefile import load_rules  # noqa: E402
from ntkdiagrams.numerics.evaluate import evaluate  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402

CW = {"tanh": 1.0, "relu": 2.0, "gelu": 1.5}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cold", action="store_true", help="also time the cold derive of every mlp2 tensor")
    p.add_argument("--activations", default="tanh,relu,gelu")
    p.add_argument("--depth", type=int, default=10)
    args = p.parse_args(argv)
    print(f"# order 1/n²; load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    folder = tempfile.TemporaryDirectory() if args.cold else None
    settings = Settings(cache_dir=folder.name) if folder else None   # None: the environment's cache
    if args.cold:
        rules = load_rules("mlp2")
        clear_memory_cache()
        t0 = time.perf_counter()
        for name in rules.tensors:
            t = time.perf_counter()
            derive(name, rules, settings=settings)
            print(f"derive {name}: {time.perf_counter() - t:.1f} s", flush=True)
        print(f"cold derive, all {len(rules.tensors)} tensors of mlp2: {time.perf_counter() - t0:.0f} s")
    x = np.array([[1.1, -0.6, 0.9], [0.2, 1.3, -0.7]])
    x = x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(3 * np.array([1.0, 0.8]))[:, None]
    stats = ["G2", "V1", "V6", "Theta2"]
    print("| σ | C_W | evaluate N = 2, L = %d: wall | CPU |" % args.depth)
    print("|---|---|---|---|")
    for act in args.activations.split(","):
        cw = CW.get(act, 1.0)
        evaluate(act, 2, x, cb=0.0, cw=cw, rules="mlp2", stats=stats, settings=settings)
        t, c = time.perf_counter(), time.process_time()
        evaluate(act, args.depth, x, cb=0.0, cw=cw, rules="mlp2", stats=stats, settings=settings)
        print(f"| {act} | {cw} | {time.perf_counter() - t:.2f} s | {time.process_time() - c:.2f} s |", flush=True)
    if folder:
        folder.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
