"""On-disk cache of derived recursions.

Deriving the NTK statistics takes seconds to tens of seconds; a second ``derive`` of the same
tensor from the same rule file with the same engine should return at once.  Entries are keyed by

    sha256(rule-file text) · package version · sha256(source of the engine modules) · tensor,

so editing the rule file or the engine invalidates them.  Each entry is a JSON document written
atomically (temporary file + ``os.replace``) and carries a checksum of its payload; an entry that
fails to parse, has the wrong checksum or key, or does not rebuild is deleted and derived again,
never trusted.  Expressions are serialised by a whitelisting encoder (numbers, symbols with their
assumptions, Add/Mul/Pow, and the package's own classes): no pickle, no ``eval``.

The folder is ``Settings.cache_dir`` (:mod:`ntkdiagrams.settings`: ``$NTKDIAGRAMS_CACHE``, default
``~/.cache/ntkdiagrams``), resolved at the entry points and passed down; None disables the cache.
Each diagram is stored with its value (explicit and compact).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import sympy as sp

from .. import __version__
from ..language.algebra import (ActivationDerivative, BlobSum, GaussianExpectation, InputGram, LayerTensor,
                                PartialExpectation, WidthRatio, Z)
from .diagrams import Diagram, NodeLinkGraph
from .recursion import Recursion

# the sources whose change can change a derivation (relative to the package root)
_ENGINE_MODULES = ("language/algebra.py", "language/rulefile.py", "language/expressions.py", "combinatorics.py",
                   "engine/wick.py", "engine/cluster.py", "engine/recursion.py", "engine/derivation.py",
                   "engine/request.py", "engine/diagrams.py", "engine/cache.py")
_CLASSES = {c.__name__: c for c in (ActivationDerivative, BlobSum, GaussianExpectation, InputGram,
                                     PartialExpectation, Z)}
_OPS = {"Add": sp.Add, "Mul": sp.Mul, "Pow": sp.Pow, "KroneckerDelta": sp.KroneckerDelta}


class CacheError(Exception):
    """A cache entry that cannot be trusted."""


@lru_cache(maxsize=1)
def engine_hash() -> str:
    h = hashlib.sha256(__version__.encode())
    here = Path(__file__).resolve().parents[1]
    for name in _ENGINE_MODULES:
        h.update((here / name).read_bytes())
    return h.hexdigest()


def entry_key(source: str, tensor: str) -> str:
    h = hashlib.sha256()
    for part in (source, __version__, engine_hash(), tensor):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


# ---- expressions <-> JSON ----

def encode(e) -> object:
    if e is None:
        return None
    if isinstance(e, sp.Integer):
        return {"I": str(int(e))}
    if isinstance(e, sp.Rational):
        return {"Q": [str(e.p), str(e.q)]}
    if isinstance(e, sp.Float):
        return {"F": repr(float(e))}
    if isinstance(e, sp.Symbol):
        return {"S": e.name, "a": {k: v for k, v in sorted(e.assumptions0.items()) if v is not None}}
    if isinstance(e, LayerTensor):
        return {"T": e.tensor_name, "args": [encode(a) for a in e.args]}
    if isinstance(e, WidthRatio):
        return {"R": e.ratio_name, "args": [encode(a) for a in e.args]}
    name = type(e).__name__
    if name in _CLASSES or name in _OPS:
        return {"f": name, "args": [encode(a) for a in e.args]}
    raise CacheError(f"cannot serialise {type(e).__name__}: {e}")


def decode(d, tensors: dict):
    if d is None:
        return None
    if not isinstance(d, dict):
        raise CacheError("malformed expression")
    if "I" in d:
        return sp.Integer(int(d["I"]))
    if "Q" in d:
        return sp.Rational(int(d["Q"][0]), int(d["Q"][1]))
    if "F" in d:
        return sp.Float(float(d["F"]))
    if "S" in d:
        assumptions = d.get("a", {})
        if not isinstance(assumptions, dict) or not all(isinstance(v, bool) for v in assumptions.values()):
            raise CacheError("malformed assumptions")
        return sp.Symbol(str(d["S"]), **assumptions)
    if "T" in d:
        if d["T"] not in tensors:
            raise CacheError(f"unknown tensor {d['T']}")
        return tensors[d["T"]](*[decode(a, tensors) for a in d["args"]])
    if "R" in d:
        key = "ratio:" + str(d["R"])
        if key not in tensors:
            raise CacheError(f"unknown width ratio {d['R']}")
        return tensors[key](*[decode(a, tensors) for a in d["args"]])
    f = d.get("f")
    if f in _CLASSES:
        return _CLASSES[f](*[decode(a, tensors) for a in d["args"]])
    if f in _OPS:
        return _OPS[f](*[decode(a, tensors) for a in d["args"]])
    raise CacheError(f"unknown node {f!r}")


# ---- recursions ----

def _payload(rec) -> dict:
    import networkx as nx

    return {
        "tensor": rec.tensor, "statistic": rec.statistic, "order": rec.order,
        "labels": [encode(a) for a in rec.labels], "target": encode(rec.target), "rhs": encode(rec.rhs),
        "initial": encode(rec.initial), "compact": encode(rec.compact), "pattern": rec.pattern,
        "diagrams": [{"graph": nx.node_link_data(_plain(d.graph), edges="edges"), "multiplicity": d.multiplicity,
                      "power": d.power, "value": encode(d.value), "compact": encode(d.compact)}
                     for d in rec.diagrams],
    }


def _plain(g):
    """node ids as strings (JSON), attributes kept."""
    import networkx as nx

    return nx.relabel_nodes(g, {v: repr(v) for v in g.nodes})


def load(source: str, tensor: str, rules, cache_dir: Path | None):
    """The cached recursion in folder ``cache_dir``, or None (missing, disabled, or untrustworthy:
    then deleted)."""
    base = Path(cache_dir) if cache_dir is not None else None
    if base is None:
        return None
    key = entry_key(source, tensor)
    path = base / f"{key}.json"
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        payload = doc["payload"]
        if doc.get("key") != key or doc.get("checksum") != _checksum(payload):
            raise CacheError("key or checksum mismatch")
        tensors = {name: spec.cls for name, spec in rules.tensors.items()}
        if rules.width_ratio is not None:
            tensors["ratio:" + rules.width_ratio.ratio_name] = rules.width_ratio
        diagrams = [Diagram(_graph(d["graph"]), int(d["multiplicity"]),
                            int(d["power"]), decode(d["value"], tensors), decode(d["compact"], tensors))
                    for d in payload["diagrams"]]
        return Recursion(payload["tensor"], payload["statistic"], int(payload["order"]),
                         tuple(decode(a, tensors) for a in payload["labels"]), decode(payload["target"], tensors),
                         decode(payload["rhs"], tensors), decode(payload["initial"], tensors),
                         decode(payload["compact"], tensors), diagrams, dict(payload["pattern"]), rules)
    except (OSError, ValueError, KeyError, TypeError, CacheError, sp.SympifyError):
        try:
            path.unlink()
        except OSError:
            pass
        return None


def _graph(data) -> NodeLinkGraph:
    """A stored graph, kept in node-link form until used (reading it needs no networkx); its
    shape is checked here (nodes and edges lists of objects with an ``id`` / ``source`` and
    ``target``), the rest of a malformed entry is excluded by the checksum."""
    if not (isinstance(data, dict) and isinstance(data.get("nodes"), list) and isinstance(data.get("edges"), list)
            and all(isinstance(n, dict) and "id" in n for n in data["nodes"])
            and all(isinstance(e, dict) and "source" in e and "target" in e for e in data["edges"])):
        raise CacheError("malformed graph")
    return NodeLinkGraph(data)


def store(source: str, rec: Recursion, cache_dir: Path | None) -> None:
    """Write ``rec`` into folder ``cache_dir`` (None: nothing); failures only cost speed."""
    base = Path(cache_dir) if cache_dir is not None else None
    if base is None:
        return
    try:
        base.mkdir(parents=True, exist_ok=True)
        payload = _payload(rec)
        key = entry_key(source, rec.tensor)
        doc = {"key": key, "checksum": _checksum(payload), "payload": payload}
        fd, tmp = tempfile.mkstemp(dir=base, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, base / f"{key}.json")
    except (OSError, CacheError, TypeError, ValueError):
        pass  # a cache that cannot be written is only slower


def _checksum(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
