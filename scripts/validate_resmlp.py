#!/usr/bin/env python3
"""Validate the residual MLP (rules/resmlp.toml) and per-layer widths against sampled networks (docs/conventions.md §6).

Residual MLP z^(ℓ+1) = ξ z^(ℓ) + b + W σ(z^(ℓ)) (shortcut weight ξ), σ = tanh, ReLU, GELU,
ξ ∈ {0.5, 1}, depth 4; and the MLP with per-layer widths n_ℓ = r_ℓ n, r = (1, 2, 0.5, 1)
(rules/mlp.toml with ``[model] width_ratio = "r"``; the residual rule file refuses width
ratios).  For every case and data set (N = 2 fixed random inputs; N = 3 as well with ``--n3``)
the script

* evaluates the predictions with :func:`ntkdiagrams.numerics.evaluate.evaluate` (``rules`` and
  ``params`` of the case),
* samples networks of hidden width n = 16, 32, 64, 128 with
  :func:`ntkdiagrams.sampling.sampler.sample` (same rule file and parameters),
* compares, for layers 2, 3, 4:

  - the means: sampled E[zz] ("K+G1") against K + G1/n and sampled E[H] ("Theta+Theta1")
    against Θ + Θ1/n; n (MC − K) per width next to G1 (resp. n (MC − Θ) next to Θ1); fits
    MC − lead = c1/n (lead fixed) and MC = lead_∞ + c1/n (lead free);
  - the connected tensors V, A, B, D, F, P, Q, R, S, T, U (n × correlator): every distinct
    component (classes of components whose Monte Carlo estimates coincide identically) at every
    width: z = (MC − pred)/stderr, n (MC − pred), and the fit MC − pred = c_∞ + c_1/n whose
    intercept c_∞ must vanish.

Layer 2 of the MLP is exact at every width (z^(1) exactly Gaussian and independent).  For the
residual MLP the fan-in sum of neuron i of layer 2 contains σ(z^(1)_i), correlated with the
shortcut ξ z^(1)_i: whether layer 2 is exact there is part of what the table shows (an O(1/n)
remainder at layer 2 shows up as a constant n (MC − pred) and c_∞ = 0).

Usage::

    python scripts/validate_resmlp.py --jobs 2 --out docs/validation/resmlp.md
    python scripts/validate_resmlp.py --jobs 2 --n3 --out docs/validation/resmlp_n3.md
    python scripts/validate_resmlp.py --quick          # a tiny version (about a minute)

A hand-written reading between the markers ``<!-- reading -->`` and ``<!-- /reading -->`` of
an existing output file is kept when the file is rewritten.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import validation_common as vc  # noqa: E402  (one BLAS thread; the repository on sys.path)

import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from ntkdiagrams.language.rulefile import load_rules, parse_rules  # noqa: E402
from ntkdiagrams.numerics.closure import ClosureWarning  # noqa: E402
from ntkdiagrams.numerics.evaluate import evaluate  # noqa: E402
from validation_common import NORMS, fmt, pairs, zsummary, zval  # noqa: E402


Case = vc.Case  # a model setting: name, activation, C_b, C_W, λ_b, λ_W, rules, params


def mlp_with_widths():
    """rules/mlp.toml with ``[model] width_ratio = "r"`` (hidden layer ℓ has r_ℓ n neurons)."""
    src = load_rules("mlp").source
    return parse_rules(src.replace('width = "n" ', 'width_ratio = "r"\nwidth = "n" ', 1),
                       "mlp_widths.toml")


def res_case(name, act, xi, cb, cw):
    """A residual-MLP case: rules/resmlp.toml with ξ, C_b, C_W (λ_b = λ_W = 1)."""
    return Case(name, act, cb, cw, rules="resmlp",
                params=(("xi", xi), ("C_b", cb), ("C_W", cw), ("lambda_b", 1.0),
                        ("lambda_W", 1.0)))


R_WIDTHS = (1.0, 2.0, 0.5, 1.0)
CASES = [
    res_case("res-tanh-ξ0.5", "tanh", 0.5, 0.1, 1.0),
    res_case("res-tanh-ξ1", "tanh", 1.0, 0.1, 1.0),
    # ReLU: K^(ℓ+1) = ξ² K + C_b + C_W K/2 on the diagonal; C_W = 1 keeps it moderate
    # (factor 0.75 per layer at ξ = 0.5, 1.5 at ξ = 1: 3.4 over depth 4)
    res_case("res-relu-ξ0.5", "relu", 0.5, 0.0, 1.0),
    res_case("res-relu-ξ1", "relu", 1.0, 0.0, 1.0),
    res_case("res-gelu-ξ0.5", "gelu", 0.5, 0.0, 1.0),
    res_case("res-gelu-ξ1", "gelu", 1.0, 0.0, 1.0),
    Case("widths-tanh", "tanh", 0.1, 1.0, rules=mlp_with_widths(),
         params=(("C_b", 0.1), ("C_W", 1.0), ("lambda_b", 1.0), ("lambda_W", 1.0),
                 ("r", R_WIDTHS))),
]
DEPTH = 4
LAYERS = (2, 3, 4)
WIDTHS = (16, 32, 64, 128)
SAMPLES = {16: 200_000, 32: 100_000, 64: 40_000, 128: 15_000}
QUICK = dict(cases=("res-tanh-ξ1",), ns=(2,), widths=(16, 32), samples={16: 3_000, 32: 1_500})
MEANS = {"K+G1": ("K", "G1"), "Theta+Theta1": ("Theta", "Theta1")}
ALL_TENSORS = ("V", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")
WIDTH_TENSORS = ("V", "A", "B")  # the per-layer-width case (with K, G1, Θ, Θ1)


def tensors(case: Case) -> tuple:
    """The connected tensors compared for a case."""
    return WIDTH_TENSORS if case.name.startswith("widths") else ALL_TENSORS


def pred_stats(case: Case) -> list:
    """The statistics evaluated for a case."""
    return ["K", "G1", "Theta", "Theta1"] + list(tensors(case))


# ---------------------------------------------------------------- Monte Carlo (workers)

def run_mc(task: dict) -> dict:
    """Sample the networks of one task: E[zz], E[H] and the connected tensors per layer."""
    case = task["case"]
    return vc.sample_task(task, DEPTH, ("K", "G1", "Theta", "Theta1") + tensors(case),
                          case.lb, case.lw)


# ---------------------------------------------------------------- analysis

def distinct_components(tensor: str, N: int, mc: dict, widths) -> list[tuple]:
    """The smallest of every class of components whose Monte Carlo means coincide (to 1e-9
    relative) at every width and layer (as scripts/validate_dntk.py)."""
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


def _z(d, err):
    """(MC − pred)/stderr; 0 where both vanish, ∞ for a nonzero d without error."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(err > 0, d / np.where(err > 0, err, 1.0), np.where(d == 0, 0.0, np.inf))


