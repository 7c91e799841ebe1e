"""Benchmark grid of issue 15: every activation, every input scale (prints figures; not a test).

Cells (wall time of :func:`ntkdiagrams.numerics.evaluate.evaluate`, in one process, derivations
cached; a first warm-up call loads numba's kernel and builds tables):

* ``kgv``: N = 16, L = 20, statistics K, G1, V, for every activation of :data:`ACTIVATIONS` ×
  input scale |x|²/n0 ∈ {0.3, 1, 3} × C_W ∈ {1, 2}, C_b = 0.  Inputs: a fixed-seed standard
  normal (16, 3) array scaled so that the mean of |x_α|²/n0 is the stated scale.
* ``all``: the complete first-order set (``stats="all"``, 15 tensors), N = 16, L = 10, for tanh,
  relu, gelu at scale 1, C_W = 1.5 (tanh, gelu) / 2 (relu).
* ``two``: the two-point path: tanh, K + Θ, N = 256, L = 20, scale 1, C_W = 1.5 (``--two-n
  256,1024`` adds other N; each line also prints the CPU time, which on a loaded machine is
  the better figure, and the process's peak memory).
* ``derive``: cold derive of the complete set (a subprocess with an empty derivation cache).
* ``cli``: the CLI's overhead over the in-process call on the case of ``two`` (N = 256):
  ``python3 -m ntkdiagrams evaluate ... --out x.npz`` as a subprocess (inputs from a .npy file,
  derivation cache warm: one untimed run first), its wall time (best of ``--cli-runs``, each run
  printed) minus the in-process time of the same ``evaluate`` call after the warm-up (best of as
  many calls).  The difference is what a fresh process adds: Python, the imports, the one-time work
  of the first call (quadrature rules, lambdified factors, numba's kernel where a call is large
  enough), reading the inputs and writing the npz.  Each line also prints the CPU times (the
  better figure on a loaded machine).

Options: ``--only kgv,all,two,derive,cli`` (groups), ``--act tanh,relu`` (subsets of the kgv grid
and of the ``all`` group), ``--scale 1``, ``--cw 2`` (subsets of the kgv grid), ``--timeout S`` per cell (SIGALRM; a cell that runs out prints
``>S``), ``--markdown`` (print the README table), ``--target 5`` (the kgv target, marks cells),
``--cli-runs 3`` (timed runs of the cli group).

    python3 scripts/bench_grid.py --only cli      # the CLI's overhead (README: large outputs)

    python3 scripts/bench_grid.py --only kgv --act relu,tanh --scale 1 --timeout 60

Run-time settings: those of the environment (:mod:`ntkdiagrams.settings`), printed first.
Figures and dates: docs/gaussian.md and the README's benchmark table.
"""
from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ntkdiagrams.numerics.evaluate import evaluate  # noqa: E402
from ntkdiagrams.settings import Settings  # noqa: E402

ACTIVATIONS = ("tanh", "relu", "leaky_relu:0.1", "gelu", "erf", "swish", "softplus", "sin")
SCALES = (0.3, 1.0, 3.0)
CWS = (1.0, 2.0)
GROUPS = ("kgv", "all", "two", "derive", "cli")


class CellTimeout(Exception):
    pass


def inputs(N: int, scale: float, n0: int = 3, seed: int = 0) -> np.ndarray:
    """Fixed-seed standard-normal inputs scaled to mean |x|²/n0 = ``scale``."""
    x = np.random.default_rng(seed).standard_normal((N, n0))
    return x * np.sqrt(scale / np.mean(np.sum(x * x, axis=1) / n0))


def timed(fn, timeout: float | None):
    """(seconds, None) or (None, reason): ``fn()`` under a SIGALRM timeout."""
    def alarm(signum, frame):
        raise CellTimeout()
    old = signal.signal(signal.SIGALRM, alarm)
    if timeout:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    t0 = time.perf_counter()
    try:
        fn()
        return time.perf_counter() - t0, None
    except CellTimeout:
        return None, f">{timeout:g}"
    except Exception as exc:  # a failing cell is reported, the grid goes on
        return None, f"error: {type(exc).__name__}: {str(exc)[:80]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def fmt(t, why) -> str:
    if t is None:
        return why
    return f"{t:.2f} s" if t < 10 else f"{t:.0f} s"


