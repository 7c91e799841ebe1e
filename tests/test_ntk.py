"""The NTK mean: its forward equation derived by the chain rule from the layer map."""
import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.language.algebra import InputGram, Z, ell, gexp, sigma
from ntkdiagrams.sampling.model import ModelSpec
from ntkdiagrams.errors import InputError, UnsupportedError
from ntkdiagrams.numerics.evaluate import evaluate
from ntkdiagrams.sampling.sampler import sample
from ntkdiagrams.engine.derivation import derive
from ntkdiagrams.language.rulefile import load_rules

RULES = load_rules("mlp")
Theta = RULES.tensors["Theta"].cls
a1, a2 = sp.symbols("alpha_1 alpha_2")
lb, lw, C_W = (sp.Symbol(s, real=True) for s in ("lambda_b", "lambda_W", "C_W"))


def test_theta_recursion_is_physics_md():
    """Θ^(l+1) = λ_b + λ_W ⟨σσ⟩ + C_W ⟨σ'σ'⟩ Θ^(l);  Θ^(1) = λ_b + λ_W x·x/n0 (docs/conventions.md §4)."""
    rec = derive("Theta")
    oracle = lb + lw * gexp(sigma(Z(a1)) * sigma(Z(a2)), ell) \
        + C_W * gexp(sigma(Z(a1), 1) * sigma(Z(a2), 1), ell) * Theta(ell, a1, a2)
    assert sp.expand(rec.rhs - oracle) == 0
    assert sp.expand(rec.initial - (lb + lw * InputGram(a1, a2))) == 0


def test_theta_diagrams():
    table = derive("Theta").diagram_table()
    assert "learning-rate contraction" in table and "weight propagator" in table
    assert len(table.splitlines()) == 3


def test_a_missing_order_one_cumulant_is_refused(tmp_path):
    """Without κ(H, z, z) declared, Θ1 would silently lose its D and F terms: refuse instead."""
    text = (RULES.path and open(RULES.path).read())
    start = text.index("[statistics.NTKpreactivation]")
    end = text.index("[tensors.A]")
    cut = text[:start] + text[end:]
    for name in ("D", "F"):
        i = cut.index(f"[tensors.{name}]")
        j = cut.index("\n[", i + 1) if "\n[" in cut[i + 1:] else len(cut)
        cut = cut[:i] + cut[j + 1:]
    p = tmp_path / "no_df.toml"
    p.write_text(cut)
    with pytest.raises(UnsupportedError, match="κ\\(H, z, z\\)"):
        derive("Theta1", load_rules(p))


def _mc_ntk(act, x, depth, width, samples, **hyper):
    model = ModelSpec(parse_activation(act), depth, width, hyper["cb"], hyper["cw"], hyper["lb"], hyper["lw"], x)
    return sample(model, samples, seed=11, stats=("Theta",))["layers"]


@pytest.mark.parametrize("act, width", [("linear", 8), ("relu", 16)])
def test_theta_against_sampled_networks(act, width):
    """Where Θ1 vanishes (deep linear networks exactly; ReLU on the diagonal, the scale-invariant
    theorem) the sampled NTK mean must equal Θ already at small width; λ_b ≠ λ_W ≠ C_W so that a
    misplaced learning rate shows."""
    x = np.array([[1.0, 0.3, -0.5], [-0.2, 0.9, 0.4]])
    hyper = dict(cb=0.2, cw=1.4 if act == "linear" else 2.0, lb=0.7, lw=1.9)
    pred = evaluate(act, 3, x, stats=["Theta"], **hyper)
    mc = _mc_ntk(act, x, 3, width, 6000, **hyper)
    for p, m in zip(pred[1:], mc[1:]):
        mean, err = m["Theta+Theta1"]["mean"], m["Theta+Theta1"]["stderr"]
        mask = np.ones_like(mean, dtype=bool) if act == "linear" else np.eye(2, dtype=bool)
        z = (mean - p["Theta"]) / err
        assert np.all(np.abs(z[mask]) < 4.5), z
        assert np.all(err[mask] < 0.05 * np.abs(p["Theta"][mask]))  # a factor of two cannot pass


# ---- NTK fluctuations: deep linear closed forms and a small Monte Carlo check ----

def _layer2_linear(name):
    """The derived recursion at layer 2 of a linear network (layer-1 connected tensors vanish)."""
    from ntkdiagrams.numerics.closedforms import substitute_activation
    K = RULES.tensors["K"].cls
    rec = derive(name)
    zero = {t: 0 for t in ("G1", "V", "Theta1", "A", "B", "D", "F")}
    expr = substitute_activation(rec.rhs, sp.Symbol("z", real=True), K)
    from ntkdiagrams.language.algebra import LayerTensor
    return sp.expand(expr.replace(lambda e: isinstance(e, LayerTensor) and e.tensor_name in zero,
                                  lambda e: sp.Integer(0)))


