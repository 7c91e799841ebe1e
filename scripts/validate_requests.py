"""Validation of correlator requests (issue 7) against sampled networks beyond the exact layer 2.

For each request, neuron pattern, activation and width n, the engine's prediction
Σ_o n^{-o} Σ_{structures whose deltas hold} X_o (full moments: order 0 and 1; connected: the
1/n coefficient) is compared with the Monte Carlo estimate (sample_request) at every layer.
At layer ≥ 3 the first-order prediction has an O(1/n²) remainder (O(1/n) after the n-scaling of
a connected correlator), so the z-scores should be small at the larger widths and
n·(MC − prediction) (full moments: n²·(MC − prediction)) roughly constant in n.

Run:  python scripts/validate_requests.py --out docs/validation/requests.md [--samples 100000]
"""
import argparse
import time

import numpy as np

from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.sampling.model import ModelSpec
from ntkdiagrams.sampling.requests import sample_request
from ntkdiagrams.engine.request import derive_request
from ntkdiagrams.numerics.evaluate import evaluate_request

REQUESTS = [
    ("E[z(i1;a1) z(i2;a2) z(i3;a3) z(i4;a4)]", 1, [dict(i1=0, i2=0, i3=1, i4=1), dict(i1=0, i2=0, i3=0, i4=0)]),
    ("E[H(i1,i2;a1,a2) z(i3;a3) z(i4;a4)]", 1, [dict(i1=0, i2=0, i3=1, i4=1), dict(i1=0, i2=1, i3=0, i4=1)]),
    ("E[H(i1,i2;a1,a2) H(i3,i4;a3,a4)]", 1, [dict(i1=0, i2=0, i3=1, i4=1), dict(i1=0, i2=0, i3=0, i4=0)]),
    ("Ec[z(i;a1) z(i;a2) z(i;a3) z(i;a4)]", None, [dict(i=0)]),
]
CASES = [("tanh", dict(cb=0.1, cw=1.5, lb=0.7, lw=1.3)), ("sin", dict(cb=0.0, cw=1.2, lb=1.0, lw=1.0))]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None)
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--widths", default="16,32,64")
    args = p.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    x = np.array([[1.0, 0.3, -0.5], [0.2, -1.1, 0.4]])
    rows, t0 = [], time.perf_counter()
    for text, order, patterns in REQUESTS:
        res = derive_request(text, order=order)
        top = max(res.orders)
        for act, hyper in CASES:
            pred_layers = evaluate_request(res, act, args.depth, x, **hyper)
            for pat in patterns:
                for n in widths:
                    model = ModelSpec(parse_activation(act), depth=args.depth, width=n, inputs=x, **hyper)
                    mc = sample_request(res, model, pat, args.samples, batches=20, seed=11 + n)
                    for ell in range(2, args.depth + 1):
                        pred = res.predict(pred_layers[ell - 1], pat, n)
                        m, e = mc[ell - 1]["mean"], mc[ell - 1]["stderr"]
                        scale = n if res.request.connected else 1.0
                        z = (m - pred) / e
                        rows.append(dict(request=text, act=act, pattern="".join(str(v) for v in pat.values()),
                                         n=n, layer=ell, maxz=float(np.abs(z).max()),
                                         within=float(np.mean(np.abs(z) < 3)), k=z.size,
                                         resid=float(np.max(np.abs(scale * (m - pred))) * n ** (top + 0)),
                                         rel=float(np.max(np.abs(m - pred)) / np.max(np.abs(pred)))))
                    r = rows[-1]
                    print(f"{text:45s} {act:5s} {r['pattern']:5s} n={n:4d} layer {args.depth}: max|z|={r['maxz']:.2f} "
                          f"({time.perf_counter() - t0:.0f}s)", flush=True)
    allz = [r for r in rows]
    frac = sum(r["within"] * r["k"] for r in allz) / sum(r["k"] for r in allz)
    lines = ["# Correlator requests vs sampled networks", "",
             f"Command: `python scripts/validate_requests.py --out docs/validation/requests.md --samples {args.samples} "
             f"--depth {args.depth} --widths {args.widths}` ({time.perf_counter() - t0:.0f} s).", "",
             "Inputs x = [[1, 0.3, −0.5], [0.2, −1.1, 0.4]] (N = 2, n0 = 3); tanh with C_b = 0.1, C_W = 1.5, "
             "λ_b = 0.7, λ_W = 1.3; sin with C_b = 0, C_W = 1.2, λ_b = λ_W = 1. Prediction: Σ_o n^{-o} Σ (structures "
             "whose deltas hold at the pattern); full moments at order 1/n, the connected request at its leading "
             "order (×n). Layer 2 is exact at this order; layer 3 carries the O(1/n²) remainder.", "",
             f"All components: {100 * frac:.1f} % within 3σ.", "",
             "| request | activation | neurons | n | layer | max abs z | within 3σ | max rel. diff |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['request']}` | {r['act']} | {r['pattern']} | {r['n']} | {r['layer']} | {r['maxz']:.2f} | "
                     f"{100 * r['within']:.0f} % of {r['k']} | {r['rel']:.2e} |")
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
