"""``train_prediction``: what gradient descent does to an ensemble of width-n networks, at O(1/n).

    pred = nd.train_prediction("tanh", 4, x_train, y_train, x_test, lr_fraction=0.5,
                               steps=[1, 10, 100, math.inf], width=64)
    pred.to_dict()   # {"meta": …, "steps": [{"step": T, "mean": {"infinite", "correction", "prediction"},
                     #                        "cov": {…}}, …]}

The statistics of the output layer (:data:`~ntkdiagrams.training.tensors.TRAINING_STATISTICS`) come
from :func:`ntkdiagrams.numerics.evaluate.evaluate` (derived from the rule file by the engine), the
dynamics from :func:`ntkdiagrams.training.dynamics.solve`.  For each T the ensemble mean and
covariance of the outputs — training inputs first, then test inputs; output neuron 0 unless
``all_neurons`` (then neuron-major: neuron 0's inputs, then neuron 1's, …) — are reported as

    infinite (kernel gradient descent, n = ∞),  correction (the coefficient of 1/n),
    prediction = infinite + correction / n       (only with ``width=n``).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, UnsupportedError
from ..files import atomic_output
from ..numerics.activations import parse_activation
from ..numerics.evaluate import evaluate
from ..numerics.health import THRESHOLD, ExpansionWarning
from ..numerics.inputs import check_inputs
from .dynamics import CONTRIBUTIONS, StepMoments, solve, stable_step
from .tensors import TRAINING_STATISTICS, combine

__all__ = ["TrainingPrediction", "parse_steps", "train_prediction"]


@dataclass
class TrainingPrediction:
    """The result of :func:`train_prediction`; ``moments`` are over every output neuron
    (combined index, neuron-major), ``selected`` the indices reported by :meth:`to_dict`."""

    meta: dict
    moments: list
    selected: np.ndarray
    width: int | None = None
    largest_stable_step: float = float("nan")
    output_layer: dict = field(default_factory=dict, repr=False)

    @property
    def steps(self) -> list:
        return [m.step for m in self.moments]

    def at(self, step) -> StepMoments:
        for m in self.moments:
            if m.step == step:
                return m
        raise InputError(f"step {step} was not computed; computed: {self.steps}")

    def mean(self, step, part: str = "infinite") -> np.ndarray:
        """The reported mean after ``step``: part "infinite", "correction" or "prediction"."""
        m = self.at(step)
        return self._part(m.mean, m.mean_correction, part)[self.selected]

    def cov(self, step, part: str = "infinite") -> np.ndarray:
        """The reported covariance after ``step`` (same parts as :meth:`mean`)."""
        m = self.at(step)
        return self._part(m.cov, m.cov_correction, part)[np.ix_(self.selected, self.selected)]

    def _part(self, inf, corr, part):
        if part == "infinite":
            return inf
        if part == "correction":
            return corr
        if part == "prediction":
            if self.width is None:
                raise InputError("the prediction at width n needs width=n")
            return inf + corr / self.width
        raise InputError(f"part must be 'infinite', 'correction' or 'prediction'; got {part!r}")

    def to_dict(self) -> dict:
        """The JSON layout of issue 17 (``step`` "inf" for the converged network)."""
        rows = []
        for m in self.moments:
            entry = {"step": "inf" if math.isinf(m.step) else int(m.step)}
            for name, fn in (("mean", self.mean), ("cov", self.cov)):
                entry[name] = {"infinite": fn(m.step).tolist(), "correction": fn(m.step, "correction").tolist()}
                if self.width is not None:
                    entry[name]["prediction"] = fn(m.step, "prediction").tolist()
            if math.isinf(m.step):
                entry["steps_run"] = m.steps_run
            rows.append(entry)
        return {"meta": self.meta, "steps": rows}

    def write(self, path: str) -> None:
        """JSON (``.json``) or npz (keys ``step{T}/{mean|cov}/{part}`` and ``meta``), atomically."""
        with atomic_output(path) as tmp:
            if path.lower().endswith(".json"):
                with open(tmp, "w") as fh:
                    json.dump(self.to_dict(), fh, allow_nan=False)
            else:
                flat = {}
                for row in self.to_dict()["steps"]:
                    for name in ("mean", "cov"):
                        for part, v in row[name].items():
                            flat[f"step{row['step']}/{name}/{part}"] = np.asarray(v)
                with open(tmp, "wb") as fh:
                    np.savez(fh, meta=json.dumps(self.meta, allow_nan=False), **flat)


def parse_steps(steps) -> list:
    """Sorted distinct step counts: non-negative integers and ``inf`` (also the strings "inf", "∞")."""
    if isinstance(steps, (str, int, float)):
        steps = [steps] if not isinstance(steps, str) else [t for t in steps.split(",") if t.strip()]
    out = []
    for s in steps:
        if isinstance(s, str):
            t = s.strip().lower()
            if t in ("inf", "infinity", "∞"):
                out.append(math.inf)
                continue
            try:
                s = int(t)
            except ValueError:
                raise InputError(f"steps: {s!r} is neither a non-negative integer nor 'inf'") from None
        if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)):
            raise InputError(f"steps: {s!r} is neither a non-negative integer nor inf")
        if math.isinf(s) and s > 0:
            out.append(math.inf)
        elif not math.isfinite(s) or s < 0 or int(s) != s:
            raise InputError(f"steps: {s!r} is not a non-negative integer (or inf)")
        else:
            out.append(int(s))
    if not out:
        raise InputError("steps: give at least one step count")
    return sorted(set(out))


def train_prediction(activation, depth: int, x_train, y_train, x_test=None, *, lr: float | None = None,
                     lr_fraction: float | None = None, steps=(1, 10, 100, math.inf), width: int | None = None,
                     params: dict | None = None, cb=None, cw=None, lb=None, lw=None, rules=None,
                     all_neurons: bool = False, include: Sequence[str] = CONTRIBUTIONS, degree: int | None = None,
                     kinks: str = "per-network", settings=None, progress: bool | Callable = False,
                     max_steps: int = 200_000, allow_kinks: bool = False) -> TrainingPrediction:
    """Mean and covariance of the outputs of width-n networks trained by full-batch gradient
    descent (docs/conventions.md §7), at infinite width and to O(1/n); see the module docstring
    and docs/training.md for the derivation.

    ``x_train`` (n_A, n0), ``y_train`` (n_A,) or (n_A, n_out) — the output width n_out is the
    number of target columns —, ``x_test`` (n_B, n0) or None; ``lr``: the global step η, or
    ``lr_fraction``: η as a fraction of the largest stable step 2/λ_max(Θ_AA) (default 0.5);
    ``steps``: step counts, ``math.inf`` for the converged network; ``width``: n, for the
    prediction and the expansion-health warning; hyper-parameters, ``rules``, ``degree``,
    ``kinks``, ``settings`` as for :func:`~ntkdiagrams.numerics.evaluate.evaluate`;
    ``include``: the O(1/n) contributions kept (all by default).

    Activations with kinks (ReLU, leaky ReLU) are refused (:class:`~ntkdiagrams.errors.UnsupportedError`)
    unless ``allow_kinks=True``: a gradient-descent step moves hidden preactivations across the
    kink, and those crossings change the outputs at O(η² n^{-1/2}) per step, beyond the Taylor
    expansion of docs/conventions.md §7 that the O(1/n) solution rests on (measured against trained
    networks in docs/validation/training.md).  With ``allow_kinks=True`` the infinite-width part is
    exact and the correction comes with an :class:`~ntkdiagrams.numerics.health.ExpansionWarning`."""
    xa = _inputs(x_train, "x_train")
    y = np.asarray(y_train, dtype=float) if not isinstance(y_train, str) else None
    if y is None or y.ndim not in (1, 2) or y.shape[0] != xa.shape[0]:
        raise InputError(f"y_train must have shape (n_train,) or (n_train, n_out) with n_train = {xa.shape[0]}; "
                         f"got {np.shape(y_train)}")
    if not np.all(np.isfinite(y)):
        raise InputError("y_train has NaN or infinite entries")
    y = y[:, None] if y.ndim == 1 else y
    n_out = y.shape[1]
    if n_out < 1:
        raise InputError("y_train has no output column")
    if x_test is None or np.size(x_test) == 0:
        x = xa
    else:
        xb = _inputs(x_test, "x_test")
        if xb.shape[1] != xa.shape[1]:
            raise InputError(f"x_test has input dimension {xb.shape[1]}, x_train {xa.shape[1]}")
        x = np.vstack([xa, xb])
    if width is not None and (isinstance(width, bool) or int(width) != width or width < 1):
        raise InputError(f"width must be a positive integer; got {width!r}")
    if lr is not None and lr_fraction is not None:
        raise InputError("give lr or lr_fraction, not both")
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be a positive number; got {lr!r}")
    if lr_fraction is not None and not (np.isfinite(lr_fraction) and 0 < lr_fraction < 1):
        raise InputError(f"lr_fraction must lie in (0, 1); got {lr_fraction!r}")
    step_list = parse_steps(steps)
    act = parse_activation(activation) if isinstance(activation, str) else activation
    if act.has_delta(2):
        message = (f"activation {act.name} has a kink: gradient-descent steps move hidden preactivations across "
                   "it, which changes the outputs at O(η² n^(-1/2)) per step, beyond the Taylor expansion the "
                   "O(1/n) training prediction rests on (docs/training.md §9, docs/validation/training.md)")
        if not allow_kinks:
            raise UnsupportedError(message + "; allow_kinks=True (--allow-kinks) computes it anyway, with a warning")
        warnings.warn(message + ": the 1/n correction is not reliable", ExpansionWarning, stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExpansionWarning)   # the training prediction has its own check
        layers = evaluate(act, depth, x, params=params, cb=cb, cw=cw, lb=lb, lw=lw,
                          stats=list(TRAINING_STATISTICS), rules=rules, degree=degree, kinks=kinks,
                          settings=settings, progress=progress)
    out_layer = layers[-1]
    stats = combine(out_layer, n_out)
    n_train = xa.shape[0]
    Tr = np.array([i * x.shape[0] + a for i in range(n_out) for a in range(n_train)])
    step_max = stable_step(stats.Theta[np.ix_(Tr, Tr)])
    eta = float(lr) if lr is not None else (0.5 if lr_fraction is None else float(lr_fraction)) * step_max
    moments = solve(stats, n_train, y, eta, step_list, include=include, max_steps=max_steps)
    N = x.shape[0]
    selected = np.arange(n_out * N) if all_neurons else np.arange(N)
    meta = {"kind": "training-prediction", "activation": act.name,
            "depth": int(depth), "width": None if width is None else int(width), "n_train": int(n_train),
            "n_test": int(N - n_train), "n_out": int(n_out), "lr": eta, "largest_stable_step": step_max,
            "lr_fraction": eta / step_max, "steps": ["inf" if math.isinf(s) else s for s in step_list],
            "neurons": "all (neuron-major)" if all_neurons else "0",
            "order": "training inputs first, then test inputs", "include": list(include),
            "rules": rules if isinstance(rules, str) or rules is None else getattr(rules, "name", str(rules)),
            "params": params, "cb": cb, "cw": cw, "lb": lb, "lw": lw, "inputs": x.tolist(), "targets": y.tolist()}
    from .. import __version__
    meta["package_version"] = __version__
    pred = TrainingPrediction(meta=meta, moments=moments, selected=selected,
                              width=None if width is None else int(width), largest_stable_step=step_max,
                              output_layer=out_layer)
    if width is not None:
        worst = training_health(pred)
        meta["health"] = worst
        if worst["ratio"] > THRESHOLD:
            warnings.warn(f"the 1/n correction is {worst['ratio']:.2f} of the infinite-width value "
                          f"({worst['what']} at step {worst['step']}) at width {width}: the 1/n expansion "
                          "is out of its range; use a larger width", ExpansionWarning, stacklevel=2)
    return pred


def training_health(pred: TrainingPrediction) -> dict:
    """The largest |correction|/n relative to the infinite-width scale: for the mean, in units of
    the output scale (the infinite-width standard deviation plus the rms target); for the
    covariance, of its largest entry."""
    n = pred.width
    worst = {"ratio": 0.0, "what": None, "step": None}
    y_rms = float(np.sqrt(np.mean(np.square(pred.meta["targets"]))))
    for m in pred.moments:
        sd = np.sqrt(np.clip(np.diag(m.cov), 0, None)) + y_rms + 1e-12
        r_mean = float(np.max(np.abs(m.mean_correction) / (n * sd)))
        r_cov = float(np.max(np.abs(m.cov_correction)) / (n * max(np.abs(m.cov).max(), 1e-300)))
        step = "inf" if math.isinf(m.step) else int(m.step)
        for r, what in ((r_mean, "mean"), (r_cov, "covariance")):
            if r > worst["ratio"]:
                worst = {"ratio": r, "what": what, "step": step}
    return worst


def _inputs(x, what: str) -> np.ndarray:
    try:
        return check_inputs(x)
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from None
