"""The uncertainty report: one self-contained HTML page per set of runs.

:func:`build_report` renders ``templates/report.html.j2`` with figures embedded as base64 PNG
data URIs and CSS inline: the page loads nothing from anywhere, so it can be attached to a
review as one file.

Layout. Sections that compare runs (:data:`CROSS_RUN_SECTIONS`; today the convergence gates,
shown when there is more than one run) come first; then the per-run sections
(:data:`RUN_SECTIONS`) are repeated for every run, in order. The first run's sections carry the
plain ids (``data``, ``model``, ``convergence``, ``posterior``, ``ppc``, ``curves``,
``extrapolation``, ``budgets``, ``sensitivity``, ``provenance``); later runs append ``-run2``,
``-run3``... A calibration (``sbc``) or a law-form comparison (``compare``) given as ``extra``
follows the cross-run sections.

Extending. A section is a function returning a :class:`Section` or ``None`` (not applicable:
the section is left out). Add it to :data:`RUN_SECTIONS` or :data:`CROSS_RUN_SECTIONS`, or pass a ready
:class:`Section` as ``extra`` (simulation-based calibration, which belongs to no one run).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import jinja2
import numpy as np
import pandas as pd

from bayesqid.constants import CI_PROB, DEFAULT_TABLE_BITS, DEFAULT_TABLE_PARAMS, DEFAULT_TABLE_TOKENS
from bayesqid.data.design import build_design
from bayesqid.lang.effects import sd_name, z_name
from bayesqid.lang.likelihood import draw_residuals
from bayesqid.questions.grid import grid
from bayesqid.questions.inverse import DEFAULT_TOKEN_RANGE, token_budget
from bayesqid.questions.predict import NEW_FAMILY, default_grid, predict
from bayesqid.report import figures
from bayesqid.sampling.diagnostics import MAX_DIVERGENCES, MAX_RHAT, MIN_BFMI, MIN_ESS
from bayesqid.sampling.draws import flat, row_log_mu
from bayesqid.sampling.run import Run

#: Known family shown beside a new one in the 100T figure, when the run has it.
REFERENCE_FAMILY = "Llama-2"
#: QiD targets of the token-budget table (Ouyang et al.'s Table 1).
BUDGET_TARGETS = (0.2, 0.3, 0.4, 0.5)
#: Model sizes of the 100T band figure.
BAND_PARAMS = tuple(np.geomspace(1e9, 4e11, 30))


@dataclass(frozen=True)
class Section:
    """One section of the page: ``<section id=...>`` with a title and an HTML body."""

    id: str
    title: str
    body: str


SectionBuilder = Callable[[Run], "Section | None"]
CrossRunBuilder = Callable[[Sequence[Run], Sequence[str]], "Section | None"]


# --- small HTML helpers ------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text))


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, classes="tbl", escape=True, na_rep="")


def _img(uri: str, alt: str) -> str:
    return f'<figure><img src="{uri}" alt="{_e(alt)}"></figure>'


def _fmt(x: float, digits: int = 3) -> str:
    if not np.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}" if 1e-3 <= abs(x) < 1e5 or x == 0 else f"{x:.{digits - 1}e}"


def _values(series: pd.Series, limit: int = 4) -> str:
    u = sorted(series.unique())
    if len(u) <= limit:
        return ", ".join(_fmt(float(v)) for v in u)
    return f"{len(u)} values, {_fmt(float(u[0]))} to {_fmt(float(u[-1]))}"


def _interval_label(prob: float = CI_PROB) -> tuple[str, str]:
    return f"{(1 - prob) / 2:.0%}", f"{(1 + prob) / 2:.0%}"


# --- per-run sections --------------------------------------------------------------------------


def data_section(run: Run) -> Section:
    """Families, coverage of N, D and bits, and what was excluded."""
    from bayesqid.data.sources import load_dataset

    frame = run.data()
    rows = []
    for fam, sub in frame.groupby("family"):
        rows.append({"family": fam, "rows": len(sub),
                     "N range": f"{_fmt(sub['params'].min())} to {_fmt(sub['params'].max())}",
                     "D values (tokens)": _values(sub["tokens"]),
                     "bits": ", ".join(str(b) for b in sorted(sub["bits"].unique())),
                     "methods": ", ".join(sorted(sub["method"].unique())),
                     "eval sets": ", ".join(sorted(sub["eval_set"].unique()))})
    body = [f"<p>{len(frame)} fitted rows from {frame['family'].nunique()} families "
            f"(data SHA-256 <code>{_e(run.data_sha256[:16])}</code>...).</p>", _table(pd.DataFrame(rows)),
            _img(figures.coverage(frame), "coverage of N and D by family and bits")]
    reference = load_dataset(None)
    if reference.sha256 == run.data_sha256:
        excl = pd.DataFrame([{"rows": e.count, "reason": e.reason} for e in reference.excluded])
        body.append(f"<h4>Excluded source rows ({int(excl['rows'].sum()) if len(excl) else 0})</h4>")
        body.append(_table(excl) if len(excl) else "<p>None.</p>")
    else:
        body.append("<h4>Excluded source rows</h4><p>Not recorded: the run was fitted on a user "
                    "table, which bayesqid never filters; see <code>bayesqid data</code> for it.</p>")
    return Section("data", "Data", "\n".join(body))


def model_section(run: Run) -> Section:
    """The law in LaTeX, priors, hierarchy and likelihood."""
    spec, law = run.spec, run.spec.law_obj
    priors = pd.DataFrame([{"coefficient": p.name, "population prior": str(spec.prior(p.name)),
                            "meaning": p.doc} for p in law.parameters])
    hier = pd.DataFrame([{"group": e.group, "coefficient": p, "effect sd prior": str(spec.effect_sd(e, p)),
                          "parametrization": e.parametrization_of(p)}
                         for e in spec.effects for p in e.params])
    lik = spec.likelihood
    kind = f"Student-t with &nu; = {lik.nu}" if lik.kind == "student_t" else "Normal"
    body = [f"<p><b>{_e(law.title)}</b> (spec <code>{_e(spec.name)}</code>; {_e(law.citation)}).</p>",
            _img(figures.law_image(law.latex), law.latex),
            f"<p>LaTeX: <code>{_e(law.latex)}</code></p>",
            f"<p>{_e(spec.description.strip())}</p>" if spec.description else "",
            "<p>Covariates are scaled: N/1e9, D/1e12, P/4, so intercepts describe a 1B-parameter "
            "model trained on 1T tokens at 4 bits.</p>",
            "<h4>Population priors</h4>", _table(priors),
            "<h4>Hierarchy</h4><p>Each listed coefficient varies by the group: "
            "coefficient = population + sd &times; z, z ~ Normal(0, 1) per level.</p>", _table(hier),
            f"<h4>Likelihood</h4><p>log QiD = log &mu; + &sigma; &epsilon;, &epsilon; {kind}; "
            f"&sigma; ~ {_e(lik.sigma)}. Measurements below {lik.censor_below:g} nats (zero and negative "
            f"included) enter as left-censored: log QiD &lt; log {lik.censor_below:g}.</p>"]
    return Section("model", "Model", "\n".join(b for b in body if b))


def convergence_section(run: Run) -> Section:
    """The convergence gate, with a red box listing the problems when it fails."""
    d = run.diagnostics
    table = pd.DataFrame([
        {"check": "divergent transitions", "value": f"{d.divergences} of {d.draws}",
         "threshold": f"<= {MAX_DIVERGENCES}", "ok": d.divergences <= MAX_DIVERGENCES},
        {"check": "max R-hat", "value": f"{d.max_rhat:.4f} ({d.worst_rhat})", "threshold": f"<= {MAX_RHAT}",
         "ok": d.max_rhat <= MAX_RHAT},
        {"check": "min ESS bulk / tail",
         "value": f"{d.min_ess_bulk:.0f} / {d.min_ess_tail:.0f} ({d.worst_ess})",
         "threshold": f">= {MIN_ESS}", "ok": min(d.min_ess_bulk, d.min_ess_tail) >= MIN_ESS},
        {"check": "min BFMI", "value": f"{d.min_bfmi:.2f}", "threshold": f">= {MIN_BFMI}",
         "ok": d.min_bfmi >= MIN_BFMI},
    ])
    table["ok"] = table["ok"].map({True: "pass", False: "FAIL"})
    if d.passed:
        box = ('<div class="gate-pass" style="border:2px solid #2e7d32;background:#e8f5e9;padding:8px 12px;">'
               "<b>Convergence gate: PASSED.</b></div>")
    else:
        items = "".join(f"<li>{_e(p)}</li>" for p in d.problems)
        box = ('<div class="gate-fail" style="border:3px solid #c62828;background:#ffebee;color:#b71c1c;'
               'padding:8px 12px;font-size:1.1em;"><b>Convergence gate: FAILED.</b> Every number below '
               f"comes from a posterior that did not pass; treat it as provisional.<ul>{items}</ul></div>")
    return Section("convergence", "Convergence gate", box + _table(table))


def family_coefficients(run: Run) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
    """Posterior draws of each family's coefficient (population + sd * z) and of the population."""
    eff = run.spec.effect("family")
    families = list(run.levels["family"])
    fam_draws, pop = {}, {}
    for p in eff.params if eff else ():
        pop[p] = flat(run.idata, p)
        sd = flat(run.idata, sd_name("family", p))
        z = flat(run.idata, z_name("family", p))
        fam_draws[p] = pd.DataFrame(pop[p][:, None] + sd[:, None] * z, columns=families)
    return fam_draws, pop


