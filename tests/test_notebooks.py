"""Every notebook runs top to bottom with small sampler settings injected as parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.nuts
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    papermill = pytest.importorskip("papermill")
    papermill.execute_notebook(str(path), str(tmp_path / path.name), parameters={"SAMPLER": "ci"},
                               kernel_name="python3", cwd=str(path.parent), progress_bar=False)


def test_notebooks_are_stripped():
    import json

    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), path.name
