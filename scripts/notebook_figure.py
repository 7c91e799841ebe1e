#!/usr/bin/env python
"""Execute a notebook from a clean kernel and save its last figure as a PNG (README figures are
regenerated from the notebooks, never pasted by hand).

    python scripts/notebook_figure.py notebooks/05_training.ipynb docs/img/training.png

Needs the test extra (nbclient, ipykernel, matplotlib).  NTKDIAGRAMS_NOTEBOOK_SCALE scales the
notebook's sample counts as in tests/test_notebooks.py.
"""
from __future__ import annotations

import base64
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    import nbclient
    import nbformat

    src, dst = Path(argv[0]), Path(argv[1])
    nb = nbformat.read(src, as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(src.parent)}}).execute()
    pngs = [o["data"]["image/png"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})]
    if not pngs:
        print(f"{src}: no figure in the outputs", file=sys.stderr)
        return 1
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(base64.b64decode(pngs[-1]))
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stdout":
                print(o["text"], end="")
    print(f"wrote {dst} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
