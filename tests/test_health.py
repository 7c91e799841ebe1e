"""Expansion health: the size of the 1/n corrections at the requested width (issue 16)."""
import json
import warnings

import numpy as np
import pytest

from ntkdiagrams.cli import main
from ntkdiagrams.errors import InputError
from ntkdiagrams.numerics.evaluate import evaluate
from ntkdiagrams.numerics.health import (SLOT_DERIVATIVES, THRESHOLD, ExpansionWarning, describe,
                                         expansion_health)

RNG = np.random.default_rng(11)


def _random_layer(N=3):
    K = RNG.standard_normal((N, 5))
    K = K @ K.T / 5 + 0.1 * np.eye(N)
    Th = RNG.standard_normal((N, 5))
    Th = Th @ Th.T / 5 + 0.2 * np.eye(N)
    layer = {"layer": 4, "K": K, "Theta": Th}
    for name, slots in SLOT_DERIVATIVES.items():
        layer[name] = RNG.standard_normal((N,) * len(slots))
    return layer


def test_normalisations_are_the_documented_formulas():
    """r_X = max |X| / (n · Π_s Θ_aa^{d/2} K_aa^{(1−d)/2}), written out for D, F, P, R, T."""
    layer = _random_layer()
    n = 16
    k, t = np.diag(layer["K"]), np.diag(layer["Theta"])
    a = np.ix_(*[range(3)] * 4)
    expected = {
        "G1": np.abs(layer["G1"]) / np.sqrt(np.outer(k, k)),
        "V": np.abs(layer["V"]) / np.sqrt(k[a[0]] * k[a[1]] * k[a[2]] * k[a[3]]),
        "D": np.abs(layer["D"]) / np.sqrt(t[a[0]] * t[a[1]] * k[a[2]] * k[a[3]]),
        "F": np.abs(layer["F"]) / np.sqrt(t[a[0]] * k[a[1]] * t[a[2]] * k[a[3]]),
        "P": np.abs(layer["P"]) / (t[a[0]] / np.sqrt(k[a[0]]) * np.sqrt(t[a[1]] * t[a[2]] * k[a[3]])),
        "R": np.abs(layer["R"]) / (t[a[0]] ** 1.5 / k[a[0]] * np.sqrt(t[a[1]] * t[a[2]] * t[a[3]])),
        "T": np.abs(layer["T"]) / (t[a[0]] / np.sqrt(k[a[0]]) * np.sqrt(t[a[1]] * t[a[2]])
                                   * t[a[3]] / np.sqrt(k[a[3]])),
    }
    row = expansion_health([layer], n)["layers"][0]
    assert row["layer"] == 4 and set(row) == {"layer"} | set(SLOT_DERIVATIVES)
    for name, ratio in expected.items():
        np.testing.assert_allclose(row[name], ratio.max() / n, rtol=1e-12, err_msg=name)


def test_one_input_reduces_to_the_textbook_ratios():
    K, Th, n = 0.7, 2.3, 8
    layer = {"layer": 2, "K": np.full((1, 1), K), "Theta": np.full((1, 1), Th),
             **{name: np.full((1,) * len(s), -1.5) for name, s in SLOT_DERIVATIVES.items()}}
    row = expansion_health([layer], n)["layers"][0]
    plain = {"G1": K, "V": K ** 2, "Theta1": Th, "A": Th ** 2, "B": Th ** 2, "D": Th * K, "F": Th * K,
             "P": Th ** 2, "Q": Th ** 2, "R": Th ** 3 / K, "S": Th ** 3 / K, "T": Th ** 3 / K, "U": Th ** 3 / K}
    for name, lead in plain.items():
        assert row[name] == pytest.approx(1.5 / (n * lead), rel=1e-12), name


def test_tiny_kernels_do_not_underflow_and_zero_kernels_are_left_out():
    """K_00 = 1e-170: K_00² underflows to 0, the slot-by-slot division does not."""
    K = np.diag([1e-170, 0.0])
    V = np.zeros((2,) * 4)
    V[0, 0, 0, 0] = 1e-300
    V[1, 1, 1, 1] = 1e-30          # K_11 = 0: no normalisation, left out
    h = expansion_health([{"layer": 3, "K": K, "V": V}], 1)
    assert h["layers"][0]["V"] == pytest.approx(1e40, rel=1e-9)
    assert h["worst"]["inputs"] == [0, 0, 0, 0]


