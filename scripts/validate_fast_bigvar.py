"""Fast path at large effective variances against the cone method (issue 15; prints figures).

For random kernels of m = 2, 3 or 4 distinct inputs (all variances equal to v; unequal, 0.2 v … v;
a nearly collinear pair, ρ ≈ 1 − 5e-7) and products of an activation's derivatives σ^(d), prints
per case the largest |fast − cone| over the kernels relative to the scale Π⟨f_k²⟩^{1/2}, and the
reference's own movement (cone method at the two degrees given).  The fast path runs with its
default ladders (``integrate_fast`` without ``degree``), so a tuple beyond them would be
integrated by the cone method as well (check the ``fast_tuples`` counter printed at the end).

    python3 scripts/validate_fast_bigvar.py --act tanh,gelu,erf --var 8,14,20 --m 3 --degrees 40,48
    python3 scripts/validate_fast_bigvar.py --act tanh --var 10,20 --m 4 --degrees 24,28 --kernels 1

Figures: docs/gaussian.md (accuracy record, "fast path at large effective variances").
m = 4 at degree 28 costs ~10–60 s per kernel and case on the 2-core machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.numerics.gaussian.blocks import Block  # noqa: E402
from ntkdiagrams.numerics.gaussian.cone import integrate_exact  # noqa: E402
from ntkdiagrams.numerics.gaussian.context import Quadrature  # noqa: E402
from ntkdiagrams.numerics.gaussian.fast import integrate_fast  # noqa: E402
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402

COMBOS = {2: [(0, 0), (1, 0), (2, 1), (2, 2)], 3: [(1, 0, 0), (2, 1, 0), (1, 1, 1), (0, 0, 2)],
          4: [(0, 0, 0, 0), (1, 1, 0, 0), (2, 0, 1, 1)]}


def kernels(rng, n: int, m: int, var: float, kind: str) -> np.ndarray:
    out = []
    for _ in range(n):
        X = rng.standard_normal((m, m + 1))
        if kind == "collinear":
            X[1] = X[0] + 1e-3 * rng.standard_normal(m + 1)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        v = var * rng.uniform(0.2, 1.0, m) if kind == "unequal" else np.full(m, var)
        out.append(X @ X.T * np.sqrt(np.outer(v, v)))
    return np.array(out)


def scale(facs, C) -> np.ndarray:
    """Π_k ⟨f_k(z_k)²⟩^{1/2} by 300-point Gauss–Hermite (smooth factors)."""
    x, w = np.polynomial.hermite_e.hermegauss(300)
    w = w / w.sum()
    s = np.ones(C.shape[0])
    for k, f in enumerate(facs):
        sd = np.sqrt(C[:, k, k])
        s *= np.sqrt(np.sum(w * f.plus(sd[:, None] * x) ** 2, axis=1))
    return s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--act", default="tanh,gelu")
    p.add_argument("--var", default="4,10,20")
    p.add_argument("--m", type=int, default=3, choices=(2, 3, 4))
    p.add_argument("--degrees", default="40,48", help="cone-method degrees: convergence check, reference")
    p.add_argument("--kernels", type=int, default=3, help="random kernels per case")
    p.add_argument("--seed", type=int, default=2)
    args = p.parse_args()
    degrees = [int(d) for d in args.degrees.split(",")]
    rng = np.random.default_rng(args.seed)
    worst = 0.0
    with Quadrature(Settings(jit=False, threads=1)) as quad:
        for name in args.act.split(","):
            act = parse_activation(name)
            d = [act.derivative(k) for k in range(3)]
            for v in (float(x) for x in args.var.split(",")):
                for kind in ("equal", "unequal", "collinear"):
                    C = kernels(rng, args.kernels, args.m, v, kind)
                    for combo in COMBOS[args.m]:
                        facs = prepare_factors([d[k] for k in combo])
                        blocks = [Block([(f, np.ones(C.shape[0]))]) for f in facs]
                        sc = scale(facs, C)
                        t0 = time.perf_counter()
                        refs = [integrate_exact(blocks, C, deg, quad) for deg in degrees]
                        t_ref = time.perf_counter() - t0
                        t0 = time.perf_counter()
                        fast = integrate_fast(blocks, C, None, quad)
                        t_fast = time.perf_counter() - t0
                        conv = np.max(np.abs(refs[0] - refs[-1]) / sc)
                        err = np.max(np.abs(fast - refs[-1]) / sc)
                        worst = max(worst, err)
                        print(f"{name:8s} m={args.m} v={v:<5g} {kind:9s} {combo}  fast vs cone({degrees[-1]}) "
                              f"{err:.1e}   cone {degrees[0]} vs {degrees[-1]} {conv:.1e}   "
                              f"fast {t_fast:.2f} s, cone {t_ref:.1f} s", flush=True)
        print(f"worst {worst:.1e}; counters {quad.stats}")


if __name__ == "__main__":
    main()