def posterior_section(run: Run) -> Section:
    """Population coefficients with intervals, family forest plot and shrinkage."""
    lo_l, hi_l = _interval_label()
    q = [(1 - CI_PROB) / 2, 0.5, (1 + CI_PROB) / 2]
    post = run.idata.posterior
    # Scalars only, (chain, draw); not the sampler's transformed copies (``*_log__``).
    names = [v for v in post.data_vars if post[v].ndim == 2 and not v.endswith("__")]
    rows = []
    for v in names:
        x = flat(run.idata, v)
        lo, med, hi = np.quantile(x, q)
        rows.append({"parameter": v, "mean": _fmt(x.mean()), "sd": _fmt(x.std()), lo_l: _fmt(lo),
                     "median": _fmt(med), hi_l: _fmt(hi)})
    body = [f"<p>Population coefficients, effect scales (<code>sd_group_coefficient</code>) and the "
            f"residual scale <code>sigma</code>: posterior mean, sd and central {CI_PROB:.0%} interval.</p>",
            _table(pd.DataFrame(rows))]
    fam_draws, pop = family_coefficients(run)
    if fam_draws:
        body.append(_img(figures.forest(fam_draws, pop), "family effects forest plot"))
        shrink = pd.DataFrame({"family": list(run.levels["family"])})
        counts = run.data()["family"].value_counts()
        shrink["rows"] = shrink["family"].map(counts).fillna(0).astype(int)
        for p, draws in fam_draws.items():
            sd_mean = flat(run.idata, sd_name("family", p)).mean()
            offset_sd = (draws.to_numpy() - pop[p][:, None]).std(axis=0)
            shrink[p] = np.round(np.clip(offset_sd / sd_mean, 0, 1), 2)
        body += ["<h4>Shrinkage</h4><p>Pooling factor of each family's offset from the population: "
                 "posterior sd of the offset (sd &times; z) divided by the posterior mean of the "
                 "population scale sd. 1: the family's own rows did not inform the offset, which "
                 "is fully pulled to the population distribution; 0: its rows pin the offset "
                 "(no pooling).</p>", _table(shrink)]
    return Section("posterior", "Posterior", "\n".join(body))


