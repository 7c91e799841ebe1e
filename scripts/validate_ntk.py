#!/usr/bin/env python3
"""Validate the engine's NTK statistics Θ1, A, B, D, F against sampled networks (docs/conventions.md §6).

For every case (activation, C_b, C_W, λ_b, λ_W) and data set (N = 2 and N = 3 fixed random
inputs) the script

* evaluates the prediction K, Θ, Θ1, A, B, D, F with :func:`ntkdiagrams.numerics.evaluate.evaluate`
  (depth 4, one process for every case: the recursions are derived once),
* samples networks of hidden width n = 16, 32, 64, 128 with
  :func:`ntkdiagrams.sampling.sampler.sample` (statistics "Theta+Theta1" = NTK = E[H_ii], and A, B, D, F = n × the
  connected correlators of docs/conventions.md §3),
* compares, for layers 2, 3, 4:

  - Θ1: n (NTK_MC − Θ_pred) per width against Θ1_pred; weighted least-squares fits over the
    widths of NTK_MC − Θ_pred = Θ1/n (Θ fixed), = Θ1/n + Θ2/n², and NTK_MC = Θ_∞ + Θ1/n
    (Θ free; Θ_∞ is the check of Θ itself); z of NTK_MC against Θ + Θ1/n and against Θ alone
    (the latter shows whether Θ1 is resolved at all);
  - A, B, D, F: every distinct component (orbits of the estimator's symmetries) at every
    width: z = (MC − pred)/stderr, n (MC − pred) (constant in n for an O(1/n) remainder of
    the n-scaled quantity, ∝ n for a genuine O(1) error), and a weighted fit
    MC − pred = c_∞ + c_1/n whose intercept c_∞ (the n → ∞ discrepancy) must vanish.

Layer 2 is an exactness check: its fan-in neurons z^(1) are exactly Gaussian and independent
and H^(1) is deterministic, so E[H^(2)] = Θ^(2) (Θ1^(2) = 0) and A..F^(2) hold at every width
with no 1/n remainder.  Layer ≥ 3 is where Θ1 and the 1/n remainders are tested.  A depth-2
network is, in distribution, layers 1–2 of the depth-4 network (the statistics of neurons 0, 1
of layer 2 do not depend on later layers), so its results are the layer-2 rows here (the
script also checks that the depth-2 and depth-4 predictions of layer 2 coincide).

Sample sizes are fixed (reproducible).  Errors: NTK's standard error is ≈ √((A+2B)/(nS))
so Θ1 = n (NTK − Θ) has error ∝ √(n/S) at cost ∝ n² S: the Θ1 information is at small n.
The n-scaled A, B have an n-independent relative error ∝ 1/√S, D and F one ∝ √(n/S).

Usage::

    python scripts/validate_ntk.py --jobs 2 --out docs/validation/ntk.md
    python scripts/validate_ntk.py --quick          # a tiny version (about a minute)

A hand-written reading between the markers ``<!-- reading -->`` and ``<!-- /reading -->`` of
an existing output file is kept when the file is rewritten.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import validation_common as vc  # noqa: E402  (one BLAS thread; the repository on sys.path)

import time  # noqa: E402

import numpy as np  # noqa: E402

from ntkdiagrams.numerics.evaluate import evaluate  # noqa: E402
from validation_common import NORMS, fmt, pairs, zsummary, zval  # noqa: E402


Case = vc.Case  # a model setting: name, activation, C_b, C_W, λ_b, λ_W


CASES = [
    Case("tanh", "tanh", 0.0, 1.0),
    Case("relu-crit", "relu", 0.0, 2.0),
    Case("gelu", "gelu", 0.0, 1.0),
    Case("sin", "sin", 0.0, 1.0),
    Case("tanh-λ", "tanh", 0.1, 1.5, lb=0.7, lw=1.9),
]
DEPTH = 4
LAYERS = (2, 3, 4)
WIDTHS = (16, 32, 64, 128)
SAMPLES = {16: 500_000, 32: 200_000, 64: 60_000, 128: 20_000}
QUICK = dict(cases=("tanh", "relu-crit"), ns=(2,), widths=(16, 32),
             samples={16: 30_000, 32: 10_000})
TENSORS = ("A", "B", "D", "F")

# Symmetries of the Monte Carlo estimators (storage order of docs/conventions.md §3), as generators
# acting on the storage positions; components in one orbit are equal estimates.
SYMS = {
    "A": [(1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)],   # n Cov(H00_{α1α2}, H11_{α3α4})
    "B": [(1, 0, 3, 2), (2, 3, 0, 1)],                 # B[α1α3α2α4] = n Cov(H01_{α1α2}, H01_{α3α4})
    "D": [(1, 0, 2, 3), (0, 1, 3, 2)],                 # n Cov(H00_{α1α2}, z1_{α3} z1_{α4})
    "F": [(2, 3, 0, 1)],                               # F[α1α3α2α4] = n Cov(H01_{α1α2}, z0_{α3} z1_{α4})
}


def components(tensor: str, N: int) -> list[tuple]:
    """One representative (the smallest) of every orbit of the estimator's symmetries."""
    reps = set()
    for c in np.ndindex(*(N,) * 4):
        orbit, todo = {c}, [c]
        while todo:
            x = todo.pop()
            for g in SYMS[tensor]:
                y = tuple(x[i] for i in g)
                if y not in orbit:
                    orbit.add(y)
                    todo.append(y)
        reps.add(min(orbit))
    return sorted(reps)


