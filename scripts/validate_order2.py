#!/usr/bin/env python3
"""Validate the order-1/n² tensors G2, V1, V6 (and Θ2) against sampled networks (issue 19).

For each case (activation, C_b, C_W), data set (N = 1 and N = 2 inputs) and layer ℓ = 2 … L the
script samples networks of width n = 4 … 64 (:mod:`order2_montecarlo`: every layer n neurons),
and fits, per distinct component,

    G − K        = c1/n + c2/n² + c3/n³      c1 ↔ G1,   c2 ↔ G2
    κ4(0,0,1,1)  = c1/n + c2/n² + c3/n³      c1 ↔ V,    c2 ↔ V1
    κ6(0,0,1,1,2,2) = c1/n + c2/n² + c3/n³   c1 ↔ 0,    c2 ↔ V6
    E[H] − Θ     = c1/n + c2/n² + c3/n³      c1 ↔ Θ1,   c2 ↔ Θ2     (with --ntk)

(weighted least squares with the batch-means errors), where K and Θ are the infinite-width
predictions.  The prediction comes from ``nd.evaluate(..., rules="mlp2")``: recursions derived by
the engine from rules/mlp2.toml.  z = (c2 − predicted)/σ(c2).  Layer 2 is exact: its fan-in
preactivations are Gaussian, so G2 = V1 = 0 there and κ6 = V6/n² with no remainder.

Two steps, so the sampling (minutes) and the prediction can be rerun separately::

    python scripts/validate_order2.py --mc order2_mc.json                 # sample (all cases)
    python scripts/validate_order2.py --render order2_mc.json --markdown docs/validation/order2.md
    python scripts/validate_order2.py --quick                             # seconds: one case, small samples
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import validation_common as vc  # noqa: E402  (one BLAS thread; the repository on sys.path)

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from order2_montecarlo import sample_order2  # noqa: E402

CASES = {  # name: (activation, C_b, C_W)
    "tanh": ("tanh", 0.0, 1.0),
    "relu": ("relu", 0.0, 2.0),
    "gelu": ("gelu", 0.0, 1.5),
}
DEPTH = 5
#: the N = 2 networks cost ~3× more (the NTK of two inputs, 64 six-point components): fewer of them
N_SCALE = {1: 1.0, 2: 0.6}
WIDTHS = (4, 6, 8, 12, 16, 24, 32, 64)
SAMPLES = {4: 2_000_000, 6: 2_000_000, 8: 1_600_000, 12: 1_000_000, 16: 800_000, 24: 400_000, 32: 250_000,
           48: 120_000, 64: 80_000, 96: 60_000, 128: 40_000}
INPUTS = {1: np.array([[1.1, -0.6, 0.9]]),
          2: np.array([[1.1, -0.6, 0.9], [0.2, 1.3, -0.7]])}


def inputs(N: int) -> np.ndarray:
    """The fixed data set with N inputs, scaled to |x|²/n0 = 1 and 0.8."""
    x = INPUTS[N].astype(float)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x * np.sqrt(x.shape[1] * np.array([1.0, 0.8][:N]))[:, None]


# ---------------------------------------------------------------- components

def components(kind: str, N: int) -> list[tuple]:
    """Distinct input components of a statistic: G (α1 ≤ α2), κ4 and κ6 (pairs sorted within, and
    the pairs sorted among themselves: the symmetries of the neuron pattern)."""
    pairs = [(a, b) for a in range(N) for b in range(a, N)]
    k = {"G": 1, "Theta": 1, "k4": 2, "k6": 3}[kind]
    return [sum(c, ()) for c in itertools.combinations_with_replacement(pairs, k)]


PREDICTED = {"G": ("G1", "G2"), "k4": ("V", "V1"), "k6": (None, "V6"), "Theta": ("Theta1", "Theta2")}
LEAD = {"G": "K", "Theta": "Theta"}


# ---------------------------------------------------------------- sampling

def run_mc(cases, Ns, widths, scale, ntk, seed, progress=True, save=None) -> list[dict]:
    """Sample every (case, N, width); ``save(runs)`` is called after each run (partial results survive)."""
    out = []
    for name in cases:
        act, cb, cw = CASES[name]
        for N in Ns:
            for n in widths:
                S = max(2000, int(SAMPLES[n] * scale * N_SCALE[N]))
                t = time.time()
                r = sample_order2(act, inputs(N), n, DEPTH, S, cb=cb, cw=cw, seed=seed * 1000 + N, ntk=ntk)
                if progress:
                    print(f"{name} N={N} n={n}: {S:,} networks, {time.time() - t:.1f} s", file=sys.stderr, flush=True)
                out.append({"case": name, "N": N, "width": n, "samples": S, "seconds": r["seconds"],
                            "layers": [{k: ([np.asarray(v[0]).tolist(), np.asarray(v[1]).tolist()]
                                            if k != "layer" else v) for k, v in L.items()} for L in r["layers"]]})
                if save:
                    save(out)
    return out


# ---------------------------------------------------------------- predictions and fits

def predict(name: str, N: int, kinds, second: bool = True) -> list[dict]:
    """Per layer: the first-order tensors from rules/mlp.toml and (``second``) the 1/n² ones from rules/mlp2.toml."""
    from ntkdiagrams import evaluate
    act, cb, cw = CASES[name]
    ntk = "Theta" in kinds
    first = evaluate(act, DEPTH, inputs(N), cb=cb, cw=cw, stats=["K", "G1", "V"] + (["Theta", "Theta1"] if ntk else []))
    if not second:
        return [dict(e) for e in first]
    more = evaluate(act, DEPTH, inputs(N), cb=cb, cw=cw, rules="mlp2",
                    stats=["G2", "V1", "V6"] + (["Theta2"] if ntk else []))
    return [{**dict(a), **dict(b)} for a, b in zip(first, more)]


def fit(ns, y, s):
    """y = c1/n + c2/n² + c3/n³: (β, σ_β, χ², dof)."""
    X = np.stack([1 / ns, 1 / ns ** 2, 1 / ns ** 3], 1)
    return vc.wls(X, y, s)


def analyse(mc: list[dict], preds: dict, min_width: int, per_layer: int = 0) -> list[dict]:
    """Fits per (case, N, layer, component) over the widths n ≥ max(min_width, per_layer·(ℓ − 1))."""
    rows = []
    keys = sorted({(r["case"], r["N"]) for r in mc}, key=lambda k: (list(CASES).index(k[0]), k[1]))
    for case, N in keys:
        every = sorted([r for r in mc if r["case"] == case and r["N"] == N], key=lambda r: r["width"])
        pred = preds.get((case, N))
        for ell in range(2, DEPTH + 1):
            runs = [r for r in every if r["width"] >= max(min_width, per_layer * (ell - 1))]
            ns = np.array([r["width"] for r in runs], float)
            p = pred[ell - 1] if pred is not None else None
            for kind in ("G", "k4", "k6", "Theta"):
                if kind not in runs[0]["layers"][ell - 1]:
                    continue
                first, second = PREDICTED[kind]
                for comp in components(kind, N):
                    m = np.array([np.asarray(r["layers"][ell - 1][kind][0])[comp] for r in runs])
                    s = np.array([np.asarray(r["layers"][ell - 1][kind][1])[comp] for r in runs])
                    lead = 0.0
                    if kind in LEAD:
                        if p is None:
                            continue
                        lead = float(np.asarray(p[LEAD[kind]])[comp])
                    beta, se, chi2, dof = fit(ns, m - lead, s)
                    row = dict(case=case, N=N, layer=ell, kind=kind, comp=comp, c1=beta[0], s1=se[0],
                               c2=beta[1], s2=se[1], chi2=chi2, dof=dof,
                               values=((m - lead) * ns).tolist(), errors=(s * ns).tolist(), widths=ns.tolist())
                    if p is not None:
                        row["p1"] = 0.0 if first is None else (float(np.asarray(p[first])[comp]) if first in p else None)
                        row["p2"] = float(np.asarray(p[second])[comp]) if second in p else None
                        if row["p1"] is not None:  # the first order fixed at its (validated) prediction
                            b, e, chi2f, doff = vc.wls(np.stack([1 / ns ** 2, 1 / ns ** 3], 1), m - lead - row["p1"] / ns, s)
                            row.update(f2=b[0], fs2=e[0], fchi2=chi2f, fdof=doff)
                    rows.append(row)
    return rows


# ---------------------------------------------------------------- report

NAMES = {"G": ("G1", "G2"), "k4": ("V", "V1"), "k6": ("0", "V6"), "Theta": ("Θ1", "Θ2")}


def summary(rows: list[dict]) -> list[str]:
    """The summary table: per case, N and tensor, the z's of the 1/n² coefficient over the components."""
    have = [r for r in rows if r.get("p2") is not None]
    lines = ["| case | N | tensor | components | z2 within 3σ | max \\|z2\\| | z2' within 2σ | z2' within 3σ | "
             "max \\|z2'\\| | max \\|z1\\| | powered: within 3σ |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (case, N, kind), grp in itertools.groupby(sorted(have, key=lambda r: (list(CASES).index(r["case"]), r["N"],
                                                                               list(NAMES).index(r["kind"]))),
                                                  key=lambda r: (r["case"], r["N"], r["kind"])):
        grp = list(grp)
        z2 = np.array([abs(r["c2"] - r["p2"]) / r["s2"] for r in grp])
        z1 = np.array([abs(r["c1"] - r["p1"]) / r["s1"] for r in grp])
        zf = np.array([abs(r["f2"] - r["p2"]) / r["fs2"] for r in grp])
        powered = [r for r in grp if abs(r["p2"]) >= 3 * r["fs2"]]
        ok = sum(abs(r["f2"] - r["p2"]) < 3 * r["fs2"] for r in powered)
        lines.append(f"| {case} | {N} | {NAMES[kind][1]} | {len(grp)} | {np.mean(z2 < 3):.0%} | {z2.max():.2f} "
                     f"| {np.mean(zf < 2):.0%} | {np.mean(zf < 3):.0%} | {zf.max():.2f} | {z1.max():.2f} | {ok} of {len(powered)} |")
    return lines


