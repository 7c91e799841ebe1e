"""A network and its data set, as the sampler takes them (the model of docs/conventions.md §1)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..numerics.activations import Activation


@dataclass(frozen=True)
class ModelSpec:
    """The model of docs/conventions.md §1 with its data set."""

    activation: Activation
    depth: int
    width: int
    cb: float
    cw: float
    lb: float
    lw: float
    inputs: np.ndarray  # shape (N, n0)

    def meta(self) -> dict:
        return {"activation": self.activation.name, "depth": self.depth, "width": self.width,
                "cb": self.cb, "cw": self.cw, "lb": self.lb, "lw": self.lw,
                "n_inputs": int(self.inputs.shape[0]), "n0": int(self.inputs.shape[1]),
                "inputs": self.inputs.tolist()}
