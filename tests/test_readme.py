"""The README's promises: its Python snippet runs, its law table matches the registry, and its
two set-up commands are the ones the Makefile and CI provide."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import bayesqid as bq

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


@pytest.mark.nuts
def test_python_snippets_run(tmp_path, monkeypatch):
    # The blocks run in order in one namespace: later ones continue from the fitted `run`.
    snippet, inverse = _blocks("python")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    table = namespace["table"]
    assert len(table) == 12
    assert (table["mean_lower"] <= table["mean_upper"]).all()
    assert (tmp_path / "runs" / "quick.nc").exists()
    exec(compile(inverse, "README.md", "exec"), namespace)
    assert len(namespace["budget"]) == 8
    assert namespace["level"].grid["mass"].sum() == pytest.approx(1.0)


def test_law_table_matches_registry():
    rows = re.findall(r"^\| `(\w+)` \|", README, flags=re.M)
    assert sorted(rows) == sorted(bq.LAWS)


def test_setup_commands_exist_in_makefile_and_ci():
    setup = _blocks("bash")[0]
    commands = [line.split("#")[0].strip() for line in setup.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
