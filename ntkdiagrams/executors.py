"""Where tasks run: in this process (the default) or on a dask cluster (``scheduler=...``).

The sampler (:mod:`ntkdiagrams.sampling.sampler`, network chunks) and the blocked evaluator
(:mod:`ntkdiagrams.numerics.blocked`, blocks of input tuples) submit the same task functions to
one of two executors with one small interface::

    with open_executor(scheduler) as ex:
        h = ex.submit(fn, *args)      # a handle: the value itself (in process) or a dask Future
        ex.wait_some(handles, limit)  # block until at most ``limit`` of ``handles`` are unfinished
        ex.result(h)                  # the value (a task's exception is raised here)

``scheduler``: None (one process, no dask import: the embedded default); ``"local"`` or
``"local:W"`` (a :class:`distributed.LocalCluster` of W worker processes, one thread each, on the
loopback interface; W defaults to the cores available); a scheduler ``ADDRESS``
(``tcp://host:8786`` or ``host:8786``) of a running cluster; or a :class:`distributed.Client`
(used as it is, not closed).  dask is an optional extra (``pip install 'ntkdiagrams[dask]'``) and
is imported only here, only when a scheduler is given.

Faults: a worker that dies (killed, out of memory) loses its tasks and the results it held;
the dask scheduler runs them again on the remaining or restarted workers (every task here is a
pure function of its arguments, so the numbers do not change).  A task that kills workers more
often than ``distributed.scheduler.allowed-failures`` allows (dask's ``KilledWorker``), a lost
scheduler and an unreachable address stop the run with a :class:`~ntkdiagrams.errors.ClusterError`
naming the cause; the callers write their output files only after every task has finished.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator

from .errors import ClusterError, InputError, NtkDiagramsError

__all__ = ["DaskExecutor", "InProcessExecutor", "open_executor", "parse_scheduler"]

#: the extra that provides dask and zarr
EXTRA_HINT = "pip install 'ntkdiagrams[dask]'"


def parse_scheduler(scheduler) -> tuple[str, Any]:
    """("none", None), ("local", workers or None), ("address", "tcp://…") or ("client", client);
    InputError for anything else."""
    if scheduler is None:
        return "none", None
    if isinstance(scheduler, str):
        text = scheduler.strip()
        if text == "local" or text.startswith("local:"):
            if text == "local":
                return "local", None
            raw = text.split(":", 1)[1]
            try:
                workers = int(raw)
            except ValueError:
                raise InputError(f"scheduler {scheduler!r}: expected local or local:W with W a number of "
                                 "workers") from None
            if workers < 1:
                raise InputError(f"scheduler {scheduler!r}: the number of workers must be >= 1")
            return "local", workers
        if not text or any(c.isspace() for c in text):
            raise InputError(f"scheduler {scheduler!r}: expected local, local:W or a scheduler address "
                             "such as tcp://host:8786")
        if "://" not in text:
            text = "tcp://" + text
        return "address", text
    if type(scheduler).__name__ == "Client" and hasattr(scheduler, "submit"):
        return "client", scheduler
    raise InputError(f"scheduler must be None, 'local[:W]', an address or a distributed.Client; "
                     f"got {type(scheduler).__name__}")


class InProcessExecutor:
    """Runs every task at once, in this process (no dask)."""

    kind = "in-process"
    workers = 1

    def submit(self, fn: Callable, *args) -> Any:
        return fn(*args)

    def wait_some(self, handles: list, limit: int) -> list:
        return []

    def result(self, handle) -> Any:
        return handle

    def done(self, handle) -> bool:
        return True

    def cancel(self, handles) -> None:
        pass


class DaskExecutor:
    """Tasks as dask futures of a :class:`distributed.Client` (see the module docstring)."""

    kind = "dask"

    def __init__(self, client):
        self.client = client

    @property
    def workers(self) -> int:
        """Worker threads of the cluster now (at least 1)."""
        try:
            info = self.client.scheduler_info()
            return max(1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()))
        except Exception:  # noqa: BLE001 - a hint for sizing, not a number of the result
            return 1

    def submit(self, fn: Callable, *args):
        # pure=False: every call is its own task (no key sharing between runs of a long session)
        return self._guard(lambda: self.client.submit(fn, *args, pure=False))

    def wait_some(self, handles: list, limit: int) -> list:
        """Wait until at most ``limit`` of ``handles`` are unfinished; returns the unfinished ones."""
        from distributed import wait

        left = [h for h in handles if not h.done()]
        while len(left) > limit:
            self._guard(lambda: wait(left, return_when="FIRST_COMPLETED"))
            left = [h for h in left if not h.done()]
        # a finished task that failed raises now, not at the end of the run
        for h in handles:
            if h.done() and h.status == "error":
                self.result(h)
        return left

    def result(self, handle):
        return self._guard(handle.result)

    def done(self, handle) -> bool:
        return handle.status == "finished"

    def cancel(self, handles) -> None:
        with contextlib.suppress(Exception):
            self.client.cancel(list(handles))

    @staticmethod
    def _guard(call: Callable):
        """Run ``call``; dask's failures of the cluster become a ClusterError (a task's own
        NtkDiagramsError passes unchanged)."""
        try:
            return call()
        except NtkDiagramsError:
            raise
        except Exception as exc:  # noqa: BLE001 - sorted below, re-raised otherwise
            name = type(exc).__name__
            if name == "KilledWorker":
                raise ClusterError(f"a dask task killed its worker process more often than the scheduler "
                                   f"allows (distributed.scheduler.allowed-failures): {exc}; the run is "
                                   f"stopped and nothing was written (a worker running out of memory is the "
                                   f"usual cause: fewer networks per chunk or smaller blocks)") from None
            if name in ("CommClosedError", "CancelledError", "FutureCancelledError", "TimeoutError",
                        "StreamClosedError") or isinstance(exc, (OSError, TimeoutError)):
                raise ClusterError(f"the dask cluster went away during the run ({name}: {exc}); nothing "
                                   f"was written") from None
            raise


@contextlib.contextmanager
def open_executor(scheduler=None, *, workers_default: int | None = None) -> Iterator:
    """The executor for ``scheduler`` (module docstring); a cluster started here is closed on exit."""
    kind, value = parse_scheduler(scheduler)
    if kind == "none":
        yield InProcessExecutor()
        return
    try:
        import logging

        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(f"scheduler {scheduler!r} needs dask.distributed, an optional extra: {EXTRA_HINT}") from None
    if kind == "client":
        yield DaskExecutor(value)
        return
    if kind == "local":
        n = value or workers_default or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                             else (os.cpu_count() or 1))
        try:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, silence_logs=logging.ERROR)
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback
            raise ClusterError(f"cannot start a local dask cluster of {n} workers ({type(exc).__name__}: "
                               f"{exc}); a Python script that starts one must run its code under "
                               f"if __name__ == '__main__': (the workers are new processes that import it)") from None
        with cluster, Client(cluster) as client:
            yield DaskExecutor(client)
        return
    try:
        client = Client(value, timeout="10s")
    except Exception as exc:  # noqa: BLE001
        raise ClusterError(f"cannot reach the dask scheduler at {value} ({type(exc).__name__}: {exc})") from None
    with client:
        yield DaskExecutor(client)