def replicate(run: Run, frame: pd.DataFrame) -> np.ndarray:
    """Posterior predictive draws of log QiD for the rows of ``frame``: (samples, rows)."""
    design = build_design(frame, run.levels)
    log_mu = row_log_mu(run.idata, run.spec, design, seed=run.seed)
    rng = np.random.default_rng([run.seed, 2])
    sigma = flat(run.idata, "sigma")[:, None]
    return log_mu + sigma * draw_residuals(run.spec.likelihood, rng, log_mu.shape)


def ppc_section(run: Run) -> Section:
    """Observed vs replicated QiD per family."""
    frame = run.data()
    pred = replicate(run, frame)
    lo, hi = np.quantile(pred, [(1 - CI_PROB) / 2, (1 + CI_PROB) / 2], axis=0)
    y = np.log(np.maximum(frame["qid"].to_numpy(float), run.spec.likelihood.censor_below))
    cens = frame["qid"].to_numpy(float) < run.spec.likelihood.censor_below
    inside = np.where(cens, lo <= y, (lo <= y) & (y <= hi))
    cover = pd.DataFrame({"family": frame["family"], "inside": inside}).groupby("family")["inside"]
    share = (cover.mean() * 100).round(0).astype(int).astype(str) + "%"
    table = pd.DataFrame({"rows": cover.size(), f"inside {CI_PROB:.0%} interval": share}).reset_index()
    body = [f"<p>Replicated measurements (law mean plus a residual draw, every posterior draw) for "
            f"every fitted row. A calibrated model puts about {CI_PROB:.0%} of observations inside "
            "their interval; censored rows count as inside when the interval reaches below the "
            "threshold.</p>",
            _img(figures.ppc(frame, pred, run.spec.likelihood.censor_below), "posterior predictive check"),
            _table(table)]
    return Section("ppc", "Posterior predictive checks", "\n".join(body))


