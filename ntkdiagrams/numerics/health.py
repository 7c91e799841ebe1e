"""Expansion health: how large the 1/n corrections are at a given width.

The recursions are the first order of an expansion in 1/n (docs/conventions.md §4), in practice
in ℓ/n: each statistic X of order 1/n is compared with the product of leading (infinite-width)
two-point entries that has its dimensions, and the ratio

    r_X = max over components |X_{a1…ak}| / (n · N_X[a1…ak])

is reported per layer.  The normalisation N_X multiplies one scale per slot s of X, on the slot's
input a: a field differentiated d times by the parameters (z: d = 0; the NTK H: d = 1 on both
slots; dH: d = 2, 1, 1; ddIH: 3, 1, 1, 1; ddIIH: 2, 2, 1, 1; docs/conventions.md §2) scales as

    scale_d(a) = Θ_aa^{d/2} · K_aa^{(1−d)/2}      (z ~ √K, ∂z ~ √Θ, ∂²z ~ Θ/√K, ∂³z ~ Θ^{3/2}/K),

with K = K^{(ℓ)} and Θ = Θ^{(ℓ)} of the same layer.  Written out (slots in the order of the
tensor's arguments, docs/conventions.md §3):

=========  ============================================  =========================================
 X          N_X[a b c d]                                  on one input
=========  ============================================  =========================================
 G1         √(K_aa K_bb)                                  |G1|/(n K)
 V          √(K_aa K_bb K_cc K_dd)                        |V|/(n K²)
 Theta1     √(Θ_aa Θ_bb)                                  |Θ1|/(n Θ)
 A, B       √(Θ_aa Θ_bb Θ_cc Θ_dd)                        |A|/(n Θ²), |B|/(n Θ²)
 D          √(Θ_aa Θ_bb K_cc K_dd)                        |D|/(n Θ K)
 F          √(Θ_aa K_bb Θ_cc K_dd)   (F(a1,a3,a2,a4))     |F|/(n Θ K)
 P, Q       Θ_aa K_aa^{-1/2} √(Θ_bb Θ_cc K_dd)            |P|/(n Θ²), |Q|/(n Θ²)
 R          Θ_aa^{3/2} K_aa^{-1} √(Θ_bb Θ_cc Θ_dd)        |R| K/(n Θ³)
 S          Θ_aa K_aa^{-1/2} Θ_bb K_bb^{-1/2} √(Θ_cc Θ_dd)   |S| K/(n Θ³)
 T          d = (2, 1, 1, 2)  (T(a1,a3,a4,a2))            |T| K/(n Θ³)
 U          d = (2, 1, 2, 1)  (U(a1,a4,a2,a3))            |U| K/(n Θ³)
=========  ============================================  =========================================

(:data:`SLOT_DERIVATIVES` holds the d of every slot.)  Dividing slot by slot avoids underflow
of the products (K ~ 1e-232 happens).  Components whose normalisation vanishes (K_aa = 0: the
preactivation of that input is 0 at every width) or is not finite are left out; ratios beyond
the float range are reported as the largest float.  Statistics of other names (request
coefficients, other rule files) or without K (and Θ where needed) in the layer get no ratio.

Threshold.  The expansion is one in r (ℓ/n in practice): K + G1/n has the relative correction
r_G1, and the neglected O(1/n²) terms are of the order r² of the leading ones; V, A, … are the
leading terms of 1/n-suppressed correlators, whose own next corrections mix in the other
statistics (V·Θ²/K² in A, …), so the error of any first-order statistic is of the order of the
square of the largest ratio.  Above :data:`THRESHOLD` = 0.5 (r² = 25 %) the expansion is flagged
as unreliable.  Measured: ReLU at criticality (C_b = 0, C_W = 2), depth 10, n = 64, five inputs
has r_V = 45/64 = 0.70 (V/K² = 5(ℓ−1) exactly), r_D = 0.32, r_A = 0.19 at layer 10, r² = 0.49,
where ``compare`` finds A 30–45 % below sampled networks (issue 16); the README's tanh examples
(depth 3–5, n = 32) stay below 0.13.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError

__all__ = ["LABELS", "SLOT_DERIVATIVES", "THRESHOLD", "ExpansionWarning", "describe", "expansion_health",
           "layer_health", "summary"]

#: ratio above which the first-order expansion is flagged (see the module docstring)
THRESHOLD = 0.5

#: parameter derivatives d of the field in each slot of the built-in tensors of order 1/n
SLOT_DERIVATIVES = {
    "G1": (0, 0), "V": (0, 0, 0, 0), "Theta1": (1, 1),
    "A": (1, 1, 1, 1), "B": (1, 1, 1, 1), "D": (1, 1, 0, 0), "F": (1, 0, 1, 0),
    "P": (2, 1, 1, 0), "Q": (2, 1, 1, 0),
    "R": (3, 1, 1, 1), "S": (2, 2, 1, 1), "T": (2, 1, 1, 2), "U": (2, 1, 2, 1),
}

#: the ratio of each statistic as printed, on one input
LABELS = {"G1": "|G1|/(n K)", "V": "|V|/(n K²)", "Theta1": "|Θ1|/(n Θ)", "A": "|A|/(n Θ²)",
          "B": "|B|/(n Θ²)", "D": "|D|/(n Θ K)", "F": "|F|/(n Θ K)", "P": "|P|/(n Θ²)",
          "Q": "|Q|/(n Θ²)", "R": "|R| K/(n Θ³)", "S": "|S| K/(n Θ³)", "T": "|T| K/(n Θ³)",
          "U": "|U| K/(n Θ³)"}

#: the leading tensors the normalisations are built from
KERNEL, NTK = "K", "Theta"

_BIG = float(np.finfo(float).max)


class ExpansionWarning(UserWarning):
    """The 1/n expansion is used beyond its range: some r_X exceeds :data:`THRESHOLD`."""


def _ratio(X: np.ndarray, slots: Sequence[int], K: np.ndarray, Theta: np.ndarray | None, width: int):
    """(max ratio, index of the component) of one tensor, or None when nothing is comparable."""
    Y = np.abs(np.asarray(X, dtype=float))
    kd = np.diag(K).astype(float)
    td = np.diag(Theta).astype(float) if Theta is not None else None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for axis, d in enumerate(slots):
            scale = kd ** 0.5 if d == 0 else td ** (d / 2) * kd ** ((1 - d) / 2)
            shape = [1] * Y.ndim
            shape[axis] = -1
            Y = Y / scale.reshape(shape)
        Y = Y / width
    ok = np.isfinite(Y)
    if not ok.any():
        return None
    Y = np.where(ok, Y, -1.0)
    flat = int(np.argmax(Y))
    return min(float(Y.flat[flat]), _BIG), tuple(int(i) for i in np.unravel_index(flat, Y.shape))


def layer_health(layer: dict, width: int) -> dict:
    """{name: (ratio, inputs)} for the tensors of one layer dict that have a normalisation."""
    out = {}
    K = layer.get(KERNEL)
    if K is None:
        return out
    Theta = layer.get(NTK)
    for name, slots in SLOT_DERIVATIVES.items():
        X = layer.get(name)
        if X is None or (Theta is None and any(slots)) or np.ndim(X) != len(slots):
            continue
        r = _ratio(X, slots, K, Theta, width)
        if r is not None:
            out[name] = r
    return out


def summary(per_layer: Sequence[tuple[int, dict]], width: int, threshold: float = THRESHOLD) -> dict:
    """The health dict of :func:`expansion_health` from [(layer, :func:`layer_health`), …]."""
    worst = None
    rows = []
    for ell, ratios in per_layer:
        rows.append({"layer": int(ell), **{k: r for k, (r, _i) in ratios.items()}})
        for name, (r, idx) in ratios.items():
            if worst is None or r > worst["ratio"]:
                worst = {"statistic": name, "layer": int(ell), "ratio": r, "inputs": list(idx)}
    return {"width": int(width), "threshold": float(threshold),
            "healthy": worst is None or worst["ratio"] <= threshold,
            "worst": worst, "layers": rows}


def expansion_health(layers: Sequence[dict], width: int, threshold: float = THRESHOLD) -> dict:
    """The size of the 1/n corrections at width n, per layer and statistic.

    ``layers``: :func:`ntkdiagrams.numerics.evaluate.evaluate`'s list of layer dicts (K, and Θ for
    the NTK statistics, must be among them).  Returns (plain JSON types)::

        {"width": n, "threshold": 0.5, "healthy": bool,
         "worst": {"statistic": "A", "layer": 10, "ratio": 0.66, "inputs": [a, b, c, d]} | None,
         "layers": [{"layer": 1, "G1": r, "V": r, …}, …]}

    with r the ratios of the module docstring; ``healthy`` is False when some r > ``threshold``.

    >>> import numpy as np
    >>> h = expansion_health([{"layer": 2, "K": np.eye(1), "G1": np.full((1, 1), 8.0)}], 32)
    >>> h["layers"], h["healthy"]
    ([{'layer': 2, 'G1': 0.25}], True)
    """
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise InputError(f"width must be an integer >= 1; got {width!r}")
    return summary([(layer["layer"], layer_health(layer, width)) for layer in layers], width, threshold)


def describe(health: dict) -> str:
    """One line naming the worst statistic, its layer and ratio against the threshold."""
    w = health["worst"]
    if w is None:
        return f"no 1/n statistic to check at width {health['width']}"
    return (f"the 1/n expansion is {'within' if health['healthy'] else 'beyond'} its range at width "
            f"n = {health['width']}: {w['statistic']} at layer {w['layer']} has "
            f"{LABELS.get(w['statistic'], w['statistic'])} = {w['ratio']:.3g} at inputs "
            f"{tuple(w['inputs'])} (threshold {health['threshold']:g}, ntkdiagrams.numerics.health)")