def analyse(case: Case, N: int, pred: list, mc: dict, widths) -> dict:
    """Rows of the means table and of the tensor table for one case and data set."""
    ns = np.asarray(widths, float)
    mrows, xrows = [], []
    limits = getattr(pred, "incomplete", {})

    def is_open(tensor, ell):
        return tensor in limits and ell >= limits[tensor]

    for ell in LAYERS:
        P = pred[ell - 1]
        for stored, (lead, corr) in MEANS.items():
            for (a, b) in pairs(N):
                Hm = np.array([mc[n][ell][stored][0][a, b] for n in widths])
                Hs = np.array([mc[n][ell][stored][1][a, b] for n in widths])
                L0, L1 = float(P[lead][a, b]), float(P[corr][a, b])
                row = dict(case=case.name, N=N, layer=ell, stat=stored, comp=(a, b), lead=L0,
                           corr=L1, nd=ns * (Hm - L0), nd_err=ns * Hs,
                           z=_z(Hm - L0 - L1 / ns, Hs), z0=_z(Hm - L0, Hs), open=is_open(corr, ell))
                row.update(vc.mean_fits(ns, Hm, Hs, L0))
                mrows.append(row)
    ncomp = {}
    for T in tensors(case):
        comps = distinct_components(T, N, mc, widths)
        ncomp[T] = len(comps)
        for ell in LAYERS:
            P = pred[ell - 1]
            for c in comps:
                Xm = np.array([mc[n][ell][T][0][c] for n in widths])
                Xs = np.array([mc[n][ell][T][1][c] for n in widths])
                v = float(P[T][c])
                d = Xm - v
                row = dict(case=case.name, N=N, layer=ell, tensor=T, comp=c, pred=v, d=d,
                           d_err=Xs, z=_z(d, Xs), nd=ns * d, nd_err=ns * Xs, open=is_open(T, ell))
                if len(ns) >= 3 and np.all(Xs > 0):
                    row["fit"] = vc.fit_inverse_n(ns, d, Xs)
                xrows.append(row)
    xrows.sort(key=lambda r: (r["layer"], ALL_TENSORS.index(r["tensor"]), r["comp"]))
    return dict(M=mrows, X=xrows, ncomp=ncomp)


def comp_str(c):
    """The component's indices, concatenated."""
    return "".join(map(str, c))