def test_health_layout_and_flag():
    lay = [{"layer": 1, "K": np.eye(2), "G1": np.zeros((2, 2))},
           {"layer": 2, "K": np.eye(2), "G1": np.array([[4.0, 0], [0, 40.0]])}]
    h = expansion_health(lay, 32)
    assert h == {"width": 32, "threshold": THRESHOLD, "healthy": False,
                 "worst": {"statistic": "G1", "layer": 2, "ratio": 1.25, "inputs": [1, 1]},
                 "layers": [{"layer": 1, "G1": 0.0}, {"layer": 2, "G1": 1.25}]}
    assert json.loads(json.dumps(h, allow_nan=False)) == h
    assert "G1 at layer 2" in describe(h) and "1.25" in describe(h)
    assert expansion_health(lay, 320)["healthy"]
    with pytest.raises(InputError, match="width"):
        expansion_health(lay, 0)


def test_without_width_nothing_changes():
    x = RNG.standard_normal((2, 3))
    plain = evaluate("tanh", 3, x, cb=0.1, cw=1.5)
    with_health = evaluate("tanh", 3, x, cb=0.1, cw=1.5, width=32)
    assert isinstance(plain, list) and plain.health is None and plain.healthy is None
    assert with_health.healthy is True and len(with_health.health["layers"]) == 3
    for a, b in zip(plain, with_health):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])  # bit-identical


def test_relu_at_criticality_depth_10_width_64_warns():
    """Issue 16: ReLU (C_b = 0, C_W = 2), depth 10, n = 64, five inputs, statistics with A: the
    prediction of A is 30–45 % below sampled networks; V/K² = 5(ℓ−1) gives r_V = 45/64."""
    x = np.random.default_rng(0).standard_normal((5, 3))
    with pytest.warns(ExpansionWarning, match=r"V at layer 10 .* 0\.703"):
        res = evaluate("relu", 10, x, cb=0.0, cw=2.0, stats=["K", "A"], width=64)
    assert res.healthy is False
    last = res.health["layers"][-1]
    assert last["V"] == pytest.approx(45 / 64, rel=1e-9)
    assert 0.15 < last["A"] < last["V"] and 0.25 < last["D"] < 0.4
    assert res.health["worst"]["statistic"] == "V" and res.health["worst"]["layer"] == 10
    assert set(res[-1]) == {"layer", "K", "A"}


def test_z_tanh_z_depth_10_warns():
    """Issue 16: z·tanh(z), depth 10, C_W = 1, n = 64: G1/K ≈ 1e5 (r_G1 in the thousands)."""
    x = np.random.default_rng(0).standard_normal((2, 3))
    with pytest.warns(ExpansionWarning, match="G1 at layer 10"):
        res = evaluate("z*tanh(z)", 10, x, cw=1.0, width=64)
    assert res.health["worst"]["ratio"] > 1e3


@pytest.mark.parametrize("depth, n_inputs, seed, cb, cw, stats", [
    (5, 4, 0, 0.0, 1.0, ("K", "G1", "V")),     # README "Evaluating"
    (3, 2, 3, 0.1, 1.5, ("K", "G1", "V")),     # README "Sampling and comparing"
    (3, 2, 3, 0.1, 1.5, "all"),               # the same, every statistic
])
def test_readme_examples_are_healthy(depth, n_inputs, seed, cb, cw, stats):
    x = np.random.default_rng(seed).standard_normal((n_inputs, 3))  # as --random N,3 --seed s
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExpansionWarning)
        res = evaluate("tanh", depth, x, cb=cb, cw=cw, stats=stats, width=32)
    assert res.healthy is True and res.health["worst"]["ratio"] < 0.2


def test_cli_prints_one_warning_line_and_writes_the_health(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["evaluate", "--activation", "z*tanh(z)", "--depth", "10", "--width", "64",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    warn = [line for line in err.splitlines() if "evaluate: warning:" in line]
    assert len(warn) == 1 and "G1 at layer 10" in warn[0] and "n = 64" in warn[0]
    doc = json.loads(out.read_text())
    assert doc["meta"]["health"]["healthy"] is False
    assert [row["layer"] for row in doc["meta"]["health"]["layers"]] == list(range(1, 11))


def test_cli_readme_example_has_no_warning(tmp_path, capsys):
    out = tmp_path / "pred.json"
    assert main(["evaluate", "--activation", "tanh", "--depth", "3", "--width", "32", "--cb", "0.1",
                 "--cw", "1.5", "--random", "2,3", "--seed", "3", "--out", str(out)]) == 0
    assert "evaluate: warning" not in capsys.readouterr().err
    assert json.loads(out.read_text())["meta"]["health"]["healthy"] is True
