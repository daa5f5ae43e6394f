"""The README's promises: its Python snippets run, its law table matches the registry, its two
set-up commands are the ones the Makefile and CI provide, its command line at a glance names
every command with options the parser has, and its make targets and links exist."""

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
def test_python_snippets_run(tmp_path, monkeypatch, session_fit):
    # The blocks run in order in one namespace: later ones continue from the fitted `run`. The
    # snippet's fit is the session's (same spec, data and seeded settings: the same draws).
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
    table = README.split("| law | form |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    assert sorted(rows) == sorted(bq.LAWS)


def test_setup_commands_exist_in_makefile_and_ci():
    setup = _blocks("bash")[0]
    commands = [line.split("#")[0].strip() for line in setup.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _subparsers(parser):
    import argparse

    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_command_line_at_a_glance_matches_the_parser():
    from bayesqid.cli import build_parser

    glance = next(b for b in _blocks("bash") if b.lstrip().startswith("bayesqid data"))
    commands = _subparsers(build_parser())
    seen = set()
    for line in glance.splitlines():
        for usage in line.split("#")[0].split(" | "):
            words = usage.split()
            if not words:
                continue
            assert words[0] == "bayesqid", usage
            parser = commands[words[1]]
            if words[1] == "lab":
                parser = _subparsers(parser)[words[2]]
            seen.add(words[1])
            options = {o for a in parser._actions for o in a.option_strings}
            for option in re.findall(r"(--[a-z-]+)", usage):
                assert option in options, f"{usage.strip()}: {option}"
    assert seen == set(commands)  # every command is at a glance


def test_make_targets_and_links_exist():
    makefile = (ROOT / "Makefile").read_text()
    for block in _blocks("bash"):
        for target in re.findall(r"^\S*\s*make (\w+)", block, flags=re.M):
            assert re.search(rf"^{target}:", makefile, flags=re.M), target
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if "://" not in link:
            assert (ROOT / link).exists(), link
