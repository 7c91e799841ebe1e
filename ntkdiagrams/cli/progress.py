"""Progress of a long ``evaluate`` on stderr: the layer at work, the time spent and an ETA.

Nothing is shown for runs shorter than :data:`DELAY` seconds.  On a terminal one line is
rewritten in place (as ``sample`` does); otherwise (a log file) a line is written when the delay
has passed and after each finished layer.  A background thread keeps the line alive while a
layer is at work (one layer of N = 40 inputs can take minutes), so the run never looks hung.

The ETA assumes that every layer from 2 on costs the same (they compute the same tensors on a
kernel of the same size); before layer 2 has finished it is unknown.
"""
from __future__ import annotations

import sys
import threading
import time

__all__ = ["DELAY", "LayerProgress"]

#: seconds before anything is shown
DELAY = 2.0


def _seconds(t: float) -> str:
    t = max(0.0, t)
    if t < 90:
        return f"{t:.0f} s"
    if t < 5400:
        return f"{t / 60:.1f} min"
    return f"{t / 3600:.1f} h"


class LayerProgress:
    """``with LayerProgress(depth) as p: evaluate(..., progress=p)``; ``p(layer, depth, elapsed)``
    is the callback of :func:`ntkdiagrams.numerics.evaluate.evaluate` (called after each layer)."""

    def __init__(self, depth: int, label: str = "evaluate", stream=None, delay: float = DELAY,
                 interval: float = 1.0):
        self.depth = int(depth)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.interval = interval
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 1                       # layer 1 is a closed form
        self.t_done = 0.0                   # run time when the last layer finished
        self.printed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()

    # -- the callback --------------------------------------------------------------------------
    def __call__(self, layer: int, depth: int, elapsed: float) -> None:
        with self._lock:
            self.done, self.depth, self.t_done = int(layer), int(depth), time.perf_counter() - self._t0
            if self.t_done >= self.delay:
                self._show(final=not self.tty or self.done == self.depth)

    # -- the line ------------------------------------------------------------------------------
    def eta(self, now: float) -> float | None:
        """Seconds left, or None before layer 2 has finished."""
        steps = self.done - 1
        if steps < 1:
            return None
        per = self.t_done / steps
        return max(0.0, per * (self.depth - self.done) - (now - self.t_done))

    def line(self, now: float) -> str:
        if self.done >= self.depth:
            return f"{self.label}: {self.depth}/{self.depth} layers done, {_seconds(now)}"
        eta = self.eta(now)
        tail = "eta unknown until layer 2 is done" if eta is None else f"eta {_seconds(eta)}"
        return (f"{self.label}: layer {self.done + 1}/{self.depth} at work, {self.done} done, "
                f"{_seconds(now)} elapsed, {tail}")

    def _show(self, final: bool = False) -> None:
        now = time.perf_counter() - self._t0
        text = self.line(now)
        if self.tty:
            self.stream.write("\r" + text + "   " + ("\n" if final and self.done >= self.depth else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.printed = True

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        with self._lock:
            if self.done < self.depth:
                self._show()
        while not self._stop.wait(self.interval):
            if self.tty:
                with self._lock:
                    if self.done < self.depth:
                        self._show()

    def __enter__(self) -> "LayerProgress":
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="ntkdiagrams-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self.printed and self.tty and self.done < self.depth:
                self.stream.write("\n")
                self.stream.flush()
