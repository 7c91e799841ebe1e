"""Helpers shared by the prediction-vs-Monte-Carlo validation scripts.

``scripts/validate_kgv.py`` (K, G1, V) and ``scripts/validate_ntk.py`` (Θ1, A, B, D, F) run
the same pipeline and differ only in the statistics they compare and in their tables.  What
is shared lives here:

* environment: one BLAS thread per process (set on import, before numpy is loaded) and the
  repository root on ``sys.path`` so that ``ntkdiagrams`` imports from a checkout;
* inputs: the fixed random data sets (:func:`make_inputs`, :data:`N0`, :data:`NORMS`) and the
  index pairs α ≤ β (:func:`pairs`);
* command line: the common options (:func:`make_parser`), the choice of cases, widths and
  sample sizes (:func:`select_run`);
* Monte Carlo jobs: the task list with its seeds (:func:`build_tasks`), one sampling run
  (:func:`sample_task`), the worker pool running the tasks while the predictions are
  evaluated in the main process (:func:`run_tasks`), the per-case assembly of the
  analysis (:func:`analyse_all`), and all of it in one call (:func:`run_study`, which
  returns a :class:`Study`);
* fits and statistics: weighted least squares (:func:`wls`), the fits over widths
  (:func:`fit_inverse_n`, :func:`mean_fits`), z values and their summaries (:func:`zval`,
  :func:`zsummary`), value ± error formatting (:func:`fmt`);
* output: the console report (:func:`print_report`), the JSON dump (:func:`write_json`), and
  the markdown file: the hand-written reading kept across rewrites (:func:`keep_reading`),
  the command line, run and input lines, the package version, and the write itself.

Both scripts put their own folder on ``sys.path`` and ``import validation_common`` before
numpy, so they run as ``python scripts/validate_….py`` from any working directory.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

REPO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO_ROOT)

from ntkdiagrams.numerics.activations import parse_activation  # noqa: E402
from ntkdiagrams.sampling.model import ModelSpec  # noqa: E402
from ntkdiagrams.sampling.sampler import parse_stats, sample  # noqa: E402

N0 = {2: 3, 3: 4}  # input dimension n0 of the data set with N inputs
NORMS = (1.0, 0.7, 1.3)  # |x_α|²/n0
READING_OPEN, READING_CLOSE = "<!-- reading -->", "<!-- /reading -->"


# ---------------------------------------------------------------- inputs

def make_inputs(N: int, seed: int) -> np.ndarray:
    """N fixed random inputs of dimension n0 = N0[N] with |x_α|²/n0 = NORMS[α]."""
    rng = np.random.default_rng([seed, 7, N])
    x = rng.standard_normal((N, N0[N]))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x * np.sqrt(N0[N] * np.asarray(NORMS[:N]))[:, None]


def pairs(N: int) -> list[tuple[int, int]]:
    """The index pairs (α, β) with α ≤ β < N."""
    return [(a, b) for a in range(N) for b in range(a, N)]


# ---------------------------------------------------------------- command line

def make_parser(doc: str) -> argparse.ArgumentParser:
    """The options common to both scripts; the description is the docstring's first line."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny version: 2 cases, N=2, n=16,32")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for the Monte Carlo")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every sample size")
    ap.add_argument("--seed", type=int, default=1, help="base seed (inputs and networks)")
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--out", help="write the markdown report here")
    ap.add_argument("--json", help="write every row (all components) as JSON here")
    return ap


def select_run(ap, args, all_cases, widths, samples, quick, cases_from_all=False):
    """(cases, ns_inputs, widths, samples) for the parsed options.

    ``--quick`` switches to ``quick`` (keys cases, ns, widths, samples); ``--cases`` then
    filters the quick cases, or all cases when ``cases_from_all`` (validate_kgv's rule).
    Sample sizes are multiplied by ``--scale`` (at least 300 networks)."""
    cases = all_cases
    ns_inputs, samples = (2, 3), dict(samples)
    if args.quick:
        cases = [c for c in all_cases if c.name in quick["cases"]]
        ns_inputs, widths, samples = quick["ns"], quick["widths"], dict(quick["samples"])
    if args.cases:
        want = args.cases.split(",")
        pool = all_cases if cases_from_all else cases
        unknown = [w for w in want if w not in {c.name for c in pool}]
        if unknown:  # a misspelt name must not shrink the run silently
            ap.error(f"unknown case(s) {unknown}; known{' (--quick)' if pool is not all_cases else ''}: "
                     f"{[c.name for c in pool]}")
        cases = [c for c in pool if c.name in want]
    samples = {n: max(300, int(round(s * args.scale))) for n, s in samples.items()}
    return cases, ns_inputs, widths, samples


