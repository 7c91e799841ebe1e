"""The README's Python snippets run as written: every ```python block of README.md, in order, in one
namespace (as a reader pastes them into one session), in a fresh interpreter that imports this
source tree and uses the derivation cache of the environment (NTKDIAGRAMS_CACHE).

A snippet that fails (a name it never defines, an API it shows wrongly) fails this test with the
block's number, its first line in README.md and the error."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: runs the blocks given as JSON on stdin; prints "ok <count>" or the failing block and its error
RUNNER = r"""
import json, sys, traceback
blocks = json.load(sys.stdin)
namespace = {"__name__": "__readme__"}
for number, (line, code) in enumerate(blocks, 1):
    try:
        exec(compile(code, f"README.md (block {number}, line {line})", "exec"), namespace)
    except BaseException as exc:
        traceback.print_exc()
        print(f"FAILED block {number} (README.md line {line}): {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
print(f"ok {len(blocks)}")
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number of the code, code) of every fenced ```python block."""
    out = []
    for m in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M):
        out.append((text.count("\n", 0, m.start(1)) + 1, m.group(1)))
    return out


def test_the_extractor_finds_fenced_python_blocks_only():
    text = "intro\n```python\na = 1\n```\n```text\nb = 2\n```\n```bash\nls\n```\n```python\nprint(a)\n```\n"
    assert python_blocks(text) == [(3, "a = 1\n"), (12, "print(a)\n")]


def test_readme_python_snippets_run_in_order_in_one_namespace():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2, "README.md should show the Python API"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("MPLBACKEND", "Agg")
    r = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(blocks), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.strip().splitlines()[-1] == f"ok {len(blocks)}"