def key_component(c: tuple, N: int) -> bool:
    """Components shown in the detail table: all for N = 2; for N = 3 those on inputs 0, 2."""
    return N == 2 or set(c) <= {0, 2}


# ---------------------------------------------------------------- Monte Carlo (workers)

def run_mc(task: dict) -> dict:
    """Sample the networks of one task: NTK and A, B, D, F per layer."""
    case = task["case"]
    return vc.sample_task(task, DEPTH, ("Theta", "Theta1") + TENSORS, case.lb, case.lw)


# ---------------------------------------------------------------- analysis

def analyse(case: Case, N: int, pred: list, mc: dict, widths) -> dict:
    """Rows of the Θ1 and A..F tables for one case and data set; mc[n][layer][stat]."""
    ns = np.asarray(widths, float)
    trows, xrows = [], []
    for ell in LAYERS:
        P = pred[ell - 1]
        for (a, b) in pairs(N):
            Hm = np.array([mc[n][ell]["Theta+Theta1"][0][a, b] for n in widths])
            Hs = np.array([mc[n][ell]["Theta+Theta1"][1][a, b] for n in widths])
            th, th1 = float(P["Theta"][a, b]), float(P["Theta1"][a, b])
            row = dict(case=case.name, N=N, layer=ell, comp=(a, b), Theta=th, Theta1=th1,
                       nHT=ns * (Hm - th), nHT_err=ns * Hs,
                       z=(Hm - th - th1 / ns) / Hs, z0=(Hm - th) / Hs)
            row.update(vc.mean_fits(ns, Hm, Hs, th))  # fits of NTK against 1/n
            trows.append(row)
        for T in TENSORS:
            for c in components(T, N):
                Xm = np.array([mc[n][ell][T][0][c] for n in widths])
                Xs = np.array([mc[n][ell][T][1][c] for n in widths])
                v = float(P[T][c])
                d = Xm - v
                row = dict(case=case.name, N=N, layer=ell, tensor=T, comp=c, pred=v, d=d,
                           d_err=Xs, z=d / Xs, nd=ns * d, nd_err=ns * Xs,
                           key=key_component(c, N))
                if len(ns) >= 2:
                    # MC − pred = c_∞ + c_1/n: c_∞ ≠ 0 is an O(1) error of the n-scaled tensor
                    row["fit"] = vc.fit_inverse_n(ns, d, Xs)
                xrows.append(row)
    return dict(T=trows, X=xrows)


def comp_str(c):
    """The component's indices, concatenated."""
    return "".join(map(str, c))


