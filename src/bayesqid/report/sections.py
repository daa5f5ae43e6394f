"""The report's per-run sections: one builder per section, each ``(run) -> Section | None``.

:data:`RUN_SECTIONS` lists them in page order; :func:`bayesqid.report.builder.build_report`
repeats them for every run.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bayesqid.constants import CI_PROB, DEFAULT_TABLE_BITS, DEFAULT_TABLE_PARAMS, DEFAULT_TABLE_TOKENS
from bayesqid.data.design import build_design
from bayesqid.lang.effects import sd_name, z_name
from bayesqid.lang.likelihood import draw_residuals
from bayesqid.questions.grid import grid
from bayesqid.questions.inverse import DEFAULT_TOKEN_RANGE, token_budget
from bayesqid.questions.predict import NEW_FAMILY, default_grid, predict
from bayesqid.questions.shares import SHARE_COLUMNS
from bayesqid.report import figures
from bayesqid.report.html import Section, SectionBuilder, escape, fmt, img, interval_label, table_html, values
from bayesqid.sampling.diagnostics import MAX_DIVERGENCES, MAX_RHAT, MIN_BFMI, MIN_ESS
from bayesqid.sampling.draws import flat, row_log_mu, row_sigma
from bayesqid.sampling.run import Run

#: Known family shown beside a new one in the 100T figure, when the run has it.
REFERENCE_FAMILY = "Llama-2"
#: QiD targets of the token-budget table (Ouyang et al.'s Table 1).
BUDGET_TARGETS = (0.2, 0.3, 0.4, 0.5)
#: Model sizes of the 100T band figure.
BAND_PARAMS = tuple(np.geomspace(1e9, 4e11, 30))



# --- per-run sections --------------------------------------------------------------------------


def data_section(run: Run) -> Section:
    """Families, coverage of N, D and bits, and what was excluded."""
    from bayesqid.data.sources import load_dataset

    frame = run.data()
    rows = []
    for fam, sub in frame.groupby("family"):
        rows.append({"family": fam, "rows": len(sub),
                     "N range": f"{fmt(sub['params'].min())} to {fmt(sub['params'].max())}",
                     "D values (tokens)": values(sub["tokens"]),
                     "bits": ", ".join(str(b) for b in sorted(sub["bits"].unique())),
                     "methods": ", ".join(sorted(sub["method"].unique())),
                     "eval sets": ", ".join(sorted(sub["eval_set"].unique()))})
    body = [f"<p>{len(frame)} fitted rows from {frame['family'].nunique()} families "
            f"(data SHA-256 <code>{escape(run.data_sha256[:16])}</code>...).</p>",
            table_html(pd.DataFrame(rows)),
            img(figures.coverage(frame), "coverage of N and D by family and bits")]
    reference = load_dataset(None)
    if reference.sha256 == run.data_sha256:
        excl = pd.DataFrame([{"rows": e.count, "reason": e.reason} for e in reference.excluded])
        body.append(f"<h4>Excluded source rows ({int(excl['rows'].sum()) if len(excl) else 0})</h4>")
        body.append(table_html(excl) if len(excl) else "<p>None.</p>")
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
    body = [f"<p><b>{escape(law.title)}</b> (spec <code>{escape(spec.name)}</code>; "
            f"{escape(law.citation)}).</p>",
            img(figures.law_image(law.latex), law.latex),
            f"<p>LaTeX: <code>{escape(law.latex)}</code></p>",
            f"<p>{escape(spec.description.strip())}</p>" if spec.description else "",
            "<p>Covariates are scaled: N/1e9, D/1e12, P/4, so intercepts describe a 1B-parameter "
            "model trained on 1T tokens at 4 bits.</p>",
            "<h4>Population priors</h4>", table_html(priors),
            "<h4>Hierarchy</h4><p>Each listed coefficient varies by the group: "
            "coefficient = population + sd &times; z, z ~ Normal(0, 1) per level.</p>", table_html(hier),
            f"<h4>Likelihood</h4><p>log QiD = log &mu; + &sigma; &epsilon;, &epsilon; {kind}; "
            f"&sigma; ~ {escape(lik.sigma)}. Measurements below {lik.censor_below:g} nats (zero and negative "
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
        items = "".join(f"<li>{escape(p)}</li>" for p in d.problems)
        box = ('<div class="gate-fail" style="border:3px solid #c62828;background:#ffebee;color:#b71c1c;'
               'padding:8px 12px;font-size:1.1em;"><b>Convergence gate: FAILED.</b> Every number below '
               f"comes from a posterior that did not pass; treat it as provisional.<ul>{items}</ul></div>")
    return Section("convergence", "Convergence gate", box + table_html(table))


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
    lo_l, hi_l = interval_label()
    q = [(1 - CI_PROB) / 2, 0.5, (1 + CI_PROB) / 2]
    post = run.idata.posterior
    # Scalars only, (chain, draw); not the sampler's transformed copies (``*_log__``).
    names = [v for v in post.data_vars if post[v].ndim == 2 and not v.endswith("__")]
    rows = []
    for v in names:
        x = flat(run.idata, v)
        lo, med, hi = np.quantile(x, q)
        rows.append({"parameter": v, "mean": fmt(x.mean()), "sd": fmt(x.std()), lo_l: fmt(lo),
                     "median": fmt(med), hi_l: fmt(hi)})
    body = [f"<p>Population coefficients, effect scales (<code>sd_group_coefficient</code>) and the "
            f"residual scale <code>sigma</code>: posterior mean, sd and central {CI_PROB:.0%} interval.</p>",
            table_html(pd.DataFrame(rows))]
    fam_draws, pop = family_coefficients(run)
    if fam_draws:
        body.append(img(figures.forest(fam_draws, pop), "family effects forest plot"))
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
                 "(no pooling).</p>", table_html(shrink)]
    return Section("posterior", "Posterior", "\n".join(body))


def replicate(run: Run, frame: pd.DataFrame) -> np.ndarray:
    """Posterior predictive draws of log QiD for the rows of ``frame``: (samples, rows)."""
    design = build_design(frame, run.levels)
    log_mu = row_log_mu(run.idata, run.spec, design, seed=run.seed)
    rng = np.random.default_rng([run.seed, 2])
    sigma = row_sigma(run.idata, run.spec, design, seed=run.seed)
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
            img(figures.ppc(frame, pred, run.spec.likelihood.censor_below), "posterior predictive check"),
            table_html(table)]
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
            "in that cell.</p>", img(figures.curves(panels), "fitted curves per family")]
    return Section("curves", "Fitted curves against the data", "\n".join(body))


def _band_table(table: pd.DataFrame) -> pd.DataFrame:
    lo_l, hi_l = interval_label()
    return pd.DataFrame({
        "family": table["family"], "N": table["params"].map(fmt), "bits": table["bits"],
        "mean QiD median": table["mean_median"].map(fmt),
        f"mean {lo_l}": table["mean_lower"].map(fmt), f"mean {hi_l}": table["mean_upper"].map(fmt),
        f"new measurement {lo_l}": table["pred_lower"].map(fmt),
        f"new measurement {hi_l}": table["pred_upper"].map(fmt),
        "drawn from population": table["new_levels"],
        **{f"share {c.removeprefix('share_').replace('_', ' ')}": table[c].map(lambda v: f"{v:.0%}")
           for c in SHARE_COLUMNS},
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
            "of a new measurement (law mean plus residual), and where its width comes from: the "
            "shares of its variance (of log QiD) owed to the family (a new family's draw, or a known "
            "family's posterior), the population coefficients, the quantizer, the evaluation set and "
            "the residual noise, by conditioning on each in turn. A large family share says that "
            "measuring one's own model would narrow the band.</p>",
            img(figures.extrapolation(bands, DEFAULT_TABLE_TOKENS), "QiD at 100T tokens"),
            f"<h4>The default table (QiD in nats, {CI_PROB:.0%} intervals)</h4>",
            table_html(_band_table(table))]
    return Section("extrapolation", "QiD at 100T tokens", "\n".join(body))


def _trillions(x: float) -> str:
    lo, hi = DEFAULT_TOKEN_RANGE
    if x == np.inf:
        return f"> {hi / 1e12:g}T (beyond range)"
    if x == 0:
        return f"< {lo / 1e12:g}T (before range)"
    return fmt(x / 1e12)


def budgets_section(run: Run) -> Section:
    """Ouyang et al.'s Table 1 with intervals: tokens until QiD reaches each target."""
    lo_l, hi_l = interval_label()
    table = token_budget(run, qid_targets=BUDGET_TARGETS, params=DEFAULT_TABLE_PARAMS,
                         bits=DEFAULT_TABLE_BITS)
    out = pd.DataFrame({
        "QiD target (nats)": table["qid_target"], "N": table["params"].map(fmt), "bits": table["bits"],
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
            "reached': share at the target at its lower end.</p>", table_html(out)]
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
        {"item": "sampling seconds", "value": fmt(float(attrs.get("sampling_seconds", np.nan)))},
        {"item": "fit command", "value": attrs.get("command", "not recorded") or "not recorded"},
        {"item": "report command", "value": command or "not recorded"},
    ])
    body = [table_html(facts),
            "<h4>Sampler</h4>",
            table_html(pd.DataFrame([{"setting": k, "value": v} for k, v in sampler.items()])),
            "<h4>Package versions</h4>",
            table_html(pd.DataFrame([{"package": k, "version": v} for k, v in versions.items()])),
            "<h4>Spec (JSON)</h4>",
            f"<pre>{escape(json.dumps(json.loads(run.spec.to_json()), indent=2))}</pre>"]
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
            f"<p>Prior-sensitive: {escape(', '.join(moved)) if moved else 'none'}.</p>", table_html(shown)]
    return Section("sensitivity", "Prior sensitivity", "\n".join(body))


#: Per-run sections, in page order. A builder returning ``None`` leaves its section out.
RUN_SECTIONS: list[SectionBuilder] = [data_section, model_section, convergence_section, posterior_section,
                                      ppc_section, curves_section, extrapolation_section, budgets_section,
                                      sensitivity_section]


# --- cross-run sections ------------------------------------------------------------------------


