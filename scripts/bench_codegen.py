"""Benchmark of generated code: codegen time, and generated numpy evaluate vs nd.evaluate.

    python3 scripts/bench_codegen.py [--activation tanh,gelu,relu] [--stats K,G1,V] [--N 8] [--depth 10] [--repeat 2]

Prints the load average of the machine at the start and the end, and per activation: the time of
``nd.codegen``, first call of the process (the derivations come from the disk cache, warm from an
earlier run; issue 18's target < 5 s) and again, then the wall time of the generated module's
``evaluate`` and of ``nd.evaluate`` (settings of the environment) on the same N random inputs
(norm² ≈ n0/3, C_b = 0.1, C_W = 1.5), best of ``--repeat`` after one warm-up call each, their
ratio (target ≤ 2), and the largest relative difference per tensor (relative to the tensor's
largest entry).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ntkdiagrams as nd


def best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def run(activation: str, stats: list, args) -> None:
    """Codegen time, generated numpy evaluate vs nd.evaluate, and their largest differences."""
    t_first, _ = best(lambda: nd.codegen(stats, activation), 1)  # derivations from the disk cache
    t_gen, source = best(lambda: nd.codegen(stats, activation), 1)
    print(f"codegen {args.stats} {activation}: first call of the process {t_first:.2f} s (derivations "
          f"from the disk cache when it is warm), again {t_gen:.2f} s; {len(source.splitlines())} lines")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("generated", path)
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)
        x = np.random.default_rng(0).normal(size=(args.N, 3)) / np.sqrt(3)
        hyper = dict(C_b=0.1, C_W=1.5)
        gen.evaluate(x[:2], 2, **hyper)
        nd.evaluate(activation, 2, x[:2], stats=stats, params=hyper)
        t_pkg, ref = best(lambda: nd.evaluate(activation, args.depth, x, stats=stats, params=hyper), args.repeat)
        t_g, got = best(lambda: gen.evaluate(x, args.depth, **hyper), args.repeat)
    print(f"  evaluate N = {args.N}, L = {args.depth}: generated numpy {t_g:.2f} s, nd.evaluate {t_pkg:.2f} s, "
          f"ratio {t_g / t_pkg:.2f} (target <= 2)")
    diff = {s: max(float(np.max(np.abs(a[s] - b[s])) / max(np.max(np.abs(b[s])), 1e-300)) for a, b in zip(got, ref))
            for s in stats}
    print("  largest relative difference:", ", ".join(f"{s} {v:.1e}" for s, v in diff.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--activation", default="tanh,gelu,relu", help="comma-separated activations")
    ap.add_argument("--stats", default="K,G1,V")
    ap.add_argument("--N", type=int, default=8)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    stats = args.stats.split(",")
    print("load average (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg())
    for act in args.activation.split(","):
        run(act, stats, args)
    print("load average (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