def theta_table(results: list, widths) -> str:
    """Markdown table of Θ1: n(NTK − Θ) per width, the fits, the z values."""
    lines = ["| case | N | ℓ | αβ | Θ pred | Θ1 pred | "
             + " | ".join(f"n(NTK−Θ) n={n}" for n in widths)
             + " | Θ1 fit (Θ fixed) | z | Θ1 fit (+Θ2/n²) | z | Θ_∞ fit (Θ free) | z(Θ_∞) | "
             + "z(Θ+Θ1/n) per n | z(Θ only) per n |",
             "|" + "---|" * (6 + len(widths) + 8)]
    for res in results:
        for r in res["T"]:
            ff, f2, fr = r["fit_fixed"], r.get("fit_fixed2"), r.get("fit_free")
            lines.append("| " + " | ".join(
                [r["case"], str(r["N"]), str(r["layer"]), comp_str(r["comp"]),
                 f"{r['Theta']:.5f}", f"{r['Theta1']:.5f}"]
                + [fmt(v, e) for v, e in zip(r["nHT"], r["nHT_err"])]
                + [fmt(ff[0], ff[1]), f"{zval(ff[0] - r['Theta1'], ff[1]):+.1f}",
                   "—" if f2 is None else fmt(f2[0], f2[1]),
                   "—" if f2 is None else f"{zval(f2[0] - r['Theta1'], f2[1]):+.1f}",
                   "—" if fr is None else fmt(fr[0], fr[1]),
                   "—" if fr is None else f"{zval(fr[0] - r['Theta'], fr[1]):+.1f}",
                   " ".join(f"{z:+.1f}" for z in r["z"]),
                   " ".join(f"{z:+.1f}" for z in r["z0"])]) + " |")
    return "\n".join(lines)


def tensor_table(results: list, widths, only_key=True) -> str:
    """Markdown table of A, B, D, F: n(MC − pred) per width with z, the fit of c_∞."""
    lines = ["| case | N | ℓ | tensor | comp | pred | "
             + " | ".join(f"n(MC−pred) n={n} (z)" for n in widths)
             + " | c_∞ (MC−pred→) | z(c_∞) | χ²/dof |",
             "|" + "---|" * (6 + len(widths) + 3)]
    for res in results:
        for r in res["X"]:
            if only_key and not r["key"]:
                continue
            f = r.get("fit")
            lines.append("| " + " | ".join(
                [r["case"], str(r["N"]), str(r["layer"]), r["tensor"], comp_str(r["comp"]),
                 f"{r['pred']:.5f}"]
                + [f"{fmt(v, e)} ({z:+.1f})" for v, e, z in zip(r["nd"], r["nd_err"], r["z"])]
                + (["—", "—", "—"] if f is None else
                   [fmt(f[0], f[1]), f"{zval(f[0], f[1]):+.1f}", f"{f[4]:.1f}/{f[5]}"])) + " |")
    return "\n".join(lines)


def trend_table(results: list, widths) -> str:
    """Per case, N, layer, tensor: Σ|MC − pred|/Σ|pred| per width next to Σ stderr/Σ|pred|,
    and the median over components of n(MC − pred)/|pred| per width."""
    lines = ["| case | N | ℓ | tensor | " + " | ".join(f"Σ|Δ|/Σ|X| n={n}" for n in widths)
             + " | " + " | ".join(f"Σσ/Σ|X| n={n}" for n in widths) + " | max|z| per n |",
             "|" + "---|" * (4 + 2 * len(widths) + 1)]
    for res in results:
        for ell in LAYERS:
            for T in TENSORS:
                sel = [r for r in res["X"] if r["layer"] == ell and r["tensor"] == T]
                if not sel:
                    continue
                sx = sum(abs(r["pred"]) for r in sel) or 1.0
                d = [sum(abs(r["d"][i]) for r in sel) / sx for i in range(len(widths))]
                e = [sum(r["d_err"][i] for r in sel) / sx for i in range(len(widths))]
                mz = [max(abs(r["z"][i]) for r in sel) for i in range(len(widths))]
                lines.append(f"| {sel[0]['case']} | {sel[0]['N']} | {ell} | {T} | "
                             + " | ".join(f"{v:.4f}" for v in d) + " | "
                             + " | ".join(f"{v:.4f}" for v in e) + " | "
                             + " ".join(f"{v:.1f}" for v in mz) + " |")
    return "\n".join(lines)


