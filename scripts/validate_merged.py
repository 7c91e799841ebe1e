"""Accuracy of the fast path on three-variable tuples of merged slots (prints a table; not a test).

For networks of issue 15's grid (N = 16 inputs in n0 = 3, C_b = 0), the kernels K^(ℓ) of chosen
layers and 60 random triples (a, b, c) of distinct inputs: E[σ^(d1)(z_s1) σ^(d2)(z_s2) σ^(d3)(z_s3)
σ^(d4)(z_s4)] with the slots s = :data:`PATTERNS` over (a, b, c) (two slots on one input merge into
a block f(z)g(z) of three distinct variables; (a, b, b, b) into two), for the derivative orders of
:data:`ORDERS`, by ``method="auto"``, against the fast path's nested rule at a uniform 96 nodes per
side (column "ref": its change from 80 nodes).  Errors relative to the scale Π_k ⟨f_k(z_k)²⟩^{1/2}
(:func:`validate_twofactor.scale`), the largest over the triples.

``--every``: instead, every tuple (a, b, b, c) of distinct a < c, b (1680 per layer) of the kernels
of :data:`EVERY` (σ⁴), against the same rule at 96 nodes per side ("ref": its change from 128): the
largest error and the number of tuples over 1e-8 of the scale, with the worst tuple.  Copied into a
checkout of an earlier commit, the script measures that commit's package.

    python3 scripts/validate_merged.py            # the table of docs/gaussian.md (~3 min)
    python3 scripts/validate_merged.py --every    # the second table there (~8 min)
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.numerics.evaluate import evaluate  # noqa: E402
from ntkdiagrams.numerics.gaussian import Quadrature  # noqa: E402
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors, tensor_values  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402

from bench_grid import inputs  # noqa: E402  (the grid's inputs)
from validate_twofactor import scale  # noqa: E402  (Π_k ⟨f_k²⟩^{1/2})

#: (activation, |x|²/n0, C_W, layers)
CASES = (("tanh", 1.0, 2.0, (2, 10)), ("gelu", 3.0, 2.0, (1, 3, 12)), ("softplus", 1.0, 2.0, (2, 15)))
ORDERS = ((0, 0, 0, 0), (1, 1, 2, 0))
PATTERNS = ((0, 0, 1, 2), (1, 0, 0, 2), (1, 2, 0, 0), (0, 1, 1, 1))
#: (activation, |x|²/n0, C_W, layer) of ``--every``
EVERY = (("tanh", 1.0, 2.0, 1), ("tanh", 1.0, 2.0, 2), ("tanh", 3.0, 2.0, 1), ("gelu", 3.0, 2.0, 1),
         ("erf", 3.0, 1.0, 1), ("softplus", 1.0, 2.0, 1), ("swish", 3.0, 2.0, 1))


def grid_kernels(name: str, sc: float, cw: float, layers) -> list[tuple[int, np.ndarray]]:
    """(ℓ, K^(ℓ)) for the layers ``layers`` of the grid's network (N = 16 inputs of |x|²/n0 = ``sc``
    in n0 = 3, C_b = 0, C_W = ``cw``)."""
    ev = evaluate(name, max(layers), inputs(16, sc), cb=0.0, cw=cw, stats=["K"])
    return [(layer, np.asarray(ev[layer - 1]["K"])) for layer in layers]


def sampled_tuples(layer: int) -> tuple:
    """(("abcd", 40 random tuples of four distinct inputs), ("abbc", 40 of three, the middle one
    twice)) of the 16 inputs, seeded by the layer (validate_erffamily.py, validate_sharpness.py)."""
    rng = np.random.default_rng(layer)
    four = np.array([rng.choice(16, 4, replace=False) for _ in range(40)])
    three = np.array([rng.choice(16, 3, replace=False) for _ in range(40)])[:, [0, 1, 1, 2]]
    return ("abcd", four), ("abbc", three)


def uniform_reference(facs, K, tup, nodes=(128, 96)) -> list[np.ndarray]:
    """The nested rule at a uniform number of nodes per side, for each of ``nodes``."""
    with Quadrature(Settings(threads=2)) as quad:
        return [tensor_values(facs, K, tup, n, "fast", quad) for n in nodes]


def sampled_table(cases, orders, columns, headers) -> None:
    """Rows per case (activation, |x|²/n0, C_W, layers), layer, derivative orders and kind of
    :func:`sampled_tuples`: the largest error of each of ``columns(facs, K, tup)`` (value arrays,
    one per header) against the uniform rule at 128 nodes per side, relative to the scale, and the
    reference's change from 96 nodes ("ref")."""
    print("| activation | \\|x\\|²/n0, C_W | layer | factors | tuples | " + " | ".join(headers) + " | ref |")
    print("|---|---|---|---|---|" + "---|" * (len(headers) + 1))
    for name, sc, cw, layers in cases:
        act = parse_activation(name)
        for layer, K in grid_kernels(name, sc, cw, layers):
            for o in orders:
                facs = prepare_factors([act.derivative(d) for d in o])
                for label, tup in sampled_tuples(layer):
                    C = K[tup[:, :, None], tup[:, None, :]]
                    values = columns(facs, K, tup)
                    r, r2 = uniform_reference(facs, K, tup)
                    s = scale(facs, C)
                    cells = [np.max(np.abs(x - r) / s) for x in (*values, r2)]
                    print(f"| {name} | {sc:g}, {cw:g} | {layer} | σ^{''.join(map(str, o))} | {label} | "
                          + " | ".join(f"{c:.1e}" for c in cells) + " |", flush=True)


