"""Atomic file output, shared by the evaluator, the sampler and the command line.

A result is written to a temporary file in the destination's folder and renamed onto it
(``os.replace``, atomic on POSIX), so a reader never sees a half-written file and a failed or
interrupted run leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

from .errors import InputError

__all__ = ["atomic_output"]


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """``with atomic_output("fig.png") as tmp:`` write ``tmp`` (same folder, same suffix); on
    success it replaces ``path``, on any error or interrupt it is removed.  A folder that does not
    exist or cannot be written raises :class:`~ntkdiagrams.errors.InputError`."""
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    except OSError as exc:
        raise InputError(f"{path}: cannot write in folder {folder!r} ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # the permissions open() would give, not mkstemp's 0600
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
