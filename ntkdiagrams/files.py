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

__all__ = ["atomic_folder", "atomic_output"]


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


@contextlib.contextmanager
def atomic_folder(path: str) -> Iterator[str]:
    """``with atomic_folder("x.zarr") as tmp:`` fill the folder ``tmp`` (same parent folder); on
    success it takes the place of ``path`` (an earlier folder or file there is moved aside first and
    removed after the rename), on any error or interrupt it is removed, so ``path`` never holds a
    partial result.  A parent folder that does not exist or cannot be written raises
    :class:`~ntkdiagrams.errors.InputError`."""
    import shutil

    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    try:
        tmp = tempfile.mkdtemp(dir=folder, prefix=".tmp-", suffix=suffix)
    except OSError as exc:
        raise InputError(f"{path}: cannot write in folder {folder!r} ({exc.strerror or exc})") from None
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # the permissions mkdir would give, not mkdtemp's 0700
        yield tmp
        old = None
        if os.path.lexists(path):
            old = tempfile.mkdtemp(dir=folder, prefix=".old-")
            os.replace(path, os.path.join(old, "previous"))
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