def every() -> None:
    """The table of ``--every`` (module docstring)."""
    print("| activation | \\|x\\|²/n0, C_W | layer | max error | tuples > 1e-8 | worst (a, b, b, c) | ref |")
    print("|---|---|---|---|---|---|---|")
    for name, sc, cw, layer in EVERY:
        [(_, K)] = grid_kernels(name, sc, cw, [layer])
        tup = np.array([(a, b, b, c) for b in range(16)
                        for a, c in itertools.combinations([i for i in range(16) if i != b], 2)])
        facs = prepare_factors([parse_activation(name).derivative(0)] * 4)
        C = K[tup[:, :, None], tup[:, None, :]]
        with Quadrature(Settings(threads=2)) as quad:
            ref = tensor_values(facs, K, tup, 96, "fast", quad)
            ref2 = tensor_values(facs, K, tup, 128, "fast", quad)
            err = np.abs(tensor_values(facs, K, tup, None, "auto", quad) - ref) / scale(facs, C)
        moves = np.max(np.abs(ref2 - ref) / scale(facs, C))
        print(f"| {name} | {sc:g}, {cw:g} | {layer} | {err.max():.1e} | {int(np.sum(err > 1e-8))} | "
              f"{tuple(int(i) for i in tup[np.argmax(err)])} | {moves:.0e} |", flush=True)


def main() -> None:
    if "--every" in sys.argv[1:]:
        every()
        return
    cols = " | ".join("slots " + "".join("abc"[i] for i in p) for p in PATTERNS)
    print(f"| activation | \\|x\\|²/n0, C_W | layer | factors | {cols} | ref |")
    print("|---|---|---|---|" + "---|" * (len(PATTERNS) + 1))
    for name, sc, cw, layers in CASES:
        act = parse_activation(name)
        for layer, K in grid_kernels(name, sc, cw, layers):
            rng = np.random.default_rng(layer)
            tri = np.array([rng.choice(16, 3, replace=False) for _ in range(60)])
            for o in ORDERS:
                facs = prepare_factors([act.derivative(d) for d in o])
                cells, ref_moves = [], 0.0
                for pat in PATTERNS:
                    tup = tri[:, list(pat)]
                    C = K[tup[:, :, None], tup[:, None, :]]
                    with Quadrature(Settings(threads=2)) as quad:
                        v = tensor_values(facs, K, tup, None, "auto", quad)
                        r = tensor_values(facs, K, tup, 96, "fast", quad)
                        r2 = tensor_values(facs, K, tup, 80, "fast", quad)
                    s = scale(facs, C)
                    cells.append(f"{np.max(np.abs(v - r) / s):.1e}")
                    ref_moves = max(ref_moves, float(np.max(np.abs(r2 - r) / s)))
                print(f"| {name} | {sc:g}, {cw:g} | {layer} | σ^{''.join(map(str, o))} | " + " | ".join(cells)
                      + f" | {ref_moves:.0e} |", flush=True)


if __name__ == "__main__":
    main()
