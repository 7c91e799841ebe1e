"""Compare predictions (``evaluate``) with Monte Carlo estimates (``sample``), docs/conventions.md §6.

The prediction file has the layout ``{"meta": {"width": n, ...}, "layers": [{"layer": ℓ,
"K": N×N, "G1": N×N, "Theta": N×N, "Theta1": N×N, "V": N×N×N×N, "A": …, …}]}``; the Monte
Carlo file is what :func:`ntkdiagrams.sampling.sampler.sample` writes (JSON or npz).  Both use
the rule file's names; the pairs are

* MC ``K+G1``         (the sampled E[zz]) ↔ K + G1/n   (layer 1: K; it is exact there),
* MC ``Theta+Theta1`` (the sampled E[H])  ↔ Θ + Θ1/n   (layer 1: Θ),
* MC ``V, A, B, D, F, P, Q, R, S, T, U`` ↔ the prediction of the same name (both are the
  coefficients of 1/n in the storage order of docs/conventions.md §3),

where n is the fan-in width of the layer: the width in the prediction's meta for ℓ ≥ 2.
If G1 (Θ1) is missing the leading-order K (Θ) is used and the row says so.  Monte Carlo files of
earlier versions (``G``, ``NTK``) are read under the new names.

Every compared entry gives a row: layer, statistic, input indices, prediction, MC mean ± stderr
and the difference in standard errors z = (MC − prediction)/σ with
σ = √(stderr² + (1e-9·max(1, |prediction|))²): the small floor stands for floating-point
rounding, so that components that do not fluctuate (layer-1 NTK, layer-1 covariances, which
are exactly 0) are compared to 1e-9 instead of giving z = ±∞ from rounding noise.

Unique components (``symmetries=``, :func:`find_symmetries`): a tensor's entries related by a
slot permutation under which it is invariant (V_{α1α2α3α4} = V_{α2α1α3α4} = V_{α3α4α1α2}, …)
are one component; only the orbit's representative (its smallest index) gives a row, with
``orbit`` = the number of entries it stands for.  The permutations come from the rule file
(:attr:`~ntkdiagrams.language.rulefile.TensorSpec.symmetries`, derived from the fields'
``slot_symmetries`` and the statistic's Kronecker decomposition), and each is used only where
both files are numerically invariant under it at every layer: prediction, MC mean and stderr,
each entry to 1e-9 of the array's largest entry and to 1e-3 σ, so every member of an orbit has
the representative's values to 1e-9 and its z to 1e-3 (the table shows two decimals).  A
permutation that fails is reported as not used.  Without the rule file, the candidates are all
permutations of the slots, kept by the same numerical test.
"""
from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from itertools import product

import numpy as np

from ..errors import InputError, NtkDiagramsError
from ..sampling.sampler import ALL_STATS, DEPRECATED_NAMES, SAMPLED_SUMS, STAT_ALIASES

__all__ = ["compare", "summary", "summary_by_statistic", "find_symmetries", "Symmetry", "format_table",
           "format_header", "not_compared", "load_prediction", "plot", "PAIRING"]

