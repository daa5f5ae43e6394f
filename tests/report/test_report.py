"""The uncertainty report: one self-contained HTML page, every section, no external resources."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import bayesqid as bq
from bayesqid.cli import EXIT_OK, EXIT_USAGE, main
from bayesqid.report.builder import build_report
from bayesqid.report.sections import convergence_section
from bayesqid.sampling.diagnostics import Diagnostics

SECTIONS = ("data", "model", "convergence", "posterior", "ppc", "curves", "extrapolation", "budgets",
            "sensitivity", "provenance")
#: Sections that must embed at least one figure.
FIGURE_SECTIONS = ("data", "model", "posterior", "ppc", "curves", "extrapolation")

FAILING = Diagnostics(divergences=17, draws=600, max_rhat=1.2, min_ess_bulk=35.0, min_ess_tail=20.0,
                      min_bfmi=0.1, worst_rhat="beta", worst_ess="sd_family_beta")


class Page(HTMLParser):
    """Collects section ids, the images inside each section, and every src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: dict[str, list[str]] = {}
        self.refs: list[tuple[str, str, str]] = []
        self.scripts_with_src = 0
        self.stylesheets = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.stack.append(a.get("id") or "")
            self.images.setdefault(self.stack[-1], [])
        for key in ("src", "href"):
            if a.get(key) is not None:
                self.refs.append((tag, key, a[key] or ""))
        if tag == "img" and self.stack:
            self.images[self.stack[-1]].append(a.get("src") or "")
        if tag == "script" and a.get("src"):
            self.scripts_with_src += 1
        if tag == "link" and "stylesheet" in (a.get("rel") or ""):
            self.stylesheets += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section" and self.stack:
            self.stack.pop()


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


@pytest.fixture(scope="module")
def failing_mock(mock_run):
    return dataclasses.replace(mock_run, diagnostics=FAILING)


@pytest.fixture(scope="module")
def report_html(ci_run, failing_mock) -> str:
    """One report of two runs: the session's NUTS run, then a mock run whose gate fails."""
    return build_report([ci_run, failing_mock], command="bayesqid report a.nc b.nc --out r.html",
                        labels=["ci.nc", "failing.nc"])


@pytest.mark.nuts
def test_every_section_present_with_its_figures(report_html):
    page = parse(report_html)
    for sid in SECTIONS:
        for key in (sid, f"{sid}-run2"):
            assert key in page.images, f"missing <section id={key!r}>"
    for sid in FIGURE_SECTIONS:
        for key in (sid, f"{sid}-run2"):
            pngs = [s for s in page.images[key] if s.startswith("data:image/png;base64,")]
            assert pngs, f"section {key!r} embeds no PNG"
            assert all(len(s) > 1000 for s in pngs)
    assert "runs" in page.images  # the gates of both runs side by side


@pytest.mark.nuts
def test_no_external_resources(report_html):
    page = parse(report_html)
    assert page.scripts_with_src == 0
    assert page.stylesheets == 0
    for tag, key, value in page.refs:
        assert not re.match(r"\s*(https?:)?//", value), (tag, key, value[:80])
        if key == "src":
            assert value.startswith("data:image/png;base64,"), (tag, value[:80])
        else:
            assert value.startswith("#"), (tag, value)
    assert "http://" not in report_html.split("<body>")[0]  # nothing in <head> either
    assert "@import" not in report_html and "url(" not in report_html


@pytest.mark.nuts
def test_failing_gate_shows_as_red_box(report_html):
    section = report_html.split('<section id="convergence-run2">')[1].split("</section>")[0]
    assert 'class="gate-fail"' in section and "#c62828" in section
    for problem in FAILING.problems:
        assert problem.replace(">", "&gt;").replace("<", "&lt;") in section
    assert "FAILED" in report_html.split('<section id="data"')[0]  # summarised at the top too


def test_passing_gate_has_no_red_box():
    passing = dataclasses.replace(FAILING, divergences=0, max_rhat=1.001, min_ess_bulk=900.0,
                                  min_ess_tail=800.0, min_bfmi=0.9)

    class Stub:
        diagnostics = passing

    body = convergence_section(Stub()).body  # type: ignore[arg-type]
    assert "gate-pass" in body and "gate-fail" not in body


@pytest.mark.nuts
def test_provenance_records_command_and_hash(report_html, ci_run):
    section = report_html.split('<section id="provenance">')[1].split("</section>")[0]
    assert ci_run.data_sha256 in section
    assert "bayesqid report a.nc b.nc --out r.html" in section
    assert "nutpie" in section


@pytest.mark.nuts
def test_cli_writes_report_atomically(ci_run_path, tmp_path, capsys):
    out = tmp_path / "out" / "report.html"
    assert main(["report", ci_run_path, "--out", str(out)]) == EXIT_OK
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "</html>" in text
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]  # no temporary file left
    assert str(out) in capsys.readouterr().out


@pytest.mark.nuts
def test_cli_strict_follows_the_gate(ci_run_path, tmp_path, capsys):
    """The ci preset's run fails its gate: the report is still written, --strict makes it exit 1."""
    out = tmp_path / "report.html"
    gate_passed = bq.load_run(ci_run_path).diagnostics.passed
    assert main(["report", ci_run_path, "--out", str(out), "--strict"]) == (0 if gate_passed else 1)
    assert out.exists()
    assert ("FAILED its convergence gate" in capsys.readouterr().err) == (not gate_passed)


def test_cli_bad_run_is_one_line_and_keeps_old_file(tmp_path, capsys):
    out = tmp_path / "report.html"
    out.write_text("previous", encoding="utf-8")
    assert main(["report", str(tmp_path / "missing.nc"), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert out.read_text(encoding="utf-8") == "previous"
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["report.html"]


def test_report_builds_from_mock_run_without_leaking_figures(failing_mock):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    html = build_report([failing_mock])
    assert plt.get_fignums() == before
    assert html.count('<section id="') == len(SECTIONS)