@pytest.mark.slow
def test_deep_linear_ntk_fluctuations_at_layer_two():
    """σ = z: B = C_W² Θ13 Θ24, F = C_W² Θ13 K24, D = C_W λ_W (K13 K24 + K14 K23),
    A = λ_W² (K13 K24 + K14 K23) + 2 C_W λ_W (...) — derived, against hand-derived closed forms."""
    K, Th = RULES.tensors["K"].cls, Theta
    b1, b2, b3, b4 = sp.symbols("alpha_1:5")
    assert sp.expand(_layer2_linear("B") - C_W ** 2 * Th(ell, b1, b3) * Th(ell, b2, b4)) == 0
    assert sp.expand(_layer2_linear("F") - C_W ** 2 * Th(ell, b1, b3) * K(ell, b2, b4)) == 0
    kk = K(ell, b1, b3) * K(ell, b2, b4) + K(ell, b1, b4) * K(ell, b2, b3)
    assert sp.expand(_layer2_linear("D") - C_W * lw * kk) == 0
    assert sp.expand(_layer2_linear("A") - lw ** 2 * kk) == 0


@pytest.mark.slow
def test_ntk_fluctuations_against_sampled_networks():
    """tanh, layer 3, n = 32: A, B, D, F and the NTK mean Θ + Θ1/n within error bars; the error
    bars (< 15 % of each value) are tight enough that a factor of two cannot pass.  (Θ1/n is
    too small here to be resolved by a fast test: scripts/validate_ntk.py does that.)"""
    x = np.array([[1.0, 0.2, -0.4], [0.3, -0.9, 0.5]])
    hyper = dict(cb=0.1, cw=1.5, lb=0.7, lw=1.9)
    n = 32
    pred = evaluate("tanh", 3, x, stats=["Theta", "Theta1", "A", "B", "D", "F"], **hyper)[-1]
    model = ModelSpec(parse_activation("tanh"), 3, n, hyper["cb"], hyper["cw"], hyper["lb"], hyper["lw"], x)
    mc = sample(model, 60000, seed=3, stats=("Theta", "Theta1", "A", "B", "D", "F"))["layers"][-1]
    for s, idx in (("A", (0, 1, 0, 1)), ("B", (0, 0, 0, 0)), ("B", (0, 1, 0, 1)), ("D", (0, 1, 0, 1)),
                   ("F", (0, 1, 0, 1)), ("F", (0, 0, 0, 0))):
        p, m, e = pred[s][idx], mc[s]["mean"][idx], mc[s]["stderr"][idx]
        assert abs(m - p) < 4.5 * e, (s, idx, p, m, e)
        assert e < 0.15 * abs(p), (s, idx, e, p)
    th = pred["Theta"] + pred["Theta1"] / n
    z = (mc["Theta+Theta1"]["mean"] - th) / mc["Theta+Theta1"]["stderr"]
    assert np.all(np.abs(z) < 4.5), z


# ---- dNTK: the forward equation by the chain rule, P and Q ----

def test_dntk_forward_equation_is_derived():
    """The four terms of docs/conventions.md §2's dH forward equation come out of the layer map."""
    from ntkdiagrams.language.rulefile import Leg
    from ntkdiagrams.engine.wick import tangent_monomials
    leg = Leg("dH", sp.symbols("i0:3"), sp.symbols("a0:3"))
    monos = tangent_monomials(leg, 0, RULES, RULES.layer_maps["z"], False)
    kinds = sorted(tuple(sorted(getattr(f.func, "__name__", "") for f in sp.Mul(*m.factors).atoms(sp.Function)
                                if getattr(f.func, "__name__", "") in ("H", "dH"))) for m in monos)
    assert kinds == [("H",), ("H",), ("H", "H"), ("dH",)]
    lam = [m for m in monos if m.coefficient.has(lw)]
    assert len(lam) == 2 and all(len(m.parameters) == 1 for m in lam)
    assert tangent_monomials(leg, 0, RULES, RULES.first_layer["z"], True) == []  # dH^(1) = 0


