"""The order counting of docs/training.md §3 on sampled networks: the dNTK's two-point function
E[dH dH] is O(1/n²) (so no dNTK two-point statistic enters the O(1/n) training dynamics), while
its correlation with the outputs E[dH z] is O(1/n) (P, Q)."""
import numpy as np

from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.sampling.networks import activation_derivatives, draw_ensemble, forward, layer_objects


def _moments(n, count, seed):
    act = parse_activation("tanh")
    x = np.array([[1.0, 0.3, -0.5], [0.2, -1.1, 0.7]])
    ens = draw_ensemble(np.random.default_rng(seed), count, [3, n, n, 2], x, 0.0, 1.5, 1.0, 1.0)
    ob = layer_objects(ens, forward(ens, activation_derivatives(act, 2)), 3, dH=True)
    d2 = ob["dH"][:, 0, 0, 0, 0, 1, 1] ** 2
    return n * n * d2.mean(), n * n * d2.std() / np.sqrt(count)


def test_dntk_two_point_function_is_order_one_over_n_squared():
    (a, ea), (b, eb) = _moments(16, 3000, 1), _moments(64, 1500, 2)
    # n² E[dH²] is the same at n = 16 and 64 (measured: 56.7 ± 2.7 and 52.8 ± 1.6 with more networks);
    # were E[dH²] O(1/n), the ratio would be 4
    ratio = b / a
    assert abs(ratio - 1) < 4 * ratio * np.hypot(ea / a, eb / b) + 0.05
    assert ratio < 2
