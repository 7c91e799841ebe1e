#!/usr/bin/env python3
"""Validate the engine's dNTK statistics P, Q, R, S, T, U against sampled networks (docs/conventions.md §6).

For every case (smooth activation, C_b, C_W, λ_b, λ_W) and data set (N = 2 fixed random inputs;
N = 3 as well with ``--n3``) the script

* evaluates the prediction P, Q, R, S, T, U with :func:`ntkdiagrams.numerics.evaluate.evaluate`
  (depth 3),
* samples networks of hidden width n = 16, 32, 64, 128 with
  :func:`ntkdiagrams.sampling.sampler.sample` (statistics P..U = n × the dNTK correlators of
  docs/conventions.md §3, neuron patterns of §3),
* compares, for layers 2 and 3, every distinct component (components whose Monte Carlo
  estimates coincide identically, i.e. equal by a symmetry of the estimator, are counted once):
  z = (MC − pred)/stderr, n (MC − pred) per width (constant in n for an O(1/n) remainder of
  the n-scaled quantity, ∝ n for a genuine O(1) error), and a weighted fit
  MC − pred = c_∞ + c_1/n whose intercept c_∞ (the n → ∞ discrepancy) must vanish.

Layer 2 is an exactness check (its fan-in neurons z^(1) are exactly Gaussian and independent),
so P..U^(2) hold at every width with no 1/n remainder; deeper layers carry the O(1/n) remainder.

ReLU (kinks): the statistics are those of docs/conventions.md §2 network by network (σ'' = 0 almost
everywhere, what the sampler computes); the engine evaluates them with ``kinks="per-network"``
(the default of :func:`ntkdiagrams.numerics.evaluate.evaluate`).

The sampler is expensive (∝ samples · n · depth); the sample sizes are fixed (reproducible)
and chosen so that the full run takes about 10 minutes on 2 shared cores.

Usage::

    python scripts/validate_dntk.py --jobs 2 --out docs/validation/dntk.md
    python scripts/validate_dntk.py --quick          # a tiny version (about a minute)

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
from validation_common import NORMS, fmt, zsummary, zval  # noqa: E402


Case = vc.Case  # a model setting: name, activation, C_b, C_W, λ_b, λ_W


CASES = [
    Case("tanh", "tanh", 0.0, 1.0),
    Case("tanh-λ", "tanh", 0.1, 1.5, lb=0.7, lw=1.9),
    Case("sin", "sin", 0.0, 1.0),
    Case("relu-crit", "relu", 0.0, 2.0),
    Case("gelu", "gelu", 0.0, 1.0),
]
DEPTH = 4
LAYERS = (2, 3, 4)
WIDTHS = (16, 32, 64, 128)
SAMPLES = {16: 100_000, 32: 60_000, 64: 30_000, 128: 15_000}
QUICK = dict(cases=("tanh",), ns=(2,), widths=(16, 32), samples={16: 10_000, 32: 5_000})
TENSORS = ("P", "Q", "R", "S", "T", "U")


# ---------------------------------------------------------------- Monte Carlo (workers)

def run_mc(task: dict) -> dict:
    """Sample the networks of one task: P..U per layer."""
    case = task["case"]
    return vc.sample_task(task, DEPTH, TENSORS, case.lb, case.lw)


# ---------------------------------------------------------------- analysis

def distinct_components(tensor: str, N: int, mc: dict, widths) -> list[tuple]:
    """The smallest of every class of components whose Monte Carlo means coincide (to 1e-9
    relative) at every width and layer: they are one estimate, equal by a symmetry of the
    estimator, and are counted once."""
    vals = np.stack([mc[n][ell][tensor][0] for n in widths for ell in LAYERS], -1)
    reps, seen = [], set()
    comps = list(np.ndindex(*(N,) * 4))
    for c in comps:
        if c in seen:
            continue
        reps.append(c)
        for d in comps:
            if d not in seen and np.allclose(vals[d], vals[c], rtol=1e-9, atol=1e-300):
                seen.add(d)
    return reps


def analyse(case: Case, N: int, pred: list, mc: dict, widths) -> dict:
    """Rows of the P..U table for one case and data set; mc[n][layer][stat]."""
    ns = np.asarray(widths, float)
    xrows = []
    for T in TENSORS:
        comps = distinct_components(T, N, mc, widths)
        for ell in LAYERS:
            P = pred[ell - 1]
            for c in comps:
                Xm = np.array([mc[n][ell][T][0][c] for n in widths])
                Xs = np.array([mc[n][ell][T][1][c] for n in widths])
                v = float(P[T][c])
                d = Xm - v
                row = dict(case=case.name, N=N, layer=ell, tensor=T, comp=c, pred=v, mc=Xm,
                           d=d, d_err=Xs, z=_z(d, Xs), nd=ns * d, nd_err=ns * Xs)
                if len(ns) >= 3 and np.all(Xs > 0):
                    row["fit"] = vc.fit_inverse_n(ns, d, Xs)
                xrows.append(row)
    xrows.sort(key=lambda r: (r["layer"], TENSORS.index(r["tensor"]), r["comp"]))
    return dict(X=xrows, ncomp={T: len(distinct_components(T, N, mc, widths))
                                for T in TENSORS})


def _z(d, err):
    """(MC − pred)/stderr; 0 where both vanish (components that are exactly zero, e.g. P of ReLU
    at layer 2, where every network gives 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(err > 0, d / np.where(err > 0, err, 1.0), np.where(d == 0, 0.0, np.inf))


def comp_str(c):
    """The component's indices, concatenated."""
    return "".join(map(str, c))


def tensor_table(results: list, widths) -> str:
    """Markdown table of P..U: n(MC − pred) per width with z, the fit of c_∞."""
    fitcols = len(widths) >= 3
    lines = ["| case | N | ℓ | tensor | comp | pred | "
             + " | ".join(f"n(MC−pred) n={n} (z)" for n in widths)
             + (" | c_∞ (MC−pred→) | z(c_∞) | c_1 | χ²/dof |" if fitcols else " |"),
             "|" + "---|" * (6 + len(widths) + (4 if fitcols else 0))]
    for res in results:
        for r in res["X"]:
            f = r.get("fit")
            lines.append("| " + " | ".join(
                [r["case"], str(r["N"]), str(r["layer"]), r["tensor"], comp_str(r["comp"]),
                 f"{r['pred']:.5f}"]
                + [f"{fmt(v, e)} ({z:+.1f})" for v, e, z in zip(r["nd"], r["nd_err"], r["z"])]
                + ([] if not fitcols else ["—"] * 4 if f is None else
                   [fmt(f[0], f[1]), f"{zval(f[0], f[1]):+.1f}", fmt(f[2], f[3]),
                    f"{f[4]:.1f}/{f[5]}"])) + " |")
    return "\n".join(lines)


def trend_table(results: list, widths) -> str:
    """Per case, N, layer, tensor: Σ|MC − pred|/Σ|pred| per width next to Σ stderr/Σ|pred|."""
    lines = ["| case | N | ℓ | tensor | comps | " + " | ".join(f"Σ|Δ|/Σ|X| n={n}" for n in widths)
             + " | " + " | ".join(f"Σσ/Σ|X| n={n}" for n in widths) + " | max|z| per n |",
             "|" + "---|" * (5 + 2 * len(widths) + 1)]
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
                lines.append(f"| {sel[0]['case']} | {sel[0]['N']} | {ell} | {T} | {len(sel)} | "
                             + " | ".join(f"{v:.4f}" for v in d) + " | "
                             + " | ".join(f"{v:.4f}" for v in e) + " | "
                             + " ".join(f"{v:.1f}" for v in mz) + " |")
    return "\n".join(lines)


def summaries(results: list, widths) -> list[str]:
    """The summary lines: z statistics per layer, width and tensor, and of c_∞."""
    out = []
    X = [r for res in results for r in res["X"]]
    out.append("**P..U, all distinct components, all widths** "
               f"(z = (MC − pred)/stderr), layers {LAYERS}: " + zsummary([z for r in X for z in r["z"]]))
    out.append("**layer 2 only** (exact at every width): "
               + zsummary([z for r in X if r["layer"] == 2 for z in r["z"]]))
    for T in TENSORS:
        out.append(f"{T}, layer 2: " + zsummary(
            [z for r in X if r["layer"] == 2 and r["tensor"] == T for z in r["z"]]))
    for i, n in enumerate(widths):
        out.append(f"P..U, layers ≥ 3, n = {n}: "
                   + zsummary([r["z"][i] for r in X if r["layer"] >= 3]))
    big = widths[-1]
    for T in TENSORS:
        out.append(f"{T}, layers ≥ 3, n = {big}: "
                   + zsummary([r["z"][-1] for r in X if r["layer"] >= 3 and r["tensor"] == T]))
    if len(widths) >= 3:
        out.append("**c_∞ (fit MC − pred = c_∞ + c_1/n; an O(1) error of the n-scaled tensor) "
                   "vs 0**, all components and layers: "
                   + zsummary([zval(r["fit"][0], r["fit"][1]) for r in X if "fit" in r]))
        out.append("c_∞ vs 0, layers ≥ 3: " + zsummary(
            [zval(r["fit"][0], r["fit"][1]) for r in X if "fit" in r and r["layer"] >= 3]))
        for T in TENSORS:
            out.append(f"c_∞ of {T}, layers ≥ 3: " + zsummary(
                [zval(r["fit"][0], r["fit"][1]) for r in X
                 if "fit" in r and r["tensor"] == T and r["layer"] >= 3]))
    return out


# ---------------------------------------------------------------- main

def predictions(cases, ns_inputs, inputs) -> dict:
    """P..U of every case and data set, depth DEPTH."""
    preds = {}
    for case in cases:
        for N in ns_inputs:
            preds[(case.name, N)] = evaluate(case.activation, DEPTH, inputs[N], cb=case.cb,
                                             cw=case.cw, lb=case.lb, lw=case.lw,
                                             stats=list(TENSORS))
    return preds


def main(argv=None) -> int:
    """Sample, predict, compare; print the tables and write the requested files."""
    ap = vc.make_parser(__doc__)
    ap.add_argument("--n3", action="store_true", help="also the N = 3 data set (slow)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    cases, ns_inputs, widths, samples = vc.select_run(ap, args, CASES, WIDTHS, SAMPLES, QUICK)
    ns_inputs = (2, 3) if (args.n3 and not args.quick) else (2,)
    inputs = {N: vc.make_inputs(N, args.seed) for N in ns_inputs}
    tasks = vc.build_tasks(CASES, cases, ns_inputs, widths, inputs, samples, args.seed, 70_000)
    mc, mc_seconds, preds, t_pred = vc.run_tasks(
        tasks, run_mc, args.jobs, lambda: predictions(cases, ns_inputs, inputs), samples,
        t_start)
    results = vc.analyse_all(analyse, cases, ns_inputs, widths, preds, mc)
    st = vc.Study(args, cases, ns_inputs, widths, samples, inputs, results, mc_seconds, t_pred)

    xtab = tensor_table(results, widths)
    rtab = trend_table(results, widths)
    summ = summaries(results, widths)
    wall = time.perf_counter() - t_start

    vc.print_report([("P..U: n(MC − pred) per width (z); fit MC − pred = c_∞ + c_1/n", xtab),
                     ("relative deviation per width", rtab)],
                    summ, wall, st.mc_seconds, st.t_pred)
    if args.json:
        vc.write_json(args.json, results)
    if args.out:
        write_markdown(st, xtab, rtab, summ, wall)
    return 0


def write_markdown(st: vc.Study, xtab, rtab, summ, wall):
    """The markdown report in ``--out``: run description, summary, reading, tables."""
    reading = vc.keep_reading(st.args.out)
    ncomp = st.results[0]["ncomp"]
    lines = vc.header_lines("Validation of the dNTK statistics P, Q, R, S, T, U against sampled "
                            "networks", "scripts/validate_dntk.py", "shared with other work")
    lines += vc.run_lines(st.args.jobs, wall, st.mc_seconds, st.t_pred)
    lines += [
        f"- depth {DEPTH}, layers {', '.join(map(str, LAYERS))} reported; hidden widths "
        f"n = {', '.join(map(str, st.widths))}; output width 2",
        vc.samples_line(st.samples),
        "- cases: " + "; ".join(f"{c.name} (σ = {c.activation}, C_b = {c.cb}, C_W = {c.cw}, "
                               f"λ_b = {c.lb}, λ_W = {c.lw})" for c in st.cases),
        "- inputs (fixed seed, |x_α|²/n0 = " + ", ".join(map(str, NORMS[:max(st.ns_inputs)]))
        + "):",
    ]
    lines += vc.input_lines(st.ns_inputs, st.inputs)
    lines += [
        "",
        "Definitions.  P, Q, R, S, T, U are n × the dNTK correlators of docs/conventions.md §3",
        "(estimators in `ntkdiagrams/sampling/sampler.py`, neuron patterns of §3);",
        "z = (MC − pred)/stderr; n(MC − pred) is constant in n for an O(1/n) remainder of these",
        "n-scaled quantities and grows ∝ n for an O(1) error; the weighted fit",
        "MC − pred = c_∞ + c_1/n over the widths gives c_∞, the n → ∞ discrepancy, which must be",
        "0.  Layer 2 is exact at every width (z^(1) Gaussian and independent): no 1/n remainder;",
        "deeper layers test the remainder.  Components: one per class of components whose Monte Carlo",
        "estimates coincide identically (a symmetry of the estimator), per tensor for N = "
        f"{st.ns_inputs[0]}: " + ", ".join(f"{T}: {k}" for T, k in ncomp.items()) + ".",
        "",
        "Scope.  ReLU is compared in the per-network sense of docs/conventions.md §2 (σ'' = 0 almost",
        "everywhere for every network, as the sampler computes it; `evaluate(..., kinks=\"per-network\")`,",
        "the default).  Several ReLU components are exactly 0 at layer 2 in both (z = 0 is reported).",
        "",
        "## Summary",
        "",
    ]
    lines += [f"- {s}" for s in summ]
    lines += ["", "## Reading", "", reading, "",
              "## Relative deviation per width", "",
              "Σ|MC − pred|/Σ|pred| over all distinct components of a tensor and layer, next to "
              "the statistical floor Σ stderr/Σ|pred|, and the largest |z| of the tensor per "
              "width.", "", rtab, "",
              "## P, Q, R, S, T, U", "",
              "Every distinct component (all of them are listed).", "", xtab, ""]
    vc.write_report(st.args.out, lines)


if __name__ == "__main__":
    sys.exit(main())
