"""Trained ensembles against the O(1/n) training prediction, with a control variate.

Kernel gradient descent maps each network's own initial outputs to z⁰(T) = m̄_T + E_T z(0)
(``StepMoments.mean`` and ``.kernel_map``).  A network of width n differs from that by O(n^{-1/2}),
so the estimators

    Δmean(T) = ⟨z(T) − E_T z(0)⟩ − m̄_T                      → mean_correction / n
    Δcov(T)  = Ĉov z(T) − E_T Ĉov z(0) E_Tᵀ                  → (cov_correction − E_T 𝒢 E_Tᵀ) / n

have standard errors O(n^{-1/2}/√S) instead of O(1/√S): n·Δ is measurable at n = 128 with a few
thousand networks.  The initial-ensemble part E_T 𝒢 E_Tᵀ/n of the covariance (the 1/n correction
of K, carried through the kernel map) is not in Δcov: it is the G1 of the first-order tables
(docs/validation/kgv.md).  Errors are batch means over the ensemble's batches.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["TrainingComparison", "compare_training"]


@dataclass(frozen=True)
class TrainingComparison:
    """n·Δmean, n·Δcov (flattened outputs, neuron-major) with their standard errors, and the
    predicted coefficients they estimate."""

    step: float
    width: int
    mean: np.ndarray
    mean_error: np.ndarray
    mean_predicted: np.ndarray
    cov: np.ndarray
    cov_error: np.ndarray
    cov_predicted: np.ndarray


def compare_training(prediction, ensemble, step, width: int) -> TrainingComparison:
    """The control-variate comparison at ``step`` of a :class:`~ntkdiagrams.training.prediction.TrainingPrediction`
    with a :class:`~ntkdiagrams.sampling.training.TrainedEnsemble` of networks of hidden width
    ``width`` trained with the same data, step η and number of outputs."""
    mom = prediction.at(step)
    E, m0 = mom.kernel_map, mom.mean
    if ensemble.outputs[0].shape[1] * ensemble.outputs[0].shape[2] != len(m0):
        raise InputError(f"the ensemble has {ensemble.outputs[0].shape[1]} output(s) on {ensemble.outputs[0].shape[2]} "
                         f"inputs; the prediction {prediction.meta['n_out']} on "
                         f"{prediction.meta['n_train'] + prediction.meta['n_test']}")
    M = len(m0)

    def estimate(o):
        z0 = o[0].reshape(len(o[0]), -1)
        zT = o[step].reshape(len(o[step]), -1)
        mean = (zT - z0 @ E.T).mean(0) - m0
        cov = np.cov(zT, rowvar=False, ddof=1) - E @ np.cov(z0, rowvar=False, ddof=1) @ E.T
        return np.concatenate([mean, cov.ravel()])

    value, error = ensemble.batch_estimate(estimate)
    n = float(width)
    n_out = prediction.meta["n_out"]
    G1 = np.kron(np.eye(n_out), np.asarray(prediction.output_layer["G1"], dtype=float))
    return TrainingComparison(step=step, width=int(width), mean=n * value[:M], mean_error=n * error[:M],
                              mean_predicted=mom.mean_correction.copy(), cov=n * value[M:].reshape(M, M),
                              cov_error=n * error[M:].reshape(M, M),
                              cov_predicted=mom.cov_correction - E @ G1 @ E.T)