# ---------------------------------------------------------------- Monte Carlo jobs

def build_tasks(all_cases, cases, ns_inputs, widths, inputs, samples, seed, seed_offset=0):
    """One task per (case, N, width), longest first; the seed depends on the case's index in
    ``all_cases`` so that selecting cases does not change a run."""
    tasks = []
    for ci, case in enumerate(all_cases):
        if case not in cases:
            continue
        for N in ns_inputs:
            for wi, n in enumerate(widths):
                tasks.append(dict(key=(case.name, N, n), case=case, width=n, inputs=inputs[N],
                                  samples=samples[n],
                                  seed=seed * 100_000 + seed_offset + ci * 1000 + N * 100 + wi))
    tasks.sort(key=lambda t: -t["samples"] * t["width"] ** 2)  # longest first
    return tasks


def sample_task(task: dict, depth: int, stats: tuple, lb: float, lw: float) -> dict:
    """Sample the networks of one task: per layer, {stat: (mean, stderr)} and the time taken.

    ``stats`` in rule-file names (K, G1, Theta, Theta1, V, …); the keys are the sampler's stored
    names: "K+G1" for the sampled E[zz] (= K + G1/n + …), "Theta+Theta1" for E[H], V, A, … as asked."""
    stats = parse_stats(stats)
    case = task["case"]
    if case.rules is None:  # the MLP with the shorthands C_b, C_W, λ_b, λ_W
        arch = dict(cb=case.cb, cw=case.cw, lb=lb, lw=lw)
    else:  # a rule file: every hyper-parameter by its symbol name in case.params
        arch = dict(rules=case.rules, params=case.param_dict())
    model = ModelSpec(activation=parse_activation(case.activation), depth=depth,
                      width=task["width"], inputs=task["inputs"], **arch)
    t0 = time.perf_counter()
    r = sample(model, task["samples"], seed=task["seed"], batches=30, stats=stats)
    out = dict(key=task["key"], samples=task["samples"], seed=task["seed"],
               seconds=time.perf_counter() - t0, layers={})
    for L in r["layers"]:
        out["layers"][L["layer"]] = {s: (np.asarray(L[s]["mean"]), np.asarray(L[s]["stderr"]))
                                     for s in stats}
    return out


def run_tasks(tasks, run_mc, jobs, predict, samples, t_start):
    """Run the Monte Carlo tasks (``jobs`` worker processes if > 1) and ``predict()``.

    With workers, the predictions are evaluated in the main process meanwhile.  Progress goes
    to stderr.  Returns (mc by task key, Monte Carlo seconds summed, predictions, their time)."""
    mc: dict = {}
    mc_seconds = 0.0
    print(f"{len(tasks)} Monte Carlo runs, {jobs} job(s); samples per width {samples}",
          file=sys.stderr, flush=True)

    def record(r):
        nonlocal mc_seconds
        mc[r["key"]] = r
        mc_seconds += r["seconds"]
        print(f"  done {r['key']}: {r['samples']} networks in {r['seconds']:.1f} s "
              f"[{len(mc)}/{len(tasks)}, {time.perf_counter() - t_start:.0f} s]",
              file=sys.stderr, flush=True)

    if jobs > 1:
        with ProcessPoolExecutor(jobs) as ex:
            futs = [ex.submit(run_mc, t) for t in tasks]
            t0 = time.perf_counter()
            preds = predict()
            t_pred = time.perf_counter() - t0
            print(f"  predictions done in {t_pred:.0f} s", file=sys.stderr, flush=True)
            for f in as_completed(futs):
                record(f.result())
    else:
        t0 = time.perf_counter()
        preds = predict()
        t_pred = time.perf_counter() - t0
        for t in tasks:
            record(run_mc(t))
    return mc, mc_seconds, preds, t_pred


def analyse_all(analyse, cases, ns_inputs, widths, preds, mc) -> list:
    """``analyse(case, N, pred, {n: layers}, widths)`` for every case and data set, in order."""
    results = []
    for case in cases:
        for N in ns_inputs:
            m = {n: mc[(case.name, N, n)]["layers"] for n in widths}
            results.append(analyse(case, N, preds[(case.name, N)], m, widths))
    return results


