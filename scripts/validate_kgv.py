#!/usr/bin/env python3
"""Validate the engine's K, G1 and V against sampled networks (docs/conventions.md §6).

For every case (activation, C_b, C_W) and data set (N = 2 and N = 3 fixed random inputs) the
script

* evaluates the prediction K, G1, V with :func:`ntkdiagrams.numerics.evaluate.evaluate` (depth 4),
* samples networks of hidden width n = 16, 32, 64, 128 with
  :func:`ntkdiagrams.sampling.sampler.sample` (statistics "K+G1" = G = E[z z] and V = n × connected 4-point),
* compares, for layers 2, 3, 4:

  - V: every distinct component V_{(α1α2)(α3α4)} (up to α1↔α2, α3↔α4 and pair exchange) at
    every width, z = (MC − pred)/stderr, the difference MC − pred per width (it must shrink
    like 1/n), and a weighted least-squares fit V_MC(n) = V_∞ + b/n whose intercept V_∞ is
    compared with the prediction;
  - G1: n (G_MC − K_pred) per width, and weighted least-squares fits of G_MC against 1/n:
    intercept fixed to K_pred (G − K = G1/n, and G − K = G1/n + G2/n²) and intercept free
    (G = K_∞ + G1/n; K_∞ is the check of K itself);
  - G: z = (G_MC − K − G1/n)/stderr per width.

Layer 2 is an exactness check: its fan-in neurons z^(1) are exactly Gaussian and independent,
so G^(2) = K^(2) and V^(2) hold at every width with no 1/n remainder.

Sample sizes are fixed (reproducible), chosen from pilot runs (tanh, depth 4): the standard
error of G is ≈ K/√S (neurons 0 and 1 averaged), so the G1 estimate n (G − K) has error
≈ n K/√S; the cost per network is ≈ 10, 28, 100, 400 µs at n = 16, 32, 64, 128 (it is the
drawing of the n² weights).  Most of the G1 information is at n = 16 (error ∝ n, cost ∝ n²);
V's error grows ∝ n/√S, so the large widths get the rest of the budget.

Usage::

    python scripts/validate_kgv.py --jobs 2 --out docs/validation/kgv.md
    python scripts/validate_kgv.py --quick          # a tiny version (seconds)

A hand-written reading between the markers ``<!-- reading -->`` and ``<!-- /reading -->`` of
an existing output file is kept when the file is rewritten.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import validation_common as vc  # noqa: E402  (one BLAS thread; the repository on sys.path)

import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

from ntkdiagrams.numerics.evaluate import evaluate  # noqa: E402
from validation_common import NORMS, fmt, pairs, zsummary, zval  # noqa: E402


@dataclass(frozen=True)
class Case:
    name: str
    activation: str
    cb: float
    cw: float
    g1: bool = True  # False for activations with kinks: the engine refuses G1 there
    rules: object = None  # the MLP (validation_common.sample_task reads it since 7bb27cc)


CASES = [
    Case("tanh", "tanh", 0.0, 1.0),
    Case("gelu", "gelu", 0.0, 1.0),
    Case("sin", "sin", 0.0, 1.0),
    Case("erf", "erf", 0.0, 1.0),
    Case("relu-crit", "relu", 0.0, 2.0, g1=False),
    Case("tanh-cb0.2-cw1.7", "tanh", 0.2, 1.7),
    # appended 2026-12-03 (the seeds of the cases above are unchanged; docs/validation/kgv.md
    # predates them): the logistic family at C_W = 2, the grid's slowest cells' activations
    Case("softplus-cw2", "softplus", 0.0, 2.0),
    Case("swish-cw2", "swish", 0.0, 2.0),
]
DEPTH = 4
LAYERS = (2, 3, 4)
WIDTHS = (16, 32, 64, 128)
SAMPLES = {16: 1_000_000, 32: 400_000, 64: 120_000, 128: 40_000}
QUICK = dict(cases=("tanh", "relu-crit"), ns=(2,), widths=(16, 32),
             samples={16: 100_000, 32: 30_000})
LB, LW = 1.0, 1.0  # irrelevant for K, G1, V
# inputs: vc.make_inputs, |x_α|²/n0 = NORMS[α], so K^(1)_αα = C_b + C_W · NORMS[α]


def v_components(N):
    """The distinct V components (up to α1↔α2, α3↔α4 and pair exchange)."""
    P = pairs(N)
    return [P[i] + P[j] for i in range(len(P)) for j in range(i, len(P))]


def key_v_components(N):
    """The components shown in the markdown V table (all are summarised)."""
    if N == 2:
        return v_components(2)
    return [(0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 2, 2), (0, 0, 1, 1), (0, 1, 0, 1),
            (0, 0, 1, 2), (0, 1, 0, 2)]


# ---------------------------------------------------------------- Monte Carlo (workers)

def run_mc(task: dict) -> dict:
    """Sample the networks of one task: G and V per layer."""
    return vc.sample_task(task, DEPTH, ("K", "G1", "V"), LB, LW)


# ---------------------------------------------------------------- analysis

def analyse(case: Case, N: int, pred: list, mc: dict, widths) -> dict:
    """Rows of the G and V tables for one case and data set; mc[n][layer] = {"K+G1","V"}."""
    ns = np.asarray(widths, float)
    grows, vrows = [], []
    for ell in LAYERS:
        P = pred[ell - 1]
        K = P["K"]
        G1 = P.get("G1")
        for (a, b) in pairs(N):
            Gm = np.array([mc[n][ell]["K+G1"][0][a, b] for n in widths])
            Gs = np.array([mc[n][ell]["K+G1"][1][a, b] for n in widths])
            k = float(K[a, b])
            g1 = None if G1 is None else float(G1[a, b])
            row = dict(case=case.name, N=N, layer=ell, comp=(a, b), K=k, G1=g1,
                       nGK=ns * (Gm - k), nGK_err=ns * Gs, G=Gm, G_err=Gs)
            if g1 is not None:
                row["zG"] = [(Gm[i] - k - g1 / n) / Gs[i] for i, n in enumerate(ns)]
            row.update(vc.mean_fits(ns, Gm, Gs, k))  # fits of G against 1/n
            grows.append(row)
        V = P["V"]
        for c in v_components(N):
            Vm = np.array([mc[n][ell]["V"][0][c] for n in widths])
            Vs = np.array([mc[n][ell]["V"][1][c] for n in widths])
            v = float(V[c])
            row = dict(case=case.name, N=N, layer=ell, comp=c, V=v, d=Vm - v, d_err=Vs,
                       z=(Vm - v) / Vs, key=c in key_v_components(N))
            if len(ns) >= 2:
                row["fit"] = vc.fit_inverse_n(ns, Vm, Vs)
            vrows.append(row)
    return dict(G=grows, V=vrows)


def comp_str(c):
    """"αβ" for a pair, "(α1α2)(α3α4)" for a V component."""
    if len(c) == 2:
        return f"{c[0]}{c[1]}"
    return f"({c[0]}{c[1]})({c[2]}{c[3]})"


def tables(results: list, widths) -> tuple[str, str]:
    """Markdown tables for G/G1 and V."""
    gl = ["| case | N | ℓ | αβ | K pred | K_∞ fit (free) | G1 pred | "
          + " | ".join(f"n(G−K) n={n}" for n in widths)
          + " | G1 fit (K fixed) | G1 fit (K fixed, +G2/n²) | G1 fit (K free) | z(G1 fit, K fixed) | z(K_∞) |",
          "|" + "---|" * (9 + len(widths) + 2)]
    for res in results:
        for r in res["G"]:
            if r["layer"] == 2 and r["G1"] is not None and abs(r["G1"]) < 1e-12:
                pass  # layer 2 shown too: G1 = 0 exactly there
            ff = r["fit_fixed"]
            f2 = r.get("fit_fixed2")
            fr = r.get("fit_free")
            zfit = "—" if r["G1"] is None else f"{zval(ff[0] - r['G1'], ff[1]):+.1f}"
            zK = "—" if fr is None else f"{zval(fr[0] - r['K'], fr[1]):+.1f}"
            gl.append("| " + " | ".join([
                r["case"], str(r["N"]), str(r["layer"]), comp_str(r["comp"]), f"{r['K']:.5f}",
                "—" if fr is None else fmt(fr[0], fr[1]), fmt(r["G1"])]
                + [fmt(v, e) for v, e in zip(r["nGK"], r["nGK_err"])]
                + [fmt(ff[0], ff[1]), "—" if f2 is None else fmt(f2[0], f2[1]),
                   "—" if fr is None else fmt(fr[2], fr[3]), zfit, zK]) + " |")
    vl = ["| case | N | ℓ | V comp | V pred | "
          + " | ".join(f"MC−pred n={n} (z)" for n in widths) + " | V_∞ fit | z(V_∞) | χ²/dof |",
          "|" + "---|" * (5 + len(widths) + 3)]
    for res in results:
        for r in res["V"]:
            if not r["key"]:
                continue
            f = r.get("fit")
            vl.append("| " + " | ".join([
                r["case"], str(r["N"]), str(r["layer"]), comp_str(r["comp"]), f"{r['V']:.5f}"]
                + [f"{fmt(d, e)} ({z:+.1f})" for d, e, z in zip(r["d"], r["d_err"], r["z"])]
                + (["—", "—", "—"] if f is None else
                   [fmt(f[0], f[1]), f"{zval(f[0] - r['V'], f[1]):+.1f}", f"{f[4]:.1f}/{f[5]}"])) + " |")
    return "\n".join(gl), "\n".join(vl)


def trend_table(results: list, widths) -> str:
    """Per case and layer: Σ|MC − pred|/Σ|V| and Σ stderr/Σ|V| over all V components, per width.

    An O(1/n) remainder makes the first column fall like 1/n where it is above the second
    (the statistical floor, which grows ∝ n at fixed cost per width)."""
    head = ("| case | N | ℓ | " + " | ".join(f"Σ|Δ|/Σ|V| n={n}" for n in widths) + " | "
            + " | ".join(f"Σσ/Σ|V| n={n}" for n in widths) + " |")
    lines = [head, "|" + "---|" * (3 + 2 * len(widths))]
    for res in results:
        for ell in LAYERS:
            sel = [r for r in res["V"] if r["layer"] == ell]
            if not sel:
                continue
            sv = sum(abs(r["V"]) for r in sel) or 1.0
            d = [sum(abs(r["d"][i]) for r in sel) / sv for i in range(len(widths))]
            e = [sum(r["d_err"][i] for r in sel) / sv for i in range(len(widths))]
            lines.append(f"| {sel[0]['case']} | {sel[0]['N']} | {ell} | "
                         + " | ".join(f"{v:.3f}" for v in d) + " | "
                         + " | ".join(f"{v:.3f}" for v in e) + " |")
    return "\n".join(lines)


def summaries(results: list, widths) -> list[str]:
    """The summary lines: z statistics of V, G and the fits, and the precision of G1."""
    out = []
    V = [r for res in results for r in res["V"]]
    G = [r for res in results for r in res["G"]]
    out.append("**V, all components, layers 2–4, all widths** (z = (MC − pred)/stderr): "
               + zsummary([z for r in V for z in r["z"]]))
    out.append("**V, layer 2 only** (exact at every width): "
               + zsummary([z for r in V if r["layer"] == 2 for z in r["z"]]))
    for i, n in enumerate(widths):
        sel = [r for r in V if r["layer"] > 2]
        rel = [abs(r["d"][i]) for r in sel]
        scale = [max(abs(r["V"]), 1e-12) for r in sel]
        out.append(f"V, layers 3–4, n = {n}: " + zsummary([r["z"][i] for r in sel])
                   + f"; Σ|MC − pred|/Σ|V| = {np.sum(rel) / np.sum(scale):.3f} "
                   f"(statistical: Σ stderr/Σ|V| = {np.sum([r['d_err'][i] for r in sel]) / np.sum(scale):.3f})")
    if len(widths) >= 2:
        out.append("**V_∞ (fit V = V_∞ + b/n) vs prediction**, all components: "
                   + zsummary([zval(r["fit"][0] - r["V"], r["fit"][1]) for r in V if "fit" in r]))
    Gp = [r for r in G if r["G1"] is not None]
    out.append("**G vs K + G1/n, all widths**: " + zsummary([z for r in Gp for z in r["zG"]]))
    for i, n in enumerate(widths):
        out.append(f"G vs K + G1/n, n = {n}: " + zsummary([r["zG"][i] for r in Gp]))
    out.append("**G1 fit (K fixed, G − K = G1/n) vs G1 pred**, layers 3–4: "
               + zsummary([zval(r["fit_fixed"][0] - r["G1"], r["fit_fixed"][1])
                           for r in Gp if r["layer"] > 2]))
    f2 = [r for r in Gp if r["layer"] > 2 and "fit_fixed2" in r]
    if f2:
        out.append("**G1 fit (K fixed, + G2/n²) vs G1 pred**, layers 3–4: "
                   + zsummary([zval(r["fit_fixed2"][0] - r["G1"], r["fit_fixed2"][1]) for r in f2]))
    ff = [r for r in Gp if r["layer"] > 2 and "fit_free" in r]
    if ff:
        out.append("**G1 fit (K free) vs G1 pred**, layers 3–4: "
                   + zsummary([zval(r["fit_free"][2] - r["G1"], r["fit_free"][3]) for r in ff]))
    fk = [r for r in G if "fit_free" in r]
    if fk:
        out.append("**K_∞ (free fit intercept) vs K pred**, all cases incl. ReLU: "
                   + zsummary([zval(r["fit_free"][0] - r["K"], r["fit_free"][1]) for r in fk]))
    # relative precision of the G1 determination
    prec = [r["fit_fixed"][1] / abs(r["G1"]) for r in Gp if r["layer"] > 2 and abs(r["G1"]) > 1e-9]
    if prec:
        out.append(f"G1 (K fixed fit) relative error bar: median {np.median(prec):.1%}, "
                   f"range {min(prec):.1%} – {max(prec):.1%}")
    return out


# ---------------------------------------------------------------- main

def predictions(cases, ns_inputs, inputs) -> dict:
    """K, G1 (not at a kink) and V of every case and data set, depth DEPTH."""
    preds = {}
    for case in cases:
        for N in ns_inputs:
            preds[(case.name, N)] = evaluate(
                case.activation, DEPTH, inputs[N], cb=case.cb, cw=case.cw, lb=LB, lw=LW,
                stats=("K", "G1", "V") if case.g1 else ("K", "V"))
    return preds


def main(argv=None) -> int:
    """Sample, predict, compare; print the tables and write the requested files."""
    ap = vc.make_parser(__doc__)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    st = vc.run_study(ap, args, t_start, CASES, WIDTHS, SAMPLES, QUICK, run_mc=run_mc,
                      predict=predictions, analyse=analyse, cases_from_all=True)
    results, widths = st.results, st.widths
    gtab, vtab = tables(results, widths)
    summ = summaries(results, widths)
    ttab = trend_table(results, widths)
    wall = time.perf_counter() - t_start

    vc.print_report([("G and G1 (n(G−K) per width, fits over widths)", gtab),
                     ("V (MC − pred per width with z; fit V_∞ + b/n)", vtab),
                     ("V: relative deviation per width (1/n trend)", ttab)],
                    summ, wall, st.mc_seconds, st.t_pred)
    if args.json:
        vc.write_json(args.json, results)
    if args.out:
        write_markdown(st, gtab, vtab, ttab, summ, wall)
    return 0


def write_markdown(st: vc.Study, gtab, vtab, ttab, summ, wall):
    """The markdown report in ``--out``: run description, summary, reading, tables."""
    reading = vc.keep_reading(st.args.out)
    lines = vc.header_lines("Validation of K, G1 and V against sampled networks",
                            "scripts/validate_kgv.py", "shared")
    lines += vc.run_lines(st.args.jobs, wall, st.mc_seconds, st.t_pred)
    lines += [
        f"- depth {DEPTH}, layers {', '.join(map(str, LAYERS))} reported; λ_b = λ_W = 1 (irrelevant "
        f"here); hidden widths n = {', '.join(map(str, st.widths))}; output width 2",
        vc.samples_line(st.samples),
        "- cases: " + "; ".join(f"{c.name} (σ = {c.activation}, C_b = {c.cb}, C_W = {c.cw}"
                               + ("" if c.g1 else ", K and V only: the engine refuses G1 at a kink")
                               + ")" for c in st.cases),
        "- inputs (fixed seed, |x_α|²/n0 = " + ", ".join(map(str, NORMS)) + "; K^(1) = C_b + C_W x·x/n0):",
    ]
    lines += vc.input_lines(st.ns_inputs, st.inputs)
    lines += [
        "",
        "Definitions.  G = E[z_i z_i] (neurons 0, 1 of the layer averaged), predicted K + G1/n;",
        "V = n × connected 4-point of neuron pattern (0,0,1,1) (docs/conventions.md §3), predicted V.",
        "z = (MC − prediction)/stderr.  n(G−K) = n (G_MC − K_pred) estimates G1 (+ G2/n).",
        "Fits are weighted least squares over the widths: *K fixed*: G − K_pred = G1/n;",
        "*K fixed, +G2/n²*: G − K_pred = G1/n + G2/n²; *K free*: G = K_∞ + G1/n (K_∞ is the",
        "check of K itself); V: V_MC = V_∞ + b/n.  Layer 2 is exact at every width (its inputs",
        "z^(1) are exactly Gaussian and independent): G1^(2) = 0 and V^(2) has no 1/n remainder.",
        "",
        "## Summary",
        "",
    ]
    lines += [f"- {s}" for s in summ]
    lines += ["", "## Reading", "", reading, "",
              "## V: relative deviation per width", "",
              "Σ|MC − pred|/Σ|V| over all distinct V components of the layer, next to the "
              "statistical floor Σ stderr/Σ|V|.  An O(1/n) remainder halves the first number "
              "from one width to the next as long as it is above the floor.", "", ttab, "",
              "## G and G1", "", gtab, "",
              "## V", "",
              ("All distinct components are in the summary; the table lists all of them for N = 2 "
               "and the diagonal ones, (00)(11), (01)(01), (00)(12), (01)(02) for N = 3."),
              "", vtab, ""]
    vc.write_report(st.args.out, lines)


if __name__ == "__main__":
    sys.exit(main())
