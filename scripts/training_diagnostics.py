#!/usr/bin/env python
"""Diagnostics of the O(1/n) training prediction against trained networks (issue 17, docs/training.md §9).

Three measurements, each printing a table (``evolution``, ``kink``, ``truncated``):

``evolution`` — the NTK-evolution part.  The same sampled networks are trained twice: exactly (full-batch
gradient descent, :func:`ntkdiagrams.sampling.training.train_ensemble`) and with their own NTK frozen at
initialisation, z(t+1) = z(t) − η H(0)_{·B} ε_B(t) (H(0) = the network's empirical NTK on every input).
Then

    evolution:  n·(⟨z_exact(T)⟩ − ⟨z_frozen(T)⟩)      against  mean_correction(all) − mean_correction(bare)
                n·(Ĉov z_exact(T) − Ĉov z_frozen(T))  against  cov_correction(all) − cov_correction(bare)
    frozen:     n·(⟨z_frozen(T) − E_T z(0)⟩ − m_T), n·(Ĉov z_frozen(T) − E_T Ĉov z(0) E_Tᵀ)
                                                       against  the bare prediction (minus E_T 𝒢 E_Tᵀ)

("bare": the prediction without the dNTK and ddNTK, ``include=("G1", "Theta1", "NTK-fluctuations")``).

Per network z_exact − z_frozen = O(1/n), so n·(difference) has O(1) spread at every width and the
evolution part is measurable at n = 512 with a few thousand networks.  Widths are fitted with c + d/n
and c + d/n + e/n² (weighted least squares); z = (c − predicted)/σ_c.

``kink`` — the first step of kinked networks.  For every network the exact step z(1) is set against the
network's own linearised step z_lin(1) = z(0) − η H(0)_{·B} ε_B(0):

    n·Δ_kink = n·(⟨z(1)⟩ − ⟨z_lin(1)⟩)  and  n·(Ĉov z(1) − Ĉov z_lin(1)),

at several widths and step fractions.  For a smooth σ this is (η²/2) dH ε ε − (η³/6) ddIH εεε (O(1/n), η²);
§9 claims O(η² n^{-1/2}) per step for ReLU from preactivations crossing the kink.

The runs of docs/training.md §9 (--save/--load keep each width's values, so widths can be added later;
--min-fit refits without the small widths):

    python scripts/training_diagnostics.py evolution --widths 32,64,128,256 --samples 8000 --save /tmp/evo
    python scripts/training_diagnostics.py evolution --widths 512 --samples 4000 --save /tmp/evo \
        --load /tmp/evo_n32.npz,/tmp/evo_n64.npz,/tmp/evo_n128.npz,/tmp/evo_n256.npz
    python scripts/training_diagnostics.py evolution --widths "" --min-fit 64 \
        --load /tmp/evo_n32.npz,…,/tmp/evo_n512.npz
    python scripts/training_diagnostics.py evolution --widths 32,64,128,256 --samples 6000 --fraction 0.25
    python scripts/training_diagnostics.py kink --case relu-L3 --widths 16,32,64,128,256,512 --fractions 0.1,0.3 \
        --samples 8000
    python scripts/training_diagnostics.py truncated --widths 64 --samples 3000 --chunk 25
    python scripts/training_diagnostics.py truncated --widths 128 --samples 1500 --chunk 20

(OMP_NUM_THREADS=1 on a shared machine.)

``truncated`` trains the same networks exactly and by the update map of docs/training.md §2 with their own
H, dH, ddIH, ddIIH at initialisation (order 1: frozen NTK, 2: + dNTK, 3: + ddNTKs); it separates the
truncation of the map from the statistical expansion (cases with two outputs).

Errors are batch means (30 batches).  Networks whose own frozen-NTK descent is unstable (η ≥ 2/λ_max(H_AA))
are dropped from both runs and counted.  Figures (2-core machine, shared; docs/training.md §9 has the tables):

* evolution, gelu-L3-2out, η = 0.5 of the stable step, 8000 networks (4000 at n = 512), 32, 64, …, 512
  (about 8 CPU-min): training diagonal of the covariance at T = 10, n·(exact − frozen) = 0.000 ± 0.025,
  0.096 ± 0.010, 0.094 ± 0.004, 0.082 ± 0.002, 0.085 ± 0.005 against 0.0755 predicted; at T = 2
  −0.52, 0.04, 0.35, 0.39, 0.47 against 0.48.  Fits over 64 … 512, all 65 entries, c + d/n / c + d/n + e/n²
  within 3σ: T = 1 97 % / 98 %, T = 2 78 % / 98 %, T = 5 100 % / 97 %, T = 10 98 % / 97 %; the frozen part
  98–100 % with c + d/n.  Dropped networks: 70 of 8000 at n = 32, 1 at 64, none above.  With
  ``--fraction 0.25`` (6000 networks, 32 … 256): c + d/n 97–100 % within 3σ at every T.
* kink, relu-L3, 8000 networks per width: n·(exact − linearised) on the training covariance diagonal
  (mean of 4) at n = 16 … 512: η = 0.1: 0.29, 0.28, 0.30, 0.35, 0.42, 0.54 (predicted smooth part 0.107);
  η = 0.3: (n = 16: −0.35 ± 0.25), 0.82, 1.30, 1.67, 2.15, 2.88 (predicted 0.549).  Output 0:A0 mean:
  η = 0.1: 0.015, 0.018, 0.023, 0.027, 0.032, 0.054 (predicted 0.003); η = 0.3: 0.124, 0.170, 0.206,
  0.237, 0.309, 0.468 (predicted 0.026).
* truncated, gelu-L3-2out, η = 0.5: the §2 map with per-network objects against exact descent,
  n·|map − exact| ≤ 0.03 up to T = 5 and ≤ 0.11 at T = 10 (n = 64, 3000 networks, 3 min), ≤ 0.027 up to
  T = 10 (n = 128, 1500 networks, 4 min) (the frozen map: up to 0.9); the map's evolution part on the T = 2 training diagonal −0.07 … 0.13
  (n = 64) and 0.26 … 0.41 (n = 128) with each network's own NTK, 0.64 … 0.80 and 0.45 … 0.67 with the
  mean NTK, against 0.45 … 0.48 predicted.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.sampling.model import ModelSpec  # noqa: E402
from ntkdiagrams.sampling.networks import activation_derivatives, forward, layer_objects  # noqa: E402
from ntkdiagrams.sampling.sampler import SEED_TAG, batch_sizes, check_model  # noqa: E402
from ntkdiagrams.sampling.training import train_ensemble, train_networks  # noqa: E402
from ntkdiagrams.training.prediction import train_prediction  # noqa: E402
from validate_training import CASES, dataset  # noqa: E402

BARE = ("G1", "Theta1", "NTK-fluctuations")
BATCHES = 30


def wls(ns, values, errors, order: int):
    """Weighted least squares of values = c + d/n (+ e/n² for order 2); returns (c, σ_c, χ²)."""
    ns, v, e = (np.asarray(a, float) for a in (ns, values, errors))
    X = np.stack([ns ** -k for k in range(order + 1)], axis=1)
    w = 1 / np.maximum(e, 1e-300) ** 2
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    beta = cov @ (X.T @ (w * v))
    chi2 = float(np.sum(w * (v - X @ beta) ** 2))
    return float(beta[0]), float(np.sqrt(cov[0, 0])), chi2


def batched(f, arrays: list, S: int):
    """f(*arrays) on all networks, and its batch-means standard error."""
    value = np.asarray(f(*arrays))
    vals, start = [], 0
    for size in batch_sizes(S, BATCHES):
        vals.append(np.asarray(f(*[a[start:start + size] for a in arrays])))
        start += size
    return value, np.std(vals, axis=0, ddof=1) / math.sqrt(len(vals))


def cov(z):
    return np.cov(z, rowvar=False, ddof=1)


def setup(case: str, frac: float | None, steps):
    act, L, cb, cw, n_train, n_test, n_out, frac0, dseed = CASES[case]
    frac = frac0 if frac is None else frac
    xa, y, xb = dataset(dseed, n_train, n_test, n_out)
    kw = dict(lr_fraction=frac, steps=steps, cb=cb, cw=cw, all_neurons=True, allow_kinks=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = train_prediction(act, L, xa, y, xb, **kw)
        bare = train_prediction(act, L, xa, y, xb, include=BARE, **kw)
    N = n_train + n_test
    Tr = np.array([i * N + a for i in range(n_out) for a in range(n_train)])
    ybar = np.zeros(n_out * N)
    ybar[Tr] = y.T.reshape(-1)
    return dict(act=act, L=L, cb=cb, cw=cw, n_train=n_train, n_out=n_out, N=N, xa=xa, y=y, xb=xb, frac=frac,
                pred=pred, bare=bare, Tr=Tr, ybar=ybar, eta=pred.meta["lr"])


def label(k, c):
    i, a = divmod(k, c["N"])
    return f"{i}:{'A' if a < c['n_train'] else 'B'}{a if a < c['n_train'] else a - c['n_train']}"


def train(c, n, S, steps, seed):
    model = ModelSpec(parse_activation(c["act"]), c["L"], n, cb=c["cb"], cw=c["cw"], lb=1.0, lw=1.0,
                      inputs=np.vstack([c["xa"], c["xb"]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ens = train_ensemble(model, c["xa"], c["y"], c["xb"], lr=c["eta"], steps=steps, samples=S, seed=seed,
                             out_width=c["n_out"], keep_ntk=True, batches=BATCHES,
                             chunk=max(1, min(S, 256 * 2 ** 20 // (16 * n * n))))
    return ens


def stable_networks(ens, c):
    """Networks whose own frozen-NTK gradient descent is stable, η < 2/λ_max(H_AA(0)) (at n = 16-32 and η
    near the stable step a few are not: their frozen run explodes while the exact one does not)."""
    H = ens.ntk[:, c["Tr"]][:, :, c["Tr"]]
    return 2.0 / np.linalg.eigvalsh(H)[:, -1] > c["eta"]


def frozen_run(z0, H, Tr, ybar, eta, steps):
    """Frozen-NTK gradient descent of every network from its own z(0) and H(0): {T: z(T)}."""
    out, z = {}, z0.copy()
    HT = H[:, :, Tr]
    for t in range(max(steps) + 1):
        if t in steps:
            out[t] = z.copy()
        z = z - eta * np.einsum("sab,sb->sa", HT, z[:, Tr] - ybar[Tr])
    return out


def cmd_evolution(args):
    steps = [int(s) for s in args.steps.split(",")]
    c = setup(args.case, args.fraction, steps)
    widths = [int(w) for w in args.widths.split(",") if w]
    M = c["n_out"] * c["N"]
    iu = np.triu_indices(M)
    print(f"# evolution: case {args.case}, η = {c['eta']:.5g} ({c['frac']} of the stable step), steps {steps}, "
          f"widths {widths}, {args.samples} networks per width (x {args.scale_large} above n = 128)")
    data = {}   # (T, part) -> list over widths of (n, value(vector), error(vector))
    for path in (args.load.split(",") if args.load else []):
        with np.load(path) as f:
            for key in f.files:
                T, part, n, what = key.split("/")
                if what == "value":
                    data.setdefault((int(T), part), []).append((int(n), f[key], f[key[:-5] + "error"]))
        print(f"#   loaded {path}")
    for n in widths:
        S = args.samples if n <= 128 else int(args.samples * args.scale_large)
        t0 = time.time()
        ens = train(c, n, S, steps, args.seed + n)
        keep = stable_networks(ens, c)
        S = int(keep.sum())
        z0 = ens.outputs[0].reshape(len(keep), M)[keep]
        fz = frozen_run(z0, ens.ntk[keep], c["Tr"], c["ybar"], c["eta"], steps)
        for T in steps:
            zx = ens.outputs[T].reshape(len(keep), M)[keep]
            E, m0 = c["bare"].at(T).kernel_map, c["bare"].at(T).mean
            ev = lambda a, b: np.concatenate([n * (a - b).mean(0), n * (cov(a) - cov(b))[iu]])  # noqa: E731
            fr = lambda f, z: np.concatenate([n * ((f - z @ E.T).mean(0) - m0),                 # noqa: E731
                                              n * (cov(f) - E @ cov(z) @ E.T)[iu]])
            data.setdefault((T, "evolution"), []).append((n, *batched(ev, [zx, fz[T]], S)))
            data.setdefault((T, "frozen"), []).append((n, *batched(fr, [fz[T], z0], S)))
        if args.save:
            np.savez(f"{args.save}_n{n}.npz", **{f"{T}/{part}/{n}/{w}": data[(T, part)][-1][1 + j]
                                                 for T in steps for part in ("evolution", "frozen")
                                                 for j, w in enumerate(("value", "error"))})
        print(f"#   n = {n}: {S} networks ({len(keep) - S} dropped: η ≥ their own 2/λ_max(H)), "
              f"{time.time() - t0:.0f} s", flush=True)
    G1 = np.kron(np.eye(c["n_out"]), c["pred"].output_layer["G1"])
    for T in steps:
        P, B = c["pred"].at(T), c["bare"].at(T)
        E = B.kernel_map
        pred_ev = np.concatenate([P.mean_correction - B.mean_correction, (P.cov_correction - B.cov_correction)[iu]])
        pred_fr = np.concatenate([B.mean_correction, (B.cov_correction - E @ G1 @ E.T)[iu]])
        for part, p in (("evolution", pred_ev), ("frozen", pred_fr)):
            rows = sorted([r for r in data[(T, part)] if r[0] >= args.min_fit], key=lambda r: r[0])
            ns = [r[0] for r in rows]
            # skip entries that are (numerically) zero: training outputs already fitted
            keep = [k for k in range(len(p)) if max(abs(r[1][k]) for r in rows) > 1e-9 or abs(p[k]) > 1e-9]
            print(f"\n## T = {T}, {part} part: n·Δ per width; fit c + d/n (c1) and c + d/n + e/n² (c2); predicted")
            print("| entry | " + " | ".join(f"n={n}" for n in ns)
                  + " | c1 ± σ | z1 | c2 ± σ | z2 | predicted | c1/pred |")
            print("|---|" + "---|" * len(ns) + "---|---|---|---|---|---|")
            z1s, z2s = [], []
            for k in keep:
                v = [r[1][k] for r in rows]
                e = [r[2][k] for r in rows]
                c1, s1, _ = wls(ns, v, e, 1)
                c2, s2, _ = wls(ns, v, e, 2) if len(ns) >= 4 else (math.nan, math.nan, math.nan)
                z1, z2 = (c1 - p[k]) / s1, (c2 - p[k]) / s2
                z1s.append(z1)
                z2s.append(z2)
                name = label(k, c) if k < M else f"cov {label(iu[0][k - M], c)},{label(iu[1][k - M], c)}"
                if args.all or k < M or iu[0][k - M] == iu[1][k - M]:
                    cells = " | ".join(f"{a:.4f} ± {b:.4f}" for a, b in zip(v, e))
                    ratio = c1 / p[k] if abs(p[k]) > 1e-12 else math.nan
                    print(f"| {name} | {cells} | {c1:.4f} ± {s1:.4f} | {z1:.1f} | {c2:.4f} ± {s2:.4f} | {z2:.1f} | "
                          f"{p[k]:.4f} | {ratio:.2f} |")
            z1s, z2s = np.array(z1s), np.array(z2s)
            print(f"summary T = {T} {part}: {len(z1s)} entries; c + d/n: within 3σ {np.mean(np.abs(z1s) < 3):.0%}, "
                  f"χ²/dof {np.mean(z1s ** 2):.2f}; c + d/n + e/n²: within 3σ {np.mean(np.abs(z2s) < 3):.0%}, "
                  f"χ²/dof {np.mean(z2s ** 2):.2f}")
    return 0


def per_network_objects(ens, act, M, N):
    """z, H, dH, ddIH, ddIIH of the output layer per network, over the combined index a = i·N + α."""
    fw = forward(ens, activation_derivatives(act, 3))
    o = layer_objects(ens, fw, ens.depth, H=True, dH=True, ddIH=True, ddIIH=True)
    C = ens.size

    def comb(x, r):   # [c, i1..ir, α1..αr] -> [c, a1..ar]
        perm = [0] + [v for k in range(r) for v in (1 + k, 1 + r + k)]
        return np.transpose(x, perm).reshape((C,) + (M,) * r)
    return (o["z"].reshape(C, M), comb(o["H"], 2), comb(o["dH"], 3), comb(o["ddIH"], 4), comb(o["ddIIH"], 4))


def truncated_run(objs, Tr, ybar, eta, steps, order=3, H_mean=None):
    """The update map of docs/training.md §2 with every network's own z, H, dH, ddIH, ddIIH at
    initialisation (ddNTKs constant): {T: z(T)}.  ``order`` 1: frozen NTK; 2: + dH; 3: + ddNTKs.
    ``H_mean``: use this NTK (M, M) for every network instead of its own (no ΔH)."""
    z, H, dH, R, S = (a.copy() for a in objs)
    if H_mean is not None:
        H = np.broadcast_to(H_mean, H.shape).copy()
    X = R + S + np.transpose(S, (0, 1, 3, 2, 4))
    Y = R + np.transpose(R, (0, 2, 1, 3, 4)) + S + np.transpose(S, (0, 1, 2, 4, 3))
    X, Y, R = X[..., Tr], Y[:, :, :, Tr][..., Tr], R[:, :, Tr][:, :, :, Tr][..., Tr]
    if order < 3:
        X, Y, R = 0 * X, 0 * Y, 0 * R
    if order < 2:
        dH = 0 * dH
    out = {}
    for t in range(max(steps) + 1):
        if t in steps:
            out[t] = z.copy()
        e = z[:, Tr] - ybar[Tr]
        dT = dH[:, :, Tr][:, :, :, Tr]
        dz = (-eta * np.einsum("saB,sB->sa", H[:, :, Tr], e)
              + eta ** 2 / 2 * np.einsum("saBC,sB,sC->sa", dT, e, e)
              - eta ** 3 / 6 * np.einsum("saBCD,sB,sC,sD->sa", R, e, e, e))
        dHH = (-eta * np.einsum("sabC,sC->sab", dH[..., Tr] + np.transpose(dH, (0, 2, 1, 3))[..., Tr], e)
               + eta ** 2 / 2 * np.einsum("sabCD,sC,sD->sab", Y, e, e))
        ddH = -eta * np.einsum("sabcD,sD->sabc", X, e)
        z, H, dH = z + dz, H + dHH, dH + ddH
    return out


def cmd_truncated(args):
    """Exact gradient descent against the truncated update map (§2) on the same networks."""
    steps = [int(s) for s in args.steps.split(",")]
    c = setup(args.case, args.fraction, steps)
    widths = [int(w) for w in args.widths.split(",")]
    M, N = c["n_out"] * c["N"], c["N"]
    iu = np.triu_indices(M)
    diag = np.array([k for k in range(len(iu[0])) if iu[0][k] == iu[1][k]])
    act = parse_activation(c["act"])
    print(f"# truncated: case {args.case}, η = {c['eta']:.5g} ({c['frac']} of the stable step); the same networks "
          "trained exactly and by the §2 map with their own H, dH, ddIH, ddIIH at init (order 1: frozen NTK, "
          "2: + dNTK, 3: + ddNTKs); n·(⟨z_map(T)⟩ − ⟨z_exact(T)⟩), n·(Ĉov z_map − Ĉov z_exact) on the diagonal")
    for n in widths:
        t0 = time.time()
        model = ModelSpec(act, c["L"], n, cb=c["cb"], cw=c["cw"], lb=1.0, lw=1.0, inputs=np.vstack([c["xa"], c["xb"]]))
        x, program = check_model(model)
        rng = np.random.default_rng(np.random.SeedSequence([args.seed + n, SEED_TAG]))
        lay = c["pred"].output_layer
        H_mean = np.kron(np.eye(c["n_out"]), np.asarray(lay["Theta"]) + np.asarray(lay["Theta1"]) / n)
        parts = {}
        done = dropped = 0
        while done < args.samples:
            cnt = min(args.chunk, args.samples - done)
            ens = program.draw(rng, cnt, x)
            objs = per_network_objects(ens, act, M, N)
            if c["n_out"] == 1:
                raise SystemExit("truncated: cases with two outputs only (layer_objects gives neurons 0 and 1)")
            ok = 2.0 / np.linalg.eigvalsh(objs[1][:, c["Tr"]][:, :, c["Tr"]])[:, -1] > c["eta"]
            dropped += int((~ok).sum())
            objs = tuple(a[ok] for a in objs)
            ex = train_networks(ens, c["n_train"], c["y"], c["eta"], steps, activation=act)
            res = {("exact", T): ex[T].reshape(cnt, M)[ok] for T in steps}
            for order in (1, 2, 3):
                for T, z in truncated_run(objs, c["Tr"], c["ybar"], c["eta"], steps, order).items():
                    res[(order, T)] = z
            for order in (1, 3):      # the same with the mean NTK Θ + Θ1/n for every network
                for T, z in truncated_run(objs, c["Tr"], c["ybar"], c["eta"], steps, order, H_mean).items():
                    res[(f"{order}m", T)] = z
            for k, v in res.items():
                parts.setdefault(k, []).append(v)
            done += cnt
        res = {k: np.concatenate(v) for k, v in parts.items()}
        S = args.samples - dropped
        print(f"\n## n = {n}: {S} networks ({dropped} dropped: η ≥ their own 2/λ_max(H)), {time.time() - t0:.0f} s")
        print("| T | map | mean n·Δ (entries) | cov n·Δ (diagonal) |")
        print("|---|---|---|---|")
        f = lambda a, b: np.concatenate([n * (a - b).mean(0), n * (cov(a) - cov(b))[iu][diag]])  # noqa: E731
        for T in steps:
            for order in (1, 2, 3):
                v, e = batched(f, [res[(order, T)], res[("exact", T)]], S)
                cm = ", ".join(f"{a:.3f}±{b:.3f}" for a, b in zip(v[:M], e[:M]))
                cc = ", ".join(f"{a:.3f}±{b:.3f}" for a, b in zip(v[M:], e[M:]))
                print(f"| {T} | {order} | {cm} | {cc} |", flush=True)
        P, B = c["pred"], c["bare"]
        print("\nNTK-evolution part n·(map 3 − map 1) with each network's own H(0) ('own') and with the mean NTK "
              "Θ + Θ1/n for every network ('mean': no ΔH, so no ΔH × dNTK cross terms), against the predicted "
              "dNTK + ddNTK part; mean entries, then the covariance diagonal")
        print("| T | own | mean H | predicted |")
        print("|---|---|---|---|")
        for T in steps:
            cells = []
            for a, b in ((3, 1), ("3m", "1m")):
                ok = (np.abs(res[(a, T)]).max(1) < 1e3) & (np.abs(res[(b, T)]).max(1) < 1e3)
                v, e = batched(f, [res[(a, T)][ok], res[(b, T)][ok]], int(ok.sum()))
                cells.append(", ".join(f"{x:.3f}±{y:.3f}" for x, y in zip(v, e))
                             + (f" ({int((~ok).sum())} diverged, left out)" if not ok.all() else ""))
            p = np.concatenate([P.at(T).mean_correction - B.at(T).mean_correction,
                                np.diag(P.at(T).cov_correction - B.at(T).cov_correction)])
            print(f"| {T} | {cells[0]} | {cells[1]} | {', '.join(f'{x:.3f}' for x in p)} |", flush=True)
    return 0


def cmd_kink(args):
    fracs = [float(f) for f in args.fractions.split(",")]
    widths = [int(w) for w in args.widths.split(",")]
    print(f"# kink: case {args.case}, one step; n·(exact step − the networks' own linearised step); "
          f"{args.samples} networks per width")
    for frac in fracs:
        c = setup(args.case, frac, [1])
        M = c["n_out"] * c["N"]
        iu = np.triu_indices(M)
        diag = [k for k in range(len(iu[0])) if iu[0][k] == iu[1][k]]
        P, B = c["pred"].at(1), c["bare"].at(1)
        pm, pc = P.mean_correction - B.mean_correction, (P.cov_correction - B.cov_correction)[iu][diag]
        print(f"\n## η = {c['eta']:.5g} ({frac} of the stable step)")
        print("| n | networks | mean n·Δ (entries) | cov n·Δ (diagonal) | rms mean n·Δ | rms cov-diag n·Δ | s |")
        print("|---|---|---|---|---|---|---|")
        print(f"| smooth part (dNTK + ddNTK, predicted) | | {', '.join(f'{a:.3f}' for a in pm)} | "
              f"{', '.join(f'{a:.3f}' for a in pc)} | {np.sqrt(np.mean(pm ** 2)):.3f} | "
              f"{np.sqrt(np.mean(pc ** 2)):.3f} | |")
        for n in widths:
            t0 = time.time()
            ens = train(c, n, args.samples, [1], args.seed + n)
            z0 = ens.outputs[0].reshape(args.samples, M)
            lin = frozen_run(z0, ens.ntk, c["Tr"], c["ybar"], c["eta"], [1])[1]
            z1 = ens.outputs[1].reshape(args.samples, M)
            f = lambda a, b: np.concatenate([n * (a - b).mean(0), n * (cov(a) - cov(b))[iu]])  # noqa: E731
            v, e = batched(f, [z1, lin], args.samples)
            mv, me = v[:M], e[:M]
            cv, ce = v[M:][diag], e[M:][diag]
            cells_m = ", ".join(f"{a:.3f}±{b:.3f}" for a, b in zip(mv, me))
            cells_c = ", ".join(f"{a:.3f}±{b:.3f}" for a, b in zip(cv, ce))
            print(f"| {n} | {args.samples} | {cells_m} | {cells_c} | {np.sqrt(np.mean(mv ** 2)):.3f} | "
                  f"{np.sqrt(np.mean(cv ** 2)):.3f} | {time.time() - t0:.0f} |", flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("evolution", help="exact minus frozen-NTK gradient descent on the same networks")
    e.add_argument("--case", default="gelu-L3-2out", choices=sorted(CASES))
    e.add_argument("--widths", default="32,64,128,256,512")
    e.add_argument("--steps", default="1,2,5,10")
    e.add_argument("--fraction", type=float, default=None, help="η / stable step (default: the case's)")
    e.add_argument("--samples", type=int, default=3000)
    e.add_argument("--scale-large", type=float, default=1.0, help="networks factor for n > 128")
    e.add_argument("--all", action="store_true", help="print every covariance entry, not only the diagonal")
    e.add_argument("--seed", type=int, default=7000)
    e.add_argument("--min-fit", type=int, default=0, help="fit (and print) only the widths n >= this")
    e.add_argument("--save", default=None, help="save each width's values to PREFIX_n<n>.npz")
    e.add_argument("--load", default=None, help="comma-separated files of --save to add (same case, η, steps)")
    k = sub.add_parser("kink", help="first step: exact minus the networks' own linearised step")
    k.add_argument("--case", default="relu-L3", choices=sorted(CASES))
    k.add_argument("--widths", default="16,32,64,128,256")
    k.add_argument("--fractions", default="0.1,0.3")
    k.add_argument("--samples", type=int, default=4000)
    k.add_argument("--seed", type=int, default=8000)
    t = sub.add_parser("truncated", help="exact gradient descent against the §2 map with per-network objects")
    t.add_argument("--case", default="gelu-L3-2out", choices=sorted(CASES))
    t.add_argument("--widths", default="32,64,128")
    t.add_argument("--steps", default="1,2,5,10")
    t.add_argument("--fraction", type=float, default=None)
    t.add_argument("--samples", type=int, default=1000)
    t.add_argument("--chunk", type=int, default=50)
    t.add_argument("--seed", type=int, default=9000)
    args = p.parse_args(argv)
    return {"evolution": cmd_evolution, "kink": cmd_kink, "truncated": cmd_truncated}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