@dataclass
class Study:
    """One validation run: options, selection, inputs, result rows and timings."""
    args: argparse.Namespace
    cases: list
    ns_inputs: tuple
    widths: tuple
    samples: dict
    inputs: dict
    results: list
    mc_seconds: float
    t_pred: float


def run_study(ap, args, t_start, all_cases, widths, samples, quick, *, run_mc, predict,
              analyse, seed_offset=0, cases_from_all=False) -> Study:
    """Select (:func:`select_run`), sample and predict (:func:`run_tasks`), and analyse.

    ``run_mc(task)`` samples one task, ``predict(cases, ns_inputs, inputs)`` returns the
    predictions by (case name, N), ``analyse`` is as in :func:`analyse_all`."""
    cases, ns_inputs, widths, samples = select_run(ap, args, all_cases, widths, samples, quick,
                                                   cases_from_all)
    inputs = {N: make_inputs(N, args.seed) for N in ns_inputs}
    tasks = build_tasks(all_cases, cases, ns_inputs, widths, inputs, samples, args.seed,
                        seed_offset)
    mc, mc_seconds, preds, t_pred = run_tasks(
        tasks, run_mc, args.jobs, lambda: predict(cases, ns_inputs, inputs), samples, t_start)
    results = analyse_all(analyse, cases, ns_inputs, widths, preds, mc)
    return Study(args, cases, ns_inputs, widths, samples, inputs, results, mc_seconds, t_pred)


# ---------------------------------------------------------------- fits and statistics

def wls(X: np.ndarray, y: np.ndarray, s: np.ndarray):
    """Weighted least squares y ≈ X β with errors s: (β, stderr(β), χ², dof)."""
    w = 1.0 / s ** 2
    A = X.T @ (w[:, None] * X)
    cov = np.linalg.inv(A)
    beta = cov @ (X.T @ (w * y))
    chi2 = float(np.sum(w * (y - X @ beta) ** 2))
    return beta, np.sqrt(np.diag(cov)), chi2, len(y) - X.shape[1]


def fit_inverse_n(ns: np.ndarray, y: np.ndarray, s: np.ndarray) -> tuple:
    """Fit y = c_∞ + c_1/n over the widths: (c_∞, its error, c_1, its error, χ², dof)."""
    be, se, chi2, dof = wls(np.stack([np.ones_like(ns), 1 / ns], 1), y, s)
    return (be[0], se[0], be[1], se[1], chi2, dof)


def mean_fits(ns: np.ndarray, m: np.ndarray, s: np.ndarray, lead: float) -> dict:
    """Fits of a mean m(n) = lead + c1/n + … over the widths (G against K, NTK against Θ).

    ``fit_fixed``: m − lead = c1/n, (c1, error, χ², dof); ``fit_fixed2`` (≥ 3 widths):
    m − lead = c1/n + c2/n², (c1, error, c2, error, χ², dof); ``fit_free`` (≥ 2 widths):
    m = lead_∞ + c1/n, (lead_∞, error, c1, error, χ², dof)."""
    be, se, chi2, dof = wls((1 / ns)[:, None], m - lead, s)
    fits = dict(fit_fixed=(be[0], se[0], chi2, dof))
    if len(ns) >= 3:
        be, se, chi2, dof = wls(np.stack([1 / ns, 1 / ns ** 2], 1), m - lead, s)
        fits["fit_fixed2"] = (be[0], se[0], be[1], se[1], chi2, dof)
    if len(ns) >= 2:
        fits["fit_free"] = fit_inverse_n(ns, m, s)
    return fits


def zval(d, s):
    """d/s, with 0 for 0/0 and ∞ for a nonzero d with no error."""
    return d / s if s > 0 else (0.0 if d == 0 else np.inf)


def zsummary(z) -> str:
    """Count, max |z|, fractions within 2σ and 3σ, and rms of a set of z values."""
    z = np.abs(np.asarray(z, float))
    if z.size == 0:
        return "none"
    return (f"{z.size} values, max |z| = {z.max():.2f}, within 2σ {np.mean(z < 2):.1%}, "
            f"within 3σ {np.mean(z < 3):.1%}, rms z = {np.sqrt(np.mean(z ** 2)):.2f}")


def fmt(v, e=None) -> str:
    """v ± e with two significant digits of the error; "—" for None, plain v without error."""
    if v is None:
        return "—"
    if e is None or not np.isfinite(e) or e <= 0:
        return f"{v:.4g}"
    d = max(0, 1 - int(np.floor(np.log10(e))))  # two significant digits of the error
    d = min(d, 7)
    return f"{v:.{d}f}±{e:.{d}f}"


