"""Score tables of a law-form comparison: PSIS-LOO/WAIC with stacking weights, leave-one-family-
out, forecast, scale-up and extrapolation elpd with paired-difference SEs (and the Monte Carlo
reliability of the families' joint scores), their calibration and sharpness, the stacked 100T
table, and the verdict.

Pure functions of full runs and of the per-row fold scores that :mod:`bayesqid.compare`
collects; nothing here fits a model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import arviz as az
import numpy as np
import pandas as pd
from scipy.special import logsumexp

from bayesqid.checks.fanout import Outcome
from bayesqid.constants import CI_PROB, DEFAULT_SEED
from bayesqid.data.design import build_design
from bayesqid.lang.likelihood import draw_residuals
from bayesqid.questions.predict import default_grid, predict
from bayesqid.sampling.draws import n_samples, row_log_mu, row_sigma
from bayesqid.sampling.run import Run

#: Pareto k above which a Monte Carlo mean over draws is unreliable (Vehtari et al., PSIS).
KHAT_LIMIT = 0.7


@dataclass(frozen=True)
class Fold:
    """What a comparison task key stands for: the scheme, the spec and (LOGO) the held-out family."""

    kind: str
    spec: str
    family: str = ""


def loo_table(runs: dict[str, Run], names: Sequence[str]) -> pd.DataFrame:
    """PSIS-LOO, WAIC and stacking weights of every full run (ArviZ), best first."""
    with warnings.catch_warnings():
        # Pareto-k and WAIC variance warnings are reported as columns, not as warnings.
        warnings.simplefilter("ignore", UserWarning)
        cmp = az.compare({n: runs[n].idata for n in names}, ic="loo", method="stacking")
        rows = []
        for n in names:
            loo = az.loo(runs[n].idata, pointwise=True)
            waic = az.waic(runs[n].idata)
            k = np.asarray(loo.pareto_k)
            good = float(loo.good_k)
            rows.append({"spec": n, "n_rows": int(loo.n_data_points),
                         "elpd_loo": float(loo.elpd_loo), "se_loo": float(loo.se),
                         "p_loo": float(loo.p_loo), "elpd_diff_loo": float(cmp.loc[n, "elpd_diff"]),
                         "dse_loo": float(cmp.loc[n, "dse"]), "rank_loo": int(cmp.loc[n, "rank"]) + 1,
                         "pareto_k_good": int((k <= good).sum()),
                         "pareto_k_bad": int(((k > good) & (k <= 1)).sum()),
                         "pareto_k_very_bad": int((k > 1).sum()),
                         "elpd_waic": float(waic.elpd_waic), "se_waic": float(waic.se),
                         "p_waic": float(waic.p_waic), "weight": float(cmp.loc[n, "weight"])})
    table = pd.DataFrame(rows)
    # az.compare's weights sum to 1 up to its optimiser's tolerance; make it exact.
    table["weight"] = table["weight"].clip(lower=0) / table["weight"].clip(lower=0).sum()
    return table.sort_values("rank_loo", kind="stable").reset_index(drop=True)


#: Splits whose independent units are held-out families, with the prefix of their columns in
#: ``compare.csv``; the extrapolation split's units are rows.
FAMILY_SPLITS: dict[str, str] = {"logo": "logo", "forecast": "forecast", "scale-up": "scaleup"}


def fold_rows(outcome: Outcome) -> pd.DataFrame:
    """Every stored per-row fold score, one frame (full-fit results left out).

    Each row names its ``scheme``; results stored before schemes were named (LOGO folds and the
    extrapolation fold only) get theirs from the fold.
    """
    parts = [f for k, f in outcome.results.items() if not k.startswith("full-")]
    if not parts:
        return pd.DataFrame()
    rows = pd.concat(parts, ignore_index=True)
    return rows.assign(scheme=_schemes(rows))


def _schemes(rows: pd.DataFrame) -> np.ndarray:
    legacy = np.where(rows["fold"] == "extrapolate", "extrapolate", "logo")
    if "scheme" not in rows:
        return legacy
    return np.where(rows["scheme"].isna(), legacy, rows["scheme"].astype(object))


def scheme_rows(rows: pd.DataFrame, scheme: str) -> pd.DataFrame:
    """The per-row scores of one split (all of an empty frame)."""
    return rows[_schemes(rows) == scheme] if len(rows) else rows


#: Calibration and sharpness columns of a held-out family (see :mod:`bayesqid.checks.sharpness`):
#: coverage at 50/80% (``coverage`` is at the comparison's level, 90% by default), median
#: log-width of that interval, mean interval score and mean CRPS of log QiD.
SHARPNESS_COLUMNS = ["coverage50", "coverage80", "width", "interval_score", "crps"]
_LOGO_COLUMNS = ["spec", "family", "n_rows", "elpd_joint", "joint_khat", "joint_mcse", "elpd_rows",
                 "coverage", *SHARPNESS_COLUMNS, "gate_passed", "status"]
_EXTRAP_COLUMNS = ["spec", "family", "known_family", "n_rows", "elpd_joint", "joint_khat", "joint_mcse",
                   "elpd_rows", "coverage", *SHARPNESS_COLUMNS, "gate_passed", "status"]


def joint_elpd(log_lik: np.ndarray) -> tuple[float, float, float]:
    """``log mean exp`` of per-draw joint log-likelihoods, with its Monte Carlo reliability.

    A family's joint score multiplies hundreds of rows' densities, so a handful of draws can
    carry almost all of the mean: on the reference data two comparisons with the same
    posterior but other draws moved LLaMA-1's joint score by 34 nats. Returns ``(elpd, khat,
    mcse)``: ``khat`` is the Pareto shape of the draws' weights ``exp(log_lik)`` (ArviZ's PSIS
    fit; above :data:`KHAT_LIMIT` the mean is unreliable and ``mcse`` understates the error),
    ``mcse`` the delta-method standard error of the log-mean for independent draws.
    """
    s = len(log_lik)
    shifted = log_lik - log_lik.max()
    w = np.exp(shifted)
    elpd = float(logsumexp(log_lik) - np.log(s))
    mcse = float(w.std() / (np.sqrt(s) * w.mean()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on k above 0.7: reported as a value here
        _, khat = az.psislw(shifted)
    return elpd, float(khat), mcse


def empty_logo() -> pd.DataFrame:
    return pd.DataFrame(columns=_LOGO_COLUMNS)


def empty_extrapolation() -> pd.DataFrame:
    return pd.DataFrame(columns=_EXTRAP_COLUMNS)


def _per_family(rows: pd.DataFrame) -> pd.DataFrame:
    # Fold results stored by an older version (a resumed comparison) lack the joint score's
    # Monte Carlo columns: unknown, not zero.
    rows = rows.assign(**{c: rows.get(c, np.nan) for c in ("joint_khat", "joint_mcse", "covered50",
                                                            "covered80", "width", "interval_score",
                                                            "crps")})
    grouped = rows.groupby(["spec", "family"], sort=False)
    return grouped.agg(n_rows=("elpd", "size"), elpd_joint=("elpd_joint", "first"),
                       joint_khat=("joint_khat", "first"), joint_mcse=("joint_mcse", "first"),
                       elpd_rows=("elpd", "sum"), coverage=("covered", "mean"),
                       coverage50=("covered50", "mean"), coverage80=("covered80", "mean"),
                       width=("width", "median"), interval_score=("interval_score", "mean"),
                       crps=("crps", "mean"), gate_passed=("gate_passed", "first")).reset_index()


def logo_table(rows: pd.DataFrame, names: Sequence[str],
               failed: dict[str, tuple[Fold, str]], scheme: str = "logo") -> pd.DataFrame:
    """One row per spec x held-out family of a family split (``scheme``: ``logo``, ``forecast`` or
    ``scale-up``); failed folds are kept with their error in ``status``."""
    done = scheme_rows(rows, scheme)
    table = _per_family(done).assign(status="ok") if len(done) else empty_logo()
    missing = [{"spec": m.spec, "family": m.family, "status": f"failed: {msg}"}
               for m, msg in failed.values() if m.kind == scheme]
    return _with_failures(table, missing, names, _LOGO_COLUMNS)


def _with_failures(table: pd.DataFrame, missing: list[dict[str, str]], names: Sequence[str],
                   columns: Sequence[str]) -> pd.DataFrame:
    """``table`` plus one row per failed fold, sorted by spec (in ``names`` order) and family."""
    if missing:
        table = pd.concat([table, pd.DataFrame(missing)], ignore_index=True)
    order = {n: i for i, n in enumerate(names)}
    table = table.sort_values(["spec", "family"], key=lambda c: c.map(order) if c.name == "spec" else c)
    return table[list(columns)].reset_index(drop=True)



def logo_totals(logo: pd.DataFrame, prefix: str = "logo") -> pd.DataFrame:
    """Totals of a family split per spec over the families every spec scored, with paired-difference
    SE, the Monte Carlo SE of the total (families' ``joint_mcse`` in quadrature) and the largest
    ``joint_khat``; columns named ``<prefix>_elpd``, ``<prefix>_diff``..."""
    ok = logo[logo["status"] == "ok"]
    wide = ok.pivot(index="family", columns="spec", values="elpd_joint").dropna()
    rows_wide = ok.pivot(index="family", columns="spec", values="elpd_rows").reindex(wide.index)
    cover = ok.set_index(["family", "spec"])
    diffs = _paired(wide)
    out = []
    for spec in wide.columns:
        fam = wide.index
        covered = cover.loc[[(f, spec) for f in fam]]
        out.append({"spec": spec, "logo_elpd": float(wide[spec].sum()),
                    "logo_elpd_rows": float(rows_wide[spec].sum()),
                    "logo_diff": diffs[spec][0], "logo_dse": diffs[spec][1],
                    "logo_mcse": float(np.sqrt((covered["joint_mcse"].astype(float) ** 2).sum(min_count=1))),
                    "logo_khat_max": float(covered["joint_khat"].astype(float).max()),
                    "logo_coverage": float((covered["coverage"] * covered["n_rows"]).sum()
                                           / covered["n_rows"].sum()),
                    "logo_families": len(fam)})
    columns = ["spec", "logo_elpd", "logo_elpd_rows", "logo_diff", "logo_dse", "logo_mcse",
               "logo_khat_max", "logo_coverage", "logo_families"]
    renamed = {c: c.replace("logo", prefix, 1) for c in columns}
    return pd.DataFrame(out, columns=columns).rename(columns=renamed)


def sharpness_totals(rows: pd.DataFrame, scheme: str, prefix: str) -> pd.DataFrame:
    """Calibration and sharpness over the held-out rows of ``scheme`` (a split of the comparison).

    Per spec: coverage at 50/80% and at the comparison's level, the median log-width of that
    interval over rows, the mean interval score and CRPS over rows, and how much higher its mean
    interval score is than the best spec's, with the SE of that paired difference (family splits:
    families as the independent units; extrapolation: rows). Only units every spec scored enter.
    """
    cols = [f"{prefix}_{c}" for c in ("coverage50", "coverage80", "coverage90", "width",
                                      "interval_score", "is_diff", "is_dse", "crps")]
    part = scheme_rows(rows, scheme)
    if not len(part) or "interval_score" not in part or part["interval_score"].isna().all():
        return pd.DataFrame(columns=["spec", *cols])
    unit = "row" if scheme == "extrapolate" else "family"
    # Per unit (row, or held-out family): the sum of its rows' scores and its row count, so that
    # the mean over rows and the paired difference use the same rows for every spec.
    sums = part.pivot_table(index=unit, columns="spec", values="interval_score", aggfunc="sum").dropna()
    rows_per_unit = part.groupby(unit)["row"].nunique().reindex(sums.index)
    n_rows = float(rows_per_unit.sum())
    best = sums.sum().idxmin()
    keep = part[part[unit].isin(sums.index)]
    out = []
    for spec, g in keep.groupby("spec", sort=False):
        d = (sums[spec] - sums[best]).to_numpy()
        # Mean excess per row over the best spec; its SE with units as the independent pieces.
        out.append({"spec": spec, cols[0]: float(g["covered50"].mean()),
                    cols[1]: float(g["covered80"].mean()),
                    cols[2]: float(g["covered"].mean()), cols[3]: float(g["width"].median()),
                    cols[4]: float(g["interval_score"].mean()), cols[5]: float(d.sum() / n_rows),
                    cols[6]: float(np.sqrt(len(d) * np.var(d)) / n_rows), cols[7]: float(g["crps"].mean())})
    return pd.DataFrame(out, columns=["spec", *cols])


def _paired(wide: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Per column: (how far its sum is behind the best column's, SE of that difference).

    The convention and the SE are ArviZ's (``elpd_diff`` >= 0, ``sqrt(n * var(d_i))`` of the
    unit-wise differences ``d_i``), so all three scores read alike.
    """
    if wide.empty:
        return dict.fromkeys(wide.columns, (np.nan, np.nan))
    best = wide.sum().idxmax()
    out = {}
    for c in wide.columns:
        d = (wide[best] - wide[c]).to_numpy()
        out[c] = (float(d.sum()), float(np.sqrt(len(d) * np.var(d))))
    return out


