"""Rule files: the built-in one loads; every malformed file gets a clear error, nothing runs."""
from pathlib import Path

import pytest

from ntkdiagrams.errors import RuleFileError
from ntkdiagrams.engine.derivation import derive
from ntkdiagrams.language.rulefile import RULES_DIR, load_rules, parse_rules

MLP = (RULES_DIR / "mlp.toml").read_text()


def test_builtin_rules_load():
    r = load_rules("mlp")
    assert set(r.tensors) == {"K", "G1", "V", "Theta", "Theta1", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U"}
    assert r.tensors["Theta"].symmetries == ((0, 1), (1, 0))
    assert r.gaussian_tensor() == "K"
    assert set(r.parameters) == {"b", "W"}
    assert {"z", "H", "dH", "ddIH", "ddIIH"} <= set(r.fields)


def test_rules_by_path_and_unknown_name(tmp_path):
    p = tmp_path / "copy.toml"
    p.write_text(MLP)
    assert load_rules(p).name == "mlp"
    with pytest.raises(RuleFileError, match="no rule file"):
        load_rules("no_such_architecture")
    with pytest.raises(RuleFileError, match="cannot read"):
        load_rules(tmp_path / "missing.toml")


def mutate(old, new):
    assert old in MLP, old
    return MLP.replace(old, new, 1)


BAD = [
    ("not toml", "model = [", "not valid TOML"),
    ("unknown top-level key", MLP + "\n[extras]\nx = 1\n", "unknown key"),
    ("unknown key in a table", mutate('latex = "z"', 'latex = "z"\ncolour = "red"'), r"fields.z\] unknown key"),
    ("missing variance", mutate('variance = "C_b"\n', ""), r"parameters.b\] missing required key"),
    ("undefined symbol", mutate('variance = "C_W / n"', 'variance = "C_X / n"'), "unknown name 'C_X'"),
    ("code injection", mutate('variance = "C_W / n"', 'variance = "__import__(\'os\').system(\'touch /tmp/pwned\')"'),
     "only calls of plain function names"),
    ("attribute access", mutate('variance = "C_b"', 'variance = "C_b.__class__"'), "Attribute is not allowed"),
    ("lambda", mutate('variance = "C_b"', 'variance = "(lambda: 1)()"'), "only calls of plain function names"),
    ("string literal", mutate('variance = "C_b"', 'variance = "\'abc\'"'), "only int and float"),
    ("huge exponent", mutate('variance = "C_b"', 'variance = "C_b ** 100000"'), "exponent larger"),
    ("bad index kind", mutate('indices = ["out", "in"]', 'indices = ["out", "sideways"]'), "out'/'in"),
    ("wrong arity", mutate("W(i, j) * sigma(z(j, a))", "W(i) * sigma(z(j, a))"), "takes 2 indices"),
    ("undeclared field", mutate("sigma(z(j, a))", "sigma(y(j, a))"), "unknown function 'y'"),
    ("undeclared sum index", mutate('sum_indices = ["j"]\nrhs = "b(i) + sum(j, W(i, j) * sigma',
                                    'sum_indices = ["k"]\nrhs = "b(i) + sum(j, W(i, j) * sigma'),
     "unknown name 'j'"),
    ("no z field", mutate("[fields.z]\ndescription = \"preactivation z_{i;a}\"\nneurons = 1",
                          "[fields.z]\ndescription = \"preactivation z_{i;a}\"\nneurons = 2"), "neurons = 1"),
    ("tensor metadata without a statistic", MLP + '\n[tensors.W2]\nlatex = "W"\n', "appear in no statistic"),
    ("expansion with two tensors", mutate("delta(i1, i2) * (K(a1, a2) + G1(a1, a2) / n)",
                                          "delta(i1, i2) * K(a1, a2) * G1(a1, a2)"), "exactly one tensor"),
    ("expansion with a positive power of n", mutate("G1(a1, a2) / n", "G1(a1, a2) * n"), "n\\^-k"),
    ("delta of an input label", mutate("delta(i1, i2) * (K", "delta(a1, i2) * (K"), "neuron indices"),
    ("non-string expression", mutate('variance = "C_b"', "variance = 3"), "must be a string"),
    ("bad field size", mutate("neurons = 2\ninputs = 2", "neurons = 0\ninputs = 2"), "integer in 1..8"),
]


@pytest.mark.parametrize("what, text, message", BAD, ids=[b[0] for b in BAD])
def test_malformed_rule_files(what, text, message):
    with pytest.raises(RuleFileError, match=message) as info:
        parse_rules(text, "rules/broken.toml")
    assert "rules/broken.toml" in str(info.value)


def test_injection_does_not_execute(tmp_path):
    marker = tmp_path / "pwned"
    text = mutate('variance = "C_b"', f'variance = "__import__(\'os\').system(\'touch {marker}\')"')
    with pytest.raises(RuleFileError):
        parse_rules(text)
    assert not marker.exists()


def test_a_new_parametrization_is_a_new_file(tmp_path):
    """Rules are data: scaling the weight variance in the file changes the derived recursion."""
    p = tmp_path / "scaled.toml"
    p.write_text(mutate('variance = "C_W / n"', 'variance = "2 * C_W / n"'))
    rec = derive("K", load_rules(p))
    import sympy as sp
    C_W = sp.Symbol("C_W", real=True)
    assert sp.expand(rec.rhs - derive("K").rhs.subs(C_W, 2 * C_W)) == 0


def test_binary_rule_file_is_a_rule_file_error(tmp_path):
    p = tmp_path / "binary.toml"
    p.write_bytes(b"\x00\xff\xfe binary")
    with pytest.raises(RuleFileError, match="not a text"):
        load_rules(p)
