"""The on-disk cache of derived recursions: hits, invalidation, corruption."""
import json

import sympy as sp

from ntkdiagrams.engine import cache
from ntkdiagrams.engine.recursion import _derive_cached, derive
from ntkdiagrams.language.rulefile import load_rules


def _fresh(tensor, rules):
    _derive_cached.cache_clear()
    return derive(tensor, rules)


def test_roundtrip_and_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKDIAGRAMS_CACHE", str(tmp_path))
    rules = load_rules("mlp")
    first = _fresh("Theta1", rules)
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    second = _fresh("Theta1", rules)
    assert second is not first
    assert sp.expand(second.rhs - first.rhs) == 0
    assert sp.expand(second.compact - first.compact) == 0
    assert second.diagram_table() == first.diagram_table()
    assert second.latex() == first.latex()


def test_corrupted_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKDIAGRAMS_CACHE", str(tmp_path))
    rules = load_rules("mlp")
    good = _fresh("K", rules)
    (path,) = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    doc["payload"]["rhs"] = cache.encode(sp.Integer(42))  # tampered, checksum now wrong
    path.write_text(json.dumps(doc))
    again = _fresh("K", rules)
    assert sp.expand(again.rhs - good.rhs) == 0
    path.write_text("{not json")
    assert sp.expand(_fresh("K", rules).rhs - good.rhs) == 0


def test_rule_file_change_invalidates(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKDIAGRAMS_CACHE", str(tmp_path))
    text = open(load_rules("mlp").path).read()
    assert cache.entry_key(text, "K") != cache.entry_key(text.replace("C_W / n", "2 * C_W / n"), "K")
    assert cache.entry_key(text, "K") != cache.entry_key(text, "V")


def test_cache_can_be_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKDIAGRAMS_CACHE", "off")
    _fresh("K", load_rules("mlp"))
    assert cache.cache_dir() is None