ROUNDING_FLOOR = 1e-9
CONNECTED = ("V", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U")
#: one line per pairing rule, printed at the top of the table
PAIRING = ("MC K+G1 (sampled E[zz]) vs K + G1/n and MC Theta+Theta1 (sampled E[H]) vs Theta + Theta1/n "
           "(n = fan-in width; layer 1: K, Theta, exact there);",
           "MC V, A, B, D, F, P, Q, R, S, T, U vs the prediction of the same name (coefficients of 1/n).")
#: invariance tolerances of :func:`find_symmetries` (see the module docstring)
_REL_TOL = 1e-9
_Z_TOL = 1e-3


@dataclass(frozen=True)
class Symmetry:
    """The slot permutations used to reduce one statistic to unique components.

    ``perms``: the permutations (0-based, without the identity) under which both files are
    invariant; ``source``: where the candidates came from ("rule file 'mlp'" or "numerical
    invariance"); ``dropped``: rule-file permutations left out because a file is not invariant."""

    stat: str
    perms: tuple
    source: str
    dropped: tuple = ()

    def text(self) -> str:
        ps = " ".join("".join(str(i + 1) for i in p) for p in self.perms) or "none"
        out = f"{self.stat}: {ps} [{self.source}]"
        if self.dropped:
            out += " (not invariant under " + " ".join("".join(str(i + 1) for i in p) for p in self.dropped) \
                + ": not used)"
        return out


def _arr(v, where):
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: not a numeric array ({exc})") from None
    return a


def _mc_entry(entry, stat):
    """The MC statistic ``stat`` of a layer entry, also under its deprecated name."""
    if stat in entry:
        return entry[stat]
    old = [k for k, v in DEPRECATED_NAMES.items() if v == stat]
    return entry.get(old[0]) if old else None


def _mc_stat(entry, stat, where):
    v = _mc_entry(entry, stat)
    if not isinstance(v, dict) or "mean" not in v or "stderr" not in v:
        raise InputError(f"{where}: statistic {stat!r} has no 'mean' and 'stderr'")
    return _arr(v["mean"], f"{where} {stat} mean"), _arr(v["stderr"], f"{where} {stat} stderr")


def _width(pred: dict, mc: dict) -> int | None:
    for doc in (pred, mc):
        w = (doc.get("meta") or {}).get("width")
        if w is not None:
            return int(w)
    return None


def _requested(stats) -> set | None:
    """Stored MC names for a stats filter in rule-file names (K, G1 → K+G1; Theta, Theta1 →
    Theta+Theta1; the deprecated G, NTK as well)."""
    if stats is None:
        return None
    from ..sampling.sampler import parse_stats
    return set(parse_stats(list(stats)))


def _pairs(pred: dict, mc: dict, stats=None):
    """(layer, stat, prediction, MC mean, MC stderr, note) for every statistic in both files."""
    if not isinstance(pred, dict) or not isinstance(pred.get("layers"), list):
        raise InputError("prediction: expected {'meta': ..., 'layers': [...]}")
    if not isinstance(mc, dict) or not isinstance(mc.get("layers"), list):
        raise InputError("Monte Carlo result: expected {'meta': ..., 'layers': [...]}")
    wanted = _requested(stats)
    n = _width(pred, mc)
    n0 = (mc.get("meta") or {}).get("n0") or (pred.get("meta") or {}).get("n0")
    mc_layers = {int(e["layer"]): e for e in mc["layers"]}
    for pe in pred["layers"]:
        ell = int(pe["layer"])
        me = mc_layers.get(ell)
        if me is None:
            continue
        fan = (int(n0) if n0 else None) if ell == 1 else n
        where = f"layer {ell}"
        pairs = []
        for mc_name, (lead, corr) in SAMPLED_SUMS.items():
            if _mc_entry(me, mc_name) is not None and lead in pe:
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
            if wanted is not None and s not in wanted:
                continue
            mean, err = _mc_stat(me, s, f"Monte Carlo {where}")
            if p.shape != mean.shape or err.shape != mean.shape:
                raise InputError(f"{where} {s}: prediction has shape {p.shape}, Monte Carlo "
                                 f"{mean.shape} (same data set?)")
            yield ell, s, p, mean, err, note


def not_compared(pred: dict, mc: dict, *, stats=None) -> list[str]:
    """Why statistics of one file have no partner in the other (e.g. MC K+G1 with a prediction
    that holds G1 but no K): one phrase each, for the table's header."""
    wanted = _requested(stats)
    first = lambda doc: next((e for e in doc.get("layers") or [] if isinstance(e, dict)), {})  # noqa: E731
    pe, me = first(pred), first(mc)
    mc_names = [DEPRECATED_NAMES.get(k, k) for k, v in me.items() if isinstance(v, dict)]
    used, out = set(), []
    for s in mc_names:
        if wanted is not None and s not in wanted:
            continue
        need = SAMPLED_SUMS.get(s, (s,))[:1]
        if all(t in pe for t in need):
            used.update(SAMPLED_SUMS.get(s, (s,)))
        else:
            out.append(f"MC {s} (the prediction has no {need[0]})")
    for k in pe:
        if k == "layer" or k in used:
            continue
        mine = STAT_ALIASES.get(k, k)
        if (wanted is not None and mine not in wanted) or mine in mc_names:
            continue   # not wanted, or its MC partner's phrase says why
        out.append(f"prediction {k} (the Monte Carlo file has no {mine})")
    return out


def _sigma(p, err):
    return np.hypot(err, ROUNDING_FLOOR * np.maximum(1.0, np.abs(p)))


def _is_invariant(perm, arrays) -> bool:
    """Whether every (prediction, mean, stderr) triple is invariant under the slot permutation:
    each array to :data:`_REL_TOL` of its largest entry and to :data:`_Z_TOL` σ entry by entry."""
    for p, mean, err in arrays:
        if p.ndim != len(perm):
            return False
        sig = _sigma(p, err)
        sig = np.minimum(sig, sig.transpose(perm))
        for a in (p, mean, err):
            d = np.abs(a - a.transpose(perm))
            if np.any(~(d <= _REL_TOL * float(np.max(np.abs(a), initial=0)))) or np.any(~(d <= _Z_TOL * sig)):
                return False
    return True


def _rule_symmetries(rules, stat):
    """The rule file's slot permutations of the tensor(s) a stored statistic estimates, or None."""
    if rules is None:
        return None
    names = SAMPLED_SUMS.get(stat, (stat,))
    tensors = getattr(rules, "tensors", {})
    if not all(t in tensors for t in names):
        return None
    common = set(tensors[names[0]].symmetries)
    for t in names[1:]:
        common &= set(tensors[t].symmetries)
    return sorted(common)


def _load_rules_of(pred: dict):
    """The rule file named in the prediction's meta (default the built-in mlp), or None."""
    name = (pred.get("meta") or {}).get("rules") or "mlp"
    try:
        from ..language.rulefile import load_rules
        return load_rules(name)
    except (NtkDiagramsError, OSError, ValueError):
        return None


def find_symmetries(pred: dict, mc: dict, *, stats=None, rules="auto") -> dict:
    """{stat: :class:`Symmetry`} for every statistic the two files share (module docstring).

    ``rules``: a :class:`~ntkdiagrams.language.rulefile.RuleSet`, ``"auto"`` (the rule file
    named in the prediction's meta, default mlp) or None (numerical invariance only)."""
    if isinstance(rules, str) and rules == "auto":
        rules = _load_rules_of(pred)
    arrays: dict = {}
    for ell, s, p, mean, err, _note in _pairs(pred, mc, stats):
        arrays.setdefault(s, []).append((p, mean, err))
    out = {}
    for s, arrs in arrays.items():
        k = arrs[0][0].ndim
        ident = tuple(range(k))
        rule = _rule_symmetries(rules, s)
        if rule is not None:
            cands, source = rule, f"rule file {getattr(rules, 'name', '?')!r}, checked on both files"
        else:
            cands, source = itertools.permutations(range(k)), "numerical invariance of both files"
        cands = [tuple(int(i) for i in c) for c in cands if tuple(c) != ident]
        keep = tuple(c for c in cands if _is_invariant(c, arrs))
        dropped = tuple(c for c in cands if c not in keep) if rule is not None else ()
        out[s] = Symmetry(s, keep, source, dropped)
    return out


def _orbits(shape: tuple, perms) -> dict:
    """{representative index: orbit size} of the index tuples under the slot permutations."""
    rep: dict = {}
    for idx in product(*(range(k) for k in shape)):
        if idx in rep:
            continue
        orbit, todo = {idx}, [idx]
        while todo:
            cur = todo.pop()
            for perm in perms:
                nxt = tuple(cur[q] for q in perm)
                if nxt not in orbit:
                    orbit.add(nxt)
                    todo.append(nxt)
        r = min(orbit)
        for m in orbit:
            rep[m] = r
    sizes: dict = {}
    for r in rep.values():
        sizes[r] = sizes.get(r, 0) + 1
    return dict(sorted(sizes.items()))


def compare(pred: dict, mc: dict, *, stats=None, unique: bool = False, symmetries: dict | None = None) -> list[dict]:
    """Rows comparing a prediction with a Monte Carlo result (see the module docstring).

    Each row is a dict with ``layer``, ``stat`` (the MC name: K+G1, Theta+Theta1, V, …),
    ``index`` (tuple of input indices), ``prediction``, ``mc``, ``stderr``, ``z``, ``note``
    ("" or "leading order") and ``orbit`` (the number of entries the row stands for).
    Only statistics present in both files are compared; ``stats`` (rule-file names: K or G1
    select K+G1, Theta or Theta1 select Theta+Theta1) restricts them further.  ``unique``: one
    row per unique component (:func:`find_symmetries`); ``symmetries``: {stat: Symmetry or
    permutations} to use instead (implies unique rows); default: every entry.
    """
    if unique and symmetries is None:
        symmetries = find_symmetries(pred, mc, stats=stats)
    rows: list[dict] = []
    for ell, s, p, mean, err, note in _pairs(pred, mc, stats):
        sym = (symmetries or {}).get(s, ())
        perms = sym.perms if isinstance(sym, Symmetry) else tuple(sym)
        if perms:
            entries = _orbits(p.shape, perms).items()
        else:
            entries = ((idx, 1) for idx in product(*(range(k) for k in p.shape)))
        for idx, size in entries:
            pv, mv, ev = float(p[idx]), float(mean[idx]), float(err[idx])
            zv = (mv - pv) / math.hypot(ev, ROUNDING_FLOOR * max(1.0, abs(pv)))
            rows.append({"layer": ell, "stat": s, "index": tuple(int(i) for i in idx),
                         "prediction": pv, "mc": mv, "stderr": ev, "z": zv, "note": note,
                         "orbit": int(size)})
    return rows


def summary(rows: list[dict]) -> dict:
    """max |z|, the fraction of rows within 3σ, and counts (``components``: rows; ``entries``:
    the tensor entries they stand for)."""
    zs = np.array([r["z"] for r in rows], dtype=float)
    finite = zs[~np.isnan(zs)]
    entries = sum(int(r.get("orbit", 1)) for r in rows)
    if finite.size == 0:
        return {"components": len(rows), "entries": entries, "compared": 0,
                "max_abs_z": float("nan"), "within_3sigma": float("nan")}
    return {"components": len(rows), "entries": entries, "compared": int(finite.size),
            "max_abs_z": float(np.max(np.abs(finite))),
            "within_3sigma": float(np.mean(np.abs(finite) <= 3.0))}


def summary_by_statistic(rows: list[dict]) -> list[dict]:
    """:func:`summary` per statistic and layer, each with its ``layer`` and ``stat``; statistics
    in the order of :data:`~ntkdiagrams.sampling.sampler.ALL_STATS`, then by layer."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["stat"], r["layer"]), []).append(r)
    order = {s: k for k, s in enumerate(ALL_STATS)}
    out = []
    for (s, ell), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][0], kv[0][1])):
        out.append({"stat": s, "layer": ell, **summary(rs)})
    return out


def format_header(symmetries: dict | None = None, notes=()) -> str:
    """The pairing rules, what is not compared (``notes``, :func:`not_compared`) and which
    components are listed (every entry, or unique components up to which symmetries and where
    they come from)."""
    lines = ["pairs: " + PAIRING[0], "       " + PAIRING[1]]
    if notes:
        lines.append("not compared: " + "; ".join(notes))
    if symmetries is None:
        lines.append("listing every entry (without --all: unique components only)")
    else:
        lines.append("listing unique components (--all for every entry); index permutations used, 1-based:")
        lines += ["  " + sym.text() for sym in symmetries.values()]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}%"


def format_table(rows: list[dict], symmetries: dict | None = None, *, header: bool = True, notes=()) -> str:
    """A plain-text table: the header (:func:`format_header`), one block per (layer, statistic),
    a summary per statistic and layer, and an overall summary line."""
    lines = [format_header(symmetries, notes)] if header else []
    unique = any(int(r.get("orbit", 1)) != 1 for r in rows) or symmetries is not None
    head = (f"{'layer':>5} {'stat':>12} {'index':<12} {'prediction':>13} {'MC mean ± stderr':>27} {'z':>7}"
            + ("  entries" if unique else ""))
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
        orbit = f"  {int(r.get('orbit', 1)):>7}" if unique else ""
        lines.append(f"{r['layer']:>5} {r['stat']:>12} {idx:<12} {r['prediction']:>13.6g} "
                     f"{r['mc']:>13.6g} ± {r['stderr']:<11.3g} {zs}{orbit}{note}")
    per = summary_by_statistic(rows)
    if per:
        lines.append("")
        lines.append("summary per statistic and layer:")
        lines.append(f"{'stat':>12} {'layer':>5} {'components':>10} {'entries':>8} {'max |z|':>8} {'within 3σ':>10}")
        for g in per:
            mz = "-" if math.isnan(g["max_abs_z"]) else f"{g['max_abs_z']:.2f}"
            lines.append(f"{g['stat']:>12} {g['layer']:>5} {g['components']:>10} {g['entries']:>8} {mz:>8} "
                         f"{_pct(g['within_3sigma']):>10}")
    s = summary(rows)
    lines.append("")
    what = f"{s['components']} components" + (f" ({s['entries']} entries)" if s["entries"] != s["components"] else "")
    lines.append(f"summary: {what}, max |z| = {s['max_abs_z']:.2f}, "
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
    stats = sorted({r["stat"] for r in rows}, key=lambda s: ALL_STATS.index(s) if s in ALL_STATS else 99)
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
