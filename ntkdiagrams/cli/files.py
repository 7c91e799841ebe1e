"""The command line's files, checked before any work starts, and written atomically.

Every subcommand checks its output paths (``--out``, ``--plot``, ``--draw``) and its input files
(``--inputs``, ``--rules``, the files of ``compare``) first, so that a run never computes for
minutes and then fails to write its result.  A problem is an :class:`~ntkdiagrams.errors.InputError`
with a one-line message that names the option, the path and what is wrong; the command line
turns it into exit status 2.

Outputs are written to a temporary file in the same folder and renamed over the target
(``os.replace``, atomic on POSIX), so no partial file is ever left, also when the run fails or
is interrupted after the check (:func:`atomic_output`).

Imports nothing beyond the standard library (numpy only inside :func:`load_npy`).
"""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

from ..errors import InputError, RuleFileError
from ..files import atomic_output  # noqa: F401  (re-exported for the subcommands)

__all__ = ["PLOT_SUFFIXES", "atomic_output", "check_input_file", "check_output_file", "check_output_folder",
           "check_rules_option", "load_npy"]

#: suffixes matplotlib writes without extra packages
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".eps", ".ps", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")

#: pseudo file systems: nothing the command line writes belongs there
SPECIAL_ROOTS = ("/proc", "/sys", "/dev")

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _special_root(path: str) -> str | None:
    real = os.path.realpath(path)
    for root in SPECIAL_ROOTS:
        if real == root or real.startswith(root + os.sep):
            return root
    return None


def _probe_folder(folder: str, what: str) -> None:
    """Create and remove a file in ``folder``: the only test of writability that also holds
    for root and for read-only mounts."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ntkdiagrams-check-")
    except OSError as exc:
        raise InputError(f"{what}: cannot write in folder {folder!r} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_file(path: str, option: str, suffixes: Sequence[str]) -> str:
    """Check that ``path`` can be written as a file: a suffix from ``suffixes``, not a folder,
    not on /proc, /sys or /dev, and an existing, writable parent folder.  Returns ``path``."""
    what = f"{option} {path}"
    if not path or path.endswith(("/", os.sep)):
        raise InputError(f"{what}: give a file name ending in {' or '.join(suffixes)}")
    if os.path.splitext(path)[1].lower() not in suffixes:
        raise InputError(f"{what}: the file name must end in {' or '.join(suffixes)}")
    root = _special_root(path)
    if root:
        raise InputError(f"{what}: cannot write on {root} (a system pseudo-file system)")
    if os.path.isdir(path):
        raise InputError(f"{what}: is a folder; give a file name")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise InputError(f"{what}: exists and is read-only")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        raise InputError(f"{what}: folder {os.path.dirname(path) or folder!r} does not exist")
    if not os.path.isdir(folder):
        raise InputError(f"{what}: {os.path.dirname(path)!r} is a file, not a folder")
    _probe_folder(folder, what)
    return path


def check_output_folder(path: str, option: str) -> str:
    """Check that ``path`` is a writable folder, or can be created (its nearest existing
    ancestor is a writable folder).  Returns ``path``."""
    what = f"{option} {path}"
    if not path:
        raise InputError(f"{option}: give a folder")
    root = _special_root(path)
    if root:
        raise InputError(f"{what}: cannot write on {root} (a system pseudo-file system)")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise InputError(f"{what}: is a file, not a folder")
        _probe_folder(path, what)
        return path
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise InputError(f"{what}: cannot create the folder: {ancestor!r} is a file")
    _probe_folder(ancestor, what)
    return path


def check_input_file(path: str, what: str) -> str:
    """Check that ``path`` is an existing, readable regular file (``what`` names it in the message)."""
    if not path:
        raise InputError(f"{what}: give a file")
    if not os.path.exists(path):
        raise InputError(f"{what} {path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{what} {path}: is a folder, not a file")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None
    return path


def check_rules_option(value: str, option: str = "--rules") -> None:
    """A ``--rules`` value that names a file (ends in .toml or exists) must be a readable UTF-8
    text file; built-in names are left to :func:`ntkdiagrams.language.rulefile.load_rules`."""
    if not (value.endswith(".toml") or os.path.exists(value)):
        return
    try:
        check_input_file(value, option)
    except InputError as exc:
        raise RuleFileError(str(exc)) from None
    try:
        with open(value, "rb") as fh:
            data = fh.read()
    except OSError as exc:  # pragma: no cover - checked above
        raise RuleFileError(f"{option} {value}: cannot read ({exc.strerror or exc})") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleFileError(f"{option} {value}: not a UTF-8 text file (byte 0x{data[exc.start]:02x} at "
                            f"offset {exc.start}); a rule file is TOML text") from None


def load_npy(path: str, option: str = "--inputs"):
    """Read a numeric array from a .npy file written by ``numpy.save``, with a one-line
    InputError for a missing file, a file of another format (text, .npz, pickle) or Python
    objects inside."""
    import numpy as np

    check_input_file(path, option)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(_ZIP_MAGIC):
        raise InputError(f"{option} {path}: an .npz archive; give one (N, n0) array saved with numpy.save")
    if not head.startswith(_NPY_MAGIC):
        raise InputError(f"{option} {path}: not a NumPy .npy file (no .npy header); write the array with "
                         "numpy.save (a text table can be read with numpy.loadtxt first)")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickled" in str(exc):
            raise InputError(f"{option} {path}: holds Python objects, not numbers") from None
        raise InputError(f"{option} {path}: a damaged .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{option} {path}: a damaged .npy file ({exc})") from None
    return arr
