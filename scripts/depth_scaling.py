"""Critical points, depth scaling at criticality, and a Monte Carlo check (issues 6 and 7).

    python scripts/depth_scaling.py --out docs/criticality.md

1. Critical points and universality classes of a list of activations
   (:func:`ntkdiagrams.analysis.criticality.critical_point`; half-stable roots refined with mpmath).
2. Depth scaling of the normalised first-order tensors at criticality from the engine
   (:func:`ntkdiagrams.analysis.criticality.depth_scaling`, one input, depth ``--depth``).
3. Monte Carlo check at depth ``--mc-depth`` for tanh and ReLU at criticality, widths
   ``--widths``: the package sampler (:func:`ntkdiagrams.sampling.sampler.sample`, neurons 0 and 1)
   for Θ1, A, B, D, F, and for G1 and V an all-neuron estimator on the sampler's networks
   (``draw_ensemble`` + ``forward`` of :mod:`ntkdiagrams.sampling.networks`): per network the
   pair average of z_i² z_j² over all i ≠ j of a hidden layer, V = n (E[pair avg] − E[z²]²),
   G1 = n (E[z²] − K).  Hidden layers only (ℓ < L); batch-means errors (30 batches).  Both
   are compared with the engine as ratios normalised by the engine's K^(ℓ), Θ^(ℓ), at each
   width and extrapolated linearly in 1/n from the two widths (2 X(2n) − X(n)).

Results are printed and, with ``--out``, written to a markdown file; text between
``<!-- reading -->`` and ``<!-- /reading -->`` in an existing file is kept.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ntkdiagrams import __version__  # noqa: E402
from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.sampling.model import ModelSpec  # noqa: E402
from ntkdiagrams.analysis.criticality import RATIOS, critical_point, depth_scaling  # noqa: E402
from ntkdiagrams.numerics.evaluate import evaluate  # noqa: E402
from ntkdiagrams.sampling.sampler import sample  # noqa: E402
from ntkdiagrams.sampling.networks import (activation_derivatives, draw_ensemble, forward,  # noqa: E402
                                             layer_widths)

CP_ACTIVATIONS = ["relu", "leaky_relu:0.2", "linear", "tanh", "erf", "sin", "gelu", "swish", "z*tanh(z)",
                  "softplus", "sigmoid", "z**2"]
DS_ACTIVATIONS = ["relu", "leaky_relu:0.2", "tanh", "erf", "sin", "gelu", "swish"]
MC_ACTIVATIONS = ["tanh", "relu"]
READING_OPEN, READING_CLOSE = "<!-- reading -->", "<!-- /reading -->"
NTK_STATS = ["Theta1", "A", "B", "D", "F"]


def fmt(v, e=None, digits=4):
    if v is None:
        return "–"
    if e is None:
        return f"{v:.{digits}g}"
    return f"{v:.{digits}g} ± {e:.2g}"


# ------------------------------------------------------------------ Monte Carlo
def _inputs(cw: float, cb: float, k1: float = 1.0) -> np.ndarray:
    return np.array([[np.sqrt((k1 - cb) / cw)]])


def mc_sampler(act: str, cb: float, cw: float, depth: int, width: int, samples: int, seed: int) -> dict:
    model = ModelSpec(parse_activation(act), depth=depth, width=width, cb=cb, cw=cw, lb=1.0, lw=1.0,
                      inputs=_inputs(cw, cb))
    r = sample(model, samples, seed=seed, stats=("K", "Theta", "A", "B", "D", "F"))
    return {"kind": "sampler", "act": act, "width": width, "samples": samples, "layers": r["layers"],
            "elapsed": r["meta"]["elapsed_s"]}


def mc_allneurons(act: str, cb: float, cw: float, depth: int, width: int, samples: int, seed: int,
                  batches: int = 30, chunk: int = 2000) -> dict:
    """G1 and V of the hidden layers from all neurons of each sampled network."""
    t0 = time.perf_counter()
    a = parse_activation(act)
    derivs = activation_derivatives(a, 0)
    x = _inputs(cw, cb)
    widths = layer_widths(1, width, depth)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5641]))
    n = width
    per_batch = []
    sizes = [samples // batches + (1 if i < samples % batches else 0) for i in range(batches)]
    for bsize in sizes:
        sG = np.zeros(depth - 1)
        sP = np.zeros(depth - 1)
        left = bsize
        while left:
            c = min(chunk, left)
            fw = forward(draw_ensemble(rng, c, widths, x, cb, cw, 1.0, 1.0), derivs)
            for ell in range(1, depth):
                z2 = fw.z[ell][:, :, 0] ** 2                         # (C, n)
                G = z2.mean(1)
                pair = (n * n * G * G - (z2 * z2).sum(1)) / (n * (n - 1))
                sG[ell - 1] += G.sum()
                sP[ell - 1] += pair.sum()
            left -= c
        per_batch.append((sG / bsize, sP / bsize))
    G = np.array([b[0] for b in per_batch])
    P = np.array([b[1] for b in per_batch])
    Vb = n * (P - G * G)
    out = {}
    for ell in range(2, depth):
        i = ell - 1
        out[ell] = {"G": (G[:, i].mean(), G[:, i].std(ddof=1) / np.sqrt(batches)),
                    "V": (Vb[:, i].mean(), Vb[:, i].std(ddof=1) / np.sqrt(batches))}
    return {"kind": "allneurons", "act": act, "width": width, "samples": samples, "layers": out,
            "elapsed": round(time.perf_counter() - t0, 2)}


def _run(task):
    kind, args = task
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (mc_sampler if kind == "sampler" else mc_allneurons)(*args)


# ------------------------------------------------------------------ report
def critical_table(names, lines):
    lines += ["| activation | class | C_b | C_W | K* | a1 | b1 | p_⊥ = b1/a1 | attracts from |",
              "|---|---|---|---|---|---|---|---|---|"]
    cps = {}
    for name in names:
        cp = critical_point(name)
        if cp.universality == "half-stable":
            cp = critical_point(name, precise=True)
        cps[name] = cp
        ks = "any" if cp.universality == "scale-invariant" else fmt(cp.K_star, digits=10)
        lines.append(f"| `{name}` | {cp.universality} | {fmt(cp.cb, digits=10)} | {fmt(cp.cw, digits=10)} | {ks} | "
                     f"{fmt(cp.a1, digits=5)} | {fmt(cp.b1, digits=5)} | {fmt(cp.p_perp, digits=5)} | "
                     f"{cp.attracts_from or '–'} |")
        print(cp.text(), flush=True)
    return cps


def _growth(fit: dict) -> str:
    """"~ ℓ^p", or "constant" where the quantity changes only by rounding (no exponent)."""
    if fit["kind"] == "constant":
        return "constant"
    return "~ ℓ^–" if fit["p"] is None else f"~ ℓ^{fit['p']:.3f}"


def scaling_tables(names, depth, cps, lines):
    out = {}
    for name in names:
        t0 = time.perf_counter()
        ds = depth_scaling(name, depth, point=cps.get(name))
        out[name] = ds
        print(ds.text(), f"\n[{time.perf_counter() - t0:.1f} s]", flush=True)
        lines += ["", f"**`{name}`** (C_b = {ds.cb:.6g}, C_W = {ds.cw:.6g}, K^(1) = {ds.k1:.6g}; "
                      f"K^(L) = {ds.K[-1]:.4g}, K {_growth(ds.leading['K'])}; Θ^(L) = {ds.Theta[-1]:.4g}, "
                      f"Θ {_growth(ds.leading['Theta'])})", "",
                  "| ratio | r(L) | p | dr/dℓ (tail) | r(L)/L |", "|---|---|---|---|---|"]
        for s, fit in ds.fits.items():
            label = RATIOS[s][0]
            if fit["kind"] == "zero":
                lines.append(f"| {label} | 0 (max {fit['max_abs']:.1g}) | – | – | – |")
            else:
                p = "–" if fit["p"] is None else f"{fit['p']:.3f}"
                slope = "–" if fit["slope"] is None else f"{fit['slope']:.5g}"
                lines.append(f"| {label} | {fit['value']:.5g} | {p} | {slope} | "
                             f"{fit['value'] / depth:.5g} |")
        for s, why in ds.unavailable.items():
            lines.append(f"| {RATIOS[s][0]} | unavailable: {why.splitlines()[0][:120]} | | | |")
    return out


def mc_tables(results, cps, depth, widths, lines):
    for act in MC_ACTIVATIONS:
        cp = cps[act]
        pred = evaluate(act, depth, _inputs(cp.cw, cp.cb), cb=cp.cb, cw=cp.cw,
                        stats=["K", "G1", "V", "Theta"] + NTK_STATS)
        lines += ["", f"**`{act}`** at C_b = {cp.cb:g}, C_W = {cp.cw:.6g}, K^(1) = 1, depth {depth}", "",
                  "| ℓ | ratio | engine | " + " | ".join(f"MC n = {w}" for w in widths) +
                  f" | MC 1/n → 0 | (MC∞ − engine)/σ |",
                  "|---|---|---|" + "---|" * len(widths) + "---|---|"]
        samp = {r["width"]: r for r in results if r["act"] == act and r["kind"] == "sampler"}
        alln = {r["width"]: r for r in results if r["act"] == act and r["kind"] == "allneurons"}
        for ell in range(2, depth + 1):
            e = pred[ell - 1]
            K, Th = float(e["K"][0, 0]), float(e["Theta"][0, 0])
            for s in ["G1", "V"] + NTK_STATS:
                label, kp, tp = RATIOS[s]
                norm = K ** kp * Th ** tp
                eng = float(np.ravel(e[s])[0]) / norm
                vals = []
                for w in widths:
                    if s in ("G1", "V"):
                        if ell >= depth:
                            vals = None
                            break
                        m, se = alln[w]["layers"][ell][s if s == "V" else "G"]
                        if s == "G1":
                            m, se = w * (m - K), w * se
                    else:
                        lay = samp[w]["layers"][ell - 1]
                        if s == "Theta1":
                            m, se = (w * (lay["Theta+Theta1"]["mean"][0, 0] - Th),
                                      w * lay["Theta+Theta1"]["stderr"][0, 0])
                        else:
                            m, se = lay[s]["mean"].ravel()[0], lay[s]["stderr"].ravel()[0]
                    vals.append((m / norm, se / norm))
                if vals is None:
                    continue
                (m1, e1), (m2, e2) = vals[0], vals[-1]
                ratio = widths[-1] / widths[0]
                ext = (ratio * m2 - m1) / (ratio - 1)
                eext = np.hypot(ratio * e2, e1) / (ratio - 1)
                zv = (ext - eng) / eext if eext > 0 else float("nan")
                lines.append(f"| {ell} | {label} | {eng:.4g} | " + " | ".join(fmt(m, se, 3) for m, se in vals) +
                             f" | {fmt(ext, eext, 3)} | {zv:+.1f} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=40, help="engine depth of the scaling tables (default 40)")
    p.add_argument("--mc-depth", type=int, default=6, help="depth of the Monte Carlo check (default 6)")
    p.add_argument("--widths", default="32,64", help="two widths n, 2n (default 32,64)")
    p.add_argument("--samples", type=int, default=30000, help="networks per width for the sampler (default 3e4)")
    p.add_argument("--samples-v", type=int, default=40000, help="networks per width for G1, V (default 4e4)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--skip-mc", action="store_true")
    p.add_argument("--out", help="markdown file to write")
    args = p.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    t_start = time.perf_counter()
    warnings.simplefilter("ignore", RuntimeWarning)

    tasks = []
    if not args.skip_mc:
        for k, act in enumerate(MC_ACTIVATIONS):
            cp = critical_point(act)
            for j, w in enumerate(widths):
                seed = args.seed * 1000 + 10 * k + j
                tasks.append(("sampler", (act, cp.cb, cp.cw, args.mc_depth, w, args.samples, seed)))
                tasks.append(("allneurons", (act, cp.cb, cp.cw, args.mc_depth + 1, w, args.samples_v, seed)))
    pool = ProcessPoolExecutor(max_workers=max(1, args.jobs)) if tasks else None
    futures = [pool.submit(_run, t) for t in tasks] if pool else []

    lines = ["## Critical points", ""]
    cps = critical_table(CP_ACTIVATIONS, lines)
    lines += ["", f"## Depth scaling at criticality (engine, one input, L = {args.depth}, λ_b = λ_W = 1)", "",
              "Ratios r(ℓ) = coefficient of 1/n normalised by the leading K^(ℓ), Θ^(ℓ) of the same layer; "
              f"p: exponent of r ≈ c ℓ^p + const from the increments over ℓ = {args.depth // 2}..{args.depth}; "
              "dr/dℓ: least-squares slope there."]
    scaling_tables(DS_ACTIVATIONS, args.depth, cps, lines)
    if futures:
        results = [f.result() for f in futures]
        pool.shutdown()
        lines += ["", f"## Monte Carlo check (depth {args.mc_depth}, one input, widths {args.widths})", "",
                  f"Θ1, A, B, D, F: package sampler, {args.samples} networks per width (neurons 0, 1). "
                  f"G1, V: all-neuron estimator, {args.samples_v} networks per width, hidden layers "
                  f"(networks of depth {args.mc_depth + 1}). Errors: batch means (30 batches). "
                  "MC 1/n → 0: linear extrapolation in 1/n from the two widths."]
        mc_tables(results, cps, args.mc_depth, widths, lines)
        lines += ["", "MC run times (s): " + ", ".join(f"{r['act']} {r['kind']} n={r['width']}: {r['elapsed']}"
                                                        for r in results)]
    elapsed = time.perf_counter() - t_start
    body = "\n".join(lines)
    print(body)
    if args.out:
        write_doc(args.out, body, argv, elapsed)


def write_doc(path, body, argv, elapsed):
    reading = ""
    if os.path.exists(path):
        text = open(path).read()
        if READING_OPEN in text and READING_CLOSE in text:
            reading = text[text.index(READING_OPEN): text.index(READING_CLOSE) + len(READING_CLOSE)]
    if not reading:
        reading = f"{READING_OPEN}\n(reading to be written)\n{READING_CLOSE}"
    cmd = "python scripts/depth_scaling.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                 else sys.argv[1:]))
    head = ["# Criticality and depth scaling", "",
            "Generated by", "", "```bash", cmd, "```", "",
            f"(ntkdiagrams {__version__}, {elapsed:.0f} s on a shared 2-core machine). Formulas and "
            "conventions: the docstring of `ntkdiagrams/criticality.py`.", "", reading, ""]
    with open(path, "w") as fh:
        fh.write("\n".join(head) + body + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