def summaries(results: list, widths) -> list[str]:
    """The summary lines: z statistics of A..F, of c_∞, of the NTK mean and of the Θ1 fits."""
    out = []
    X = [r for res in results for r in res["X"]]
    Tr = [r for res in results for r in res["T"]]
    out.append("**A, B, D, F, all distinct components, layers 2–4, all widths** "
               "(z = (MC − pred)/stderr): " + zsummary([z for r in X for z in r["z"]]))
    out.append("**layer 2 only** (exact at every width): "
               + zsummary([z for r in X if r["layer"] == 2 for z in r["z"]]))
    for i, n in enumerate(widths):
        sel = [r for r in X if r["layer"] > 2]
        out.append(f"A–F, layers 3–4, n = {n}: " + zsummary([r["z"][i] for r in sel]))
    big = widths[-1]
    for T in TENSORS:
        out.append(f"{T}, layers 3–4, n = {big}: "
                   + zsummary([r["z"][-1] for r in X if r["layer"] > 2 and r["tensor"] == T]))
    if len(widths) >= 2:
        out.append("**c_∞ (fit MC − pred = c_∞ + c_1/n; an O(1) error of the n-scaled tensor) "
                   "vs 0**, all components, layers 2–4: "
                   + zsummary([zval(r["fit"][0], r["fit"][1]) for r in X if "fit" in r]))
        for T in TENSORS:
            out.append(f"c_∞ of {T}, layers 3–4: " + zsummary(
                [zval(r["fit"][0], r["fit"][1]) for r in X
                 if "fit" in r and r["tensor"] == T and r["layer"] > 2]))
    out.append("**NTK mean vs Θ + Θ1/n, all widths, layers 2–4**: "
               + zsummary([z for r in Tr for z in r["z"]]))
    for i, n in enumerate(widths):
        out.append(f"NTK vs Θ + Θ1/n, layers 3–4, n = {n}: "
                   + zsummary([r["z"][i] for r in Tr if r["layer"] > 2])
                   + f"; vs Θ alone: " + zsummary([r["z0"][i] for r in Tr if r["layer"] > 2]))
    out.append("**Θ1 fit (Θ fixed, NTK − Θ = Θ1/n) vs Θ1 pred**, layers 3–4: "
               + zsummary([zval(r["fit_fixed"][0] - r["Theta1"], r["fit_fixed"][1])
                           for r in Tr if r["layer"] > 2]))
    f2 = [r for r in Tr if r["layer"] > 2 and "fit_fixed2" in r]
    if f2:
        out.append("**Θ1 fit (Θ fixed, + Θ2/n²) vs Θ1 pred**, layers 3–4: "
                   + zsummary([zval(r["fit_fixed2"][0] - r["Theta1"], r["fit_fixed2"][1])
                               for r in f2]))
    fr = [r for r in Tr if "fit_free" in r]
    if fr:
        out.append("**Θ_∞ (free fit intercept) vs Θ pred**, layers 2–4: "
                   + zsummary([zval(r["fit_free"][0] - r["Theta"], r["fit_free"][1]) for r in fr]))
    prec = [r["fit_fixed"][1] / abs(r["Theta1"]) for r in Tr
            if r["layer"] > 2 and abs(r["Theta1"]) > 1e-9]
    if prec:
        out.append(f"Θ1 (Θ fixed fit) relative error bar, layers 3–4, Θ1 ≠ 0: median "
                   f"{np.median(prec):.1%}, range {min(prec):.1%} – {max(prec):.1%}")
    return out


# ---------------------------------------------------------------- main

def predictions(cases, ns_inputs, inputs) -> dict:
    """K, Θ, Θ1, A..F of every case and data set, depth DEPTH (layer 2 checked at depth 2)."""
    preds = {}
    for case in cases:
        for N in ns_inputs:
            kw = dict(cb=case.cb, cw=case.cw, lb=case.lb, lw=case.lw,
                      stats=("K", "Theta", "Theta1") + TENSORS)
            preds[(case.name, N)] = evaluate(case.activation, DEPTH, inputs[N], **kw)
            p2 = evaluate(case.activation, 2, inputs[N], **kw)  # depth 2 = layers 1, 2
            for k in ("Theta", "Theta1") + TENSORS:
                if not np.allclose(p2[1][k], preds[(case.name, N)][1][k], rtol=1e-12, atol=1e-14):
                    raise AssertionError(f"depth-2 and depth-4 predictions of layer 2 differ: "
                                         f"{case.name} N={N} {k}")
    return preds


