"""Benchmark: time to evaluate derived recursions versus the number of inputs N and depth L.

Prints one line per (activation, statistics, L, N): wall time, the process's peak resident memory
so far (ru_maxrss), and the size of the output tensors.  ``--memory`` also traces the peak Python
memory of each call with tracemalloc; that slows the fast path's many array allocations down by
up to 3×, so its times are not comparable.  Run:  python3 scripts/bench_evaluate.py [--quick]

Run-time settings (compiled kernel, threads, the glibc heap pad) are those of the environment
(``NTKDIAGRAMS_JIT``, ``NTKDIAGRAMS_THREADS``, ``NTKDIAGRAMS_KEEP_HEAP``; see
:mod:`ntkdiagrams.settings`), overridden by ``--threads``, ``--no-jit``, ``--keep-heap on|off``;
the settings used are printed first.  Figures and their dates: docs/gaussian.md.
"""
import argparse
import os
import resource
import time
import tracemalloc

import numpy as np

from ntkdiagrams.numerics.evaluate import evaluate
from ntkdiagrams.engine.derivation import derive
from ntkdiagrams.settings import Settings


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="N up to 4 only")
    p.add_argument("--max-n", type=int, default=16)
    p.add_argument("--kgv-only", action="store_true", help="only the K, G1, V cases (tanh, relu)")
    p.add_argument("--activation", choices=["tanh", "relu"], help="only this activation")
    p.add_argument("--memory", action="store_true", help="trace peak memory per call (slower)")
    p.add_argument("--threads", type=int, help="threads of the quadrature (default: environment)")
    p.add_argument("--no-jit", action="store_true", help="numpy path only (no compiled kernel)")
    p.add_argument("--keep-heap", choices=["on", "off"], help="glibc M_TOP_PAD (default: environment)")
    args = p.parse_args()
    settings = Settings.from_environment()
    if args.threads is not None:
        settings = settings.with_(threads=args.threads)
    if args.no_jit:
        settings = settings.with_(jit=False)
    if args.keep_heap is not None:
        settings = settings.with_(keep_heap=args.keep_heap == "on")
    print(f"settings: jit={settings.jit} threads={settings.threads} keep_heap={settings.keep_heap}")
    t0 = time.perf_counter()
    for t in ("K", "G1", "V", "Theta", "Theta1", "A", "B", "D", "F"):
        derive(t)
    print(f"derive (all nine tensors, this process): {time.perf_counter() - t0:.1f} s")
    ns = [n for n in (1, 2, 4, 8, 16, 32) if n <= (4 if args.quick else args.max_n)]
    cases = [("tanh", ["K", "G1", "V"]), ("relu", ["K", "G1", "V"]),
             ("tanh", ["K", "G1", "V", "Theta", "Theta1", "A", "B", "D", "F"])]
    if args.kgv_only:
        cases = cases[:2]
    if args.activation:
        cases = [c for c in cases if c[0] == args.activation]
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    mem = "traced MB" if args.memory else "maxrss MB"
    print(f"{'activation':10s} {'stats':26s} {'L':>3s} {'N':>3s} {'time':>9s} {mem:>9s} {'out MB':>7s}")
    for act, stats in cases:
        for L in (5, 20):
            for N in ns:
                x = np.random.default_rng(0).standard_normal((N, 3)) / np.sqrt(3)
                if args.memory:
                    tracemalloc.start()
                t = time.perf_counter()
                layers = evaluate(act, L, x, cb=0.1, cw=1.5 if act == "tanh" else 2.0, stats=stats,
                                  settings=settings)
                dt = time.perf_counter() - t
                if args.memory:
                    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
                    tracemalloc.stop()
                else:
                    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                out = sum(a.nbytes for layer in layers for k, a in layer.items() if k != "layer") / 2 ** 20
                print(f"{act:10s} {','.join(stats):26s} {L:3d} {N:3d} {dt:8.2f}s {peak:9.1f} {out:7.2f}"
                      f"   load {os.getloadavg()[0]:.1f}", flush=True)
                if dt > 120:
                    break


if __name__ == "__main__":
    main()
