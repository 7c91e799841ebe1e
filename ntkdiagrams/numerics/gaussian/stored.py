"""Quadrature tables kept on disk between processes (the one-time work of a fresh process).

Some tables of the quadrature take a noticeable part of a short run to compute and import
scipy (~0.25 s of import) or numpy.polynomial (~0.05 s) to do so: the Gauss–Hermite bases of
the series path up to Q = 2048 (:func:`.series.hermite_basis`, ~0.15 s), the split rules
(:func:`.rules.split_rules`, those with more than :data:`.rules.SPLIT_BATCHED_MAX` nodes
~0.15 s) and the Gauss–Hermite rules of the fast path (:func:`.rules.rule_for_code`).  The CLI pays that
on every call (issue 15: its overhead over the in-process call).  :func:`stored` keeps such a
table in the folder ``Settings.cache_dir / "tables"`` (:attr:`.context.Quadrature.tables`) as an
uncompressed ``.npz``: the arrays exactly as computed, read back bit for bit.

The file name is a hash of the table's name and arguments, :data:`TABLES_VERSION`, numpy's
version, the text of scipy's ``version.py`` (found without importing scipy) and the source of
the modules that compute the tables (:data:`_SOURCES`): a change to any of them gives new names,
and the stale files are never read.  Files are written atomically (:func:`ntkdiagrams.files.atomic_output`);
a file that cannot be read (zip CRC, wrong count, shape or dtype) is recomputed and rewritten.
Failures to write only cost speed.  ``folder`` None: no files, the table is computed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ...files import atomic_output

__all__ = ["TABLES_VERSION", "stored", "tables_key"]

#: bump to invalidate every stored table
TABLES_VERSION = 1
#: modules whose source is part of the key (they compute the tables)
_SOURCES = ("rules.py", "series.py", "stored.py", "sharpness.py", "spacing.py", "table.py", "interpolation.py")


@lru_cache(maxsize=1)
def tables_key() -> str:
    """The hash of everything a table depends on besides its own arguments."""
    h = hashlib.sha256(f"tables {TABLES_VERSION} numpy {np.__version__}".encode())
    spec = importlib.util.find_spec("scipy")
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        version = Path(loc) / "version.py"
        if version.is_file():
            h.update(version.read_bytes())
    here = Path(__file__).resolve().parent
    for name in _SOURCES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    return h.hexdigest()


def _path(folder: Path, name: str, args: tuple) -> Path:
    h = hashlib.sha256(tables_key().encode())
    h.update(repr((name, args)).encode())
    return Path(folder) / f"{name}-{h.hexdigest()[:32]}.npz"


def _read(path: Path, count: int) -> tuple[np.ndarray, ...] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = tuple(data[f"a{i}"] for i in range(count))
            if len(data.files) != count:
                return None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return arrays


def stored(folder: Path | None, name: str, args: tuple,
           compute: Callable[[], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """``compute()`` (a tuple of float arrays), read from folder ``folder`` where an earlier
    process stored it for the same ``name``, ``args`` and :func:`tables_key`, else computed and
    stored there.  The arrays come back read-only, with the shapes and dtypes of ``compute()``
    (checked against the file's: the first call of a process computes once when the file's
    layout does not match, e.g. a table written by a different layout of the same key)."""
    if folder is None:
        return compute()
    path = _path(folder, name, args)
    arrays = _read(path, _count(name)) if path.is_file() else None
    if arrays is not None and _layout_ok(name, args, arrays):
        for a in arrays:
            a.setflags(write=False)
        return arrays
    arrays = tuple(compute())
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with atomic_output(str(path)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{f"a{i}": np.ascontiguousarray(a) for i, a in enumerate(arrays)})
    except Exception:  # noqa: BLE001 — a cache that cannot be written only costs speed
        pass
    return arrays


#: number of arrays and their expected layout per table name
_LAYOUT = {
    # Q: x (Q,), w (Q,), psi (Q, Q//2 + 1)
    "hermite_basis": (3, lambda args: [(args[0],), (args[0],), (args[0], args[0] // 2 + 1)]),
    # code −k: nodes (1, k), weights (1, k) of the Gauss–Hermite rule code
    "hermite_rule": (2, lambda args: [(1, -args[0]), (1, -args[0])]),
    # n: c (G,), nodes (G, n), weights (G, n); G is checked for consistency only
    "split_rules": (3, None),
    # the 1-D calibration of .sharpness: one value per rung
    "sharpness_reference": (1, None),
    "sharpness": (1, None),
    # the calibration of .spacing: one error per spacing
    "table_spacing": (1, None),
}


def _count(name: str) -> int:
    return _LAYOUT[name][0]


def _layout_ok(name: str, args: tuple, arrays) -> bool:
    if any(a.dtype != np.float64 for a in arrays):
        return False
    shapes = _LAYOUT[name][1]
    if shapes is not None:
        return [a.shape for a in arrays] == shapes(args)
    if name == "split_rules":
        (n,) = args
        G = arrays[0].shape[0]
        return arrays[0].ndim == 1 and arrays[1].shape == (G, n) and arrays[2].shape == (G, n)
    return True