def main(argv=None) -> int:
    """Sample, predict, compare; print the tables and write the requested files."""
    ap = vc.make_parser(__doc__)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    st = vc.run_study(ap, args, t_start, CASES, WIDTHS, SAMPLES, QUICK, run_mc=run_mc,
                      predict=predictions, analyse=analyse, seed_offset=50_000)
    results, widths = st.results, st.widths
    ttab = theta_table(results, widths)
    xtab = tensor_table(results, widths)
    rtab = trend_table(results, widths)
    summ = summaries(results, widths)
    wall = time.perf_counter() - t_start

    vc.print_report([("Θ1 (n(NTK−Θ) per width, fits over widths)", ttab),
                     ("A, B, D, F: n(MC − pred) per width (z); fit MC − pred = c_∞ + c_1/n", xtab),
                     ("relative deviation per width", rtab)],
                    summ, wall, st.mc_seconds, st.t_pred)
    if args.json:
        vc.write_json(args.json, results)
    if args.out:
        write_markdown(st, ttab, xtab, rtab, summ, wall)
    return 0


def write_markdown(st: vc.Study, ttab, xtab, rtab, summ, wall):
    """The markdown report in ``--out``: run description, summary, reading, tables."""
    reading = vc.keep_reading(st.args.out)
    lines = vc.header_lines("Validation of the NTK statistics Θ1, A, B, D, F against sampled "
                            "networks", "scripts/validate_ntk.py", "shared with other work")
    lines += vc.run_lines(st.args.jobs, wall, st.mc_seconds, st.t_pred)
    lines += [
        f"- depth {DEPTH}, layers {', '.join(map(str, LAYERS))} reported (a depth-2 network is "
        "layers 1–2 of these in distribution; its predictions were checked to coincide); hidden "
        f"widths n = {', '.join(map(str, st.widths))}; output width 2",
        vc.samples_line(st.samples),
        "- cases: " + "; ".join(f"{c.name} (σ = {c.activation}, C_b = {c.cb}, C_W = {c.cw}, "
                               f"λ_b = {c.lb}, λ_W = {c.lw})" for c in st.cases),
        "- inputs (fixed seed, |x_α|²/n0 = " + ", ".join(map(str, NORMS[:max(st.ns_inputs)]))
        + "):",
    ]
    lines += vc.input_lines(st.ns_inputs, st.inputs)
    lines += [
        "",
        "Definitions.  NTK = E[H_ii] (neurons 0, 1 averaged), predicted Θ + Θ1/n;",
        "n(NTK−Θ) = n (NTK_MC − Θ_pred) estimates Θ1 (+ Θ2/n).  A, B, D, F are n × the",
        "connected correlators of docs/conventions.md §3 (estimators in `ntkdiagrams/sampling/sampler.py`);",
        "z = (MC − pred)/stderr; n(MC − pred) is constant in n for an O(1/n) remainder of these",
        "n-scaled quantities and grows ∝ n for an O(1) error; the weighted fit",
        "MC − pred = c_∞ + c_1/n over the widths gives c_∞, the n → ∞ discrepancy, which must be",
        "0.  Θ1 fits: *Θ fixed*: NTK − Θ_pred = Θ1/n; *+Θ2/n²*: NTK − Θ_pred = Θ1/n + Θ2/n²;",
        "*Θ free*: NTK = Θ_∞ + Θ1/n.  Layer 2 is exact at every width (z^(1) Gaussian and",
        "independent, H^(1) deterministic): Θ1^(2) = 0 and A..F^(2) have no 1/n remainder;",
        "layers 3, 4 test Θ1 and the remainders.  Components: one per orbit of the estimator's",
        "symmetries (A: 6/21 for N = 2/3, B: 7/27, D: 9/36, F: 10/45).",
        "",
        "## Summary",
        "",
    ]
    lines += [f"- {s}" for s in summ]
    lines += ["", "## Reading", "", reading, "",
              "## Relative deviation per width", "",
              "Σ|MC − pred|/Σ|pred| over all distinct components of a tensor and layer, next to "
              "the statistical floor Σ stderr/Σ|pred|, and the largest |z| of the tensor per "
              "width.  An O(1/n) remainder halves the first number from one width to the next "
              "as long as it is above the floor.", "", rtab, "",
              "## Θ1", "", ttab, "",
              "## A, B, D, F", "",
              ("Every distinct component enters the summary; this table lists all of them for "
               "N = 2 and those on inputs {0, 2} for N = 3 (the full set: `--json`)."),
              "", xtab, ""]
    vc.write_report(st.args.out, lines)


if __name__ == "__main__":
    sys.exit(main())
