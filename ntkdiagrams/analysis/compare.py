"""Compare predictions (``evaluate``) with Monte Carlo estimates (``sample``), docs/conventions.md §6.

The prediction file has the layout ``{"meta": {"width": n, ...}, "layers": [{"layer": ℓ,
"K": N×N, "G1": N×N, "Theta": N×N, "Theta1": N×N, "V": N×N×N×N, "A": …, …}]}``; the Monte
Carlo file is what :func:`ntkdiagrams.sampling.sampler.sample` writes (JSON or npz).  Pairs:

* MC ``G``   ↔ K + G1/n   (layer 1: K; it is exact there),
* MC ``NTK`` ↔ Θ + Θ1/n   (layer 1: Θ),
* MC ``V, A, B, D, F, P, Q, R, S, T, U`` ↔ the prediction of the same name (both are the
  coefficients of 1/n in the storage order of docs/conventions.md §3),

where n is the fan-in width of the layer: the width in the prediction's meta for ℓ ≥ 2.
If G1 (Θ1) is missing the leading-order K (Θ) is used and the row says so.

Every component gives a row: layer, statistic, input indices, prediction, MC mean ± stderr
and the difference in standard errors z = (MC − prediction)/σ with
σ = √(stderr² + (1e-9·max(1, |prediction|))²): the small floor stands for floating-point
rounding, so that components that do not fluctuate (layer-1 NTK, layer-1 covariances, which
are exactly 0) are compared to 1e-9 instead of giving z = ±∞ from rounding noise.
"""
from __future__ import annotations

import json
import math
import os
from itertools import product

import numpy as np

from ..errors import InputError

__all__ = ["compare", "summary", "format_table", "load_prediction", "plot"]

