"""Execute the notebooks in notebooks/ from a clean kernel (issue 7).

Each notebook contains ``assert`` statements that check the physics (Monte Carlo against theory, the
scale-invariant theorem, ...), so running it is a test of the engine, the evaluator and the sampler.
The notebooks run with nbclient in a fresh ``python3`` kernel whose working directory is notebooks/;
their sample counts are scaled by NTKDIAGRAMS_NOTEBOOK_SCALE (default 1, the CI size).

nbclient, nbformat, ipykernel and matplotlib come with the ``test`` extra (``pip install -e '.[test]'``).
If they are missing the tests fail with a message saying so: they are never skipped silently.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = ["01_quickstart.ipynb", "02_ntk_stability.ipynb", "03_finite_width.ipynb",
             "04_scale_invariant.ipynb", "05_training.ipynb"]
CELL_TIMEOUT_S = 600
KERNEL = "python3"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as exc:
        missing = exc
    pytest.fail(f"executing the notebooks needs {module!r} ({missing}); install the test extra: "
                "python3 -m pip install -e '.[test]'", pytrace=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name):
    nbformat = _require("nbformat")
    nbclient = _require("nbclient")
    _require("ipykernel")
    _require("matplotlib")
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellExecutionError

    path = NOTEBOOK_DIR / name
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute()
    except NoSuchKernel as exc:
        pytest.fail(f"no Jupyter kernel named {KERNEL!r} ({exc}); ipykernel registers it when installed "
                    "with pip (python3 -m pip install -e '.[test]')", pytrace=False)
    except CellExecutionError as exc:
        pytest.fail(f"{name}: a cell failed\n{exc}", pytrace=False)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{name}: error outputs {[(e['ename'], e['evalue']) for e in errors]}"


def test_notebooks_listed_and_committed_without_outputs():
    """Every notebook in notebooks/ is executed above, and is stored without outputs (small files)."""
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        doc = json.loads((NOTEBOOK_DIR / name).read_text(encoding="utf-8"))
        assert doc["metadata"]["kernelspec"]["name"] == KERNEL, name
        for cell in doc["cells"]:
            if cell["cell_type"] == "code":
                assert cell.get("outputs") == [] and cell.get("execution_count") is None, \
                    f"{name}: clear the outputs before committing (jupyter nbconvert --clear-output)"
