"""Every notebook runs top to bottom with small sampler settings injected as parameters.

Each executed copy (outputs and figures included) is kept in ``build/notebooks/``, stamped with
the SHA-256 of the notebook it came from: the documentation renders those copies instead of
executing the notebooks a second time (``docs/executed_notebooks.py``), and re-executes only a notebook
whose copy is missing or stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

sys.path.insert(0, str(ROOT / "docs"))
from executed_notebooks import execute, keep  # noqa: E402


@pytest.mark.nuts
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    pytest.importorskip("papermill")
    out = tmp_path / path.name
    execute(path, out)
    keep(path, out)  # for the documentation; refuses a copy with an error output


def test_notebooks_are_stripped():
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), path.name