def cold_derive() -> float:
    """Seconds to derive every tensor of the default rule file in a fresh process, empty cache."""
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NTKDIAGRAMS_CACHE=d, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        code = ("import time; t=time.perf_counter(); from ntkdiagrams.numerics.evaluate import derivable;"
                "from ntkdiagrams.engine.derivation import resolve_rules;"
                "n=derivable(resolve_rules(None)); print(len(n), time.perf_counter()-t)")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        return float(out[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(GROUPS), help="groups: " + ",".join(GROUPS))
    p.add_argument("--act", help="activations of the kgv grid (comma-separated)")
    p.add_argument("--scale", help="input scales |x|²/n0 of the kgv grid (comma-separated)")
    p.add_argument("--cw", help="C_W values of the kgv grid (comma-separated)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per cell (0: none)")
    p.add_argument("--target", type=float, default=5.0, help="target seconds of a kgv cell")
    p.add_argument("--markdown", action="store_true", help="print the README table at the end")
    p.add_argument("--two-n", default="256", help="input counts N of the two group (comma-separated; "
                   "e.g. 256,1024: the peak memory printed is the process's so far)")
    p.add_argument("--cli-runs", type=int, default=3, help="timed CLI runs of the cli group (best taken)")
    p.add_argument("--threads", type=int)
    p.add_argument("--no-jit", action="store_true")
    args = p.parse_args()
    groups = args.only.split(",")
    acts = args.act.split(",") if args.act else list(ACTIVATIONS)
    scales = [float(s) for s in args.scale.split(",")] if args.scale else list(SCALES)
    cws = [float(c) for c in args.cw.split(",")] if args.cw else list(CWS)
    settings = Settings.from_environment()
    if args.threads is not None:
        settings = settings.with_(threads=args.threads)
    if args.no_jit:
        settings = settings.with_(jit=False)
    print(f"settings: jit={settings.jit} threads={settings.threads}; load {os.getloadavg()[0]:.2f}",
          flush=True)
    timeout = args.timeout or None
    results = {}
    if "derive" in groups:
        t = cold_derive()
        results["derive"] = (t, None)
        print(f"cold derive, complete set: {t:.1f} s", flush=True)
    # warm-up: derivations (cache), numba kernel, tables
    t0 = time.perf_counter()
    for a in dict.fromkeys((acts if {"kgv", "all"} & set(groups) else []) + ["tanh"]):
        evaluate(a, 3, inputs(3, 1.0), cw=1.5, stats="all" if "all" in groups else ["K", "G1", "V"],
                 settings=settings)
    print(f"warm-up: {time.perf_counter() - t0:.1f} s", flush=True)
    if "kgv" in groups:
        x = {s: inputs(16, s) for s in scales}
        for a in acts:
            for s in scales:
                for cw in cws:
                    t, why = timed(lambda: evaluate(a, 20, x[s], cb=0.0, cw=cw, stats=["K", "G1", "V"],
                                                    settings=settings), timeout)
                    results[("kgv", a, s, cw)] = (t, why)
                    ok = "" if t is None or t > args.target else "  ok"
                    print(f"kgv  {a:15s} |x|²/n0={s:<4g} C_W={cw:g}: {fmt(t, why):>10s}{ok}"
                          f"   load {os.getloadavg()[0]:.1f}", flush=True)
    if "all" in groups:
        for a, cw in (("tanh", 1.5), ("relu", 2.0), ("gelu", 1.5)):
            if args.act and a not in acts:
                continue
            t, why = timed(lambda: evaluate(a, 10, inputs(16, 1.0), cw=cw, stats="all", settings=settings),
                           timeout)
            results[("all", a)] = (t, why)
            print(f"all  {a:15s} N=16 L=10 (15 tensors): {fmt(t, why):>10s}", flush=True)
    if "two" in groups:
        for n in (int(v) for v in args.two_n.split(",")):
            x = inputs(n, 1.0)
            c0 = time.process_time()
            t, why = timed(lambda: evaluate("tanh", 20, x, cw=1.5, stats=["K", "Theta"], settings=settings),
                           timeout)
            cpu = time.process_time() - c0
            results["two" if n == 256 else ("two", n)] = (t, why)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB -> GiB (Linux)
            print(f"two  tanh N={n} L=20 K+Theta: {fmt(t, why):>10s}  (cpu {cpu:.2f} s; process peak "
                  f"{peak:.2f} GiB)", flush=True)
    if "cli" in groups:
        results["cli"] = cli_overhead(settings, args.cli_runs)
    if args.markdown:
        markdown(results, acts, scales, cws, args.target)


def cli_overhead(settings: Settings, runs: int) -> tuple[float, None]:
    """The ``cli`` group: (CLI wall time − in-process time) in seconds, both best of ``runs``;
    prints every figure and the load."""
    x = inputs(256, 1.0)
    call = dict(cw=1.5, stats=["K", "Theta"], settings=settings)
    inproc, inproc_cpu = [], []
    for _ in range(max(runs, 1)):
        t0, c0 = time.perf_counter(), time.process_time()
        evaluate("tanh", 20, x, **call)
        inproc.append(time.perf_counter() - t0)
        inproc_cpu.append(time.process_time() - c0)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]),
               NTKDIAGRAMS_JIT="1" if settings.jit else "0")
    if settings.threads is not None:
        env["NTKDIAGRAMS_THREADS"] = str(settings.threads)
    env["NTKDIAGRAMS_CACHE"] = "off" if settings.cache_dir is None else str(settings.cache_dir)
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "x.npy", x)
        cmd = [sys.executable, "-m", "ntkdiagrams", "evaluate", "--activation", "tanh", "--depth", "20",
               "--inputs", str(Path(d) / "x.npy"), "--cw", "1.5", "--stats", "K,Theta",
               "--out", str(Path(d) / "out.npz")]
        subprocess.run(cmd, env=env, capture_output=True, check=True)  # warm: derivation cache
        for _ in range(max(runs, 1)):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, capture_output=True, check=True)
            walls.append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    overhead = min(walls) - min(inproc)
    print(f"cli  tanh N=256 L=20 K+Theta --out npz: CLI {min(walls):.2f} s (runs "
          f"{', '.join(f'{t:.2f}' for t in walls)}), in-process {min(inproc):.2f} s (runs "
          f"{', '.join(f'{t:.2f}' for t in inproc)}); overhead {overhead:.2f} s (cpu: CLI {min(cpus):.2f} s, "
          f"in-process {min(inproc_cpu):.2f} s, overhead {min(cpus) - min(inproc_cpu):.2f} s)   load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    return overhead, None


def markdown(results, acts, scales, cws, target) -> None:
    cols = [(s, cw) for s in scales for cw in cws]
    print()
    print("| activation | " + " | ".join(f"\\|x\\|²/n0={s:g}, C_W={cw:g}" for s, cw in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for a in acts:
        row = []
        for s, cw in cols:
            t, why = results.get(("kgv", a, s, cw), (None, "—"))
            cell = fmt(t, why)
            row.append(f"**{cell}**" if t is not None and t <= target else cell)
        if any(("kgv", a, s, cw) in results for s, cw in cols):
            print(f"| {a} | " + " | ".join(row) + " |")
    extra = [(k, v) for k, v in results.items() if k in ("derive", "two", "cli") or k[0] in ("all", "two")]
    if extra:
        print()
        print("| case | time |\n|---|---|")
        for k, (t, why) in extra:
            name = {"derive": "cold derive, complete set", "two": "tanh, N = 256, L = 20, K + Θ",
                    "cli": "CLI overhead (`--out x.npz`) over the in-process call, tanh, N = 256"}.get(
                k, (f"tanh, N = {k[1]}, L = 20, K + Θ" if k[0] == "two" else
                    f"{k[1]}, N = 16, L = 10, all 15 tensors") if isinstance(k, tuple) else k)
            print(f"| {name} | {fmt(t, why)} |")


if __name__ == "__main__":
    main()