def curves_section(run: Run) -> Section:
    """Law-mean bands against the data for each family's most measured setting."""
    frame = run.data()
    frame["gs"] = frame["group_size"].fillna(0).astype(int)
    panels = []
    for fam, sub in frame.groupby("family"):
        method, gs, ev = sub.groupby(["method", "gs", "eval_set"]).size().idxmax()
        cell = sub[(sub["method"] == method) & (sub["gs"] == gs) & (sub["eval_set"] == ev)]
        fixed_n = float(cell["params"].mode().iloc[0])
        fixed_d = float(cell["tokens"].mode().iloc[0])
        bits = sorted(int(b) for b in cell["bits"].unique())
        group = None if gs == 0 else int(gs)
        d_grid = np.geomspace(cell["tokens"].min() / 3, cell["tokens"].max() * 3, 25)
        n_grid = np.geomspace(cell["params"].min() / 2, cell["params"].max() * 2, 25)
        setting = {"bits": bits, "method": method, "group_size": group, "eval_set": ev}
        panels.append({
            "family": fam,
            "setting": f"{method} {'per-channel' if group is None else f'g{group}'}, {ev}",
            "fixed_n": fixed_n, "fixed_d": fixed_d,
            "vs_d": predict(run, grid(family=fam, params=fixed_n, tokens=d_grid, **setting)),
            "vs_n": predict(run, grid(family=fam, params=n_grid, tokens=fixed_d, **setting)),
            "points_d": cell[cell["params"] == fixed_n],
            "points_n": cell[cell["tokens"] == fixed_d],
        })
    body = [f"<p>For each family, its most measured quantizer and evaluation set; left: QiD against "
            f"training tokens at its most measured size, right: against size at its most measured D. "
            f"Bands are the law mean's central {CI_PROB:.0%} interval; points are the measurements "
            "in that cell.</p>", _img(figures.curves(panels), "fitted curves per family")]
    return Section("curves", "Fitted curves against the data", "\n".join(body))


def _band_table(table: pd.DataFrame) -> pd.DataFrame:
    lo_l, hi_l = _interval_label()
    return pd.DataFrame({
        "family": table["family"], "N": table["params"].map(_fmt), "bits": table["bits"],
        "mean QiD median": table["mean_median"].map(_fmt),
        f"mean {lo_l}": table["mean_lower"].map(_fmt), f"mean {hi_l}": table["mean_upper"].map(_fmt),
        f"new measurement {lo_l}": table["pred_lower"].map(_fmt),
        f"new measurement {hi_l}": table["pred_upper"].map(_fmt),
        "drawn from population": table["new_levels"],
    })


def extrapolation_section(run: Run) -> Section:
    """QiD at 100T tokens over N for 2/3/4 bits, new vs known family, with Eq. 8."""
    known = REFERENCE_FAMILY if REFERENCE_FAMILY in run.levels["family"] else run.levels["family"][0]
    bands = {}
    for fam, label in [(NEW_FAMILY, "new family"), (known, f"{known} (known family)")]:
        bands[label] = predict(run, default_grid(params=BAND_PARAMS, bits=DEFAULT_TABLE_BITS, family=fam))
    table = pd.concat([predict(run, default_grid(family=f)) for f in (NEW_FAMILY, known)], ignore_index=True)
    body = [f"<p>GPTQ g128 on WikiText-2 (the setting of Ouyang et al.'s Eq. 8) at D = "
            f"{DEFAULT_TABLE_TOKENS:.0e} tokens. Dashed: the published point law (Eq. 8, with nominal "
            "N), for reference. A new family's band includes the spread between families; a known "
            "family's band is its own posterior, still extrapolated in D. The table adds the band "
            "of a new measurement (law mean plus residual).</p>",
            _img(figures.extrapolation(bands, DEFAULT_TABLE_TOKENS), "QiD at 100T tokens"),
            f"<h4>The default table (QiD in nats, {CI_PROB:.0%} intervals)</h4>", _table(_band_table(table))]
    return Section("extrapolation", "QiD at 100T tokens", "\n".join(body))


