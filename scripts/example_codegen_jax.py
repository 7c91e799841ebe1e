"""Tune C_W at depth 10 by gradient descent on a finite-width quantity, with a generated JAX module.

    python3 scripts/example_codegen_jax.py [--target-ratio 0.65] [--steps 20] [--lr 1.0]

Generates the K, G1, V module for tanh (`nd.codegen(..., target="jax")`, the same as
`ntkdiagrams codegen K,G1,V --activation tanh --target jax --out tanh_kgv.py`), imports it, and
minimises (V/K² − r*)² at the last layer on the diagonal (one input) over C_W, with C_b = 0.1: the
four-point correction V/(n K²) is then r*/n at width n.  jax.grad gives dloss/dC_W through all ten
layers of the recursions and their Gaussian expectations.  Needs the jax extra.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import ntkdiagrams as nd


def load(source: str, folder: str):
    path = Path(folder) / "tanh_kgv.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("tanh_kgv", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-ratio", type=float, default=0.65, help="r*: the wanted V/K^2 at layer 10")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1.0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    source = nd.codegen("K,G1,V", "tanh", target="jax")
    print(f"codegen: {len(source.splitlines())} lines in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as folder:
        gen = load(source, folder)
        import jax
        import jax.numpy as jnp

        x = jnp.array([[1.0]])  # one input, |x|^2/n0 = 1: the diagonal

        def ratio(cw):
            last = gen.evaluate(x, 10, C_b=0.1, C_W=cw)[-1]
            return last["V"][0, 0, 0, 0] / last["K"][0, 0] ** 2, last["K"][0, 0]

        def loss(cw):
            r, _k = ratio(cw)
            return (r - args.target_ratio) ** 2

        step = jax.jit(jax.value_and_grad(loss))
        measure = jax.jit(ratio)
        cw = jnp.float64(1.0)
        print(f"target V/K^2 at layer 10 = {args.target_ratio}; tanh, C_b = 0.1, start C_W = {float(cw)}")
        print(" step     C_W        K^(10)     V/K^2      loss       dloss/dC_W")
        for i in range(args.steps + 1):
            value, grad = step(cw)
            r, k = measure(cw)
            if i % 4 == 0 or i == args.steps:
                print(f"{i:5d}  {float(cw):.6f}  {float(k):.6f}  {float(r):.6f}  {float(value):.3e}  {float(grad):+.4e}")
            cw = cw - args.lr * grad
        r, k = measure(cw)
        check = nd.evaluate("tanh", 10, [[1.0]], stats=["K", "V"], cb=0.1, cw=float(cw))[-1]
        print(f"C_W = {float(cw):.6f}: V/K^2 = {float(r):.8f}; nd.evaluate gives "
              f"{check['V'][0, 0, 0, 0] / check['K'][0, 0] ** 2:.8f}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