ROUNDING_FLOOR = 1e-9
CONNECTED = ("V", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")


def _arr(v, where):
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: not a numeric array ({exc})") from None
    return a


def _mc_stat(entry, stat, where):
    v = entry.get(stat)
    if not isinstance(v, dict) or "mean" not in v or "stderr" not in v:
        raise InputError(f"{where}: statistic {stat!r} has no 'mean' and 'stderr'")
    return _arr(v["mean"], f"{where} {stat} mean"), _arr(v["stderr"], f"{where} {stat} stderr")


def _width(pred: dict, mc: dict) -> int | None:
    for doc in (pred, mc):
        w = (doc.get("meta") or {}).get("width")
        if w is not None:
            return int(w)
    return None


def compare(pred: dict, mc: dict, *, stats=None) -> list[dict]:
    """Rows comparing a prediction with a Monte Carlo result (see the module docstring).

    Each row is a dict with ``layer``, ``stat``, ``index`` (tuple of input indices),
    ``prediction``, ``mc``, ``stderr``, ``z`` and ``note`` ("" or "leading order").
    Only statistics present in both files are compared; ``stats`` restricts them further.
    """
    if not isinstance(pred, dict) or not isinstance(pred.get("layers"), list):
        raise InputError("prediction: expected {'meta': ..., 'layers': [...]}")
    if not isinstance(mc, dict) or not isinstance(mc.get("layers"), list):
        raise InputError("Monte Carlo result: expected {'meta': ..., 'layers': [...]}")
    n = _width(pred, mc)
    n0 = (mc.get("meta") or {}).get("n0") or (pred.get("meta") or {}).get("n0")
    mc_layers = {int(e["layer"]): e for e in mc["layers"]}
    rows: list[dict] = []
    for pe in pred["layers"]:
        ell = int(pe["layer"])
        me = mc_layers.get(ell)
        if me is None:
            continue
        fan = (int(n0) if n0 else None) if ell == 1 else n
        where = f"layer {ell}"
        pairs = []
        for mc_name, lead, corr in (("G", "K", "G1"), ("NTK", "Theta", "Theta1")):
            if mc_name in me and lead in pe:
                p = _arr(pe[lead], f"prediction {where} {lead}")
                note = ""
                if ell > 1:
                    if corr in pe:
                        if fan is None:
                            raise InputError("prediction meta has no 'width' (needed for "
                                             f"{lead} + {corr}/n)")
                        p = p + _arr(pe[corr], f"prediction {where} {corr}") / fan
                    else:
                        note = "leading order"
                pairs.append((mc_name, p, note))
        for s in CONNECTED:
            if s in me and s in pe:
                pairs.append((s, _arr(pe[s], f"prediction {where} {s}"), ""))
        for s, p, note in pairs:
            if stats is not None and s not in stats:
                continue
            mean, err = _mc_stat(me, s, f"Monte Carlo {where}")
            if p.shape != mean.shape:
                raise InputError(f"{where} {s}: prediction has shape {p.shape}, Monte Carlo "
                                 f"{mean.shape} (same data set?)")
            for idx in product(*(range(k) for k in p.shape)):
                pv, mv, ev = float(p[idx]), float(mean[idx]), float(err[idx])
                zv = (mv - pv) / math.hypot(ev, ROUNDING_FLOOR * max(1.0, abs(pv)))
                rows.append({"layer": ell, "stat": s, "index": tuple(int(i) for i in idx),
                             "prediction": pv, "mc": mv, "stderr": ev, "z": zv, "note": note})
    return rows


def summary(rows: list[dict]) -> dict:
    """max |z|, the fraction of components within 3σ, and counts."""
    zs = np.array([r["z"] for r in rows], dtype=float)
    finite = zs[~np.isnan(zs)]
    if finite.size == 0:
        return {"components": len(rows), "max_abs_z": float("nan"), "within_3sigma": float("nan")}
    return {"components": len(rows), "compared": int(finite.size),
            "max_abs_z": float(np.max(np.abs(finite))),
            "within_3sigma": float(np.mean(np.abs(finite) <= 3.0))}


def format_table(rows: list[dict]) -> str:
    """A plain-text table, one block per (layer, statistic), and a summary line."""
    lines = []
    head = f"{'layer':>5} {'stat':>4} {'index':<12} {'prediction':>13} {'MC mean ± stderr':>27} {'z':>7}"
    last = None
    for r in rows:
        key = (r["layer"], r["stat"])
        if key != last:
            lines.append("")
            lines.append(head)
            last = key
        idx = "(" + ",".join(str(i + 1) for i in r["index"]) + ")"
        z = r["z"]
        zs = f"{z:7.2f}" if math.isfinite(z) else f"{z!s:>7}"
        note = f"  [{r['note']}]" if r["note"] else ""
        lines.append(f"{r['layer']:>5} {r['stat']:>4} {idx:<12} {r['prediction']:>13.6g} "
                     f"{r['mc']:>13.6g} ± {r['stderr']:<11.3g} {zs}{note}")
    s = summary(rows)
    lines.append("")
    lines.append(f"summary: {s['components']} components, max |z| = {s['max_abs_z']:.2f}, "
                 f"{100 * s['within_3sigma']:.1f}% within 3σ" if s["components"] and
                 not math.isnan(s["max_abs_z"]) else "summary: nothing to compare")
    return "\n".join(lines).lstrip("\n")


def load_prediction(path: str) -> dict:
    """Read a prediction file written by ``evaluate`` (:func:`ntkdiagrams.numerics.evaluate.write_result`):
    JSON, or npz (read like a Monte Carlo result).  Raises InputError naming the file for a
    missing, unreadable or undecodable file, a Monte Carlo result given in its place, and
    entries that are not tables with an integer 'layer'."""
    if os.path.splitext(path)[1].lower() == ".npz":
        return _load_npz_prediction(path)
    try:
        with open(path, "r", encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise InputError(f"{path}: cannot read a JSON prediction ({exc.strerror or exc})") from None
    except ValueError as exc:  # also UnicodeDecodeError: a binary file
        raise InputError(f"{path}: cannot read a JSON prediction ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
        raise InputError(f"{path}: not a prediction file (no 'layers' list)")
    _check_prediction(doc, path)
    return doc


def _load_npz_prediction(path: str) -> dict:
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise InputError(f"{path}: a single .npy array, not an .npz prediction of 'evaluate'")
            meta = json.loads(str(f["meta"])) if "meta" in f.files else {}
            layers: dict = {}
            for key in f.files:
                if key == "meta":
                    continue
                lay, _, stat = key.partition("/")
                if not lay.startswith("layer") or not stat:
                    raise InputError(f"{path}: unexpected entry {key!r} (expected layer<l>/<tensor>)")
                ell = int(lay[len("layer"):])
                if "/" in stat:  # layer<l>/<stat>/mean: a Monte Carlo result
                    raise InputError(f"{path}: a Monte Carlo result of 'sample', not a prediction of 'evaluate'")
                layers.setdefault(ell, {"layer": ell})[stat] = f[key]
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{path}: cannot read an npz prediction ({exc.strerror or exc})") from None
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: cannot read an npz prediction ({exc})") from None
    doc = {"meta": meta, "layers": [layers[k] for k in sorted(layers)]}
    _check_prediction(doc, path)
    return doc


def _check_prediction(doc: dict, path: str) -> None:
    meta = doc.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise InputError(f"{path}: 'meta' is not a table")
    if isinstance(meta, dict) and meta.get("method") == "monte-carlo":
        raise InputError(f"{path}: a Monte Carlo result of 'sample', not a prediction of 'evaluate' "
                         "(the order is PRED MC)")
    for entry in doc["layers"]:
        if not isinstance(entry, dict) or isinstance(entry.get("layer"), bool) \
                or not isinstance(entry.get("layer"), (int, np.integer)):
            raise InputError(f"{path}: every entry of 'layers' must be a table with an integer 'layer'")


def plot(rows: list[dict], path: str) -> None:
    """Prediction vs Monte Carlo (with error bars) and the z-scores, one colour per statistic."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    stats = sorted({r["stat"] for r in rows}, key=lambda s: ("G", "NTK", *CONNECTED).index(s)
                   if s in ("G", "NTK", *CONNECTED) else 99)
    for k, s in enumerate(stats):
        sel = [r for r in rows if r["stat"] == s]
        p = np.array([r["prediction"] for r in sel])
        m = np.array([r["mc"] for r in sel])
        e = np.array([r["stderr"] for r in sel])
        z = np.array([r["z"] for r in sel], dtype=float)
        ax1.errorbar(p, m, yerr=e, fmt="o", ms=3, label=s, color=f"C{k % 10}")
        ax2.plot(np.full(z.shape, k) + np.linspace(-0.3, 0.3, len(z)),
                 np.clip(z, -10, 10), "o", ms=3, color=f"C{k % 10}")
    allv = np.array([[r["prediction"], r["mc"]] for r in rows], dtype=float)
    lo, hi = np.nanmin(allv), np.nanmax(allv)
    ax1.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax1.set_xlabel("prediction")
    ax1.set_ylabel("Monte Carlo")
    ax1.legend(fontsize=7, ncol=2)
    ax2.axhspan(-3, 3, color="0.9")
    ax2.set_xticks(range(len(stats)), stats)
    ax2.set_ylabel("(MC − prediction) / stderr  (clipped at ±10)")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
