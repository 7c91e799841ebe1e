"""Every input the fuzz tests (tests/test_fuzz_*.py) ever found failing, replayed without
hypothesis: tests/fuzz_regressions.json, one entry per input, with what the parser used to do.
Add the input of every new failure there when it is fixed."""
import pytest

from fuzz_support import outcome, parsers, regressions

PARSERS = parsers()
CASES = regressions()


def test_the_regression_file_names_known_parsers():
    assert CASES and {parser for parser, _, _ in CASES} <= set(PARSERS)


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@pytest.mark.parametrize("parser, text, was", CASES, ids=[f"{p}-{k}" for k, (p, _, _) in enumerate(CASES)])
def test_recorded_failure_stays_fixed(parser, text, was):
    parse, valid_type, error = PARSERS[parser]
    result = outcome(lambda: parse(text), valid_type)
    if isinstance(result, Exception):
        assert isinstance(result, error), f"{type(result).__name__}: {result}"
