"""Fuzzing the rule-file loader (ntkdiagrams.language.rulefile.parse_rules).

The inputs are mutations of the built-in rules/mlp.toml: a subset of its tables (the required
ones kept most of the time, so that many files get past the schema checks into the expression
parser, the statistics and the symmetry derivation), then a few line mutations: lines deleted,
duplicated, swapped or garbled, values replaced by random TOML values (expressions in the rule
file's own names among them), random keys and tables inserted; and, for the rest, random text.

Properties (tests/fuzz_support.py): nothing is executed, and the loader returns a RuleSet or
raises RuleFileError whose message names the file."""
import json
import re

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from fuzz_support import FUZZ, expression_pool, identifiers, mutated, outcome
from ntkdiagrams.errors import RuleFileError
from ntkdiagrams.language.rulefile import RULES_DIR, RuleSet, parse_rules

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")   # Python warns on some texts before refusing them

PATH = "fuzz.toml"
SOURCE = (RULES_DIR / "mlp.toml").read_text(encoding="utf-8")
#: the tables of mlp.toml (the first block is the header comment)
BLOCKS = re.split(r"(?m)^(?=\[)", SOURCE)
#: the same with each multi-line string on one line (so that replacing a value replaces all of it)
FLAT = [re.sub(r'"""(.*?)"""', lambda m: json.dumps(" ".join(m.group(1).split())), b, flags=re.S) for b in BLOCKS]
#: the keys whose values are expressions
EXPRESSION_KEYS = ("variance", "learning_rate", "rhs", "cumulant", "expansion")
#: the tables a valid rule file needs (model, its symbols, z, b, W, the layer map, the two-point statistic)
REQUIRED = [k for k, b in enumerate(BLOCKS)
            if b.startswith(("[model]", "[symbols.", "[fields.z]", "[parameters.", "[layer_map.z]", "[statistics.G]"))]
OPTIONAL = [k for k in range(len(BLOCKS)) if k not in REQUIRED]

NAMES = {"C_b", "C_W", "lambda_b", "lambda_W", "n", "n0", "i", "j", "a", "i1", "i2", "i3", "a1", "a2", "a3", "mu"}
FUNCTIONS = {"b", "W", "sigma", "z", "H", "dH", "sum", "x", "delta", "K", "G1", "V", "Theta"}