def _trillions(x: float) -> str:
    lo, hi = DEFAULT_TOKEN_RANGE
    if x == np.inf:
        return f"> {hi / 1e12:g}T (beyond range)"
    if x == 0:
        return f"< {lo / 1e12:g}T (before range)"
    return _fmt(x / 1e12)


def budgets_section(run: Run) -> Section:
    """Ouyang et al.'s Table 1 with intervals: tokens until QiD reaches each target."""
    lo_l, hi_l = _interval_label()
    table = token_budget(run, qid_targets=BUDGET_TARGETS, params=DEFAULT_TABLE_PARAMS,
                         bits=DEFAULT_TABLE_BITS)
    out = pd.DataFrame({
        "QiD target (nats)": table["qid_target"], "N": table["params"].map(_fmt), "bits": table["bits"],
        "tokens median (T)": table["tokens_median"].map(_trillions),
        f"tokens {lo_l} (T)": table["tokens_lower"].map(_trillions),
        f"tokens {hi_l} (T)": table["tokens_upper"].map(_trillions),
        "never reached": (table["frac_never"] * 100).round(1).astype(str) + "%",
        "already reached": (table["frac_below"] * 100).round(1).astype(str) + "%",
    })
    body = [f"<p>Training tokens (trillions) at which the law-mean QiD of a new family (GPTQ g128, "
            f"WikiText-2) reaches each target, solved on every posterior draw; searched "
            f"{DEFAULT_TOKEN_RANGE[0]:.0e} to {DEFAULT_TOKEN_RANGE[1]:.0e} tokens. 'never reached': share "
            "of draws that do not reach the target in the range (counted as more tokens); 'already "
            "reached': share at the target at its lower end.</p>", _table(out)]
    return Section("budgets", "Token budgets (Table 1 with intervals)", "\n".join(body))


def provenance_section(run: Run, command: str | None = None) -> Section:
    """Package versions, data hash, seed, sampler settings, spec and command lines."""
    attrs = run.idata.attrs
    versions = json.loads(str(attrs.get("versions", "{}")))
    sampler = json.loads(str(attrs.get("sampler", "{}")))
    facts = pd.DataFrame([
        {"item": "data SHA-256", "value": run.data_sha256},
        {"item": "data path", "value": attrs.get("data_path", "not recorded")},
        {"item": "seed", "value": run.seed},
        {"item": "sampling seconds", "value": _fmt(float(attrs.get("sampling_seconds", np.nan)))},
        {"item": "fit command", "value": attrs.get("command", "not recorded") or "not recorded"},
        {"item": "report command", "value": command or "not recorded"},
    ])
    body = [_table(facts),
            "<h4>Sampler</h4>",
            _table(pd.DataFrame([{"setting": k, "value": v} for k, v in sampler.items()])),
            "<h4>Package versions</h4>",
            _table(pd.DataFrame([{"package": k, "version": v} for k, v in versions.items()])),
            "<h4>Spec (JSON)</h4>",
            f"<pre>{_e(json.dumps(json.loads(run.spec.to_json()), indent=2))}</pre>"]
    return Section("provenance", "Provenance", "\n".join(body))


def sensitivity_section(run: Run) -> Section | None:
    """Power-scaling prior sensitivity of the coefficients and of the 100T table."""
    from bayesqid.checks.sensitivity import THRESHOLD, prior_sensitivity

    if "log_likelihood" not in run.idata.groups():
        return None
    table = prior_sensitivity(run)
    shown = table.assign(prior_sensitivity=table["prior_sensitivity"].map(lambda x: f"{x:.3f}"),
                         likelihood_sensitivity=table["likelihood_sensitivity"].map(lambda x: f"{x:.3f}"))
    moved = table.loc[table["prior_sensitivity"] >= THRESHOLD, "quantity"].tolist()
    body = [f"<p>How far each quantity moves when the prior (or the likelihood) is raised to a power near 1 "
            f"(ArviZ <code>psens</code>, importance-weighted, no refit). {THRESHOLD:g} or more is notable: "
            "prior- and likelihood-sensitive suggests prior-data conflict; prior-sensitive only, a prior "
            "that dominates a weak likelihood. <code>log_qid_1e14</code> rows are the law-mean log QiD "
            "of the default 100T table (new family, GPTQ g128, WikiText-2).</p>",
            f"<p>Prior-sensitive: {_e(', '.join(moved)) if moved else 'none'}.</p>", _table(shown)]
    return Section("sensitivity", "Prior sensitivity", "\n".join(body))


