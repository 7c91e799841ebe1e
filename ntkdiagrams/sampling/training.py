"""Ground truth for training (docs/conventions.md §7): ensembles of real networks trained by
full-batch gradient descent.

The networks are the sampler's (:mod:`ntkdiagrams.sampling.interpreter`: any rule file it
interprets, with its hyper-parameters), drawn from the same stream, and trained on the squared loss

    L(θ) = ½ Σ_{α∈A} Σ_i (z^(L)_{i;α} − y_{i;α})²,      θ_μ ← θ_μ − η λ_μ ∂L/∂θ_μ,

with the per-entry learning rates λ_μ of the ensemble (:meth:`Ensemble.bias_rate`,
:meth:`Ensemble.weight_rate`: λ_b and λ_W/n_{ℓ−1} for the MLP) times a global step η.  With
ε_{i;α} = z_{i;α} − y_{i;α} (α ∈ A, the training inputs) and the backward errors
δ^(L) = ε, δ^(k) = σ'(z^(k)) ⊙ W^(k+1)ᵀ δ^(k+1) + ξ_{k+1} δ^(k+1) (the shortcut, where there is one),
one step is

    W^(k) ← W^(k) − η (λ_W/n_{k−1}) Σ_{α∈A} δ^(k)_α σ(z^(k−1)_α)ᵀ,     b^(k) ← b^(k) − η λ_b Σ_{α∈A} δ^(k)_α

(σ(z^(0)) is the data x), all layers from the same (pre-step) parameters.  Every network of a chunk
is updated at once (float64, batched matrix products over the ensemble axis), one forward and one
backward pass per step; no automatic differentiation.

Inputs are ordered training inputs first (n_train of them), then test inputs; outputs
``z[c, i, α]`` for output neurons i < n_out (n_out = 1: neuron 0 only, the last layer's weight
and bias rows restricted to it; n_out = 2: neurons 0 and 1, the sampler's output layer).

Networks: drawn from ``default_rng(SeedSequence([seed, SEED_TAG]))`` with
:meth:`NetworkProgram.draw`, one stream for the run cut into chunks, as :func:`sample` draws them
with ``streams="one"``: for the same model, seed and number of networks the initial networks are
the sampler's, and they do not depend on ``chunk``.

Step "∞" (``math.inf`` in ``steps``): each network is recorded at the first step t with
max_{i, α∈A} |z(t) − z(t−1)| < tol · scale (scale = the largest |y| or that network's largest |z(0)|
on the training inputs), so the result does not depend on the chunk; converged networks stop
training, and the rest go on for at most ``max_steps`` steps after the largest finite step
(``unconverged="raise"``: NumericsError; ``"keep"``: their last state, with a warning).  The
distance to the fixed point is about the last change / (η λ_min) of that network's NTK.

Stability: a step η beyond the stable one shows as exploding outputs; the NumericsError then names η
and 2/λ_max of the empirical NTK H_{ij;α1α2} (α's ∈ A) at initialisation averaged over the networks
(kernel gradient descent z ← z − ηHε is stable for η < 2/λ_max), and how many networks' own
2/λ_max(H) is below η.  At small width these fluctuate a lot (see :func:`train_ensemble`).

Public names: :func:`train_ensemble` (a model, data, η, steps → :class:`TrainedEnsemble`: outputs
per step and network, means, covariances, batch-means errors of any estimator, save/load),
:func:`train_networks` (one ensemble of explicit networks), :func:`train_step` (one step in place),
:func:`empirical_ntk`, :func:`stable_step`, :func:`default_chunk`.

Standard errors are batch means, as in the sampler: the networks are split into ``batches``
consecutive batches (:func:`~ntkdiagrams.sampling.sampler.batch_sizes`), an estimator is evaluated
per batch, and its error is std(batch values, ddof=1)/√batches.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, NumericsError
from ..files import atomic_output
from ..numerics.activations import Activation
from ..numerics.inputs import check_inputs
from .model import ModelSpec
from .networks import Ensemble, activation_derivatives
from .sampler import SEED_TAG, batch_sizes, check_counts, check_model, make_reporter

__all__ = ["TrainedEnsemble", "empirical_ntk", "stable_step", "train_ensemble", "train_networks",
           "train_step", "default_chunk", "DEFAULT_TOL", "DEFAULT_MAX_STEPS"]

#: relative convergence tolerance of the step "∞" (per step change of the training outputs)
DEFAULT_TOL = 1e-12
#: most steps taken for the step "∞"
DEFAULT_MAX_STEPS = 100_000
#: training errors growing by this factor over their initial size count as a divergence
_BLOWUP = 1e6


# ----------------------------------------------------------------------------- one chunk

def _functions(activation) -> list:
    """[σ, σ'] as numpy callables, from an Activation or a list of callables."""
    if isinstance(activation, Activation):
        return activation_derivatives(activation, 1)
    if isinstance(activation, (list, tuple)) and len(activation) >= 2 and all(map(callable, activation[:2])):
        return list(activation[:2])
    raise InputError("activation must be an Activation (ntkdiagrams.parse_activation) or a list [σ, σ'] "
                     f"of numpy callables; got {type(activation).__name__}")


def _restricted(ens: Ensemble, n_out: int, x: np.ndarray | None = None, copy: bool = True) -> Ensemble:
    """``ens`` whose last layer keeps output neurons 0..n_out-1 (``copy``: with copied parameters)."""
    out_width = ens.W[-1].shape[1]
    if not 1 <= n_out <= out_width:
        raise InputError(f"output width {n_out} must be between 1 and the ensemble's output width {out_width}")
    W = [w.copy() if copy else w for w in ens.W]
    b = [None if v is None else v.copy() if copy else v for v in ens.b]
    W[-1] = np.ascontiguousarray(W[-1][:, :n_out, :])
    if b[-1] is not None:
        b[-1] = np.ascontiguousarray(b[-1][:, :n_out])
    rates = list(ens.weight_rates) if ens.weight_rates is not None else \
        [ens.weight_rate(k) for k in range(ens.depth)]   # fan-ins do not change: same rates
    return replace(ens, W=W, b=b, x=ens.x if x is None else x, weight_rates=rates)


def _forward(ens: Ensemble, x: np.ndarray, fns: list, grad: bool):
    """Preactivations ``zs[k]`` (C, n_{k+1}, N) of layers 1..L on the inputs ``x`` (N, n0), the
    activations ``acts`` = [x, σ(z^(1)), …, σ(z^(L−1))] and, with ``grad``, σ'(z^(k)) of the
    hidden layers."""
    prev = x.T[None]
    zs, acts, ds = [], [prev], []
    L = ens.depth
    for k in range(L):
        zk = np.matmul(ens.W[k], prev)
        if ens.b[k] is not None:
            zk += ens.b[k][:, :, None]
        xi = ens.shortcut(k)
        if xi is not None:
            if k == 0:
                raise InputError("layer 1 acts on the data and has no shortcut")
            zk += xi * zs[k - 1][:, :zk.shape[1]]
        zs.append(zk)
        if k < L - 1:
            prev = fns[0](zk)
            acts.append(prev)
            if grad:
                ds.append(fns[1](zk))
    return zs, acts, ds


def train_step(ens: Ensemble, n_train: int, targets: np.ndarray, lr: float, activation) -> np.ndarray:
    """One full-batch gradient-descent step of every network of ``ens``, in place.

    ``targets``: (n_train, n_out) with n_out the ensemble's output width; the training inputs are
    ``ens.x[:n_train]``.  Returns the training outputs z^(L) (C, n_out, n_train) before the step.
    (module docstring: θ_μ ← θ_μ − η λ_μ ∂L/∂θ_μ, L = ½ Σ ε², backpropagation by hand)."""
    fns = _functions(activation)
    return _step(ens, ens.x[:n_train], np.asarray(targets, dtype=float).T[None], float(lr), fns)


def _step(ens: Ensemble, x: np.ndarray, yT: np.ndarray, lr: float, fns: list, bufs: list | None = None) -> np.ndarray:
    """One step in place (``bufs``: per layer a work array of W's shape, reused between steps)."""
    zs, acts, ds = _forward(ens, x, fns, True)
    out = zs[-1]
    delta = out - yT                      # ∂L/∂z^(L) = ε  (C, n_out, n_train)
    for k in range(ens.depth - 1, -1, -1):
        # W^(k+1)ᵀ δ with the pre-step W, then the update of layer k+1: η λ_W Σ_α δ_α σ_αᵀ
        if k > 0:
            back = np.matmul(np.swapaxes(ens.W[k], 1, 2), delta)
            back *= ds[k - 1]
            xi = ens.shortcut(k)
            if xi is not None:
                back[:, :delta.shape[1]] += xi * delta
        buf = bufs[k] if bufs is not None else None
        if buf is None or buf.shape != ens.W[k].shape:
            buf = np.empty(ens.W[k].shape)
            if bufs is not None:
                bufs[k] = buf
        np.matmul(delta * (lr * ens.weight_rate(k)), np.swapaxes(acts[k], 1, 2), out=buf)
        np.subtract(ens.W[k], buf, out=ens.W[k])
        if ens.b[k] is not None:
            ens.b[k] -= (lr * ens.bias_rate(k)) * delta.sum(2)
        if k > 0:
            delta = back
    return out


def empirical_ntk(ens: Ensemble, n_train: int, activation, n_out: int | None = None) -> np.ndarray:
    """Per-network NTK on the training inputs, H[c, a, b] with a = i·n_train + α (neuron major), of
    output neurons i < n_out (default: every output neuron of ``ens``):

        H_{ij;αβ} = Σ_k [ λ_b^(k) J^(k)_{iα}·J^(k)_{jβ} + λ_W^(k) (J^(k)_{iα}·J^(k)_{jβ}) (σ^(k−1)_α·σ^(k−1)_β) ]

    with J^(k)_{iα} = ∂z^(L)_{i;α}/∂z^(k)_{·;α} the backward Jacobian (docs/conventions.md §2)."""
    fns = _functions(activation)
    if n_out is not None:
        ens = _restricted(ens, n_out, copy=False)
    x = ens.x[:n_train]
    zs, acts, ds = _forward(ens, x, fns, True)
    C, m = ens.size, ens.W[-1].shape[1]
    A = m * n_train
    alpha = np.tile(np.arange(n_train), m)
    J = np.zeros((1, m, A))
    J[0, np.repeat(np.arange(m), n_train), np.arange(A)] = 1.0
    H = np.zeros((C, A, A))
    for k in range(ens.depth - 1, -1, -1):
        JJ = np.matmul(np.swapaxes(J, 1, 2), J)                       # J_a · J_b
        a = acts[k][:, :, alpha]
        H = H + ens.weight_rate(k) * JJ * np.matmul(np.swapaxes(a, 1, 2), a)
        if ens.b[k] is not None:
            H = H + ens.bias_rate(k) * JJ
        if k > 0:
            back = np.matmul(np.swapaxes(ens.W[k], 1, 2), J) * ds[k - 1][:, :, alpha]
            xi = ens.shortcut(k)
            if xi is not None:
                back[:, :J.shape[1]] += xi * J
            J = back
    return H


def stable_step(H: np.ndarray) -> float:
    """2/λ_max of a symmetric NTK matrix H (A, A): the largest step η of a stable z ← z − ηHε."""
    lam = float(np.linalg.eigvalsh(0.5 * (H + H.T))[-1])
    return 2.0 / lam if lam > 0 else math.inf


def _check_steps(steps) -> list:
    """Sorted distinct steps: non-negative integers and math.inf."""
    if isinstance(steps, (int, np.integer, float)) and not isinstance(steps, bool):
        steps = [steps]
    try:
        items = list(steps)
    except TypeError:
        raise InputError(f"steps must be an integer >= 0, math.inf, or a list of them; got {steps!r}") from None
    out = set()
    for s in items:
        if isinstance(s, bool):
            raise InputError(f"steps: {s!r} is not a number of steps")
        if isinstance(s, (float, np.floating)) and math.isinf(s) and s > 0:
            out.add(math.inf)
            continue
        if isinstance(s, (float, np.floating)) and float(s).is_integer():
            s = int(s)
        if not isinstance(s, (int, np.integer)) or s < 0:
            raise InputError(f"steps must be integers >= 0 or math.inf ('until converged'); got {s!r}")
        out.add(int(s))
    if not out:
        raise InputError("steps: no step requested")
    return sorted(out)


def train_networks(ens: Ensemble, n_train: int, targets, lr: float, steps, progress=None, *,
                   activation, tol: float = DEFAULT_TOL, max_steps: int = DEFAULT_MAX_STEPS,
                   unconverged: str = "raise", info: dict | None = None) -> dict:
    """Train a copy of the ensemble by full-batch gradient descent (module docstring).

    ``ens.x``: the n_train training inputs, then the test inputs; ``targets`` (n_train, n_out):
    n_out ≤ the ensemble's output width, and only output neurons 0..n_out-1 are kept (their rows of
    the last layer).  ``steps``: step counts (0 is the initialisation, always returned) and
    optionally ``math.inf`` (until converged, see the module docstring).  ``progress(t, total)``
    is called after every step.  Returns {step: z^(L) (C, n_out, N)} on all N inputs.  ``info``,
    when a dict, receives "converged_steps" (for ∞: the step (C,) at which each network converged
    and was recorded, -1: not converged, else None), "steps_done", "unconverged" (how many networks
    did not converge) and "max_error" (largest |ε| at the last step).  ``unconverged``: "raise" (a
    NumericsError when some network has not converged after ``max_steps``) or "keep" (keep their
    state after the last step, with a RuntimeWarning).  Networks that have converged are recorded
    and, once they are half of those still trained, no longer trained.  Raises NumericsError when the outputs blow up or ∞ is not reached in
    ``max_steps`` steps."""
    fns = _functions(activation)
    x = check_inputs(ens.x)
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or not 1 <= n_train <= len(x):
        raise InputError(f"n_train must be an integer between 1 and the number of inputs {len(x)}; got {n_train!r}")
    y = np.asarray(targets, dtype=float) if not isinstance(targets, str) else None
    if y is None or y.ndim != 2 or y.shape[0] != n_train:
        raise InputError(f"targets must be an (n_train, n_out) = ({n_train}, n_out) array; got "
                         f"{getattr(y, 'shape', targets)!r}")
    if not np.isfinite(y).all():
        raise InputError("targets contain NaN or inf")
    lr = _check_lr(lr)
    steps = _check_steps(steps)
    tol, max_steps = _check_tol(tol, max_steps)
    _check_unconverged(unconverged)
    work = _restricted(ens, y.shape[1], x)
    xtr = x[:n_train]
    yT = y.T[None]
    bufs: list = [None] * work.depth
    finite = [s for s in steps if s != math.inf]
    total = finite[-1] if finite else 0
    out: dict = {}
    if 0 not in steps:
        steps = [0] + steps
    t = 0
    prev = None
    err0 = None
    scale = None
    net_scale = None
    t_conv = None
    n_unconverged = 0
    for target in steps:
        if target == math.inf:
            start = t
            C = work.size
            conv_at = np.full(C, -1, dtype=np.int64)
            rec = np.empty((C, y.shape[1], len(x)))
            idx = np.arange(C)                   # the networks of `work`, by position in the chunk
            live = np.ones(C, dtype=bool)        # those of `work` not converged yet
            while True:
                z = _step(work, xtr, yT, lr, fns, bufs)          # z(t); the parameters move to t + 1
                err0, scale = _watch(z, yT, err0, scale, lr, t, ens, n_train, fns, y.shape[1])
                if net_scale is None:
                    net_scale = np.maximum(np.abs(z).max(axis=(1, 2)), float(np.abs(y).max()))
                t += 1
                if progress is not None:
                    progress(t, None)
                if prev is not None:
                    change = np.abs(z - prev).max(axis=(1, 2)) / net_scale[idx]
                    new = live & (change < tol)
                    if new.any():   # these networks moved by < tol·scale in their last step: record z(t)
                        rec[idx[new]] = _forward(work, x, fns, False)[0][-1][new]
                        conv_at[idx[new]] = t
                        live &= ~new
                        if not live.any():
                            break
                        if 2 * live.sum() <= len(live):   # train only the networks still moving
                            work = _subset(work, live)
                            bufs = [None] * work.depth
                            idx, z, change, live = idx[live], z[live], change[live], live[live]
                prev = z
                if t - start >= max_steps:
                    worst = float(change[live].max()) if prev is not None else math.inf
                    msg = (f"gradient descent did not converge in {max_steps} steps after step {start} "
                           f"(η = {lr:g}): {int(live.sum())} of {C} networks' training outputs still change by "
                           f"up to {worst:.3g} (relative) per step, tolerance {tol:g}")
                    if unconverged == "raise":
                        raise NumericsError(msg + "; raise max_steps or η, ask for a finite step, or keep "
                                            "these networks' last state with unconverged='keep'",
                                            reason="not converged")
                    rec[idx[live]] = _forward(work, x, fns, False)[0][-1][live]
                    n_unconverged = int(live.sum())
                    warnings.warn(msg + "; their state after the last step is kept (converged step -1)",
                                  RuntimeWarning, stacklevel=2)
                    break
            out[target] = rec
            t_conv = conv_at
            continue
        else:
            while t < target:
                z = _step(work, xtr, yT, lr, fns, bufs)
                err0, scale = _watch(z, yT, err0, scale, lr, t, ens, n_train, fns, y.shape[1])
                prev = z
                t += 1
                if progress is not None:
                    progress(t, total)
        zs, _, _ = _forward(work, x, fns, False)
        out[target] = zs[-1]
        if not np.isfinite(zs[-1]).all():
            _diverged(lr, t, ens, n_train, fns, y.shape[1], math.nan, err0)
    if info is not None:
        info.update({"converged_steps": t_conv, "steps_done": t, "unconverged": n_unconverged,
                     "max_error": float(np.abs(out[steps[-1]][:, :, :n_train] - yT).max())})
    return out


def _watch(z, yT, err0, scale, lr, t, ens, n_train, fns, n_out):
    """Divergence check of one step's training outputs; returns (initial error, output scale)."""
    err = float(np.abs(z - yT).max()) if np.isfinite(z).all() else math.inf
    if err0 is None:
        err0 = err
        scale = max(float(np.abs(z).max()), float(np.abs(yT).max()), 1e-300) if math.isfinite(err) else 1.0
    if not math.isfinite(err) or err > _BLOWUP * max(err0, scale):
        _diverged(lr, t, ens, n_train, fns, n_out, err, err0)
    return err0, scale


def _diverged(lr, t, ens, n_train, fns, n_out, err, err0):
    H = empirical_ntk(ens, n_train, fns, n_out)
    eta = stable_step(H.mean(0))
    per = [stable_step(h) for h in H]
    bad = sum(lr >= p for p in per)
    raise NumericsError(
        f"gradient descent diverges at step {t} with η = {lr:g}: the largest training error grew from "
        f"{err0:.3g} to {err:.3g}; the largest stable step of the empirical NTK on the training inputs, "
        f"averaged over the networks, is 2/λ_max = {eta:.6g} (η must be below it; {bad} of {len(per)} "
        f"networks have 2/λ_max(H) <= η, smallest {min(per):.6g})", reason="diverges")


def _subset(ens: Ensemble, keep: np.ndarray) -> Ensemble:
    """The networks ``keep`` (a boolean mask) of ``ens``, parameters copied."""
    return replace(ens, W=[w[keep] for w in ens.W], b=[None if v is None else v[keep] for v in ens.b])


def _check_unconverged(unconverged) -> None:
    if unconverged not in ("raise", "keep"):
        raise InputError(f"unconverged must be 'raise' or 'keep'; got {unconverged!r}")


def _check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(lr)) or lr <= 0:
        raise InputError(f"the learning rate η must be a finite number > 0; got {lr!r}")
    return float(lr)


