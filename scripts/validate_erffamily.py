"""The erf family's closed form against quadrature, and what the fast path left (prints a table; not a test).

For networks of issue 15's grid (N = 16 inputs in n0 = 3, C_b = 0; erf and GELU), the kernels
K^(ℓ) of chosen layers, 40 random tuples (a, b, c, d) of distinct inputs and 40 tuples (a, b, b, c)
(merged slots): E[σ^(d1) σ^(d2) σ^(d3) σ^(d4)] for the derivative orders of :data:`ORDERS`, by

* ``closed``: ``method="auto"``, since 2026-12-02 the orthant moments of
  :mod:`ntkdiagrams.numerics.gaussian.erffamily`;
* ``ladders``: ``method="fast"``, the fast path with its ladders (what ``auto`` did before);

against the fast path's nested rule at a uniform 128 nodes per side (column "ref": its change
from 96 nodes, an upper bound on its own error where it converges).  Errors relative to the scale
Π_k ⟨f_k(z_k)²⟩^{1/2} (:func:`validate_twofactor.scale`), the largest over the tuples.

    python3 scripts/validate_erffamily.py      # the table of docs/gaussian.md (~10 min)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.numerics.gaussian import Quadrature  # noqa: E402
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors, tensor_values  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402

from validate_merged import grid_kernels  # noqa: E402  (K^(ℓ) of the grid's networks)
from validate_twofactor import scale  # noqa: E402  (Π_k ⟨f_k²⟩^{1/2})

#: (activation, |x|²/n0, C_W, layers)
CASES = (("erf", 3.0, 2.0, (1, 2, 10)), ("erf", 0.3, 1.0, (1, 10)), ("gelu", 3.0, 2.0, (1, 2, 10)),
         ("gelu", 1.0, 2.0, (1, 10)))
ORDERS = ((0, 0, 0, 0), (1, 1, 2, 0))


def main() -> None:
    print("| activation | \\|x\\|²/n0, C_W | layer | factors | tuples | closed | ladders | ref |")
    print("|---|---|---|---|---|---|---|---|")
    for name, sc, cw, layers in CASES:
        act = parse_activation(name)
        for layer, K in grid_kernels(name, sc, cw, layers):
            rng = np.random.default_rng(layer)
            four = np.array([rng.choice(16, 4, replace=False) for _ in range(40)])
            three = np.array([rng.choice(16, 3, replace=False) for _ in range(40)])[:, [0, 1, 1, 2]]
            for o in ORDERS:
                facs = prepare_factors([act.derivative(d) for d in o])
                for label, tup in (("abcd", four), ("abbc", three)):
                    C = K[tup[:, :, None], tup[:, None, :]]
                    with Quadrature(Settings(threads=2)) as quad:
                        v = tensor_values(facs, K, tup, None, "auto", quad)
                        old = tensor_values(facs, K, tup, None, "fast", quad)
                        r = tensor_values(facs, K, tup, 128, "fast", quad)
                        r2 = tensor_values(facs, K, tup, 96, "fast", quad)
                    s = scale(facs, C)
                    cells = [np.max(np.abs(x - r) / s) for x in (v, old, r2)]
                    print(f"| {name} | {sc:g}, {cw:g} | {layer} | σ^{''.join(map(str, o))} | {label} | "
                          + " | ".join(f"{c:.1e}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