def extrapolation_table(rows: pd.DataFrame, names: Sequence[str],
                        failed: dict[str, tuple[Fold, str]]) -> pd.DataFrame:
    """One row per spec x family with held-out rows of the extrapolation split."""
    part = scheme_rows(rows, "extrapolate")
    if len(part):
        table = _per_family(part).merge(
            part.groupby(["spec", "family"])["known_family"].first().reset_index(), on=["spec", "family"])
        table["status"] = "ok"
    else:
        table = empty_extrapolation()
    missing = [{"spec": m.spec, "family": "", "status": f"failed: {msg}"}
               for m, msg in failed.values() if m.kind == "extrapolate"]
    return _with_failures(table, missing, names, _EXTRAP_COLUMNS)


def extrapolation_totals(rows: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Extrapolation elpd (sum over held-out rows), difference SE over rows, and coverage."""
    cols = ["spec", "extrap_elpd", "extrap_diff", "extrap_dse", "extrap_coverage", "extrap_rows"]
    part = scheme_rows(rows, "extrapolate")
    if not len(part):
        return pd.DataFrame(columns=cols)
    wide = part.pivot(index="row", columns="spec", values="elpd").dropna()
    diffs = _paired(wide)
    cover = part.groupby("spec")["covered"].mean()
    return pd.DataFrame([{"spec": s, "extrap_elpd": float(wide[s].sum()), "extrap_diff": diffs[s][0],
                          "extrap_dse": diffs[s][1], "extrap_coverage": float(cover[s]),
                          "extrap_rows": len(wide)} for s in wide.columns], columns=cols)


# --- stacked 100T table ----------------------------------------------------------------------------


def stacked_table(runs: dict[str, Run], weights: dict[str, float], *, grid: pd.DataFrame | None = None,
                  seed: int = DEFAULT_SEED, prob: float = CI_PROB) -> pd.DataFrame:
    """Bands of each spec and of their stacking mixture on ``grid`` (default: the 100T table).

    The mixture's draws are the union of every spec's posterior predictive draws, each spec's
    weighted by its stacking weight over its number of draws; its bands are weighted quantiles.
    Rows have ``model`` (a spec name or ``"stacked"``) and ``weight``.
    """
    grid = (default_grid() if grid is None else grid).reset_index(drop=True)
    q = np.array([(1 - prob) / 2, 0.5, (1 + prob) / 2])
    parts, mean_draws, pred_draws, draw_w = [], [], [], []
    for name, run in runs.items():
        parts.append(predict(run, grid, prob=prob, seed=seed).assign(model=name, weight=weights[name]))
        log_mu, log_pred = _predictive_draws(run, grid, seed)
        mean_draws.append(log_mu)
        pred_draws.append(log_pred)
        draw_w.append(np.full(len(log_mu), weights[name] / len(log_mu)))
    w = np.concatenate(draw_w)
    stacked = grid.copy()
    for prefix, draws in (("mean", np.vstack(mean_draws)), ("pred", np.vstack(pred_draws))):
        bands = np.exp(_weighted_quantiles(draws, w, q))
        for j, suffix in enumerate(("lower", "median", "upper")):
            stacked[f"{prefix}_{suffix}"] = bands[:, j]
    stacked["new_levels"] = parts[0]["new_levels"].to_numpy()
    stacked = stacked.assign(model="stacked", weight=float(sum(weights.values())))
    table = pd.concat([*parts, stacked], ignore_index=True)
    lead = ["model", "weight"]
    return table[lead + [c for c in table.columns if c not in lead]]


def _predictive_draws(run: Run, grid: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Log law-mean and log new-measurement draws (samples x rows), as :func:`predict` makes them."""
    noise = draw_residuals(run.spec.likelihood, np.random.default_rng([seed, 1]), (n_samples(run.idata),))
    design = build_design(grid, run.levels)
    log_mu = row_log_mu(run.idata, run.spec, design, seed=seed)
    return log_mu, log_mu + noise[:, None] * row_sigma(run.idata, run.spec, design, seed=seed)


def _weighted_quantiles(draws: np.ndarray, weights: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles ``q`` of every column of ``draws`` under per-draw ``weights``: (columns, len(q))."""
    out = np.empty((draws.shape[1], len(q)))
    for j in range(draws.shape[1]):
        order = np.argsort(draws[:, j])
        values, w = draws[order, j], weights[order]
        # midpoint rule: the empirical CDF at each sorted draw, centred on its own mass
        cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
        out[j] = np.interp(q, cdf, values)
    return out


# --- summary -------------------------------------------------------------------------------------


def _certainty(diff: float, se: float) -> str:
    """How sure a lead of ``diff`` elpd (with standard error ``se``) is, in words.

    Under 2 SE the forms are not distinguishable; 2 to 4 SE is a probable, above 4 SE a clear
    preference (the usual reading of ``elpd_diff / dse``).
    """
    if not np.isfinite(diff) or not np.isfinite(se):
        return "not available"
    if se <= 0:
        return "identical scores" if diff == 0 else f"{diff:.1f} elpd ahead"
    z = diff / se
    verdict = ("not distinguishable" if z < 2 else "probably better" if z < 4 else "clearly better")
    return f"{diff:.1f} ± {se:.1f} elpd ahead ({z:.1f} SE: {verdict})"


def _verdict(table: pd.DataFrame, score: str, diff: str, dse: str, what: str) -> list[str]:
    ranked = table.dropna(subset=[score]).sort_values(score, ascending=False)
    if len(ranked) < 2:
        return [f"{what}: not enough scored specs"]
    best, second = ranked.iloc[0], ranked.iloc[1]
    lines = [f"{what}: prefers {best['spec']}; over {second['spec']}: "
             f"{_certainty(float(second[diff]), float(second[dse]))}"]
    for r in ranked.iloc[2:].itertuples(index=False):
        lines.append(f"    over {r.spec}: {_certainty(float(getattr(r, diff)), float(getattr(r, dse)))}")
    return lines


def _sharpness_verdict(table: pd.DataFrame, prefix: str, what: str) -> list[str]:
    """Which form is calibrated *and* sharp: the lowest mean interval score, with coverage and width.

    The interval score is proper (it rewards a band for being narrow only while it still covers),
    so it decides; coverage and width are shown so that a reader sees why.
    """
    col = f"{prefix}_interval_score"
    if col not in table or table[col].isna().all():
        return []
    t = table.dropna(subset=[col]).sort_values(col)
    best = t.iloc[0]
    lines = [f"  {what}, calibrated and sharp (mean interval score of log QiD, lower is better): "
             f"{best['spec']} {best[col]:.2f}"]
    for r in t.iloc[1:].itertuples(index=False):
        diff, dse = getattr(r, f"{prefix}_is_diff"), getattr(r, f"{prefix}_is_dse")
        z = diff / dse if dse > 0 else np.inf
        word = "not distinguishable" if z < 2 else "probably worse" if z < 4 else "clearly worse"
        lines.append(f"    {r.spec} {getattr(r, col):.2f}: worse by {diff:.2f} ± {dse:.2f} ({word})")
    lines.append("    coverage 50/80/90% and median 90% band (as a factor, upper/lower): " + "; ".join(
        f"{r.spec} {getattr(r, f'{prefix}_coverage50'):.0%}/{getattr(r, f'{prefix}_coverage80'):.0%}/"
        f"{getattr(r, f'{prefix}_coverage90'):.0%}, x{np.exp(getattr(r, f'{prefix}_width')):.3g}"
        for r in t.itertuples(index=False)))
    return lines


def _unreliable_joint(logo: pd.DataFrame, limit: float = KHAT_LIMIT,
                      what: str = "leave-one-family-out") -> list[str]:
    """Warnings for a family split's joint scores that rest on a few draws (Pareto k above ``limit``)."""
    bad = logo[logo["joint_khat"].astype(float) > limit]
    lines = []
    for spec, part in bad.groupby("spec", sort=False):
        fams = ", ".join(f"{r.family} (k {r.joint_khat:.2f}, MCSE {r.joint_mcse:.1f})"
                         for r in part.itertuples(index=False))
        lines.append(f"warning: {spec}: {what} joint scores rest on a few draws for {fams}; "
                     f"their Monte Carlo error may far exceed the MCSE shown, and {what} differences between "
                     "forms are uncertain beyond their SE")
    return lines


class ComparisonTables(Protocol):
    """What the verdict reads of a comparison (:class:`bayesqid.checks.compare.Comparison`)."""

    table: pd.DataFrame
    logo: pd.DataFrame
    forecast: pd.DataFrame
    scaleup: pd.DataFrame
    extrapolation: pd.DataFrame
    failed: dict[str, str]
    cv: tuple[str, ...]
    dataset_label: str


def format_summary(result: ComparisonTables) -> str:
    """The printed verdict of a comparison (see :meth:`Comparison.summary`)."""
    t = result.table
    lines = [f"compared {len(t)} law forms on {result.dataset_label}", ""]
    lines.append(f"{'spec':<16} {'law':<10} {'elpd_loo':>10} {'se':>7} {'p_loo':>7} {'k>good':>7} "
                 f"{'weight':>7}" + (f" {'logo_elpd':>10} {'cover':>6}" if "logo" in result.cv else "")
                 + "".join(f" {FAMILY_SPLITS[c][:9]:>9} {'cover':>6}" for c in ("forecast", "scale-up")
                           if c in result.cv)
                 + (f" {'extrap':>9} {'cover':>6}" if "extrapolate" in result.cv else ""))
    for r in t.itertuples(index=False):
        line = (f"{r.spec[:16]:<16} {r.law[:10]:<10} {r.elpd_loo:>10.1f} {r.se_loo:>7.1f} {r.p_loo:>7.1f} "
                f"{r.pareto_k_bad + r.pareto_k_very_bad:>7d} {r.weight:>7.3f}")
        if "logo" in result.cv:
            line += f" {r.logo_elpd:>10.1f} {r.logo_coverage:>6.0%}"
        for c in ("forecast", "scale-up"):
            if c in result.cv:
                p = FAMILY_SPLITS[c]
                line += f" {getattr(r, f'{p}_elpd'):>9.1f} {getattr(r, f'{p}_coverage'):>6.0%}"
        if "extrapolate" in result.cv:
            line += f" {r.extrap_elpd:>9.1f} {r.extrap_coverage:>6.0%}"
        lines.append(line)
    lines.append("")
    lines += _verdict(t, "elpd_loo", "elpd_diff_loo", "dse_loo", "PSIS-LOO (rows)")
    if "logo" in result.cv:
        lines += _verdict(t, "logo_elpd", "logo_diff", "logo_dse", "leave-one-family-out (new family)")
        if "logo_mcse" in t:
            lines.append("    Monte Carlo SE of each LOGO total (over and above the SEs above): " + ", ".join(
                f"{r.spec} {r.logo_mcse:.1f}" + (f" (unreliable: Pareto k up to {r.logo_khat_max:.1f})"
                                                 if r.logo_khat_max > KHAT_LIMIT else "")
                for r in t.itertuples(index=False)))
    if "logo" in result.cv:
        lines += _sharpness_verdict(t, "logo", "leave-one-family-out")
    for scheme, what in (
        ("forecast", "forecast (families trained longer than any in the fit, as new families)"),
        ("scale-up", "scale-up (a family's largest size from its smaller ones)"),
    ):
        if scheme in result.cv:
            prefix = FAMILY_SPLITS[scheme]
            lines += _verdict(t, f"{prefix}_elpd", f"{prefix}_diff", f"{prefix}_dse", what)
            lines += _sharpness_verdict(t, prefix, scheme)
    if "extrapolate" in result.cv:
        lines += _verdict(t, "extrap_elpd", "extrap_diff", "extrap_dse", "extrapolation to larger D")
        lines += _sharpness_verdict(t, "extrap", "extrapolation to larger D")
    top = t.sort_values("weight", ascending=False).iloc[0]
    lines.append("stacking weights: " + ", ".join(f"{r.spec} {r.weight:.2f}" for r in t.itertuples())
                 + f" (largest: {top['spec']})")
    if "logo" in result.cv:
        lines += _unreliable_joint(result.logo)
    for name, what in (("forecast", "forecast"), ("scaleup", "scale-up")):
        table = getattr(result, name)
        if len(table):
            lines += _unreliable_joint(table, what=what)
    bad_k = t[(t["pareto_k_bad"] + t["pareto_k_very_bad"]) > 0]
    for r in bad_k.itertuples(index=False):
        lines.append(f"warning: {r.spec}: {r.pareto_k_bad + r.pareto_k_very_bad} rows with Pareto k above "
                     "the reliable limit; its PSIS-LOO is optimistic there (trust LOGO more)")
    for r in t[~t["gate_passed"].astype(bool)].itertuples(index=False):
        lines.append(f"warning: the full fit of {r.spec} FAILED its convergence gate")
    for key, msg in result.failed.items():
        lines.append(f"FAILED fold {key}: {msg}")
    return "\n".join(lines)