# ---------------------------------------------------------------- console and JSON output

def print_report(sections, summ, wall, mc_seconds, t_pred) -> None:
    """Print the (title, table) sections, the summary lines and the timings to stdout."""
    for title, table in sections:
        print(f"\n== {title} ==")
        print(table)
    print("\n== summary ==")
    for s in summ:
        print("  " + s.replace("**", ""))
    print(f"\nwall time {wall:.0f} s (Monte Carlo {mc_seconds:.0f} s summed over runs, "
          f"predictions {t_pred:.0f} s)")


def _json_default(o):
    """JSON encoding of numpy arrays and scalars; anything else as its str."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def write_json(path: str, results: list) -> None:
    """Every row of every result, as indented JSON."""
    with open(path, "w") as fh:
        json.dump(results, fh, default=_json_default, indent=1)


# ---------------------------------------------------------------- markdown output

def keep_reading(path: str) -> str:
    """The hand-written reading (markers included) of an existing report, or a placeholder."""
    reading = f"{READING_OPEN}\n(no reading written yet)\n{READING_CLOSE}"
    if os.path.exists(path):
        with open(path) as fh:
            old = fh.read()
        i, j = old.find(READING_OPEN), old.find(READING_CLOSE)
        if 0 <= i < j:
            reading = old[i:j + len(READING_CLOSE)]
    return reading


def command_line() -> str:
    """The command that produced the report, as it can be typed again."""
    return "python " + " ".join(shlex.quote(a) for a in
                                [os.path.relpath(sys.argv[0])] + sys.argv[1:])


def source_version() -> str:
    """The commit of the package that was validated (and whether its sources were modified)."""
    try:
        head = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "ntkdiagrams",
                                "rules"], capture_output=True, text=True, check=True).stdout.strip()
        return head + (" (with uncommitted changes in ntkdiagrams/ or rules/)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        f = os.path.join(REPO_ROOT, "COMMIT")  # a `git archive` snapshot: its commit is here
        return (open(f).read().strip() + " (snapshot)") if os.path.exists(f) else "unknown"


def header_lines(title: str, script: str, cores: str) -> list[str]:
    """Title, producing script and command, date and machine (``cores``: how they were shared)."""
    return [
        f"# {title}",
        "",
        f"Produced by `{script}` (docs/conventions.md §6).  Command:",
        "",
        "```",
        command_line(),
        "```",
        "",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; machine: "
        f"{platform.machine()}, {os.cpu_count()} cores ({cores}), "
        f"Python {platform.python_version()}, numpy {np.__version__}",
    ]


def run_lines(jobs: int, wall: float, mc_seconds: float, t_pred: float) -> list[str]:
    """Package version and timings."""
    return [
        f"- package version: commit {source_version()}",
        f"- wall time: {wall:.0f} s (Monte Carlo {mc_seconds:.0f} s summed over runs with "
        f"{jobs} worker(s); predictions {t_pred:.0f} s)",
    ]


def samples_line(samples: dict) -> str:
    """The number of sampled networks per width."""
    return ("- networks per width: " + ", ".join(f"n={n}: {s:,}" for n, s in samples.items())
            + " (30 batches, batch-means standard errors); one independent seed per run")


def input_lines(ns_inputs, inputs) -> list[str]:
    """One line per data set with its (rounded) inputs."""
    return [f"  - N = {N}, n0 = {N0[N]}: " + json.dumps(np.round(inputs[N], 6).tolist())
            for N in ns_inputs]


def write_report(path: str, lines: list[str]) -> None:
    """Write the markdown lines to ``path`` (creating its folder)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    print(f"wrote {path}", file=sys.stderr)


@dataclass(frozen=True)
class Case:
    """One model setting of an NTK-type study: a name, the activation and C_b, C_W, λ_b, λ_W.

    ``rules`` (optional): a rule file (built-in name, path or RuleSet) other than the MLP; then
    ``params`` holds all its hyper-parameters as (symbol name, value or tuple per layer) pairs
    and C_b, C_W, λ_b, λ_W above are only descriptive."""

    name: str
    activation: str
    cb: float
    cw: float
    lb: float = 1.0
    lw: float = 1.0
    rules: object = None
    params: tuple = ()

    def param_dict(self) -> dict:
        """``params`` as {symbol name: number or list per layer} (the form of ModelSpec and evaluate)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params}
