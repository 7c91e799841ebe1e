"""Generated modules (ntkdiagrams.generation): imported in a clean subprocess where the package itself
cannot be imported, they agree with nd.evaluate (numpy: 1e-10, JAX: 1e-8, relative to each tensor's
largest entry) for tanh, GELU and ReLU on K, G1, V, Θ, Θ1, A, B, D, F; JAX gradients agree with
central finite differences.

numpy: N = 4 inputs, so that expectations over 1 … 4 distinct inputs occur (the fast path with its
table, the orthant moments up to P_4); the module carries the package's own methods, so it agrees
with the default nd.evaluate to rounding (~1e-14 measured), far inside 1e-10.  JAX: fixed rules,
accurate to ~1e-8 against the truth; tanh at N = 2 (at N ≥ 3 the package's default fast path is
itself only ~1e-7 relative on the cancelling V, the table's 1e-8 floor: docs/gaussian.md), ReLU at
N = 3 (closed-form orthant moments in both).
"""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ntkdiagrams as nd
from ntkdiagrams.errors import ActivationError, InputError, UnsupportedError

STATS = ["K", "G1", "V", "Theta", "Theta1", "A", "B", "D", "F"]
X = np.array([[1.0, 0.5, -0.3], [-0.2, 1.2, 0.7]]) / np.sqrt(2.0)
X3 = np.array([[1.0, 0.5, -0.3], [-0.2, 1.2, 0.7], [0.4, -0.9, 0.6]]) / np.sqrt(2.0)
X4 = np.array([[1.0, 0.5, -0.3], [-0.2, 1.2, 0.7], [0.4, -0.9, 0.6], [-0.8, -0.1, -0.5]]) / np.sqrt(2.0)
DEPTH = 3
HYPER = {"C_b": 0.1, "C_W": 1.5, "lambda_b": 0.7, "lambda_W": 1.3}

# blocks the package inside the subprocess (an editable install would otherwise make it importable)
PRELUDE = textwrap.dedent('''
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "ntkdiagrams" or name.startswith("ntkdiagrams."):
                raise ImportError("ntkdiagrams is blocked in this process")
    sys.meta_path.insert(0, Block())
    try:
        import ntkdiagrams
    except ImportError:
        pass
    else:
        raise SystemExit("ntkdiagrams is importable")
    sys.path.insert(0, ".")
    import numpy as np
''')


