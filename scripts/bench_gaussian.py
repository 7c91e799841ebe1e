"""Benchmark of ntkdiagrams.numerics.gaussian.expectation_tensor (prints figures; not a test).

Times k = 2..4 factors over N = 4, 8, 16 inputs for tanh and relu factors with all factors
equal (the symmetric case: only sorted index tuples are computed) and for mixed smooth sets
(σ', σ', σ, σ: two symmetric pairs; tanh, tanh', gelu, tanh: little symmetry).  Also prints accuracy figures
against high-precision references.

    python scripts/bench_gaussian.py [--quick] [--accuracy] [--method auto|exact|fast]

Run-time settings: those of the environment (:mod:`ntkdiagrams.settings`), printed first.
Figures and the dates they were measured at: docs/gaussian.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import sympy as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntkdiagrams.numerics.activations import z  # noqa: E402
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402


def kernel(N: int, seed: int = 0) -> np.ndarray:
    """A typical layer kernel: entries O(0.1..3), correlations up to ~0.99."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 6))
    X[N // 2:] = X[: N - N // 2][: N - N // 2] * 0.9 + 0.1 * X[N // 2:]  # near-collinear pairs
    return 0.2 + X @ X.T / 6


def timing(Ns, ks, method="auto") -> None:
    relu = sp.Max(0, z)
    th, dth = sp.tanh(z), 1 - sp.tanh(z) ** 2
    gelu = z / 2 * (1 + sp.erf(z / sp.sqrt(2)))
    cases = {
        "tanh (equal)": lambda k: [th] * k,
        "tanh', tanh', tanh, tanh": lambda k: [dth, dth, th, th][-k:] if k < 4 else [th, th, dth, dth],
        "tanh, tanh', gelu, tanh": lambda k: [th, dth, gelu, th],
        "relu (equal)": lambda k: [relu] * k,
    }
    # warm-up: rule and G(mu, s) tables are built once per factor (~0.1-0.5 s)
    for make in cases.values():
        expectation_tensor(make(4)[:3], kernel(3), method=method)
    print(f"method={method}")
    print(f"{'factors':26s} {'k':>2s} " + " ".join(f"{'N=' + str(N):>9s}" for N in Ns))
    for name, make in cases.items():
        for k in ks:
            facs = make(k)[:k]
            row = []
            for N in Ns:
                K = kernel(N)
                t0 = time.perf_counter()
                expectation_tensor(facs, K, method=method)
                row.append(time.perf_counter() - t0)
            print(f"{name:26s} {k:2d} " + " ".join(f"{t:8.3f}s" for t in row), flush=True)


def accuracy() -> None:
    import mpmath as mp

    mp.mp.dps = 25
    acts = {
        "tanh": (sp.tanh(z), mp.tanh), "erf": (sp.erf(z), mp.erf),
        "gelu": (z / 2 * (1 + sp.erf(z / sp.sqrt(2))), lambda x: x / 2 * (1 + mp.erf(x / mp.sqrt(2)))),
        "swish": (z / (1 + sp.exp(-z)), lambda x: x / (1 + mp.exp(-x))),
        "sin": (sp.sin(z), mp.sin), "softplus": (sp.log(1 + sp.exp(z)), lambda x: mp.log(1 + mp.exp(x))),
    }
    print("smooth, k=2 (1-D and 2-D mpmath.quad references), max relative error:")
    for name, (e, f) in acts.items():
        worst = 0.0
        for var in (0.1, 1.0, 3.0, 10.0):
            for rho in (0.0, 0.5, -0.7, 0.99):
                K = var * np.array([[1.0, rho], [rho, 1.0]])
                T = expectation_tensor([e, e], K)
                L = np.linalg.cholesky(K)
                g = lambda u, v: f(L[0, 0] * u) * f(L[1, 0] * u + L[1, 1] * v) * mp.exp(-(u * u + v * v) / 2) / (2 * mp.pi)
                ref = mp.quad(g, [-mp.inf, 0, mp.inf], [-mp.inf, 0, mp.inf]) if rho else \
                    mp.quad(lambda u: f(L[0, 0] * u) * mp.exp(-u * u / 2), [-mp.inf, 0, mp.inf]) ** 2 / (2 * mp.pi)
                worst = max(worst, abs(T[0, 1] / float(ref) - 1))
        print(f"  {name:9s} {worst:.1e}")


def fast_accuracy(n_tuples: int = 40) -> None:
    """Fast path (default settings) on the kernels of a tanh network, against the same iterated
    rule with 20 nodes per side in all four coordinates and no table (docs/gaussian.md)."""
    import itertools

    from ntkdiagrams.numerics.evaluate import evaluate
    from ntkdiagrams.numerics.gaussian.blocks import Block
    from ntkdiagrams.numerics.gaussian.factors import prepare_factor
    from ntkdiagrams.numerics.gaussian.linalg import cholesky_jittered
    from ntkdiagrams.numerics.gaussian.nested import nested_sum
    from ntkdiagrams.numerics.gaussian.rules import split_rules_full
    from ntkdiagrams.numerics.gaussian.tensor import tensor_values

    x = np.random.default_rng(0).standard_normal((16, 3)) / np.sqrt(3)
    layers = evaluate("tanh", 20, x, cb=0.1, cw=1.5, stats=["K"])
    f = prepare_factor(sp.tanh(z))
    facs = [f] * 4
    print("fast path, <tanh^4> on 4 distinct inputs of a tanh network's kernels, relative error:")
    rng = np.random.default_rng(1)
    for ell in (2, 5, 20):
        K = layers[ell - 1]["K"]
        tup = np.array(list(itertools.combinations(range(16), 4)))
        tup = tup[rng.choice(len(tup), n_tuples, replace=False)]
        ref = []
        with Quadrature(Settings.from_environment()) as quad:
            for t in tup:
                _, L = cholesky_jittered(K[np.ix_(t, t)][None], 4)
                blocks = [Block([(f, np.ones(1))]) for _ in range(4)]
                ref.append(nested_sum(blocks, L, np.arange(1), [split_rules_full(20)] * 4, None, 0.0,
                                      1.0, quad)[0])
            val = tensor_values(facs, K, tup, None, "auto", quad)
        e = np.abs(val / np.array(ref) - 1)
        print(f"  K^({ell:2d}): typical {np.median(e):.1e}  worst {e.max():.1e}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="N up to 8 only")
    ap.add_argument("--method", default="auto", choices=["auto", "exact", "fast"])
    ap.add_argument("--accuracy", action="store_true", help="also print accuracy figures (slow)")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()
    Ns = [4, 8] if args.quick else [4, 8, 16]
    s = Settings.from_environment()
    print(f"settings: jit={s.jit} threads={s.threads} keep_heap={s.keep_heap}")
    if not args.no_timing:
        timing(Ns, [2, 3, 4], args.method)
    if args.accuracy:
        fast_accuracy()
        accuracy()
