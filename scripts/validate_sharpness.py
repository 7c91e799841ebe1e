"""The logistic family's sharpness safety and the order of the levels, against quadrature references
(prints tables; not a test).

For networks of issue 15's grid (N = 16 inputs in n0 = 3, C_b = 0; softplus and swish):
E[σ^(d1) σ^(d2) σ^(d3) σ^(d4)] by the fast path with its ladders (``method="fast"``)

* ``now``: as the package is (since 2026-12-02: the logistic family's safety
  SHARPNESS_SAFETY_LOGISTIC and floor SHARPNESS_MIN of :mod:`ntkdiagrams.numerics.gaussian.sharpness`,
  and the orders of the levels restricted by :func:`ntkdiagrams.numerics.gaussian.fast.pivots_dominate`);
* ``before``: the safety 1.5 and the floor 0.4 of every factor, and any order (FAST_PIVOT_RATIO = 0),
  as before that day;

errors relative to the scale Π_k ⟨f_k(z_k)²⟩^{1/2} (:func:`validate_twofactor.scale`), the largest over
the tuples.

Default: the kernels K^(ℓ) of the layers of :data:`CASES`, 40 random tuples (a, b, c, d) of distinct
inputs and 40 tuples (a, b, b, c) (merged slots), the derivative orders of :data:`ORDERS`, against the
nested rule at a uniform 128 nodes per side (column "ref": its change from 96 nodes).

``--every``: every tuple (a, b, c, d) of distinct inputs (1820) or every (a, b, b, c) (1680) of the
cases of :data:`EVERY`, against the uniform rule at 96 nodes per side; the number of tuples over 1e-8
and the worst.  (At 64 nodes the uniform rule itself is off by up to 7e-8 on the rank-3 first layer.
For the tanh family it is no reference there: at 96 nodes it is off by up to 4e-6 of the scale on
tanh's rank-3 first layer at |x|²/n0 = 3, C_W = 2, at 160 nodes by 2.4e-9; scripts/validate_orders.py
checks that layer against the cone method.)

    python3 scripts/validate_sharpness.py            # ~15 min on the 2-core machine
    python3 scripts/validate_sharpness.py --every    # ~30 min
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.numerics.gaussian import Quadrature, fast as fastpath, sharpness  # noqa: E402
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors, tensor_values  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402

from validate_merged import grid_kernels, sampled_table, uniform_reference  # noqa: E402  (shared)
from validate_twofactor import scale  # noqa: E402  (Π_k ⟨f_k²⟩^{1/2})

#: (activation, |x|²/n0, C_W, layers)
CASES = (("softplus", 3.0, 2.0, (1, 2, 6)), ("softplus", 1.0, 2.0, (1, 10)), ("swish", 3.0, 2.0, (1, 2, 6)),
         ("swish", 1.0, 1.0, (1, 10)))
ORDERS = ((0, 0, 0, 0), (1, 1, 2, 0))
#: (activation, |x|²/n0, C_W, layer, orders, tuples) of ``--every``
EVERY = (("softplus", 3.0, 2.0, 1, (0, 0, 0, 0), "abcd"), ("softplus", 3.0, 2.0, 1, (1, 1, 2, 0), "abcd"),
         ("softplus", 3.0, 2.0, 2, (1, 1, 2, 0), "abcd"), ("softplus", 1.0, 2.0, 1, (1, 1, 2, 0), "abcd"),
         ("swish", 3.0, 2.0, 1, (0, 0, 0, 0), "abcd"), ("swish", 3.0, 2.0, 2, (0, 0, 0, 0), "abcd"),
         ("swish", 1.0, 1.0, 1, (0, 0, 0, 0), "abbc"))


def fast(facs, K, tup, before: bool) -> np.ndarray:
    """``method="fast"`` as the package is, or (``before``) with the old safety, floor and orders."""
    saved = sharpness.SHARPNESS_SAFETY_LOGISTIC, sharpness.SHARPNESS_MIN, fastpath.FAST_PIVOT_RATIO
    if before:
        sharpness.SHARPNESS_SAFETY_LOGISTIC, sharpness.SHARPNESS_MIN = sharpness.SHARPNESS_SAFETY, 0.4
        fastpath.FAST_PIVOT_RATIO = 0.0
    sharpness.sharpness.cache_clear()
    try:
        with Quadrature(Settings(threads=2)) as quad:
            return tensor_values(facs, K, tup, None, "fast", quad)
    finally:
        sharpness.SHARPNESS_SAFETY_LOGISTIC, sharpness.SHARPNESS_MIN, fastpath.FAST_PIVOT_RATIO = saved
        sharpness.sharpness.cache_clear()


def sampled() -> None:
    """The default table (module docstring)."""
    sampled_table(CASES, ORDERS, lambda facs, K, tup: [fast(facs, K, tup, False), fast(facs, K, tup, True)],
                  ("now", "before"))


def every() -> None:
    """The table of ``--every`` (module docstring)."""
    print("| activation | \\|x\\|²/n0, C_W | layer | factors | tuples | now: max, > 1e-8, worst "
          "| before: max, > 1e-8, worst |")
    print("|---|---|---|---|---|---|---|")
    for name, sc, cw, layer, o, label in EVERY:
        [(_, K)] = grid_kernels(name, sc, cw, [layer])
        if label == "abcd":
            tup = np.array(list(itertools.combinations(range(16), 4)))
        else:
            tup = np.array([(a, b, b, c) for b in range(16)
                            for a, c in itertools.combinations([i for i in range(16) if i != b], 2)])
        act = parse_activation(name)
        facs = prepare_factors([act.derivative(d) for d in o])
        C = K[tup[:, :, None], tup[:, None, :]]
        [ref] = uniform_reference(facs, K, tup, (96,))
        s = scale(facs, C)
        cells = []
        for before in (False, True):
            err = np.abs(fast(facs, K, tup, before) - ref) / s
            cells.append(f"{err.max():.1e}, {int(np.sum(err > 1e-8))}, "
                         f"{tuple(int(i) for i in tup[np.argmax(err)])}")
        print(f"| {name} | {sc:g}, {cw:g} | {layer} | σ^{''.join(map(str, o))} | {len(tup)} {label} | "
              + " | ".join(cells) + " |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--every", action="store_true", help="every tuple of the cases of EVERY")
    args = p.parse_args()
    every() if args.every else sampled()


if __name__ == "__main__":
    main()
