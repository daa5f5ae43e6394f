"""Sections that are not one run's: the runs' gates side by side, a calibration (SBC) and a
law-form comparison attached to the report."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from bayesqid.report.html import CrossRunBuilder, Section, escape, fmt, img, table_html
from bayesqid.sampling.run import Run


def gates_section(runs: Sequence[Run], labels: Sequence[str]) -> Section | None:
    """Convergence gates of several runs side by side (only with more than one run)."""
    if len(runs) < 2:
        return None
    rows = []
    for run, label in zip(runs, labels, strict=True):
        d = run.diagnostics
        rows.append({"run": label, "spec": run.spec.name, "law": run.spec.law,
                     "gate": "PASSED" if d.passed else "FAILED", "divergences": d.divergences,
                     "max R-hat": f"{d.max_rhat:.3f}",
                     "min ESS bulk/tail": f"{d.min_ess_bulk:.0f}/{d.min_ess_tail:.0f}",
                     "min BFMI": f"{d.min_bfmi:.2f}"})
    table = pd.DataFrame(rows)
    return Section("runs", "Runs compared: convergence gates", table_html(table))


#: Sections about all runs together, shown before the per-run sections.
CROSS_RUN_SECTIONS: list[CrossRunBuilder] = [gates_section]


def sbc_section(result: object) -> Section:
    """Simulation-based calibration (a :class:`bayesqid.sbc.SBCResult`): verdict, tests, ECDF figures."""
    import base64

    from bayesqid.checks.sbc import ECDF_FILE

    summary = result.summary  # type: ignore[attr-defined]
    tests = result.tests.copy()  # type: ignore[attr-defined]
    for col in ("chi2", "ks", "mean_u"):
        tests[col] = tests[col].map(lambda x: f"{x:.3f}")
    for col in ("chi2_p", "ks_p", "threshold"):
        tests[col] = tests[col].map(lambda x: f"{x:.2g}")
    ok = bool(result.passed)  # type: ignore[attr-defined]
    style = ("border:2px solid #2e7d32;background:#e8f5e9" if ok
             else "border:3px solid #c62828;background:#ffebee;color:#b71c1c")
    sampler = summary.get("sampler", {})
    body = [f'<div style="{style};padding:8px 12px;"><b>{escape(result.verdict)}</b></div>',  # type: ignore[attr-defined]
            f"<p>Spec <code>{escape(summary.get('spec'))}</code> on {summary.get('rows')} design rows; "
            f"{summary.get('finished')} replicates ({summary.get('failed', 0)} failed to fit, "
            f"{summary.get('gate_failures', 0)} with a failed convergence gate); sampler "
            f"{escape(sampler.get('chains'))} chains x ({escape(sampler.get('tune'))} tune + "
            f"{escape(sampler.get('draws'))} draws); root seed {summary.get('root_seed')}; wall time "
            f"{float(summary.get('wall_seconds', 0)):.0f} s. "
            "Each replicate draws parameters from the priors, simulates QiD on the design (censoring "
            "included), fits, and ranks the truth among posterior draws thinned to about their "
            "effective sample size. Calibrated: ranks uniform. Tests: chi-square on binned ranks and "
            "Kolmogorov-Smirnov, Bonferroni over quantities and tests.</p>", table_html(tests)]
    directory = getattr(result, "directory", None)
    png = directory / ECDF_FILE if directory is not None else None
    if png is not None and png.is_file():
        uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
        body.append(img(uri, "SBC rank ECDF minus uniform, with simultaneous bands"))
    return Section("sbc", "Simulation-based calibration", "\n".join(body))


def compare_section(saved: object) -> Section:
    """Law-form comparison (a :class:`bayesqid.compare.SavedComparison`): verdict and score tables."""
    table = saved.table.copy()  # type: ignore[attr-defined]
    cols = [c for c in ("spec", "law", "elpd_loo", "se_loo", "elpd_diff_loo", "dse_loo", "p_loo",
                        "pareto_k_bad", "pareto_k_very_bad", "weight", "logo_elpd", "logo_diff", "logo_dse",
                        "logo_mcse", "logo_khat_max", "logo_coverage", "forecast_elpd", "forecast_diff",
                        "forecast_dse", "forecast_coverage", "scaleup_elpd", "scaleup_diff", "scaleup_dse",
                        "scaleup_coverage", "extrap_elpd", "extrap_diff",
                        "extrap_dse", "extrap_coverage", "gate_passed", "failed_folds") if c in table.columns]
    shown = table[cols].copy()
    for col in shown.columns:
        if shown[col].dtype.kind == "f":
            shown[col] = shown[col].map(lambda x: fmt(float(x)))
    body = [f"<pre>{escape(saved.summary)}</pre>",  # type: ignore[attr-defined]
            "<p>elpd: expected log predictive density (higher is better); <code>*_diff</code>: how far "
            "a form is behind the best, <code>*_dse</code>: the SE of that difference (under 2 SE: not "
            "distinguishable). Leave-one-family-out scores each held-out family as a new family (joint "
            "density of its rows), forecast the most-trained families as new families, scale-up each "
            "family's largest size as the known family; coverage is the share of held-out rows "
            "inside their 90% new-measurement interval. <code>logo_mcse</code> is the Monte Carlo SE "
            "of a LOGO total and <code>logo_khat_max</code> the largest Pareto k of its families' "
            "joint scores (above 0.7 a family's score rests on a few draws). Weights are ArviZ "
            "stacking weights.</p>",
            table_html(shown)]
    sharp = [c for c in table.columns if c.split("_", 1)[-1] in _SHARPNESS]
    if sharp:
        scores = table[["spec", *sharp]].copy()
        for col in sharp:
            scores[col] = scores[col].map(lambda x: fmt(float(x)))
        body += ["<p>Calibrated <em>and</em> sharp, on held-out rows (log QiD): coverage of the 50, "
                 "80 and 90% new-measurement intervals (near their level is calibrated), the median "
                 "log-width of the 90% interval (<code>exp</code> of it is the band's upper/lower "
                 "factor), the mean interval score (Gneiting &amp; Raftery 2007; lower is better: it "
                 "charges the width plus 20x each miss) with its paired difference to the best form, "
                 "and the mean CRPS. Coverage alone rewards wide bands; the interval score does not.</p>",
                 table_html(scores)]
    for name, what in (("forecast", "Forecast (families trained longer than any in the fit)"),
                       ("scaleup", "Scale-up (each family's largest size)")):
        part = getattr(saved, name, None)
        if part is not None and len(part) and "interval_score" in part.columns:
            per = part.pivot_table(index="family", columns="spec",
                                   values=["coverage", "width", "interval_score"], aggfunc="first")
            per.columns = [f"{spec}: {score}" for score, spec in per.columns]
            body += [f"<p>{what}, per held-out family: 90% coverage, median log-width, mean interval "
                     "score.</p>", table_html(per.map(lambda x: fmt(float(x))).reset_index())]
    logo = saved.logo  # type: ignore[attr-defined]
    if logo is not None and len(logo):
        wide = logo.pivot_table(index="family", columns="spec", values="elpd_joint", aggfunc="first")
        body += ["<p>Leave-one-family-out: joint elpd of each held-out family, by form.</p>",
                 table_html(wide.map(lambda x: fmt(float(x))).reset_index())]
        if "interval_score" in logo.columns:
            per = logo.pivot_table(index="family", columns="spec",
                                   values=["coverage", "width", "interval_score"], aggfunc="first")
            per.columns = [f"{spec}: {score}" for score, spec in per.columns]
            body += ["<p>Leave-one-family-out, per held-out family: 90% coverage, median log-width, "
                     "mean interval score.</p>", table_html(per.map(lambda x: fmt(float(x))).reset_index())]
    return Section("compare", "Law-form comparison", "\n".join(body))


#: Score names of the sharpness columns of a comparison table (``logo_*``, ``forecast_*``,
#: ``scaleup_*``, ``extrap_*``).
_SHARPNESS = ("coverage50", "coverage80", "coverage90", "width", "interval_score", "is_diff", "is_dse",
              "crps")