def means_table(results: list, widths) -> str:
    """Markdown table of E[zz] and E[H]: n(MC − lead) per width against the 1/n coefficient."""
    lines = ["| case | N | ℓ | stat | αβ | lead (K or Θ) | 1/n coeff (G1 or Θ1) | "
             + " | ".join(f"n(MC−lead) n={n}" for n in widths)
             + " | coeff fit (lead fixed) | z | lead_∞ fit (free) | z(lead_∞) | "
             + "z(lead+coeff/n) per n | z(lead only) per n |",
             "|" + "---|" * (7 + len(widths) + 6)]
    for res in results:
        for r in res["M"]:
            ff, fr = r["fit_fixed"], r.get("fit_free")
            lines.append("| " + " | ".join(
                [r["case"], str(r["N"]), str(r["layer"]), r["stat"], comp_str(r["comp"]),
                 f"{r['lead']:.5f}", f"{r['corr']:.5f}"]
                + [fmt(v, e) for v, e in zip(r["nd"], r["nd_err"])]
                + [fmt(ff[0], ff[1]), f"{zval(ff[0] - r['corr'], ff[1]):+.1f}",
                   "—" if fr is None else fmt(fr[0], fr[1]),
                   "—" if fr is None else f"{zval(fr[0] - r['lead'], fr[1]):+.1f}",
                   " ".join(f"{z:+.1f}" for z in r["z"]),
                   " ".join(f"{z:+.1f}" for z in r["z0"])]) + " |")
    return "\n".join(lines)


def tensor_table(results: list, widths) -> str:
    """Markdown table of the connected tensors: n(MC − pred) per width with z, the fit of c_∞."""
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


def summaries(results: list, widths) -> list[str]:
    """The summary lines: z statistics per layer, width and statistic, and of c_∞."""
    out = []
    M = [r for res in results for r in res["M"]]
    X = [r for res in results for r in res["X"]]
    names = [s for s in MEANS] + [T for T in ALL_TENSORS if any(r["tensor"] == T for r in X)]

    def zs(stat, rows):
        return [z for r in rows if r.get("stat", r.get("tensor")) == stat for z in r["z"]]

    out.append("**all statistics, layer 2** (means against lead + coeff/n): "
               + zsummary([z for r in M + X if r["layer"] == 2 for z in r["z"]]))
    for s in names:
        out.append(f"{s}, layer 2: " + zsummary(zs(s, [r for r in M + X if r["layer"] == 2])))
    out.append("**closed statistics, layers ≥ 3** (those `evaluate` computes without `allow_incomplete`): "
               + zsummary([z for r in M + X if r["layer"] >= 3 and not r["open"] for z in r["z"]]))
    out.append("**open statistics, layers ≥ 3** (refused by `evaluate`: docs/conventions.md §8): "
               + zsummary([z for r in M + X if r["layer"] >= 3 and r["open"] for z in r["z"]]))
    for case in dict.fromkeys(r["case"] for r in M + X):
        for flag, word in ((False, "closed"), (True, "open")):
            zz = [z for r in M + X if r["case"] == case and r["layer"] >= 3 and r["open"] == flag for z in r["z"]]
            if zz:
                out.append(f"case {case}, {word}, layers ≥ 3: " + zsummary(zz))
    for s in names:
        out.append(f"{s}, layers ≥ 3: " + zsummary(zs(s, [r for r in M + X if r["layer"] >= 3])))
    for i, n in enumerate(widths):
        out.append(f"all, layers ≥ 3, n = {n}: "
                   + zsummary([r["z"][i] for r in M + X if r["layer"] >= 3]))
    out.append("means with the 1/n coefficient dropped (z of MC against lead alone), layers ≥ 3: "
               + zsummary([z for r in M if r["layer"] >= 3 for z in r["z0"]]))
    for case in dict.fromkeys(r["case"] for r in M + X):
        out.append(f"case {case}: " + zsummary([z for r in M + X if r["case"] == case
                                                for z in r["z"]]))
    if len(widths) >= 3:
        out.append("**c_∞ (fit MC − pred = c_∞ + c_1/n) vs 0, closed tensors**, all components and layers: "
                   + zsummary([zval(r["fit"][0], r["fit"][1]) for r in X if "fit" in r and not r["open"]]))
        out.append("c_∞ vs 0, open tensors (layers ≥ 3): "
                   + zsummary([zval(r["fit"][0], r["fit"][1]) for r in X if "fit" in r and r["open"]]))
        for T in names[len(MEANS):]:
            for flag, word in ((False, "closed"), (True, "open")):
                zz = [zval(r["fit"][0], r["fit"][1]) for r in X
                      if "fit" in r and r["tensor"] == T and r["open"] == flag]
                if zz:
                    out.append(f"c_∞ of {T} ({word}): " + zsummary(zz))
    return out


# ---------------------------------------------------------------- main

