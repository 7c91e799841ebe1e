#!/usr/bin/env python
"""Benchmark of the Monte Carlo sampler: wall time and peak memory.

Default: L = 3, n = 32, N = 2 inputs, S = 10^5 networks, tanh, for the NTK-level statistics
(G, NTK, V, A, B, D, F) and separately the dNTK/ddNTK ones (P, Q, R, S, T, U).

    python scripts/bench_montecarlo.py [--samples S] [--width n] [--depth L] [--inputs N]
                                       [--groups ntk,dntk] [--chunk C]

Peak memory is reported twice: the peak of numpy/python allocations traced by tracemalloc
(numpy reports its buffers to tracemalloc), and the process' maximum resident set size from
``resource.getrusage`` (which includes the interpreter and libraries, and never decreases).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.sampling.model import ModelSpec  # noqa: E402
from ntkdiagrams.sampling.sampler import sample  # noqa: E402

GROUPS = {"ntk": ("K", "Theta", "V", "A", "B", "D", "F"), "dntk": ("P", "Q", "R", "S", "T", "U")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--inputs", type=int, default=2)
    p.add_argument("--activation", default="tanh")
    p.add_argument("--groups", default="ntk,dntk")
    p.add_argument("--chunk", type=int, default=None)
    p.add_argument("--no-trace", action="store_true", help="skip tracemalloc (it slows numpy a bit)")
    args = p.parse_args(argv)
    x = np.random.default_rng(0).standard_normal((args.inputs, 3))
    model = ModelSpec(activation=parse_activation(args.activation), depth=args.depth,
                      width=args.width, cb=0.1, cw=1.5, lb=1.0, lw=1.0, inputs=x)
    print(f"bench: L={args.depth} n={args.width} N={args.inputs} S={args.samples} "
          f"activation={args.activation} threads={os.environ.get('OMP_NUM_THREADS', 'default')} "
          f"cpus={os.cpu_count()}")
    for g in args.groups.split(","):
        stats = GROUPS[g]
        if not args.no_trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        r = sample(model, args.samples, stats=stats, chunk=args.chunk)
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] if not args.no_trace else float("nan")
        if not args.no_trace:
            tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB (Linux)
        print(f"{','.join(stats):>16}: {dt:8.1f} s   peak traced {peak / 2**20:8.1f} MiB   "
              f"max RSS so far {rss:8.1f} MiB   ({r['meta']['samples']} networks)")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