def render(rows: list[dict], mc: list[dict], cmd_mc: str, min_width: int, per_layer: int = 0) -> list[str]:
    lines = ["# Validation: order 1/n² (G2, V1, V6, Θ2) against sampled networks (issue 19)", "",
             "Generated by scripts/validate_order2.py (do not edit by hand).  Commands:", "", "```",
             cmd_mc, vc.command_line(), "```", "",
             f"- package version: commit {vc.source_version()}",
             f"- cases (depth {DEPTH}, every layer n neurons): " + "; ".join(
                 f"{k}: σ = {a}, C_b = {cb}, C_W = {cw}" for k, (a, cb, cw) in CASES.items()),
             "- inputs: N = 1: " + json.dumps(np.round(inputs(1), 4).tolist()) + "; N = 2: "
             + json.dumps(np.round(inputs(2), 4).tolist()),
             "- networks per width: " + "; ".join(
                 f"N = {N}: " + ", ".join(f"n={r['width']}: {r['samples']:,}" for r in mc
                                          if r["case"] == mc[0]["case"] and r["N"] == N)
                 for N in sorted({r["N"] for r in mc}))
             + f" (20 batches, batch-means errors); Monte Carlo {sum(r['seconds'] for r in mc) / 60:.0f} min "
             "(2 shared cores)",
             f"- fit over n ≥ max({min_width}, {per_layer}·(ℓ − 1)) at layer ℓ (the 1/n series of layer ℓ is one in "
             "≈ ℓ/n: a fit truncated at 1/n³ needs n ≳ ℓ): MC − (infinite width) = c1/n + c2/n² + c3/n³ per component; "
             "z1 = (c1 − first-order prediction)/σ1, z2 = (c2 − second-order prediction)/σ2", ""]
    lines += ["## Summary", "", "z2: c1 free; z2': c1 fixed at the first-order prediction (fit c2/n² + c3/n³ of "
              "MC − ∞ − c1/n).", "",
              "Powered: the components whose predicted 1/n² coefficient is at least 3σ2' from zero (where the "
              "comparison could tell the prediction from 'no 1/n² part'), and how many of them have |z2'| < 3.", ""]
    lines += summary(rows)
    lines += ["", "## Per component", "",
              "| case | N | layer | tensor | inputs | c1 (fit) | first order | c2 (fit) | c2' (c1 fixed) | predicted | "
              "z2 | z2' | χ²/dof | n: n·(MC − ∞) per width |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p1 = "—" if r.get("p1") is None else f"{r['p1']:.5g}"
        p2 = "—" if r.get("p2") is None else f"{r['p2']:.5g}"
        z2 = "—" if r.get("p2") is None else f"{(r['c2'] - r['p2']) / r['s2']:.2f}"
        zf = "—" if r.get("p2") is None else f"{(r['f2'] - r['p2']) / r['fs2']:.2f}"
        cf = "—" if "f2" not in r else vc.fmt(r["f2"], r["fs2"])
        per = "; ".join(f"{int(w)}: {vc.fmt(v, e)}" for w, v, e in zip(r["widths"], r["values"], r["errors"]))
        lines.append(f"| {r['case']} | {r['N']} | {r['layer']} | {NAMES[r['kind']][1]} | "
                     f"{''.join(str(a + 1) for a in r['comp'])} | {vc.fmt(r['c1'], r['s1'])} | {p1} | "
                     f"{vc.fmt(r['c2'], r['s2'])} | {cf} | {p2} | {z2} | {zf} | {r['chi2'] / max(r['dof'], 1):.2f} | {per} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mc", help="sample and write the Monte Carlo results (JSON) here")
    ap.add_argument("--render", help="read Monte Carlo results (JSON) and compare with the predictions")
    ap.add_argument("--markdown", help="with --render: write the report here")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--N", default="1,2", help="data sets (numbers of inputs)")
    ap.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    ap.add_argument("--min-width", type=int, default=4, help="fit over widths ≥ this")
    ap.add_argument("--per-layer", type=int, default=4, help="and over widths ≥ this × (ℓ − 1) at layer ℓ")
    ap.add_argument("--also-per-layer", type=int, help="add the summary of the fits over n ≥ this × (ℓ − 1)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every sample size")
    ap.add_argument("--ntk", action="store_true", help="also sample the NTK mean (Θ1, Θ2)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tanh, N = 1, small samples; prints the fits")
    ap.add_argument("--no-predict", action="store_true", help="first-order predictions only (no rules/mlp2.toml)")
    args = ap.parse_args()
    cases = args.cases.split(",")
    Ns = [int(v) for v in args.N.split(",")]
    widths = [int(v) for v in args.widths.split(",")]
    if args.quick:
        cases, Ns, args.scale = ["tanh"], [1], 0.05
    if args.render:  # one or more JSON files of earlier runs, comma-separated
        docs = [json.load(open(path)) for path in args.render.split(",")]
        mc = [r for d in docs for r in d["runs"]]
        cmd_mc = "\n".join(d["command"] for d in docs)
    else:
        cmd_mc = vc.command_line()

        def save(runs):
            if args.mc:
                with open(args.mc, "w") as fh:
                    json.dump({"command": cmd_mc, "runs": runs}, fh)
        mc = run_mc(cases, Ns, widths, args.scale, args.ntk, args.seed, save=save)
    preds = {}
    kinds = set(mc[0]["layers"][0])
    for key in sorted({(r["case"], r["N"]) for r in mc}):
        t = time.time()
        preds[key] = predict(*key, kinds, second=not args.no_predict)
        print(f"prediction {key}: {time.time() - t:.1f} s", file=sys.stderr)
    rows = analyse(mc, preds, args.min_width, args.per_layer)
    lines = render(rows, mc, cmd_mc, args.min_width, args.per_layer)
    if args.also_per_layer:
        at = lines.index("## Per component")
        more = [f"## Summary of the fits over n ≥ max({args.min_width}, {args.also_per_layer}·(ℓ − 1))", "",
                "The same data, fitted from larger widths at the deep layers (fewer widths: less power).", ""]
        more += summary(analyse(mc, preds, args.min_width, args.also_per_layer)) + [""]
        lines[at:at] = more
    if args.markdown:
        vc.write_report(args.markdown, lines)
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
