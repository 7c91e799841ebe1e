"""The on-disk cache of derived recursions: hits, invalidation, corruption, the folder from Settings."""
import json

import sympy as sp

from ntkdiagrams.engine import cache
from ntkdiagrams.engine.derivation import clear_memory_cache, derive
from ntkdiagrams.engine.request import derive_request
from ntkdiagrams.language.rulefile import load_rules
from ntkdiagrams.settings import Settings


def _fresh(tensor, rules, settings):
    clear_memory_cache()
    return derive(tensor, rules, settings=settings)


def test_roundtrip_and_hit(tmp_path):
    settings = Settings(cache_dir=tmp_path)
    rules = load_rules("mlp")
    first = _fresh("Theta1", rules, settings)
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    second = _fresh("Theta1", rules, settings)
    assert second is not first
    assert sp.expand(second.rhs - first.rhs) == 0
    assert sp.expand(second.compact - first.compact) == 0
    assert second.diagram_table() == first.diagram_table()
    assert second.latex() == first.latex()
    # the diagrams come back with their values
    assert second.diagram_table(values=True) == first.diagram_table(values=True)
    assert sp.expand(second.diagram_sum() - second.rhs) == 0
    assert sp.expand(second.diagram_sum(compact=True) - second.compact) == 0


def test_request_diagrams_survive_the_cache(tmp_path):
    settings = Settings(cache_dir=tmp_path)
    first = derive_request("Ec[z(i;a1) z(i;a2) z(i;a3) z(i;a4)]", settings=settings)
    assert list(tmp_path.glob("*.json"))
    clear_memory_cache()
    second = derive_request("Ec[z(i;a1) z(i;a2) z(i;a3) z(i;a4)]", settings=settings)
    for a, b in zip(first.structures, second.structures):
        assert a.recursion.diagram_table(values=True) == b.recursion.diagram_table(values=True)
        assert sp.expand(b.recursion.diagram_sum() - b.recursion.rhs) == 0


def test_corrupted_entry_is_rebuilt(tmp_path):
    settings = Settings(cache_dir=tmp_path)
    rules = load_rules("mlp")
    good = _fresh("K", rules, settings)
    (path,) = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    doc["payload"]["rhs"] = cache.encode(sp.Integer(42))  # tampered, checksum now wrong
    path.write_text(json.dumps(doc))
    again = _fresh("K", rules, settings)
    assert sp.expand(again.rhs - good.rhs) == 0
    path.write_text("{not json")
    assert sp.expand(_fresh("K", rules, settings).rhs - good.rhs) == 0


def test_rule_file_change_invalidates():
    text = open(load_rules("mlp").path).read()
    assert cache.entry_key(text, "K") != cache.entry_key(text.replace("C_W / n", "2 * C_W / n"), "K")
    assert cache.entry_key(text, "K") != cache.entry_key(text, "V")


def test_cache_can_be_disabled(tmp_path):
    settings = Settings.from_environment({"NTKDIAGRAMS_CACHE": "off"})
    assert settings.cache_dir is None
    rec = _fresh("K", load_rules("mlp"), settings)
    assert rec.rhs != 0
    assert cache.load(load_rules("mlp").source, "K", load_rules("mlp"), None) is None


def test_the_memory_cache_is_per_folder(tmp_path):
    """Two cache folders in one process: each gets its own entry (the folder is part of the key)."""
    rules = load_rules("mlp")
    clear_memory_cache()
    derive("K", rules, settings=Settings(cache_dir=tmp_path / "a"))
    derive("K", rules, settings=Settings(cache_dir=tmp_path / "b"))
    assert list((tmp_path / "a").glob("*.json")) and list((tmp_path / "b").glob("*.json"))
