"""Accuracy of the fast path on small tuples (prints a table; not a test).

For networks of issue 15's grid (N = 16 inputs in n0 = 3, C_b = 0), the kernels K^(ℓ) of chosen
layers, a sample of four distinct inputs: E[σ^(d1)(z1) σ^(d2)(z2) σ^(d3)(z3) σ^(d4)(z4)] for the
derivative orders of :data:`ORDERS`, by the fast path as ``method="auto"`` takes it (``fast`` for
sin), with the small tuples' rules (numerics/gaussian/ladder.py, SMALL_VARIANCE) and without them
(SMALL_VARIANCE set to −1: every tuple on the ladders of before 2026-12-02), against the iterated
split rule with 20 nodes per side in all four coordinates and no table (that of
``scripts/bench_gaussian.py --accuracy``; at these variances it moves ≤ 3e-12 of the scale from
16 nodes per side, ``--check``).

Errors are relative to the scale Π_k ⟨f_k(z_k)²⟩^{1/2}.  Columns: the layer's variances (min–max of
the sampled tuples), the share of small tuples, then the largest error over the sample for each
derivative pattern, before → after.

    python3 scripts/validate_smallvar.py            # the table of docs/gaussian.md (~6 min)
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ntkdiagrams.numerics.gaussian.ladder as ladder  # noqa: E402
from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.numerics.evaluate import evaluate  # noqa: E402
from ntkdiagrams.numerics.gaussian import Quadrature  # noqa: E402
from ntkdiagrams.numerics.gaussian.blocks import Block  # noqa: E402
from ntkdiagrams.numerics.gaussian.linalg import cholesky_jittered  # noqa: E402
from ntkdiagrams.numerics.gaussian.nested import nested_sum  # noqa: E402
from ntkdiagrams.numerics.gaussian.rules import split_rules_full  # noqa: E402
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors, tensor_values  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402

from bench_grid import inputs  # noqa: E402  (the grid's inputs)
from validate_twofactor import scale  # noqa: E402  (Π_k ⟨f_k²⟩^{1/2})

#: (activation, |x|²/n0, C_W, layers)
CASES = (("tanh", 0.3, 1.0, (2, 10, 18)), ("tanh", 1.0, 1.0, (10,)), ("tanh", 3.0, 1.0, (10,)),
         ("tanh", 1.0, 2.0, (2, 10)), ("erf", 0.3, 1.0, (2, 18)), ("gelu", 0.3, 1.0, (2, 18)),
         ("swish", 0.3, 1.0, (10,)), ("softplus", 0.3, 1.0, (10,)), ("sin", 0.3, 1.0, (10,)))
ORDERS = ((0, 0, 0, 0), (1, 1, 0, 0), (2, 0, 1, 1), (1, 1, 2, 0))


def reference(facs, C: np.ndarray, n: int, quad: Quadrature) -> np.ndarray:
    """The iterated split rule, n nodes per side in every coordinate, no table."""
    _, L = cholesky_jittered(C.copy(), 4)
    blocks = [Block([(f, np.ones(C.shape[0]))]) for f in facs]
    return nested_sum(blocks, L, np.arange(C.shape[0]), [split_rules_full(n)] * 4, None, 0.0, 1.0, quad)


def fast_values(facs, K, tup, method: str, small: bool, quad: Quadrature) -> np.ndarray:
    keep = ladder.SMALL_VARIANCE
    ladder.SMALL_VARIANCE = keep if small else -1.0
    try:
        return tensor_values(facs, K, tup, None, method, quad)
    finally:
        ladder.SMALL_VARIANCE = keep


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=100, help="four-input tuples per layer")
    ap.add_argument("--check", action="store_true", help="also print the reference's change from 16 nodes per side")
    args = ap.parse_args(argv)
    cols = " | ".join("σ^" + "".join(map(str, o)) for o in ORDERS)
    print(f"| activation | \\|x\\|²/n0, C_W | layer | variances | small | {cols} |")
    print("|---|---|---|---|---|" + "---|" * len(ORDERS))
    for name, sc, cw, layers in CASES:
        t0 = time.perf_counter()
        act = parse_activation(name)
        method = "fast" if name == "sin" else "auto"
        ev = evaluate(name, max(layers), inputs(16, sc), cb=0.0, cw=cw, stats=["K"])
        for layer in layers:
            K = np.asarray(ev[layer - 1]["K"])
            tup = np.array(list(itertools.combinations(range(16), 4)))
            tup = tup[np.random.default_rng(layer).choice(len(tup), args.sample, replace=False)]
            C = K[tup[:, :, None], tup[:, None, :]]
            diag = np.einsum("tkk->tk", C)
            small = np.mean(np.max(diag, axis=1) <= ladder.SMALL_VARIANCE)
            cells = []
            with Quadrature(Settings(threads=2)) as quad:
                for o in ORDERS:
                    facs = prepare_factors([act.derivative(d) for d in o])
                    ref = reference(facs, C, 20, quad)
                    s = scale(facs, C)
                    before = np.max(np.abs(fast_values(facs, K, tup, method, False, quad) - ref) / s)
                    after = np.max(np.abs(fast_values(facs, K, tup, method, True, quad) - ref) / s)
                    cell = f"{before:.1e} → {after:.1e}"
                    if args.check:
                        cell += f" (ref {np.max(np.abs(reference(facs, C, 16, quad) - ref) / s):.0e})"
                    cells.append(cell)
            print(f"| {name} | {sc:g}, {cw:g} | {layer} | {diag.min():.2g}–{diag.max():.2g} | "
                  f"{small:.0%} | " + " | ".join(cells) + " |", flush=True)
        print(f"<!-- {name} {sc:g} {cw:g}: {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