def _check_tol(tol, max_steps):
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)) \
            or not (0 < float(tol) < 1):
        raise InputError(f"tol must be a number in (0, 1); got {tol!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise InputError(f"max_steps must be an integer >= 1; got {max_steps!r}")
    return float(tol), int(max_steps)


# ----------------------------------------------------------------------------- ensembles

@dataclass
class TrainedEnsemble:
    """Outputs of S trained networks: ``outputs[step]`` (S, n_out, N), inputs ordered training
    first (``n_train``), then test; step 0 is the initialisation, ``math.inf`` the converged state.

    Flattened outputs (for :meth:`cov`) are neuron major: index i·N + α."""

    outputs: dict
    n_train: int
    batches: int
    meta: dict = field(default_factory=dict)
    converged_steps: np.ndarray | None = None   # (S,): the step each network converged at (for ∞)
    ntk_mean: np.ndarray | None = None          # (n_out·N, n_out·N): mean empirical NTK at initialisation
    ntk: np.ndarray | None = None               # (S, n_out·N, n_out·N): per network (keep_ntk=True)

    @property
    def steps(self) -> list:
        return sorted(self.outputs)

    @property
    def initial(self) -> np.ndarray:
        return self.outputs[0]

    @property
    def samples(self) -> int:
        return int(self.outputs[0].shape[0])

    def _get(self, step) -> np.ndarray:
        if step not in self.outputs:
            raise InputError(f"step {step!r} was not recorded; steps: {self.steps}")
        return self.outputs[step]

    def train(self, step) -> np.ndarray:
        """Outputs on the training inputs (S, n_out, n_train)."""
        return self._get(step)[:, :, :self.n_train]

    def test(self, step) -> np.ndarray:
        """Outputs on the test inputs (S, n_out, N − n_train)."""
        return self._get(step)[:, :, self.n_train:]

    def mean(self, step) -> np.ndarray:
        """E[z_{i;α}(step)] over the networks, (n_out, N)."""
        return self._get(step).mean(0)

    def cov(self, step) -> np.ndarray:
        """Covariance over the networks of the flattened outputs (n_out·N, n_out·N), ddof = 1."""
        z = self._get(step)
        return np.cov(z.reshape(z.shape[0], -1), rowvar=False, ddof=1).reshape(z.shape[1] * z.shape[2], -1)

    def batch_estimate(self, f: Callable[[dict], np.ndarray]):
        """(f(all networks), batch-means standard error of f): ``f`` maps {step: (s, n_out, N)} of a
        group of s networks to an estimate (an array); it is applied to all networks and to each of
        the ``batches`` consecutive batches, and the error is std(batch values, ddof=1)/√batches."""
        value = np.asarray(f(self.outputs), dtype=float)
        vals = []
        start = 0
        for size in batch_sizes(self.samples, self.batches):
            part = {k: v[start:start + size] for k, v in self.outputs.items()}
            vals.append(np.asarray(f(part), dtype=float))
            start += size
        vals = np.stack(vals)
        return value, vals.std(0, ddof=1) / np.sqrt(len(vals))

    def standard_error_of(self, f: Callable[[dict], np.ndarray]) -> np.ndarray:
        """Batch-means standard error of the estimator ``f`` (see :meth:`batch_estimate`); e.g. with a
        control variate, ``f = lambda o: (o[T] - np.einsum("ab,cb->ca", M, o[0].reshape(len(o[0]), -1))
        .reshape(o[T].shape)).mean(0)``."""
        return self.batch_estimate(f)[1]

    def mean_stderr(self, step) -> np.ndarray:
        """Standard error of :meth:`mean` (batch means)."""
        return self.standard_error_of(lambda o: o[step].mean(0))

    def cov_stderr(self, step) -> np.ndarray:
        """Standard error of :meth:`cov` (batch means of the per-batch covariances)."""
        def cov(o):
            z = o[step]
            return np.cov(z.reshape(z.shape[0], -1), rowvar=False, ddof=1).reshape(z.shape[1] * z.shape[2], -1)
        self._get(step)
        return self.standard_error_of(cov)

    def save(self, path: str) -> None:
        """Write to ``path`` (.npz: ``meta`` as JSON text, ``outputs/<step>`` with step ``inf`` for
        ∞, ``converged_steps``, ``ntk_mean``, ``ntk`` when there are); written to a temporary file
        and renamed."""
        if os.path.splitext(path)[1].lower() != ".npz":
            raise InputError(f"output file {path!r} must end in .npz")
        arrays = {"meta": np.array(json.dumps(self.meta)), "n_train": np.array(self.n_train),
                  "batches": np.array(self.batches)}
        for k, v in self.outputs.items():
            arrays[f"outputs/{'inf' if k == math.inf else int(k)}"] = v
        for name in ("converged_steps", "ntk_mean", "ntk"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        with atomic_output(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str) -> "TrainedEnsemble":
        """Read a file written by :meth:`save`; InputError naming the file when it is not one."""
        try:
            with np.load(path, allow_pickle=False) as f:
                names = set(getattr(f, "files", ()))
                if not {"meta", "n_train", "batches"} <= names:
                    raise InputError(f"{path}: not a trained ensemble (no meta, n_train, batches)")
                outputs = {(math.inf if k.split("/", 1)[1] == "inf" else int(k.split("/", 1)[1])): f[k]
                           for k in names if k.startswith("outputs/")}
                return cls(outputs=outputs, n_train=int(f["n_train"]), batches=int(f["batches"]),
                           meta=json.loads(str(f["meta"])),
                           **{k: f[k] for k in ("converged_steps", "ntk_mean", "ntk") if k in names})
        except InputError:
            raise
        except Exception as exc:  # OSError, ValueError, zipfile.BadZipFile, …
            raise InputError(f"{path}: cannot read a trained ensemble ({type(exc).__name__}: {exc})") from None


def default_chunk(widths: Sequence[int]) -> int:
    """Networks trained at once when no chunk is given: their weights take about 4 MiB, so that a
    step's passes over them stay in the processor's caches (each step reads every weight twice
    and writes it once, against O(N) arithmetic per weight); measured on a 2-core AMD EPYC
    (scripts/bench_training.py) this is 1.5-2× faster than chunks of hundreds of MB at n = 64-128."""
    P = sum(widths[k + 1] * (widths[k] + 1) for k in range(len(widths) - 1))
    return int(max(1, min(4096, 4 * 2 ** 20 // (8 * P))))


def train_ensemble(model: ModelSpec, x_train, y_train, x_test=None, *, lr: float, steps, samples: int,
                   seed: int = 0, chunk: int | None = None, out_width: int = 1, batches: int = 30,
                   tol: float = DEFAULT_TOL, max_steps: int = DEFAULT_MAX_STEPS, unconverged: str = "raise",
                   keep_ntk: bool = False, progress=None) -> TrainedEnsemble:
    """Train ``samples`` networks of ``model`` (its rule file, hyper-parameters, depth and width; its
    ``inputs`` are replaced by x_train then x_test) by full-batch gradient descent with step η = ``lr``
    on (x_train, y_train), recording the outputs on all inputs at every step of ``steps`` (and 0).

    ``y_train``: (n_train, out_width), or (n_train,) for out_width 1.  ``x_test``: (N_test, n0) or
    None.  ``steps``: integers >= 0 and ``math.inf`` (until converged).  ``chunk``: networks trained
    at once (default: :func:`default_chunk`, weights of about 4 MiB); the networks and the results do not depend on
    it.  ``progress``: True (a line on stderr) or ``progress(done, total, elapsed)`` per chunk.
    ``unconverged``: see :func:`train_networks` (meta["unconverged_networks"] counts them).
    ``keep_ntk``: keep every network's empirical NTK at initialisation on all inputs
    (``TrainedEnsemble.ntk``, (S, n_out·N, n_out·N), neuron major; 8 (n_out N)² bytes per network);
    its mean over the networks is always kept (``TrainedEnsemble.ntk_mean``).

    Returns a :class:`TrainedEnsemble` with meta: the model's and program's meta, lr, steps, samples,
    seed, batches, out_width, n_train, tol, max_steps, converged_step (the largest of the networks'
    ``converged_steps``),
    stable_lr (2/λ_max of the ensemble-mean empirical NTK on the training inputs at initialisation),
    stable_lr_min (the smallest per-network 2/λ_max), unstable_networks (how many networks have
    2/λ_max(H) <= η at initialisation: a RuntimeWarning says so), elapsed_s, package_version.

    Note: at small width the per-network λ_max fluctuates: for depth 3–4 and n = 16–32 some 10–35 %
    of the networks have 2/λ_max(H) below 0.8–0.9 × stable_lr, so an η that close to the
    ensemble's stable step trains some networks unstably."""
    if not isinstance(model, ModelSpec):
        raise InputError(f"model must be a ModelSpec; got {type(model).__name__}")
    xtr = check_inputs(x_train)
    n_train = xtr.shape[0]
    if x_test is None:
        xte = np.zeros((0, xtr.shape[1]))
    else:
        xte = np.asarray(x_test, dtype=float) if not isinstance(x_test, str) else None
        if xte is None or xte.ndim != 2 or (xte.shape[0] and xte.shape[1] != xtr.shape[1]):
            raise InputError(f"x_test must be an (N_test, n0) array with n0 = {xtr.shape[1]} like x_train; "
                             f"got shape {getattr(xte, 'shape', None)}")
        if xte.shape[0]:
            xte = check_inputs(xte)
        else:
            xte = np.zeros((0, xtr.shape[1]))
    if out_width not in (1, 2) or isinstance(out_width, bool):
        raise InputError(f"out_width must be 1 or 2 (the sampler's output neurons 0 and 1); got {out_width!r}")
    y = np.asarray(y_train, dtype=float) if not isinstance(y_train, str) else np.zeros((0,))
    if y.ndim == 1 and out_width == 1:
        y = y[:, None]
    if y.shape != (n_train, out_width):
        raise InputError(f"y_train must have shape (n_train, out_width) = ({n_train}, {out_width})"
                         f"{' or (n_train,)' if out_width == 1 else ''}; got {y.shape}")
    if not np.isfinite(y).all():
        raise InputError("y_train contains NaN or inf")
    lr = _check_lr(lr)
    steps = _check_steps(list(_check_steps(steps)) + [0])   # step 0 (the initialisation) always
    tol, max_steps = _check_tol(tol, max_steps)
    _check_unconverged(unconverged)
    check_counts(samples, batches, chunk)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer; got {seed!r}")
    x = np.concatenate([xtr, xte])
    model = replace(model, inputs=x)
    x, program = check_model(model)
    fns = _functions(model.activation)
    if chunk is None:
        chunk = default_chunk(program.widths)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SEED_TAG]))
    reporter = make_reporter(progress)
    t0 = time.perf_counter()
    parts: dict = {}
    H_sum = 0.0
    min_stable = math.inf
    unstable = 0
    n_unconverged = 0
    N = x.shape[0]
    train_idx = [i * N + a for i in range(out_width) for a in range(n_train)]
    ntks: list = []
    conv: list = []
    done = 0
    try:
        while done < samples:
            c = min(int(chunk), int(samples) - done)
            ens = program.draw(rng, c, x)
            H_all = empirical_ntk(ens, N, fns, out_width)          # on every input
            H_sum = H_sum + H_all.sum(0)
            if keep_ntk:
                ntks.append(H_all)
            H = H_all[:, train_idx][:, :, train_idx]
            per = [stable_step(h) for h in H]
            min_stable = min(min_stable, min(per))
            unstable += sum(lr >= p for p in per)
            del H, H_all
            info: dict = {}
            res = train_networks(ens, n_train, y, lr, steps, activation=fns, tol=tol, max_steps=max_steps,
                                 unconverged=unconverged, info=info)
            n_unconverged += info["unconverged"]
            for k, v in res.items():
                parts.setdefault(k, []).append(v)
            if info["converged_steps"] is not None:
                conv.append(info["converged_steps"])
            done += c
            del ens, res
            if reporter:
                reporter(done, int(samples), time.perf_counter() - t0)
    finally:
        if reporter:
            reporter(None, int(samples), time.perf_counter() - t0)
    ntk_mean = H_sum / samples
    stable = stable_step(ntk_mean[np.ix_(train_idx, train_idx)])
    if unstable:
        warnings.warn(f"η = {lr:g} is at or above the largest stable step 2/λ_max of {unstable} of {samples} "
                      f"networks' empirical NTK at initialisation (smallest {min_stable:.6g}; of the ensemble-mean "
                      f"NTK {stable:.6g})", RuntimeWarning, stacklevel=2)
    meta = dict(model.meta())
    meta.update(program.meta())
    meta.update({"method": "gradient-descent", "lr": lr, "steps": [s if s != math.inf else "inf" for s in steps],
                 "samples": int(samples), "seed": int(seed), "batches": int(batches), "chunk": int(chunk),
                 "out_width": int(out_width), "n_train": int(n_train), "n_test": int(xte.shape[0]),
                 "targets": y.tolist(), "tol": tol, "max_steps": max_steps, "converged_step": int(max(c.max() for c in conv)) if conv else None,
                 "stable_lr": stable, "stable_lr_min": min_stable, "unstable_networks": int(unstable),
                 "unconverged_networks": int(n_unconverged),
                 "elapsed_s": round(time.perf_counter() - t0, 3), "package_version": _package_version()})
    outputs = {k: np.concatenate(v) for k, v in parts.items()}
    return TrainedEnsemble(outputs=outputs, n_train=int(n_train), batches=int(batches), meta=meta,
                           converged_steps=np.concatenate(conv) if conv else None, ntk_mean=ntk_mean,
                           ntk=np.concatenate(ntks) if keep_ntk else None)


def _package_version() -> str:
    try:
        from .. import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"