def run_clean(tmp_path, source: str, script: str, x=X) -> dict:
    assert "import ntkdiagrams" not in source and "from ntkdiagrams" not in source
    (tmp_path / "generated.py").write_text(source)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "script.py").write_text(PRELUDE + textwrap.dedent(script))
    proc = subprocess.run([sys.executable, "-I", "script.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reference(activation, x=X, stats=STATS):
    return nd.evaluate(activation, DEPTH, x, stats=stats, params=HYPER)


def worst(got: list, ref: list, stats=STATS) -> dict:
    out = {}
    for a, b in zip(got, ref):
        assert a["layer"] == b["layer"]
        for s in stats:
            g, r = np.asarray(a[s]), b[s]
            assert g.shape == r.shape
            out[s] = max(out.get(s, 0.0), float(np.max(np.abs(g - r)) / max(np.max(np.abs(r)), 1e-300)))
    return out


@pytest.mark.parametrize("activation", ["tanh", "gelu", "relu"])
def test_numpy_module_agrees(tmp_path, activation):
    source = nd.codegen(STATS, activation, target="numpy")
    assert "import jax" not in source
    got = run_clean(tmp_path, source, f'''
        import json, generated
        x = np.load("x.npy")
        layers = generated.evaluate(x, {DEPTH}, **{HYPER!r})
        print(json.dumps([{{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in l.items()}} for l in layers]))
    ''', x=X4)
    ref = reference(activation, X4)
    errors = worst(got, ref)
    assert max(errors.values()) < 1e-10, errors
    # a factor of two in a tensor would show
    assert got[-1]["V"] != pytest.approx(2 * np.asarray(ref[-1]["V"]))


def test_numpy_module_reads_like_the_recursions():
    source = nd.codegen("K,V", "tanh")
    assert "ntkdiagrams" in source.splitlines()[2] and "rule file:   mlp" in source and "activation:  tanh" in source
    for line in nd.derive("V").text().splitlines():
        assert "    # " + line in source
    assert "numpy.tanh(z)" in source  # sympy's printer


JAX_SCRIPT = '''
    import json, jax, jax.numpy as jnp, generated, generated_kgv, generated_k
    x = jnp.asarray(np.load("x.npy"))
    hyper = {hyper!r}
    layers = jax.jit(lambda x, cw: generated.evaluate(x, {depth}, **{{**hyper, "C_W": cw}}))(x, hyper["C_W"])
    def f(cw, x):  # a finite-width quantity: V/K^2 off the diagonal, plus G1 (two inputs: compile time)
        last = generated_kgv.evaluate(x[:2], {grad_depth}, **{{**hyper, "C_W": cw}})[-1]
        return last["V"][0, 1, 0, 1] / last["K"][0, 1] ** 2 + last["G1"][0, 1]
    g = jax.jit(jax.grad(f, argnums=(0, 1)))(hyper["C_W"], x)
    fj = jax.jit(f)
    eps = 1e-5
    fd_cw = (fj(hyper["C_W"] + eps, x) - fj(hyper["C_W"] - eps, x)) / (2 * eps)
    fd_x = (fj(hyper["C_W"], x.at[0, 1].add(eps)) - fj(hyper["C_W"], x.at[0, 1].add(-eps))) / (2 * eps)
    # beyond the range of the fixed rules (smooth activations): ValueError eagerly, NaN under jit
    big = {{**hyper, "C_W": 40.0}}
    try:
        generated_k.evaluate(x, 2, **big)
        refused = ""
    except ValueError as exc:
        refused = str(exc)
    nan = bool(jnp.any(jnp.isnan(jax.jit(lambda x: generated_k.evaluate(x, 2, **big)[-1]["K"])(x))))
    scaled = jax.jit(lambda x: generated_k.evaluate(x, 2, max_scale=4.0, **big)[-1]["K"])(x)  # more nodes
    print(json.dumps({{"layers": [{{k: (np.asarray(v).tolist() if k != "layer" else int(v)) for k, v in l.items()}}
                                  for l in layers],
                      "dtype": str(layers[-1]["V"].dtype), "refused": refused, "nan": nan,
                      "scaled": np.asarray(scaled).tolist(),
                      "grad": [float(g[0]), float(g[1][0, 1])], "fd": [float(fd_cw), float(fd_x)]}}))
'''


@pytest.mark.parametrize("activation,x", [("tanh", X), ("gelu", X), ("relu", X3)])
def test_jax_module_agrees_and_differentiates(tmp_path, activation, x):
    """jit-compiled agreement on all nine tensors (ReLU with three distinct inputs: orthant moments
    up to P_3), jax.grad with respect to C_W and an input against central differences (K, G1, V at
    depth 2, two inputs), and the range of the fixed rules: beyond it a ValueError (eager) or NaN
    (jit), within a larger ``max_scale`` (more nodes) the right value."""
    pytest.importorskip("jax")  # the jax extra; .ci/run installs it, so CI runs this test
    source = nd.codegen(STATS, activation, target="jax")
    assert 'jax.config.update("jax_enable_x64", True)' in source
    (tmp_path / "generated_kgv.py").write_text(nd.codegen("K,G1,V", activation, target="jax"))
    (tmp_path / "generated_k.py").write_text(nd.codegen("K", activation, target="jax"))
    out = run_clean(tmp_path, source, JAX_SCRIPT.format(hyper=HYPER, depth=DEPTH, grad_depth=2), x=x)
    assert out["dtype"] == "float64"
    errors = worst(out["layers"], reference(activation, x))
    assert max(errors.values()) < 1e-8, errors
    for g, fd in zip(out["grad"], out["fd"]):
        assert abs(g - fd) <= 1e-6 * max(1.0, abs(fd)), (out["grad"], out["fd"])
    assert abs(out["grad"][0]) > 1e-3  # not trivially zero
    big = nd.evaluate(activation, 2, x, stats=["K"], params={**HYPER, "C_W": 40.0})[-1]["K"]
    assert np.max(np.abs(np.asarray(out["scaled"]) - big)) < 1e-8 * np.max(np.abs(big))
    if activation in ("tanh", "gelu"):   # smooth σ: fixed rules with a stated range
        assert "pass max_scale=" in out["refused"] and out["nan"], out
    else:  # exact methods for the ReLU family: no range
        assert out["refused"] == "" and not out["nan"], out


def test_errors():
    with pytest.raises(InputError, match="unknown target"):
        nd.codegen("K", "tanh", target="torch")
    with pytest.raises(UnsupportedError, match="unknown or unsupported statistic"):
        nd.codegen("K,Vx", "tanh")
    with pytest.raises(ActivationError):
        nd.codegen("K", "nosuch(z)")
    with pytest.raises(InputError, match="no statistic"):
        nd.codegen("", "tanh")


def test_cli_writes_module(tmp_path):
    from ntkdiagrams.cli.main import main
    out = tmp_path / "m.py"
    assert main(["codegen", "K,G1", "--activation", "tanh", "--target", "numpy", "--out", str(out)]) == 0
    assert "def evaluate(inputs, depth, *, allow_incomplete=False, max_scale=None, **hyper)" in out.read_text()
    assert main(["codegen", "K", "--out", str(tmp_path / "m.txt")]) == 2


def test_rule_file_symbols_by_name(tmp_path):
    """resmlp: the shortcut weight xi by name, per layer; a symbol without default must be given."""
    import importlib.util
    path = tmp_path / "resmlp_kv.py"
    path.write_text(nd.codegen("K,V", "tanh", rules="resmlp"))
    spec = importlib.util.spec_from_file_location("resmlp_kv", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    xi = [1.0, 0.7, 0.8]
    got = gen.evaluate(X, DEPTH, C_b=0.1, C_W=1.0, xi=xi)
    ref = nd.evaluate("tanh", DEPTH, X, stats=["K", "V"], rules="resmlp", params={"C_b": 0.1, "C_W": 1.0, "xi": xi},
                      degree=32)
    assert max(worst(got, ref, ["K", "V"]).values()) < 1e-10
    with pytest.raises(TypeError, match="xi"):
        gen.evaluate(X, DEPTH, C_W=1.0)
    with pytest.raises(TypeError, match="unknown hyper-parameter"):
        gen.evaluate(X, DEPTH, xi=1.0, cw=1.0)


def test_residual_module_refuses_what_does_not_close(tmp_path):
    """The guard of docs/conventions.md §8 travels with the module: G1 of resmlp at depth 3 with ξ ≠ 0
    is refused unless allow_incomplete, and then equals the package's (allow_incomplete) value."""
    import importlib.util
    import warnings
    path = tmp_path / "resmlp_g1.py"
    path.write_text(nd.codegen("K,G1", "tanh", rules="resmlp"))
    spec = importlib.util.spec_from_file_location("resmlp_g1", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.OPEN == ["G1"]
    with pytest.raises(ValueError, match="G1: with the shortcut these lack first-order terms from layer 3 on"):
        gen.evaluate(X, 3, xi=1.0)
    assert np.all(gen.evaluate(X, 2, xi=1.0)[1]["G1"] == 0.0)
    gen.evaluate(X, 3, xi=[1.0, 0.0, 1.0])  # no memory at layer 2: closes through layer 3
    got = gen.evaluate(X, 3, xi=1.0, allow_incomplete=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nd.ClosureWarning)
        ref = nd.evaluate("tanh", 3, X, stats=["K", "G1"], rules="resmlp", params={"xi": 1.0}, degree=32,
                          allow_incomplete=True)
    assert max(worst(got, ref, ["K", "G1"]).values()) < 1e-10
    assert "OPEN = []" in nd.codegen("K,V", "tanh", rules="resmlp")


def test_width_ratio_module(tmp_path):
    """Per-layer widths ([model] width_ratio = "r"): r by name (one value per layer, or L − 1
    values), r_ℓ and r_{ℓ−1} in each step as nd.evaluate; without r a TypeError."""
    import importlib.util
    from ntkdiagrams.language.rulefile import parse_rules
    src = nd.load_rules("mlp").source
    rules = parse_rules(src.replace('width = "n" ', 'width_ratio = "r"\nwidth = "n" ', 1), "mlp_widths.toml")
    path = tmp_path / "widths.py"
    path.write_text(nd.codegen("K,G1,V", "tanh", rules=rules))
    spec = importlib.util.spec_from_file_location("widths", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for r in ([2.0, 0.5, 1.5], [1.0, 2.0, 0.5, 1.5]):
        got = gen.evaluate(X3, 4, C_W=1.5, r=r)
        ref = nd.evaluate("tanh", 4, X3, stats=["K", "G1", "V"], rules=rules, params={"C_W": 1.5, "r": r})
        assert max(worst(got, ref, ["K", "G1", "V"]).values()) < 1e-10
    flat = gen.evaluate(X3, 4, C_W=1.5, r=1.0)
    assert not np.allclose(flat[-1]["V"], got[-1]["V"], rtol=1e-3)  # the ratios enter
    with pytest.raises(TypeError, match="'r'"):
        gen.evaluate(X3, 4, C_W=1.5)


@pytest.mark.parametrize("activation", ["leaky_relu:0.1", "z + z**2/4"])
def test_numpy_module_other_activations(tmp_path, activation):
    """Leaky ReLU (both branches nonzero: orthant moments with indicator sets) and a polynomial σ
    (exact rules): K, G1, V at four inputs equal nd.evaluate's to rounding."""
    import importlib.util
    path = tmp_path / "other.py"
    path.write_text(nd.codegen("K,G1,V", activation))
    spec = importlib.util.spec_from_file_location("other", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    got = gen.evaluate(X4, DEPTH, **HYPER)
    ref = nd.evaluate(activation, DEPTH, X4, stats=["K", "G1", "V"], params=HYPER)
    assert max(worst(got, ref, ["K", "G1", "V"]).values()) < 1e-10