@pytest.mark.slow
def test_p_q_against_sampled_networks():
    """tanh, n = 32: P and Q exact at layer 2 (no 1/n remainder there), within error bars at layer 3;
    error bars tight enough that a factor of two cannot pass."""
    x = np.array([[1.0, 0.2, -0.4], [0.3, -0.9, 0.5]])
    hyper = dict(cb=0.1, cw=1.5, lb=0.7, lw=1.9)
    pred = evaluate("tanh", 3, x, stats=["P", "Q"], **hyper)
    model = ModelSpec(parse_activation("tanh"), 3, 32, hyper["cb"], hyper["cw"], hyper["lb"], hyper["lw"], x)
    mc = sample(model, 20000, seed=9, stats=("P", "Q"))["layers"]
    for layer in (1, 2):
        for s, idx in (("P", (0, 0, 0, 0)), ("P", (1, 0, 0, 1)), ("Q", (0, 1, 0, 1)), ("Q", (1, 0, 0, 1))):
            p, m, e = pred[layer][s][idx], mc[layer][s]["mean"][idx], mc[layer][s]["stderr"][idx]
            assert abs(m - p) < 4.5 * e, (layer + 1, s, idx, p, m, e)
            assert e < 0.2 * abs(p), (layer + 1, s, idx, e, p)


@pytest.mark.slow
def test_dntk_statistics_for_kinks_per_network_and_distributional():
    """ReLU, layer 2 (exact at every width): the per-network statistics (σ'' = 0 almost
    everywhere, the default) agree with sampled networks, P and U vanish identically; the
    distributional ones (δ(z) kept) differ and are refused where they need δ'."""
    x = np.array([[1.0, 0.2, -0.4], [0.3, -0.9, 0.5]])
    hyper = dict(cb=0.0, cw=2.0, lb=1.0, lw=1.0)
    pred = evaluate("relu", 2, x, stats=["P", "Q", "S", "T", "U"], **hyper)[-1]
    dist = evaluate("relu", 2, x, stats=["P", "Q"], kinks="distributional", **hyper)[-1]
    assert np.all(pred["P"] == 0) and np.all(pred["U"] == 0)
    assert abs(dist["P"][0, 1, 0, 1]) > 0.1
    model = ModelSpec(parse_activation("relu"), 2, 16, hyper["cb"], hyper["cw"], hyper["lb"], hyper["lw"], x)
    mc = sample(model, 20000, seed=5, stats=("P", "Q", "S", "T", "U"))["layers"][-1]
    assert np.all(mc["P"]["mean"] == 0) and np.all(mc["U"]["mean"] == 0)
    for s, idx in (("Q", (0, 0, 0, 0)), ("Q", (0, 1, 0, 1)), ("Q", (1, 0, 0, 1)), ("S", (0, 0, 0, 0)),
                   ("S", (0, 1, 0, 1)), ("T", (0, 1, 0, 1)), ("T", (1, 0, 0, 1))):
        p, m, e = pred[s][idx], mc[s]["mean"][idx], mc[s]["stderr"][idx]
        assert abs(m - p) < 4.5 * e, (s, idx, p, m, e)
        assert e < 0.2 * abs(p), (s, idx, e, p)
    zq = np.abs(mc["Q"]["mean"] - dist["Q"]) / mc["Q"]["stderr"]
    assert zq.max() > 8, zq.max()  # the δ(z) terms are visible: the sampler rules them out
    with pytest.raises(UnsupportedError, match="derivative of a Dirac delta"):
        evaluate("relu", 3, x, stats=["R"], kinks="distributional")
    with pytest.raises(InputError, match="kinks must be one of"):
        evaluate("relu", 2, x, stats=["P"], kinks="smoothed")


@pytest.mark.slow
def test_ddntk_means_at_layer_two_against_sampled_networks():
    """R, S, T, U at layer 2, where the first-order result is exact at every width (tanh, n = 16)."""
    x = np.array([[1.0, 0.2, -0.4], [0.3, -0.9, 0.5]])
    hyper = dict(cb=0.1, cw=1.5, lb=0.7, lw=1.9)
    pred = evaluate("tanh", 2, x, stats=["R", "S", "T", "U"], **hyper)[-1]
    model = ModelSpec(parse_activation("tanh"), 2, 16, hyper["cb"], hyper["cw"], hyper["lb"], hyper["lw"], x)
    mc = sample(model, 30000, seed=21, stats=("R", "S", "T", "U"))["layers"][-1]
    for s, idx in (("R", (0, 0, 0, 0)), ("R", (0, 0, 1, 1)), ("S", (0, 0, 0, 0)), ("S", (0, 1, 0, 1)),
                   ("T", (1, 0, 0, 1)), ("T", (0, 1, 0, 1)), ("U", (0, 0, 0, 0)), ("U", (0, 1, 0, 1))):
        p, m, e = pred[s][idx], mc[s]["mean"][idx], mc[s]["stderr"][idx]
        assert abs(m - p) < 4.5 * e, (s, idx, p, m, e)
        assert e < 0.2 * abs(p), (s, idx, e, p)
