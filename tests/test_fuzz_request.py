"""Fuzzing the correlator-request parser (ntkdiagrams.engine.request.parse_request).

Properties (tests/fuzz_support.py): on any text nothing is executed, and the parser returns a
Request or raises ExpressionError with a message; a well-formed request of the rule file's fields
comes back with exactly the legs it was written with."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz_support import FUZZ, FUZZ_VALID, fuzz_texts, identifiers, mutated, outcome
from ntkdiagrams.engine.request import Request, parse_request
from ntkdiagrams.errors import ExpressionError
from ntkdiagrams.language.rulefile import load_rules

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")   # Python warns on some texts before refusing them
RULES = load_rules("mlp")
FIELDS = sorted(RULES.fields)
#: index names: plain ones (mostly) and the reserved or clashing ones the parser must refuse
INDEX = st.one_of(st.sampled_from(["i1", "i2", "i3", "a1", "a2", "a3", "a", "b", "j"]),
                  st.sampled_from(["i1", "a1", "n", "ell", "delta", "E", "Ec", "_i", "C_W", "z", "H", "x"]),
                  identifiers())


def _leg(field, index):
    """One leg, written with or without ';', with any number of indices (right or wrong)."""
    return st.tuples(field, st.lists(index, max_size=4), st.lists(index, max_size=4),
                     st.sampled_from([";", ",", "; ", " ;"])).map(
        lambda t: f"{t[0]}({', '.join(t[1])}{t[3] if t[2] else ''}{', '.join(t[2])})")


def request_texts():
    field = st.one_of(st.sampled_from(FIELDS), st.sampled_from(FIELDS), identifiers())
    prefix = st.one_of(st.sampled_from(["E", "Ec", "E_c"] * 3 + ["e", "Ex", "", "E c", "Ec_"]), identifiers())
    joiner = st.sampled_from([" ", " * ", "*", "  ", "", ",", " ** "])
    return st.tuples(prefix, st.sampled_from(["[", "[", "(", " [", ""]),
                     st.lists(_leg(field, INDEX), max_size=4), joiner,
                     st.sampled_from(["]", "]", "] ", ")", "", "]]", "] junk", "]*"])).map(
        lambda t: f"{t[0]}{t[1]}{t[3].join(t[2])}{t[4]}")


@pytest.mark.slow
@FUZZ
@given(st.one_of(fuzz_texts(request_texts(), atoms=("E[z(i;a)]", "z(i;a)")), mutated(request_texts())))
def test_any_text_parses_or_raises_expression_error(text):
    result = outcome(lambda: parse_request(text, RULES), Request)
    if isinstance(result, Exception):
        assert isinstance(result, ExpressionError), type(result)
    else:
        assert result.legs and all(leg.field in RULES.fields for leg in result.legs)


@st.composite
def well_formed(draw):
    """A request every index of which is a fresh name: (text, connected, [(field, neurons, inputs)])."""
    neurons, labels, legs = [], [], []
    for _ in range(draw(st.integers(1, 4))):
        spec = RULES.fields[draw(st.sampled_from(FIELDS))]
        ns = []
        for _ in range(spec.neurons):       # an existing neuron index (coinciding indices) or a new one
            ns.append(draw(st.sampled_from(neurons)) if neurons and draw(st.booleans()) else None)
        ins = [draw(st.sampled_from(labels)) if labels and draw(st.booleans()) else None for _ in range(spec.inputs)]
        for k, v in enumerate(ns):
            if v is None:
                ns[k] = f"i{len(neurons)}n"
                neurons.append(ns[k])
        for k, v in enumerate(ins):
            if v is None:
                ins[k] = f"a{len(labels)}"
                labels.append(ins[k])
        legs.append((spec.name, tuple(ns), tuple(ins)))
    prefix = draw(st.sampled_from(["E", "Ec", "E_c"]))
    semicolon = draw(st.booleans())
    body = draw(st.sampled_from([" ", " * "])).join(
        f"{f}({','.join(ns)}{';' if semicolon else ','}{','.join(ins)})" for f, ns, ins in legs)
    return f"{prefix}[{body}]", prefix != "E", legs


@pytest.mark.slow
@FUZZ_VALID
@given(well_formed())
def test_well_formed_requests_keep_their_legs(case):
    text, connected, legs = case
    result = outcome(lambda: parse_request(text, RULES), Request)
    assert not isinstance(result, Exception), f"{text!r} refused: {result}"
    assert result.connected == connected
    assert [(leg.field, tuple(map(str, leg.neurons)), tuple(map(str, leg.inputs))) for leg in result.legs] == legs
