"""The ``ntkdiagrams`` command line: the parser and the dispatch.

Subcommands (one module each in :mod:`ntkdiagrams.cli`)::

    ntkdiagrams derive K G1 V [--latex] [--diagrams] [--rules FILE]
    ntkdiagrams derive 'E[dH(i0,i1,i2;a0,a1,a2) z(i3;a3)]' [--order 1] [--connected] [--latex]
    ntkdiagrams evaluate --activation tanh --depth 5 --width 32 --random 4,3 --out pred.json
    ntkdiagrams sample   --activation tanh --depth 3 --width 32 --samples 10000 --out mc.json
    ntkdiagrams compare  pred.json mc.json
    ntkdiagrams critical --activation tanh [--depth 40] [--json]
    ntkdiagrams train    --activation tanh --depth 4 --width 64 --train X.npy --targets Y.npy --test Xt.npy --steps 1,10,inf
    ntkdiagrams codegen  K,G1,V --activation tanh --target numpy|jax --out module.py

Bad input is reported in one line on stderr with exit code 2; nothing is written.  Output
paths and input files are checked before any work starts (:mod:`ntkdiagrams.cli.files`), and
results are written atomically.  Any other exception becomes one line naming the command line
that caused it (exit 70); ``--debug`` shows the traceback.  Ctrl-C exits 130, a closed output
pipe (``| head``) exits quietly.

This is the entry point: :func:`main` reads the environment once
(:meth:`ntkdiagrams.settings.Settings.from_environment`) and puts the result on the parsed
arguments as ``args.settings`` for the subcommands to hand down.  Building the parser imports
no numpy, sympy or networkx; each subcommand's ``run`` imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback

from .. import __version__
from ..errors import NtkDiagramsError
from ..settings import Settings
from . import codegen, compare, critical, derive, evaluate, sample, train

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "SUBCOMMANDS", "build_parser", "main"]

#: the subcommand modules, in the order of ``ntkdiagrams --help``; each has ``add_parser(subparsers)``
#: (which sets ``func`` to its ``run(args) -> exit status``)
SUBCOMMANDS = (derive, evaluate, sample, compare, critical, train, codegen)


#: exit status of an unexpected error (a bug: sysexits' EX_SOFTWARE)
EXIT_INTERNAL = 70
#: exit status after Ctrl-C (128 + SIGINT)
EXIT_INTERRUPTED = 130
#: exit status when the reader of the output went away (``| head``; 128 + SIGPIPE)
EXIT_BROKEN_PIPE = 141


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ntkdiagrams`` with every subcommand."""
    p = argparse.ArgumentParser(prog="ntkdiagrams",
                                description="Feynman-diagram engine for finite-width network statistics",
                                epilog="Exit status: 0 success, 1 compare --max-z exceeded, 2 bad input or "
                                       "usage (one line on stderr), 70 internal error (please report it, "
                                       "with the output of --debug), 130 interrupted.")
    p.add_argument("--version", action="version", version=f"ntkdiagrams {__version__}")
    p.add_argument("--debug", action="store_true", default=False,
                   help="on an error, show the full traceback (also accepted after the subcommand)")
    sub = p.add_subparsers(dest="command")
    for module in SUBCOMMANDS:
        sp = module.add_parser(sub)
        # default=SUPPRESS: the subcommand's flag must not overwrite the top-level one
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an error, show the full traceback")
    return p


def main(argv=None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit status:
    0 success, 1 ``compare --max-z`` exceeded, 2 bad input or usage (also a file that cannot be
    read or written, or a run that would not fit in memory), 70 an unexpected error (a bug), 130
    interrupted (``sample`` writes its finished batches first), 141 the output pipe was closed.

    Every error is one line on stderr, ``ntkdiagrams <subcommand>: error: …``; ``--debug`` adds the
    traceback.  An unexpected exception is reported with the command line that caused it and a
    request to report it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    debug = bool(getattr(args, "debug", False))
    prefix = f"ntkdiagrams {args.command}"
    try:
        args.settings = Settings.from_environment()
        return int(args.func(args) or 0)
    except NtkDiagramsError as exc:
        return _fail(prefix, f"error: {exc}", 2, debug)  # (a request's caret display keeps its lines)
    except KeyboardInterrupt:
        return _fail(prefix, "interrupted", EXIT_INTERRUPTED, debug)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except MemoryError as exc:
        detail = f" ({_one_line(exc)})" if str(exc) else ""
        return _fail(prefix, f"error: out of memory{detail}; use fewer inputs or statistics, or a smaller "
                             "--max-memory to have the run refused up front", 2, debug)
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return _fail(prefix, f"error: {where}{exc.strerror or _one_line(exc)}", 2, debug)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        command = shlex.join(["ntkdiagrams", *argv])
        hint = ("" if debug else "; please report it with the output of the same command with --debug "
                "added")
        return _fail(prefix, f"internal error: {type(exc).__name__}: {_one_line(exc)} (while running: "
                             f"{command}){hint}", EXIT_INTERNAL, debug)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 500 else text[:497] + "..."


def _fail(prefix: str, message: str, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    try:
        print(f"{prefix}: {message}", file=sys.stderr)
    except (OSError, ValueError):  # stderr itself is gone
        pass
    return status


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so that the interpreter's final flush
    does not raise a second BrokenPipeError at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (a test's capture)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
