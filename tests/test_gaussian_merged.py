"""Three-variable expectations of merged slots, E[σ(z_a) σ(z_b)² σ(z_c)], on the rank-3 kernel of a
first layer (16 inputs in three dimensions, C_W = 2: variances 0.9 … 10).

Until 2026-12-02 the fast path kept the slots' order of the variables, so the tuple (a, b, b, c) put
the merged block σ(z_b)² on the last outer level and was off by up to 5.2e-6 of the scale
Π_s ⟨f_s(z_s)²⟩^{1/2} (tanh, the tuple (3, 10, 10, 13) of these inputs at |x|²/n0 = 1; swish 1.1e-6,
erf 1.2e-7), while the same expectation written (b, b, a, c) was within 2e-9.  The largest blocks now
take the outer levels, whatever the slots' order: both orders give the same number, within 1e-8 of
the scale of the cone method at degree 40 (which moves ≤ 1e-13 from degree 32 on these tuples).
"""
from __future__ import annotations

import numpy as np
import pytest

from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.numerics.gaussian import Quadrature
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors, tensor_values
from ntkdiagrams.settings import Settings

from gaussian_support import first_layer_kernel, scale

TOL = 1e-8


@pytest.mark.parametrize("activation,norm,b,a,c", [("tanh", 1.0, 10, 3, 13), ("tanh", 3.0, 5, 14, 15),
                                                   ("swish", 3.0, 10, 3, 13)])
def test_merged_block_any_slot_order(activation, norm, b, a, c):
    K = first_layer_kernel(norm)
    facs = prepare_factors([parse_activation(activation).derivative(0)] * 4)
    tuples = np.array([[a, b, b, c], [b, b, a, c], [a, c, b, b], [b, a, c, b]])
    C = K[tuples[:, :, None], tuples[:, None, :]]
    with Quadrature(Settings(threads=1)) as quad:
        got = tensor_values(facs, K, tuples, None, "auto", quad)
        ref = tensor_values(facs, K, tuples[:1], 40, "exact", quad)[0]
    s = scale(facs, C)
    assert np.max(np.abs(got - ref) / s) <= TOL, (got, ref)
    assert np.ptp(got) <= 1e-12 * s[0]
