"""Numerics of the derived recursions against closed forms and textbook facts."""
import json

import numpy as np
import pytest

from ntkdiagrams.cli import main
from ntkdiagrams.errors import ActivationError, InputError, NumericsError, UnsupportedError
from ntkdiagrams.numerics.evaluate import evaluate

RNG = np.random.default_rng(7)
X3 = RNG.standard_normal((3, 4))


def test_relu_criticality_v_grows_linearly():
    """ReLU, C_b = 0, C_W = 2, one input: K constant and V^(l) = 5 (l-1) K² (docs/conventions.md §5)."""
    x = np.array([[0.3, -1.2, 0.8]])
    layers = evaluate("relu", 5, x, cb=0.0, cw=2.0, stats=["K", "V"])
    k1 = 2.0 * float((x @ x.T)[0, 0]) / 3
    for layer in layers:
        ell = layer["layer"]
        np.testing.assert_allclose(layer["K"][0, 0], k1, rtol=1e-10)
        np.testing.assert_allclose(layer["V"][0, 0, 0, 0], 5 * (ell - 1) * k1 ** 2, rtol=1e-8)


def test_deep_linear_closed_forms():
    """σ = z: K^(l+1) = C_b + C_W K^(l), G1 = 0, V^(l+1) = C_W² (K13 K24 + K14 K23 + V^(l))."""
    cb, cw = 0.3, 0.9
    layers = evaluate("linear", 4, X3, cb=cb, cw=cw)
    K = cb + cw * X3 @ X3.T / X3.shape[1]
    V = np.zeros((3,) * 4)
    for layer in layers:
        np.testing.assert_allclose(layer["K"], K, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer["V"], V, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(layer["G1"], 0.0, atol=1e-12)
        V = cw ** 2 * (np.einsum("ac,bd->abcd", K, K) + np.einsum("ad,bc->abcd", K, K) + V)
        K = cb + cw * K


def _arccos_relu(K):
    d = np.sqrt(np.diag(K))
    rho = np.clip(K / np.outer(d, d), -1, 1)
    th = np.arccos(rho)
    return np.outer(d, d) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th))


def test_relu_kernel_is_the_arccosine_kernel():
    cb, cw = 0.1, 1.7
    layers = evaluate("relu", 3, X3, cb=cb, cw=cw, stats=["K"])
    for prev, nxt in zip(layers, layers[1:]):
        np.testing.assert_allclose(nxt["K"], cb + cw * _arccos_relu(prev["K"]), rtol=1e-9)


def test_erf_kernel_is_the_arcsine_kernel():
    cb, cw = 0.2, 1.3
    layers = evaluate("erf", 3, X3, cb=cb, cw=cw, stats=["K"])
    for prev, nxt in zip(layers, layers[1:]):
        K = prev["K"]
        d = 1 + 2 * np.diag(K)
        expected = cb + cw * (2 / np.pi) * np.arcsin(2 * K / np.sqrt(np.outer(d, d)))
        np.testing.assert_allclose(nxt["K"], expected, rtol=1e-8)