def predictions(cases, ns_inputs, inputs) -> dict:
    """The predictions of every case and data set, depth DEPTH."""
    preds = {}
    for case in cases:
        for N in ns_inputs:
            # every tensor, also those a shortcut leaves open from layer 3 on (docs/conventions.md §8):
            # the table shows that they fail and the closed ones do not
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ClosureWarning)
                preds[(case.name, N)] = evaluate(case.activation, DEPTH, inputs[N], rules=case.rules,
                                                 params=case.param_dict(), stats=pred_stats(case),
                                                 allow_incomplete=True)
    return preds


def case_line(c: Case) -> str:
    """A case's description for the report."""
    rules = c.rules if isinstance(c.rules, str) else "mlp + width_ratio r"
    return f"{c.name} (σ = {c.activation}, rules {rules}, " + ", ".join(
        f"{k} = {v}" for k, v in c.params) + ")"


def main(argv=None) -> int:
    """Sample, predict, compare; print the tables and write the requested files."""
    ap = vc.make_parser(__doc__)
    ap.add_argument("--n3", action="store_true", help="also the N = 3 data set (slow)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    cases, ns_inputs, widths, samples = vc.select_run(ap, args, CASES, WIDTHS, SAMPLES, QUICK)
    ns_inputs = (2, 3) if (args.n3 and not args.quick) else (2,)
    inputs = {N: vc.make_inputs(N, args.seed) for N in ns_inputs}
    tasks = vc.build_tasks(CASES, cases, ns_inputs, widths, inputs, samples, args.seed, 80_000)
    mc, mc_seconds, preds, t_pred = vc.run_tasks(
        tasks, run_mc, args.jobs, lambda: predictions(cases, ns_inputs, inputs), samples,
        t_start)
    results = vc.analyse_all(analyse, cases, ns_inputs, widths, preds, mc)
    st = vc.Study(args, cases, ns_inputs, widths, samples, inputs, results, mc_seconds, t_pred)

    mtab = means_table(results, widths)
    xtab = tensor_table(results, widths)
    summ = summaries(results, widths)
    wall = time.perf_counter() - t_start

    vc.print_report([("E[zz] and E[H]: n(MC − lead) per width against G1, Θ1", mtab),
                     ("connected tensors: n(MC − pred) per width (z); fit c_∞ + c_1/n", xtab)],
                    summ, wall, st.mc_seconds, st.t_pred)
    if args.json:
        vc.write_json(args.json, results)
    if args.out:
        write_markdown(st, mtab, xtab, summ, wall)
    return 0


def write_markdown(st: vc.Study, mtab, xtab, summ, wall):
    """The markdown report in ``--out``: run description, summary, reading, tables."""
    reading = vc.keep_reading(st.args.out)
    lines = vc.header_lines("Validation of the residual MLP and of per-layer widths against "
                            "sampled networks", "scripts/validate_resmlp.py",
                            "shared with other work")
    lines += vc.run_lines(st.args.jobs, wall, st.mc_seconds, st.t_pred)
    lines += [
        f"- depth {DEPTH}, layers {', '.join(map(str, LAYERS))} reported; hidden widths "
        f"n = {', '.join(map(str, st.widths))} (n_ℓ = r_ℓ n in the widths case); output width 2",
        vc.samples_line(st.samples),
        "- cases: " + "; ".join(case_line(c) for c in st.cases),
        "- inputs (fixed seed, |x_α|²/n0 = " + ", ".join(map(str, NORMS[:max(st.ns_inputs)]))
        + "):",
    ]
    lines += vc.input_lines(st.ns_inputs, st.inputs)
    lines += [
        "",
        "Definitions.  \"K+G1\" is the sampled E[z_i z_i] (= K + G1/n + …), \"Theta+Theta1\" the",
        "sampled E[H_ii] (= Θ + Θ1/n + …); V, A, B, D, F, P..U are n × the connected correlators",
        "of docs/conventions.md §3.  z = (MC − pred)/stderr (means against lead + coeff/n);",
        "n(MC − pred) is constant in n for an O(1/n) remainder and grows ∝ n for an O(1) error;",
        "the fit MC − pred = c_∞ + c_1/n gives c_∞, which must be 0.  ReLU in the per-network",
        "sense of docs/conventions.md §2 (`kinks=\"per-network\"`, the default).",
        "",
        "## Summary",
        "",
    ]
    lines += [f"- {s}" for s in summ]
    lines += ["", "## Reading", "", reading, "",
              "## E[zz] and E[H]", "", mtab, "",
              "## Connected tensors", "",
              "Every distinct component.", "", xtab, ""]
    vc.write_report(st.args.out, lines)


if __name__ == "__main__":
    sys.exit(main())