#: Per-run sections, in page order. A builder returning ``None`` leaves its section out.
RUN_SECTIONS: list[SectionBuilder] = [data_section, model_section, convergence_section, posterior_section,
                                      ppc_section, curves_section, extrapolation_section, budgets_section,
                                      sensitivity_section]


# --- cross-run sections ------------------------------------------------------------------------


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
    return Section("runs", "Runs compared: convergence gates", _table(table))


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
    body = [f'<div style="{style};padding:8px 12px;"><b>{_e(result.verdict)}</b></div>',  # type: ignore[attr-defined]
            f"<p>Spec <code>{_e(summary.get('spec'))}</code> on {summary.get('rows')} design rows; "
            f"{summary.get('finished')} replicates ({summary.get('failed', 0)} failed to fit, "
            f"{summary.get('gate_failures', 0)} with a failed convergence gate); sampler "
            f"{_e(sampler.get('chains'))} chains x ({_e(sampler.get('tune'))} tune + "
            f"{_e(sampler.get('draws'))} draws); root seed {summary.get('root_seed')}; wall time "
            f"{float(summary.get('wall_seconds', 0)):.0f} s. "
            "Each replicate draws parameters from the priors, simulates QiD on the design (censoring "
            "included), fits, and ranks the truth among posterior draws thinned to about their "
            "effective sample size. Calibrated: ranks uniform. Tests: chi-square on binned ranks and "
            "Kolmogorov-Smirnov, Bonferroni over quantities and tests.</p>", _table(tests)]
    directory = getattr(result, "directory", None)
    png = directory / ECDF_FILE if directory is not None else None
    if png is not None and png.is_file():
        uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
        body.append(_img(uri, "SBC rank ECDF minus uniform, with simultaneous bands"))
    return Section("sbc", "Simulation-based calibration", "\n".join(body))


def compare_section(saved: object) -> Section:
    """Law-form comparison (a :class:`bayesqid.compare.SavedComparison`): verdict and score tables."""
    table = saved.table.copy()  # type: ignore[attr-defined]
    cols = [c for c in ("spec", "law", "elpd_loo", "se_loo", "elpd_diff_loo", "dse_loo", "p_loo",
                        "pareto_k_bad", "pareto_k_very_bad", "weight", "logo_elpd", "logo_diff", "logo_dse",
                        "logo_mcse", "logo_khat_max", "logo_coverage", "extrap_elpd", "extrap_diff",
                        "extrap_dse", "extrap_coverage", "gate_passed", "failed_folds") if c in table.columns]
    shown = table[cols].copy()
    for col in shown.columns:
        if shown[col].dtype.kind == "f":
            shown[col] = shown[col].map(lambda x: _fmt(float(x)))
    body = [f"<pre>{_e(saved.summary)}</pre>",  # type: ignore[attr-defined]
            "<p>elpd: expected log predictive density (higher is better); <code>*_diff</code>: how far "
            "a form is behind the best, <code>*_dse</code>: the SE of that difference (under 2 SE: not "
            "distinguishable). Leave-one-family-out scores each held-out family as a new family (joint "
            "density of its rows); coverage is the share of held-out rows inside their 90% "
            "new-measurement interval. <code>logo_mcse</code> is the Monte Carlo SE of a LOGO total and "
            "<code>logo_khat_max</code> the largest Pareto k of its families' joint scores (above 0.7 a "
            "family's score rests on a few draws). Weights are ArviZ stacking weights.</p>", _table(shown)]
    logo = saved.logo  # type: ignore[attr-defined]
    if logo is not None and len(logo):
        wide = logo.pivot_table(index="family", columns="spec", values="elpd_joint", aggfunc="first")
        body += ["<p>Leave-one-family-out: joint elpd of each held-out family, by form.</p>",
                 _table(wide.map(lambda x: _fmt(float(x))).reset_index())]
    return Section("compare", "Law-form comparison", "\n".join(body))


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

