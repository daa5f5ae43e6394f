"""The documentation site as built by ``make docs``: its generated references cover the whole
command line and the whole public API, its notebooks show their outputs and figures, and
headless Chromium renders the index and an API page.

The site is built by ``make docs`` (CI builds it before the tests); without a build these tests
skip and say so. The browser checks need ``chromium`` (``make browser`` installs it on
Debian/Ubuntu) and skip, saying why, where it is missing.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import bayesqid as bq
from bayesqid.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"
EXECUTED = ROOT / "build" / "notebooks"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.skipif(not (SITE / "index.html").exists(),
                                reason="the documentation is not built: run 'make docs' first (CI does)")


def page_text(name: str) -> str:
    """A built page's visible text, roughly: tags dropped, entities decoded."""
    raw = (SITE / name).read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def subcommands(parser: argparse.ArgumentParser, prog: str) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(f"{prog} {name}", sub), *subcommands(sub, f"{prog} {name}")]
    return found


def test_cli_reference_has_every_command_and_option():
    text = page_text("cli.html")
    commands = subcommands(build_parser(), "bayesqid")
    assert len(commands) >= 12
    for full, sub in commands:
        assert full in text, full
        for action in sub._actions:
            for option in action.option_strings:
                assert option in text, f"{full} {option}"


def test_api_reference_has_every_export():
    names = [n for n in bq.__all__ if n != "__version__"]
    missing = [n for n in names if not (SITE / "generated" / f"bayesqid.{n}.html").exists()]
    assert missing == []
    fit = page_text("generated/bayesqid.fit.html")
    assert "Parameters" in fit and "Returns" in fit  # numpydoc sections rendered, not raw text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_pages_show_outputs_and_figures(path):
    page = (SITE / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
    executed = json.loads((EXECUTED / path.name).read_text(encoding="utf-8"))
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert outputs, f"{path.name}: the executed copy has no outputs"
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
    assert len(images) >= figures, f"{path.name}: {figures} figures executed, {len(images)} on the page"
    for src in images:
        assert (SITE / "notebooks" / src).resolve().exists(), src
    assert 'class="cell_output' in page


# --- in a browser -------------------------------------------------------------------------------


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on PATH: 'make browser' installs it (Debian/Ubuntu, as root)")


def render(page: str, tmp_path: Path) -> tuple[str, str, Path]:
    """The DOM after scripts ran, the browser's console log, and a screenshot of ``page``."""
    url = (SITE / page).as_uri()
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    common = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--hide-scrollbars", "--window-size=1280,900", "--virtual-time-budget=5000",
              f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120, check=True)
    shot = tmp_path / "page.png"
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    return dom.stdout, dom.stderr, shot


def assert_not_blank(png: Path) -> None:
    import matplotlib.image as mpimg

    pixels = mpimg.imread(png)
    assert pixels.shape[0] >= 800 and pixels.shape[1] >= 1200
    assert pixels[..., :3].std() > 0.05, "the screenshot is one flat colour"


def test_index_renders_in_a_browser(tmp_path):
    dom, console, shot = render("index.html", tmp_path)
    assert "bd-header" in dom  # the theme's navigation bar, laid out by its scripts and styles
    for link in ("Getting started", "User guide", "API reference", "Command-line reference", "Notebooks"):
        assert link in dom, link
    assert "Uncaught" not in console, console
    assert_not_blank(shot)


def test_api_page_renders_in_a_browser(tmp_path):
    dom, console, shot = render("generated/bayesqid.predict.html", tmp_path)
    assert "bayesqid.predict" in dom
    assert "Parameters" in dom and "grid" in dom
    assert "Uncaught" not in console, console
    assert_not_blank(shot)