def toml_string(text):
    """A TOML basic string holding ``text`` (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


#: expression texts in the rule file's own names (drawn from a list: cheap to generate)
POOL = expression_pool(NAMES, FUNCTIONS)
EXPRESSIONS = st.one_of(st.sampled_from(POOL), st.sampled_from(POOL), mutated(st.sampled_from(POOL)))


def toml_values():
    expr = EXPRESSIONS
    scalar = st.one_of(
        expr.map(toml_string), expr.map(toml_string), mutated(expr).map(toml_string),
        st.sampled_from(['"out"', '"in"', '"z"', '"n"', '"sigma"', '"_x"', '""', '"i"', '"j"', '"a"']),
        st.integers(-3, 10).map(str), st.sampled_from(["0", "1", "2", "4", "8", "9", "-1", "true", "false",
                                                         "1.5", "inf", "nan", "1979-05-27", "{}", "[]",
                                                         "{ latex = 1 }", "'''z'''", '"""\nz(i1, a1)\n"""']),
        identifiers().map(toml_string))
    return st.one_of(scalar, scalar, st.lists(scalar, max_size=4).map(lambda v: "[" + ", ".join(v) + "]"),
                     st.lists(st.lists(st.integers(-1, 4), max_size=4), max_size=3).map(json.dumps),
                     st.lists(st.lists(st.sampled_from(["mu", "nu", "rho", "1", "_"]), max_size=3),
                              max_size=5).map(json.dumps))


KEYS = st.one_of(st.sampled_from(["name", "width", "input_width", "activation", "neurons", "inputs", "indices",
                                  "variance", "learning_rate", "neuron", "input", "sum_indices", "rhs",
                                  "cumulant", "expansion", "latex", "description", "tangent",
                                  "slot_symmetries", "derivatives", "model", "fields"]), identifiers())
HEADERS = st.one_of(
    st.tuples(st.sampled_from(["model", "symbols", "fields", "parameters", "layer_map", "first_layer",
                               "statistics", "tensors", "junk"]),
              st.one_of(st.just(""), st.sampled_from([".z", ".H", ".W", ".b", ".G", ".K", ".V", ".x"]),
                        identifiers().map(lambda s: "." + s)),
              st.sampled_from(["[]", "[]", "[[]]"])).map(lambda t: t[2][:len(t[2]) // 2] + t[0] + t[1]
                                                             + t[2][len(t[2]) // 2:]),
    st.sampled_from(["[model", "[]", "[fields.z.extra]", "[statistics.G.cumulant]"]))

MUTATIONS = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10 ** 6)),
    st.tuples(st.just("duplicate"), st.integers(0, 10 ** 6)),
    st.tuples(st.just("swap"), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6)),
    st.tuples(st.just("value"), st.integers(0, 10 ** 6), toml_values()),
    st.tuples(st.just("value"), st.integers(0, 10 ** 6), toml_values()),
    st.tuples(st.just("expression"), st.integers(0, 10 ** 6), EXPRESSIONS),
    st.tuples(st.just("expression"), st.integers(0, 10 ** 6), EXPRESSIONS),
    st.tuples(st.just("key"), st.integers(0, 10 ** 6), KEYS),
    st.tuples(st.just("insert"), st.integers(0, 10 ** 6), st.tuples(KEYS, toml_values()).map(" = ".join)),
    st.tuples(st.just("insert"), st.integers(0, 10 ** 6), HEADERS),
    st.tuples(st.just("garble"), st.integers(0, 10 ** 6), st.text(max_size=20)),
)


def mutate(lines, mutation):
    kind, where = mutation[0], mutation[1] % (len(lines) + 1)
    if kind == "expression":      # a new value for one of the expression keys
        targets = [k for k, line in enumerate(lines) if line.split("=")[0].strip() in EXPRESSION_KEYS]
        if not targets:
            return lines
        where = targets[mutation[1] % len(targets)]
        key = lines[where].split("=")[0].strip()
        return lines[:where] + [f"{key} = {toml_string(mutation[2])}"] + lines[where + 1:]
    if kind == "insert":
        return lines[:where] + [mutation[2]] + lines[where:]
    if not lines:
        return lines
    where %= len(lines)
    line = lines[where]
    if kind == "delete":
        return lines[:where] + lines[where + 1:]
    if kind == "duplicate":
        return lines[:where + 1] + [line] + lines[where + 1:]
    if kind == "swap":
        other = mutation[2] % len(lines)
        lines = list(lines)
        lines[where], lines[other] = lines[other], line
        return lines
    key, eq, _value = line.partition("=")
    if kind == "value":
        line = f"{key.strip() or 'x'} = {mutation[2]}"
    elif kind == "key":
        line = f"{mutation[2]} {eq or '='}{_value}"
    else:   # garble: random text spliced into the line
        cut = len(line) // 2
        line = line[:cut] + mutation[2] + line[cut:]
    return lines[:where] + [line] + lines[where + 1:]


_DROP = st.one_of(st.just([]), st.just([]), st.just([]), st.lists(st.sampled_from(REQUIRED), max_size=2))
_ADD = st.lists(st.sampled_from(OPTIONAL), max_size=6)


def _rule_file(drop, add, flat, mutations):
    blocks = FLAT if flat else BLOCKS
    lines = "".join(blocks[k] for k in sorted((set(REQUIRED) - set(drop)) | set(add))).splitlines()
    for mutation in mutations:
        lines = mutate(lines, mutation)
    return "\n".join(lines) + "\n"


def rule_files():
    """mlp.toml cut down to some of its tables (the required ones mostly kept), then mutated line
    by line (strategies built once: hypothesis draws from them cheaply)."""
    return st.tuples(_DROP, _ADD, st.booleans(), st.lists(MUTATIONS, max_size=3)).map(lambda t: _rule_file(*t))


@pytest.mark.slow
@FUZZ
@given(st.one_of(rule_files(), rule_files(), rule_files(), rule_files(), rule_files(), rule_files(),
                 st.text(max_size=200), st.lists(st.tuples(KEYS, toml_values()).map(" = ".join),
                                                 max_size=6).map("\n".join)))
def test_any_rule_file_loads_or_raises_rule_file_error(text):
    result = outcome(lambda: parse_rules(text, PATH), RuleSet)
    if isinstance(result, Exception):
        assert isinstance(result, RuleFileError), f"{type(result).__name__}: {result}"
        assert PATH in str(result), f"the message does not name the file: {result}"
        where = re.search(r"\[([a-z_ ]+)", str(result))   # how far the file got: the table named
        event("refused: " + (where.group(1) if where else "TOML"))
    else:
        event("loaded")
        assert result.gaussian_tensor() in result.tensors


def test_the_unmutated_cuts_load():
    """The generator's starting points are valid: mlp.toml (also with its multi-line strings on
    one line) and its required tables alone."""
    assert isinstance(parse_rules(SOURCE, PATH), RuleSet)
    assert parse_rules("".join(FLAT), PATH).statistics.keys() == parse_rules(SOURCE, PATH).statistics.keys()
    minimal = parse_rules("".join(BLOCKS[k] for k in REQUIRED), PATH)
    assert set(minimal.statistics) == {"G"} and set(minimal.tensors) == {"K", "G1"}
