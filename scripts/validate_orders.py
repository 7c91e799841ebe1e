"""The order rule of the fast path (``fast.pivots_dominate``) on rank-3 first layers, against the exact
cone method (prints a table; not a test).

The grid's first-layer kernel K^(1) = C_W x xᵀ/n0 of N = 16 inputs in n0 = 3 has rank 3, so every
four-input tuple (a, b, c, d) has a degenerate covariance.  For each case of :data:`CASES` the fast
path (``method="fast"``) integrates every such tuple (1820) twice:

* ``now``: as the package is (since 2026-12-02 the order search takes only orders whose every level's
  own factor varies at least FAST_PIVOT_RATIO times as fast as the factors inside it);
* ``before``: any order (FAST_PIVOT_RATIO = 0), as before that day;

and on the tuples where the two differ most (up to :data:`WORST`, those over 1e-10 of the scale) the
exact cone method at degree :data:`DEGREE` decides which is right; the nested rule at a uniform 96
nodes per side (the reference of ``validate_sharpness.py --every``) is shown on the same tuples.
Errors relative to the scale Π_k ⟨f_k(z_k)²⟩^{1/2} (:func:`validate_twofactor.scale`).

    python3 scripts/validate_orders.py     # ~30 min on the 2-core machine beside the test suite
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.numerics.gaussian import Quadrature  # noqa: E402
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors, tensor_values  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402

from validate_merged import grid_kernels, uniform_reference  # noqa: E402  (shared)
from validate_sharpness import fast  # noqa: E402  (now / before)
from validate_twofactor import scale  # noqa: E402  (Π_k ⟨f_k²⟩^{1/2})

#: (activation, |x|²/n0, C_W, layer, derivative orders)
CASES = (("tanh", 3.0, 2.0, 1, (0, 0, 0, 0)), ("tanh", 3.0, 2.0, 1, (1, 1, 2, 0)),
         ("tanh", 3.0, 2.0, 2, (1, 1, 2, 0)), ("softplus", 3.0, 2.0, 1, (1, 1, 2, 0)))
#: tuples checked against the cone method per case (those where now and before differ most)
WORST = 6
#: degree of the cone method (on these tuples within ~1e-11 of the uniform rule at 192 nodes per side)
DEGREE = 40


def main() -> None:
    print(f"| activation | \\|x\\|²/n0, C_W | layer | factors | now ≠ before (> 1e-9 of the scale), max "
          f"| tuples checked | now − exact | before − exact | uniform 96 − exact |")
    print("|---|---|---|---|---|---|---|---|---|")
    tup = np.array(list(itertools.combinations(range(16), 4)))
    for name, sc, cw, layer, o in CASES:
        [(_, K)] = grid_kernels(name, sc, cw, [layer])
        act = parse_activation(name)
        facs = prepare_factors([act.derivative(d) for d in o])
        s = scale(facs, K[tup[:, :, None], tup[:, None, :]])
        now, before = fast(facs, K, tup, False), fast(facs, K, tup, True)
        diff = np.abs(now - before) / s
        sel = np.argsort(-diff)[:WORST]
        sel = sel[diff[sel] > 1e-10]
        cells = ["–"] * 3
        if sel.size:
            with Quadrature(Settings(threads=2)) as quad:
                exact = tensor_values(facs, K, tup[sel], DEGREE, "exact", quad)
            [uni] = uniform_reference(facs, K, tup[sel], (96,))
            cells = [f"{np.max(np.abs(v - exact) / s[sel]):.1e}" for v in (now[sel], before[sel], uni)]
        print(f"| {name} | {sc:g}, {cw:g} | {layer} | σ^{''.join(map(str, o))} | {int(np.sum(diff > 1e-9))}, "
              f"{diff.max():.1e} | {sel.size} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
