"""Accuracy of the two-factor form of four-variable expectations (prints a table; not a test).

For networks of issue 15's grid (N = 16 inputs in n0 = 3, C_b = 0), the kernels K^(ℓ) of chosen
layers, every four distinct inputs: ⟨σσσσ⟩ (and one mixed tuple of derivatives) over the tuples
whose covariance has a two-factor form C = A Aᵀ + diag(d) (numerics/gaussian/twofactor.py) and
whose variances are ≥ TWO_FACTOR_MIN_VARIANCE, a sample of up to ``--sample`` of them:

* ``2f``: the two-factor form as the fast path takes it (its ladders, the tables of G);
* ``chol``: the Cholesky form of the fast path alone (three outer levels and one table);
* reference: the same two-factor form with G(μ, s) = E[f(μ + sξ)] by 200-point Gauss–Hermite
  (no table) and 32 nodes per side of the split rules in both coordinates, independent of the
  ladders and the tables (its change from 24 nodes per side: ≤ 3e-10 of the scale, measured).

Errors are relative to the scale Π_k ⟨f_k(z_k)²⟩^{1/2}.  Columns: tuples with a form / all, mean
points of the two-factor form, then max, 99th percentile and median error of each.

    python3 scripts/validate_twofactor.py            # the table of docs/gaussian.md (~5 min)
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ntkdiagrams.numerics.gaussian.fast as fast  # noqa: E402
from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.numerics.evaluate import evaluate  # noqa: E402
from ntkdiagrams.numerics.gaussian import Quadrature  # noqa: E402
from ntkdiagrams.numerics.gaussian.blocks import Block  # noqa: E402
from ntkdiagrams.numerics.gaussian.ladder import FAST_LADDER_M34, FAST_SLACK, block_sharpness  # noqa: E402
from ntkdiagrams.numerics.gaussian.rules import split_nodes, split_rules_full  # noqa: E402
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors  # noqa: E402
from ntkdiagrams.numerics.gaussian.twofactor import (TWO_FACTOR_MIN_VARIANCE, integrate_two_factor,  # noqa: E402
                                                     two_factor_forms)
from ntkdiagrams.settings import Settings  # noqa: E402

CASES = (("tanh", 3.0, 2.0, (0, 0, 0, 0), (2, 10, 18)), ("tanh", 0.3, 1.0, (0, 0, 0, 0), (2, 18)),
         ("gelu", 3.0, 2.0, (0, 0, 0, 0), (2, 10, 18)), ("gelu", 1.0, 2.0, (2, 0, 1, 1), (5, 15)),
         ("erf", 1.0, 2.0, (0, 0, 0, 0), (2, 10, 18)), ("softplus", 3.0, 2.0, (0, 0, 0, 0), (2, 10, 18)),
         ("swish", 3.0, 2.0, (0, 0, 0, 0), (2, 18)))


def inputs(N: int, scale: float, n0: int = 3, seed: int = 0) -> np.ndarray:
    """The grid's inputs (scripts/bench_grid.py)."""
    x = np.random.default_rng(seed).standard_normal((N, n0))
    return x * np.sqrt(scale / np.mean(np.sum(x * x, axis=1) / n0))


def reference(facs, forms, n: int = 32) -> np.ndarray:
    """E over the two-factor forms with exact G (200-point Gauss–Hermite) and n nodes per side."""
    x, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    U0, W0 = (np.ravel(a) for a in split_nodes(split_rules_full(n), 0.0))
    rules = split_rules_full(n)
    out = np.empty(forms.A.shape[0])
    for t in range(out.size):
        A, sd, order = forms.A[t], forms.sd[t], forms.order[t]
        U1, W1 = split_nodes(rules, -A[1, 0] * U0 / A[1, 1])            # (n0, 2n)
        total = W1.copy()
        g0 = None
        for row in range(4):
            f = facs[order[row]].plus
            if row == 0:
                g0 = np.sum(w * f(A[0, 0] * U0[:, None] + sd[0] * x), axis=-1)
            else:
                mu = A[row, 0] * U0[:, None] + A[row, 1] * U1
                total *= np.sum(w * f(mu[..., None] + sd[row] * x), axis=-1)
        out[t] = np.sum(W0 * g0 * np.sum(total, axis=1))
    return out


def scale(facs, C) -> np.ndarray:
    x, w = np.polynomial.hermite_e.hermegauss(300)
    w = w / w.sum()
    s = np.ones(C.shape[0])
    for k, f in enumerate(facs):
        s *= np.sqrt(np.sum(w * f.plus(np.sqrt(C[:, k, k])[:, None] * x) ** 2, axis=1))
    return s


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=300)
    args = ap.parse_args(argv)
    print("| activation | \\|x\\|²/n0, C_W | factors | layer | with a form | points (2f) | 2f: max / q99 / median "
          "| chol: max / q99 / median |")
    print("|---|---|---|---|---|---|---|---|")
    for name, sc, cw, orders, layers in CASES:
        t0 = time.perf_counter()
        act = parse_activation(name)
        facs = prepare_factors([act.derivative(k) for k in orders])
        ev = evaluate(name, max(layers), inputs(16, sc), cb=0.0, cw=cw, stats=["K"])
        for layer in layers:
            K = np.asarray(ev[layer - 1]["K"])
            idx = np.array(list(itertools.combinations(range(K.shape[0]), 4)))
            C = K[idx[:, :, None], idx[:, None, :]]
            blocks = [Block([(f, np.ones(C.shape[0]))]) for f in facs]
            forms = two_factor_forms(C, block_sharpness(blocks), FAST_SLACK[4], FAST_LADDER_M34)
            ok = forms.ok & (np.min(np.einsum("tkk->tk", C), axis=1) >= TWO_FACTOR_MIN_VARIANCE)
            sel = np.nonzero(ok)[0]
            sel = sel[::max(1, sel.size // args.sample)][:args.sample]
            sub, Cs = forms.take(sel), C[sel]
            even = fast.symmetry(blocks) > 0
            with Quadrature(Settings(threads=2)) as quad:
                got = integrate_two_factor(facs, sub, fast.half(sub.codes) if even else sub.codes, quad)
                saving = fast.TWO_FACTOR_SAVING
                fast.TWO_FACTOR_SAVING = 0.0  # the Cholesky form alone, for comparison
                try:
                    chol = fast.integrate_fast([b.take(sel) for b in blocks], Cs.copy(), None, quad)
                finally:
                    fast.TWO_FACTOR_SAVING = saving
            ref = reference(facs, sub)
            s = scale(facs, Cs)
            e2, ec = np.abs(got - ref) / s, np.abs(chol - ref) / s

            def stats(e):
                return f"{e.max():.1e} / {np.quantile(e, 0.99):.1e} / {np.median(e):.1e}"
            print(f"| {name} | {sc:g}, {cw:g} | {orders} | {layer} | {ok.sum()} / {ok.size} | "
                  f"{np.mean(sub.points):.0f} | {stats(e2)} | {stats(ec)} |", flush=True)
        print(f"<!-- {name} {sc:g} {cw:g}: {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