def test_v_has_the_symmetries_of_its_definition():
    V = evaluate("tanh", 3, X3[:2], cb=0.1, cw=1.2)[-1]["V"]
    np.testing.assert_allclose(V, V.transpose(1, 0, 2, 3), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(V, V.transpose(0, 1, 3, 2), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(V, V.transpose(2, 3, 0, 1), rtol=1e-10, atol=1e-14)
    assert abs(V[0, 1, 0, 1] - V[0, 0, 1, 1]) > 1e-3  # the three pairings really differ


def test_per_layer_hyperparameters():
    a = evaluate("tanh", 3, X3[:1], cb=[0.1, 0.1, 0.1], cw=[1.0, 2.0, 2.0], stats=["K"])
    b = evaluate("tanh", 3, X3[:1], cb=0.1, cw=2.0, stats=["K"])
    assert not np.allclose(a[0]["K"], b[0]["K"])  # layer 1 used C_W = 1
    with pytest.raises(InputError, match="one per layer"):
        evaluate("tanh", 3, X3, cw=[1.0, 2.0])


@pytest.mark.parametrize("kwargs, err, msg", [
    (dict(activation="nope"), ActivationError, "unknown name"),
    (dict(depth=0), InputError, "depth"),
    (dict(inputs=np.ones(3)), InputError, "2-D"),
    (dict(inputs=np.array([[1.0, np.nan]])), InputError, "NaN"),
    (dict(cw=-1.0), InputError, "variance"),
    (dict(stats=["Q9"]), UnsupportedError, "unknown or unsupported"),
])
def test_bad_input(kwargs, err, msg):
    args = dict(activation="tanh", depth=2, inputs=X3)
    args.update(kwargs)
    with pytest.raises(err, match=msg):
        evaluate(args.pop("activation"), args.pop("depth"), args.pop("inputs"), **args)


def test_cli_evaluate_json(tmp_path):
    out = tmp_path / "pred.json"
    assert main(["evaluate", "--activation", "tanh", "--depth", "2", "--width", "16", "--random", "2,3",
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["meta"]["width"] == 16 and doc["meta"]["activation"] == "tanh"
    assert [layer["layer"] for layer in doc["layers"]] == [1, 2]
    assert np.array(doc["layers"][1]["V"]).shape == (2, 2, 2, 2)
    assert np.array(doc["layers"][1]["K"]).shape == (2, 2)


def test_cli_evaluate_npz_equals_json_and_library(tmp_path):
    """--out p.npz holds the arrays themselves (keys layer{ℓ}/{tensor}, meta as JSON text), the
    same numbers as --out p.json (written layer by layer: the text of one json.dump) and as the
    library call."""
    argv = ["evaluate", "--activation", "tanh", "--depth", "3", "--cw", "1.5", "--stats", "K,Theta",
            "--random", "5,3"]
    assert main(argv + ["--out", str(tmp_path / "p.npz")]) == 0
    assert main(argv + ["--out", str(tmp_path / "p.json")]) == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    with np.load(tmp_path / "p.npz") as z:
        assert json.loads(str(z["meta"])) == doc["meta"]
        assert sorted(z.files) == sorted(["meta"] + [f"layer{l}/{t}" for l in (1, 2, 3) for t in ("K", "Theta")])
        x = np.random.default_rng(0).standard_normal((5, 3))
        ref = evaluate("tanh", 3, x, cw=1.5, stats=["K", "Theta"])
        for layer, want in zip(doc["layers"], ref):
            for t in ("K", "Theta"):
                assert np.array_equal(z[f"layer{layer['layer']}/{t}"], np.array(layer[t]))
                assert np.allclose(z[f"layer{layer['layer']}/{t}"], want[t], rtol=1e-12, atol=0)
    assert (tmp_path / "p.json").read_text() == json.dumps(doc)


@pytest.mark.parametrize("argv", [
    ["--activation", "bogus"], ["--width", "0"], ["--depth", "0"], ["--random", "2"], ["--cb", "-1"],
    ["--stats", "K,XX"], ["--out", "pred.txt"],
])
def test_cli_evaluate_bad_input(tmp_path, capsys, argv):
    out = tmp_path / "pred.json"
    full = ["evaluate", "--depth", "2", "--random", "2,3", "--out", str(out)] + argv
    assert main(full) == 2
    assert "error" in capsys.readouterr().err
    assert not out.exists()


def test_cli_evaluate_nan_inputs(tmp_path, capsys):
    f = tmp_path / "x.npy"
    np.save(f, np.array([[1.0, np.inf], [0.0, 1.0]]))
    assert main(["evaluate", "--inputs", str(f), "--out", str(tmp_path / "p.json")]) == 2
    assert "NaN or inf" in capsys.readouterr().err


@pytest.mark.parametrize("act", ["tanh", "gelu", "sin"])
def test_integration_by_parts_equals_explicit_derivatives(act):
    """The Hermite path (used for kinks) and the explicit Leibniz path agree for smooth σ,
    also with a duplicated input (the collapse of coinciding inputs)."""
    x = X3.copy()
    x[2] = x[0]
    a = evaluate(act, 4, x, cb=0.1, cw=1.5)
    b = evaluate(act, 4, x, cb=0.1, cw=1.5, blob_method="hermite")
    for la, lb in zip(a, b):
        np.testing.assert_allclose(la["G1"], lb["G1"], rtol=1e-10, atol=1e-12)
    assert np.abs(a[-1]["G1"]).max() > 1e-2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # exp(40 z) overflows harmlessly far in the tails
def test_relu_g1_diagonal_vanishes_and_matches_sharp_softplus():
    """ReLU: G1 vanishes on the diagonal at every layer (the fourth derivative of relu² is 2δ',
    whose Gaussian mean is 0); off the diagonal it is the β→∞ limit of softplus_β =
    log(1+e^{βz})/β, which goes through the smooth (explicit-derivative) path."""
    x = np.random.default_rng(1).standard_normal((2, 3))
    relu = evaluate("relu", 3, x, cb=0.1, cw=1.8)
    soft = evaluate("log(1+exp(10*z))/10", 3, x, cb=0.1, cw=1.8)
    for layer in relu:
        np.testing.assert_allclose(np.diag(layer["G1"]), 0.0, atol=1e-12)
    g_relu, g_soft = relu[-1]["G1"][0, 1], soft[-1]["G1"][0, 1]
    assert abs(g_relu) > 0.05
    assert abs(g_soft - g_relu) < 0.02 * abs(g_relu)


ALL_FIRST_ORDER = ["K", "G1", "V", "Theta", "Theta1", "A", "B", "D", "F"]


@pytest.mark.slow
def test_integration_by_parts_for_every_statistic():
    """Every blob sum integrated by parts equals the explicit derivatives (smooth σ, a duplicated input)."""
    x = np.array([[1.0, 0.2, -0.4], [0.3, -0.9, 0.5], [1.0, 0.2, -0.4]])
    hyper = dict(cb=0.1, cw=1.5, lb=0.7, lw=1.9)
    a = evaluate("tanh", 3, x, stats=ALL_FIRST_ORDER, **hyper)[-1]
    b = evaluate("tanh", 3, x, stats=ALL_FIRST_ORDER, blob_method="hermite", **hyper)[-1]
    for s in ALL_FIRST_ORDER:
        np.testing.assert_allclose(a[s], b[s], rtol=1e-9, atol=1e-12, err_msg=s)
        assert np.abs(a[s]).max() > 1e-3 or s == "G1"


@pytest.mark.parametrize("act", ["relu", "leaky_relu:0.2", "linear"])
def test_scale_invariant_theta1_vanishes_on_the_diagonal(act):
    """Θ1_αα = 0 at every layer for scale-invariant σ (arXiv 2508.11522), while the off-diagonal
    correction is not zero (except for linear networks, where Θ1 vanishes identically)."""
    x = np.array([[1.0, 0.2, -0.4], [0.3, -0.9, 0.5]])
    layers = evaluate(act, 4, x, cb=0.0, cw=2.0 if act != "linear" else 1.0, lb=0.7, lw=1.9,
                      stats=["Theta1"])
    for layer in layers:
        np.testing.assert_allclose(np.diag(layer["Theta1"]), 0.0, atol=1e-10)
    off = abs(layers[-1]["Theta1"][0, 1])
    assert off > 1e-2 if act != "linear" else off < 1e-10


def test_tanh_theta1_diagonal_does_not_vanish():
    x = np.array([[1.0, 0.2, -0.4]])
    assert abs(evaluate("tanh", 3, x, cb=0.1, cw=1.5, stats=["Theta1"])[-1]["Theta1"][0, 0]) > 1e-3


# --- issue 16: divergent or non-finite results are errors, never numbers -------------------------

def test_exp_z2_diverges_at_layer_2_with_inputs_and_reason():
    """⟨e^{4z²}⟩ diverges for K ≥ 1/8: V^(2) (once 8.5e28 in silence) is refused."""
    x = np.random.default_rng(0).standard_normal((2, 3))  # as the CLI's default --random 2,3
    with pytest.raises(NumericsError) as info:
        evaluate("exp(z**2)", 3, x)
    err = info.value
    assert (err.layer, err.statistic, err.inputs, err.reason) == (2, "V", (0, 0, 0, 0), "diverges")
    assert "layer 2, V" in str(err) and "(0, 0, 0, 0)" in str(err) and "c = 1 per factor" in str(err)
    assert isinstance(err, InputError)


def test_exp_z2_kernel_diverges_at_layer_3():
    x = np.random.default_rng(0).standard_normal((2, 3))
    with pytest.raises(NumericsError, match=r"layer 3, K: .*inputs \(0, 0\) diverges") as info:
        evaluate("exp(z**2)", 4, x, stats=["K"])
    assert info.value.growth > 1


@pytest.mark.parametrize("cw, reason", [(0.1, None), (0.8, "loses accuracy"), (1.01, "diverges")])
def test_growth_against_variance_threshold(cw, reason):
    """σ = e^{z²/4} on one input with K^(1) = C_W: ⟨σσ⟩ has s = K; exact up to s = 0.6."""
    x = np.array([[1.0, -1.0]])
    if reason is None:
        layers = evaluate("exp(z**2/4)", 2, x, cw=cw, stats=["K"])
        assert layers[1]["K"][0, 0] == pytest.approx(cw * (1 - cw) ** -0.5, rel=1e-12)  # C_W ⟨σ²⟩
    else:
        with pytest.raises(NumericsError, match=reason) as info:
            evaluate("exp(z**2/4)", 2, x, cw=cw, stats=["K"])
        assert info.value.reason == reason and info.value.inputs == (0, 0)


@pytest.mark.parametrize("act, stats, stat, text", [
    ("relu", ["K"], "K", r"layer 2: K\[0, 0\] = inf is not finite"),
    ("linear", ["K", "V"], "V", "coefficient of the recursion overflows"),
])
def test_overflow_is_an_error_naming_statistic_layer_and_component(act, stats, stat, text):
    with pytest.raises(NumericsError, match=text) as info:
        evaluate(act, 3, np.array([[1.0, 1.0]]), cw=1e200, stats=stats)
    assert info.value.layer == 2 and info.value.statistic == stat


def test_quadratic_growth_rates():
    import sympy as sp

    from ntkdiagrams.numerics.activations import parse_activation, z
    from ntkdiagrams.numerics.gaussian.growth import numeric_growth, quadratic_growth
    cases = [(sp.exp(z ** 2) * sp.tanh(z), 1.0, 1.0), (sp.tanh(z) ** 4, 0.0, 0.0),
             (sp.exp(-z ** 2 / 2), -0.5, -0.5), (sp.exp(z ** 3), np.inf, -np.inf),
             (sp.cosh(z) ** 3, 0.0, 0.0), (1 / (1 + sp.exp(-z ** 2)), 0.0, 0.0),
             (parse_activation("gelu").derivative(2), -0.5, -0.5), (sp.exp(sp.exp(z)), np.inf, 0.0)]
    for expr, plus, minus in cases:
        assert (quadratic_growth(expr, 1), quadratic_growth(expr, -1)) == (plus, minus), expr
    assert numeric_growth(sp.exp(z ** 2) * sp.sin(z)) == pytest.approx(1.0, abs=1e-6)
    assert numeric_growth(sp.exp(3 * z) * z ** 5) == 0.0


def test_growth_excess_matches_the_closed_form_of_a_bivariate_gaussian():
    """⟨e^{z1²} e^{z2²}⟩ = 1/√(det C det(C⁻¹ − 2I)) exists iff s = λmax(2C) < 1."""
    import sympy as sp

    from ntkdiagrams.numerics.activations import z
    from ntkdiagrams.numerics.gaussian import expectation_tensor
    from ntkdiagrams.numerics.gaussian.growth import growth_excess
    C = np.array([[0.12, 0.06], [0.06, 0.1]])  # every tuple, (0, 0) included, has s ≤ 0.48
    s = growth_excess([1.0, 1.0], C[None])[0]
    assert s == pytest.approx(2 * np.linalg.eigvalsh(C)[-1], rel=1e-12)
    T = expectation_tensor([sp.exp(z ** 2)] * 2, C)
    exact = 1 / np.sqrt(np.linalg.det(C) * np.linalg.det(np.linalg.inv(C) - 2 * np.eye(2)))
    assert T[0, 1] == pytest.approx(exact, rel=1e-9)
    with pytest.raises(NumericsError, match=r"inputs \(0, 0\) diverges"):
        expectation_tensor([sp.exp(z ** 2)] * 2, 4 * C)


def test_cli_exp_z2_is_an_error_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["evaluate", "--activation", "exp(z**2)", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: layer 2, V:" in err and "diverges" in err and "RuntimeWarning" not in err
    assert not out.exists()


def test_json_output_is_standard(tmp_path):
    from ntkdiagrams.numerics.evaluate import write_result
    out = tmp_path / "p.json"
    with pytest.raises(ValueError):
        write_result(str(out), {"x": float("nan")}, [{"layer": 1, "K": np.eye(1)}])
    assert not out.exists()
