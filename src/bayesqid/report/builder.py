"""The uncertainty report: one self-contained HTML page per set of runs.

:func:`build_report` renders ``templates/report.html.j2`` with figures embedded as base64 PNG
data URIs and CSS inline: the page loads nothing from anywhere, so it can be attached to a
review as one file.

Layout. Sections that compare runs (``CROSS_RUN_SECTIONS`` of :mod:`bayesqid.report.attached`;
today the convergence gates, shown when there is more than one run) come first; then the
per-run sections (``RUN_SECTIONS`` of :mod:`bayesqid.report.sections`) are repeated for every
run, in order. The first run's sections carry the plain ids (``data``, ``model``,
``convergence``, ``posterior``, ``ppc``, ``curves``, ``extrapolation``, ``budgets``,
``sensitivity``, ``provenance``); later runs append ``-run2``, ``-run3``... A calibration
(``sbc``) or a law-form comparison (``compare``) given as ``extra`` follows the cross-run
sections.

Extending. A section is a function returning a :class:`~bayesqid.report.html.Section` or
``None`` (not applicable: the section is left out). Add it to one of those lists, or pass a
ready section as ``extra`` (simulation-based calibration, which belongs to no one run).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import jinja2

from bayesqid.constants import CI_PROB
from bayesqid.report.attached import CROSS_RUN_SECTIONS
from bayesqid.report.html import Section
from bayesqid.report.sections import RUN_SECTIONS, provenance_section
from bayesqid.sampling.run import Run

# --- the page ----------------------------------------------------------------------------------


def _template() -> jinja2.Template:
    text = (resources.files("bayesqid.report") / "templates" / "report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(text)


def build_report(runs: list[Run], *, command: str | None = None, labels: Sequence[str] | None = None,
                 extra: Sequence[Section] = ()) -> str:
    """Render the uncertainty report of ``runs`` as one self-contained HTML page.

    Parameters
    ----------
    runs : list of Run
        One or more fitted or loaded runs; per-run sections repeat for each.
    command : str, optional
        The command line that built the report, recorded under provenance.
    labels : sequence of str, optional
        A name per run (file names, say); default ``run 1``, ``run 2``...
    extra : sequence of Section
        Sections not tied to one run (simulation-based calibration, say), shown after the
        cross-run sections.

    Returns
    -------
    str
        HTML with inline CSS and figures as base64 PNG data URIs; no external resources.
    """
    from bayesqid.constants import package_version
    from bayesqid.errors import BayesqidError

    if not runs:
        raise BayesqidError("report needs at least one run")
    labels = list(labels) if labels is not None else [f"run {i + 1}" for i in range(len(runs))]
    if len(labels) != len(runs):
        raise BayesqidError(f"got {len(labels)} labels for {len(runs)} runs")
    cross = [s for s in (b(runs, labels) for b in CROSS_RUN_SECTIONS) if s is not None] + list(extra)
    blocks = []
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        sections = [s for s in (b(run) for b in RUN_SECTIONS) if s is not None]
        sections.append(provenance_section(run, command))
        suffix = "" if i == 0 else f"-run{i + 1}"
        sections = [Section(s.id + suffix, s.title, s.body) for s in sections]
        blocks.append({"label": label, "spec": run.spec.name, "passed": run.diagnostics.passed,
                       "problems": run.diagnostics.problems, "sections": sections})
    return _template().render(version=package_version(), cross=cross, runs=blocks, ci=f"{CI_PROB:.0%}")

