"""Simulation-based calibration (SBC) of a spec and its sampler on a fixed design.

One replicate: draw every parameter from the spec's priors (population coefficients, effect
scales ``sd_<group>_<param>``, standardised effects ``z_<group>_<param>`` ~ N(0, 1), ``sigma``),
simulate log QiD on the design's rows through the likelihood, fit the spec to the simulated
QiD (values below the resolution are censored by the fit, exactly as real data are), and
record where each true value falls among posterior draws. If the model and the sampler are
calibrated, these ranks are uniform (Talts et al. 2018, arXiv 1804.06788).

Quantities ranked: the population coefficients, one family effect (``sd * z`` of one fitted
family), the noise scale ``sigma`` and the law-mean log QiD at 1e14 tokens of a new family.

Ranks are taken among ``L`` draws thinned to about the effective sample size of the
replicate's fit, so autocorrelation cannot fake a pile-up of ranks; ``L`` may differ between
replicates, and each rank is turned into a uniform value ``u = (rank + v) / (L + 1)`` with
``v ~ U(0, 1)``, which is exactly uniform on (0, 1) when the rank is uniform on ``0..L``.

Replicates fan out over Dask (:mod:`bayesqid.fanout`): each is stored as it finishes, and a
second call with the same directory runs only the missing ones.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
from scipy import stats

from bayesqid.checks.simulate import draw_truth, simulate_qid, truth_log_mu
from bayesqid.constants import DEFAULT_SEED, DEFAULT_TABLE_TOKENS, FAMILY
from bayesqid.data.dataset import Dataset
from bayesqid.data.design import Design, build_design
from bayesqid.engines.sampler import SamplerConfig
from bayesqid.errors import BayesqidError, ConvergenceWarning
from bayesqid.lang.effects import sd_name, z_name
from bayesqid.lang.spec import ModelSpec
from bayesqid.outputs import write_atomic, write_csv
from bayesqid.questions.predict import NEW_FAMILY, default_grid
from bayesqid.sampling.draws import flat, row_log_mu
from bayesqid.sampling.refit import derive_seed, refitter_for

#: Most thinned draws a rank is taken among (ranks 0..L).
MAX_RANK_DRAWS = 100
#: Fewest thinned draws: below this a replicate's fit is too autocorrelated to rank honestly,
#: and its ranks are still recorded (with the low ``L``) rather than dropped, which would bias.
MIN_RANK_DRAWS = 10
#: Family-wise false-alarm rate of the verdict (Bonferroni over quantities and both tests).
ALPHA = 0.01
#: The new-family row of the 100T table whose log QiD is ranked.
NEW_FAMILY_PARAMS = 7e9
NEW_FAMILY_BITS = 3

#: Files written in an SBC directory.
SETTINGS_FILE = "sbc.json"
RANKS_FILE = "ranks.csv"
TESTS_FILE = "uniformity.csv"
SUMMARY_FILE = "summary.json"
ECDF_FILE = "ecdf.png"
STORE_DIR = "replicates"


# --- ranked quantities -------------------------------------------------------------------------


def new_family_row() -> pd.DataFrame:
    """The 100T-table row whose law-mean log QiD is ranked (a new family, GPTQ g128, WikiText-2)."""
    return default_grid(tokens=DEFAULT_TABLE_TOKENS, params=(NEW_FAMILY_PARAMS,), bits=(NEW_FAMILY_BITS,),
                        family=NEW_FAMILY)


def family_effect(spec: ModelSpec, design: Design) -> tuple[str, str] | None:
    """(level, coefficient) of the ranked family effect: the most measured family's intercept."""
    eff = spec.effect(FAMILY)
    if eff is None:
        return None
    counts = np.bincount(design.codes[FAMILY], minlength=len(design.levels[FAMILY]))
    return design.levels[FAMILY][int(counts.argmax())], eff.params[0]


def quantity_names(spec: ModelSpec, design: Design) -> list[str]:
    """Names of the ranked quantities, in report order."""
    names = list(spec.law_obj.param_names)
    fam = family_effect(spec, design)
    if fam is not None:
        names.append(f"family_{fam[1]}[{fam[0]}]")
    names += ["sigma", f"log_qid_1e14[{NEW_FAMILY}, N={NEW_FAMILY_PARAMS:g}, P={NEW_FAMILY_BITS}]"]
    return names


def _true_values(spec: ModelSpec, design: Design, truth: Mapping[str, Any],
                 rng: np.random.Generator) -> list[float]:
    out = [float(truth[p]) for p in spec.law_obj.param_names]
    fam = family_effect(spec, design)
    if fam is not None:
        level = design.levels[FAMILY].index(fam[0])
        out.append(float(truth[sd_name(FAMILY, fam[1])] * truth[z_name(FAMILY, fam[1])][level]))
    row = build_design(new_family_row(), design.levels)
    out += [float(truth["sigma"]), float(truth_log_mu(spec, row, truth, rng)[0])]
    return out


def _posterior_values(run: Any, design: Design, seed: int) -> list[np.ndarray]:
    """Posterior draws (chain-major, flattened) of every ranked quantity."""
    spec, idata = run.spec, run.idata
    out = [flat(idata, p) for p in spec.law_obj.param_names]
    fam = family_effect(spec, design)
    if fam is not None:
        level = design.levels[FAMILY].index(fam[0])
        out.append(flat(idata, sd_name(FAMILY, fam[1])) * flat(idata, z_name(FAMILY, fam[1]))[:, level])
    row = build_design(new_family_row(), design.levels)
    out += [flat(idata, "sigma"), row_log_mu(idata, spec, row, seed=seed)[:, 0]]
    return out


def thinned_rank(draws: np.ndarray, truth: float, n_draws: int) -> int:
    """Number of ``n_draws`` evenly spaced draws (over all chains) below ``truth``."""
    idx = np.linspace(0, len(draws) - 1, n_draws).round().astype(int)
    return int((draws[idx] < truth).sum())


def rank_draws(ess: Sequence[float], max_draws: int = MAX_RANK_DRAWS, n_samples: int | None = None) -> int:
    """``L``: the thinned draw count of a replicate, the smallest bulk ESS of its quantities."""
    finite = [e for e in ess if np.isfinite(e)]
    lowest = int(min(finite)) if finite else MIN_RANK_DRAWS
    top = max_draws if n_samples is None else min(max_draws, n_samples)
    return int(np.clip(lowest, MIN_RANK_DRAWS, top))


# --- one replicate -----------------------------------------------------------------------------


def sbc_replicate(spec: ModelSpec, dataset: Dataset, config: SamplerConfig, index: int, root_seed: int,
                  shift: Mapping[str, float] | None = None,
                  max_rank_draws: int = MAX_RANK_DRAWS) -> pd.DataFrame:
    """Simulate, fit and rank one SBC replicate; one row per ranked quantity.

    Parameters
    ----------
    spec : ModelSpec
        The model: its priors draw the truth, and it is fitted.
    dataset : Dataset
        The design (its rows' N, D, bits and levels; its QiD is replaced).
    config : SamplerConfig
        Sampler settings of the fit (its seed is replaced by a derived one).
    index : int
        Replicate number; seeds derive from ``(root_seed, "sbc", index)``.
    root_seed : int
        Root seed of the whole SBC run.
    shift : mapping, optional
        Added to population coefficients when simulating but not to the recorded truth: a
        mis-specified simulator (negative control). Empty for real calibration.
    max_rank_draws : int
        Upper limit of ``L``.

    Returns
    -------
    DataFrame
        Columns ``replicate, quantity, truth, rank, n_draws, u, post_mean, post_sd, ess_bulk,
        divergences, gate_passed, censored_share, seconds``.
    """
    start = time.perf_counter()
    seed = derive_seed(root_seed, "sbc", index)
    rng = np.random.default_rng(seed)
    design = build_design(dataset.frame)
    truth = draw_truth(spec, design, rng)
    qid = simulate_qid(spec, design, truth, rng, shift)
    true_values = _true_values(spec, design, truth, rng)
    fit_seed = derive_seed(root_seed, "sbc", index, "nuts")
    with warnings.catch_warnings():
        # A replicate's gate is recorded in its rows; a warning per replicate would only be noise.
        warnings.simplefilter("ignore", ConvergenceWarning)
        run = refitter_for(spec, dataset, config).fit(seed=fit_seed, qid=qid)
    draws = _posterior_values(run, design, fit_seed)
    shape = (run.idata.posterior.sizes["chain"], run.idata.posterior.sizes["draw"])
    ess = [float(az.ess(d.reshape(shape), method="bulk")) for d in draws]
    n_draws = rank_draws(ess, max_rank_draws, len(draws[0]))
    ranks = [thinned_rank(d, t, n_draws) for d, t in zip(draws, true_values, strict=True)]
    jitter = np.random.default_rng(derive_seed(root_seed, "sbc", index, "jitter")).uniform(size=len(ranks))
    names = quantity_names(spec, design)
    return pd.DataFrame({
        "replicate": index, "quantity": names, "truth": true_values, "rank": ranks, "n_draws": n_draws,
        "u": (np.asarray(ranks) + jitter) / (n_draws + 1),
        "post_mean": [float(d.mean()) for d in draws], "post_sd": [float(d.std()) for d in draws],
        "ess_bulk": ess, "divergences": run.diagnostics.divergences,
        "gate_passed": bool(run.diagnostics.passed),
        "censored_share": float((qid < spec.likelihood.censor_below).mean()),
        "seconds": time.perf_counter() - start,
    })


# --- uniformity --------------------------------------------------------------------------------


def n_bins(replicates: int) -> int:
    """Chi-square bins: about five expected ranks per bin, between 2 and 20 bins."""
    return int(np.clip(replicates // 5, 2, 20))


def uniformity(ranks: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Chi-square (binned) and Kolmogorov-Smirnov tests of uniformity of ``u``, per quantity.

    A quantity is flagged when either p-value falls below ``alpha / (2 * quantities)``
    (Bonferroni), so the chance that a calibrated model gets any flag is at most ``alpha``.
    """
    names = list(dict.fromkeys(ranks["quantity"]))
    threshold = alpha / (2 * len(names))
    rows = []
    for name in names:
        u = ranks.loc[ranks["quantity"] == name, "u"].to_numpy(float)
        bins = n_bins(len(u))
        counts = np.histogram(u, bins=bins, range=(0.0, 1.0))[0]
        chi2 = stats.chisquare(counts)
        ks = stats.kstest(u, "uniform")
        rows.append({"quantity": name, "replicates": len(u), "bins": bins,
                     "chi2": float(chi2.statistic), "chi2_p": float(chi2.pvalue),
                     "ks": float(ks.statistic), "ks_p": float(ks.pvalue),
                     "mean_u": float(u.mean()), "threshold": threshold,
                     "flagged": bool(min(chi2.pvalue, ks.pvalue) < threshold)})
    return pd.DataFrame(rows)


def verdict(tests: pd.DataFrame, replicates: int, failed: int = 0, alpha: float = ALPHA) -> str:
    """One line: PASS or FAIL, with the smallest p-value and the threshold it was held to."""
    p = tests[["chi2_p", "ks_p"]].min(axis=1)
    worst = tests.loc[p.idxmin()]
    threshold = float(tests["threshold"].iloc[0])
    flagged = tests.loc[tests["flagged"], "quantity"].tolist()
    lost = f"; {failed} replicate(s) failed to fit and are not ranked" if failed else ""
    if flagged:
        return (f"SBC verdict: FAIL: ranks of {', '.join(flagged)} are not uniform over {replicates} "
                f"replicates (smallest p = {p.min():.2g} for {worst['quantity']}; threshold "
                f"{threshold:.2g} = {alpha:g} / {2 * len(tests)} tests){lost}")
    return (f"SBC verdict: PASS: ranks of all {len(tests)} quantities are consistent with uniform over "
            f"{replicates} replicates (smallest p = {p.min():.2g} for {worst['quantity']}; threshold "
            f"{threshold:.2g} = {alpha:g} / {2 * len(tests)} tests){lost}")


def ecdf_figure(ranks: pd.DataFrame) -> Any:
    """ECDF-minus-uniform of ``u`` per quantity, with ArviZ's simultaneous 95% bands."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(ranks["quantity"]))
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(3.3 * ncols, 2.6 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        # A copy: ArviZ sorts the values in place, and a column's array may be read-only.
        u = np.array(ranks.loc[ranks["quantity"] == name, "u"], dtype=float)
        az.plot_ecdf(u, eval_points=np.linspace(0.0, 1.0, 201), cdf=stats.uniform(0, 1).cdf,
                     difference=True, confidence_bands=True, ci_prob=0.95, rvs=stats.uniform(0, 1).rvs,
                     random_state=0, ax=ax, show=False)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle("SBC: ECDF of normalised ranks minus uniform (95% simultaneous band)", fontsize=9)
    return fig


# --- the whole run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SBCResult:
    """What :func:`run_sbc` produced (also read back from its directory by :func:`load_sbc`).

    Attributes
    ----------
    ranks : DataFrame
        One row per (replicate, quantity); see :func:`sbc_replicate`.
    tests : DataFrame
        Uniformity tests per quantity; see :func:`uniformity`.
    verdict : str
        One line, starting ``SBC verdict: PASS`` or ``SBC verdict: FAIL``.
    passed : bool
        No quantity flagged.
    summary : dict
        Settings, counts and wall time.
    directory : Path or None
        Where the files are.
    """

    ranks: pd.DataFrame
    tests: pd.DataFrame
    verdict: str
    passed: bool
    summary: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None


def _settings(spec: ModelSpec, dataset: Dataset, config: SamplerConfig, seed: int,
              shift: Mapping[str, float] | None, max_rank_draws: int) -> dict[str, Any]:
    """What must match for a directory's stored replicates to be reused."""
    return {"spec": json.loads(spec.to_json()), "data_sha256": dataset.sha256,
            "sampler": _sampler_settings(config), "root_seed": int(seed),
            "shift": dict(shift or {}), "max_rank_draws": int(max_rank_draws)}


def _sampler_settings(config: SamplerConfig) -> dict[str, Any]:
    """Sampler settings that change draws: not the per-fit seed, cores or progress bar, so a run
    resumed on another scheduler reuses what is stored."""
    return {k: v for k, v in asdict(config).items() if k not in ("seed", "cores", "progress")}


def _check_settings(directory: Path, settings: dict[str, Any]) -> None:
    path = directory / SETTINGS_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise BayesqidError(f"{path}: unreadable SBC settings ({err.__class__.__name__})") from None
        if stored != json.loads(json.dumps(settings)):
            differ = sorted(k for k in settings if stored.get(k) != json.loads(json.dumps(settings[k])))
            raise BayesqidError(f"{directory}: holds an SBC run with other settings ({', '.join(differ)}); "
                                "give another output directory")
    else:
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2), encoding="utf-8"))


def run_sbc(spec: ModelSpec, dataset: Dataset, config: SamplerConfig | None = None, *,
            replicates: int = 100, seed: int = DEFAULT_SEED, out: str | Path | None = None,
            scheduler: str | None = None, n_workers: int | None = None,
            shift: Mapping[str, float] | None = None, max_rank_draws: int = MAX_RANK_DRAWS,
            alpha: float = ALPHA, log: Callable[[str], None] | None = None) -> SBCResult:
    """Simulation-based calibration of ``spec`` with ``config`` on the design of ``dataset``.

    Parameters
    ----------
    spec : ModelSpec
        The model to calibrate.
    dataset : Dataset
        The design: the reference data for the real check (a quick one:
        :func:`bayesqid.checks.simulate.tiny_design`).
    config : SamplerConfig, optional
        Sampler settings of every fit (default preset ``"default"``).
    replicates : int
        Number of simulated datasets.
    seed : int
        Root seed; every replicate's seeds derive from it and its index.
    out : path, optional
        Directory of the results. Finished replicates are stored under ``replicates/`` as they
        complete; calling again with the same directory (and settings) resumes. Default: a
        temporary directory, removed afterwards.
    scheduler : str, optional
        ``None``: a local Dask cluster; ``"synchronous"``: in this process; or a scheduler address.
    n_workers : int, optional
        Workers of the local cluster.
    shift : mapping, optional
        Negative control: added to the simulator's population coefficients only.
    max_rank_draws : int
        Upper limit of the thinned draws per rank.
    alpha : float
        Family-wise false-alarm rate of the verdict.
    log : callable, optional
        Progress lines.

    Returns
    -------
    SBCResult
    """
    import tempfile

    from bayesqid.checks.fanout import Task, run_tasks

    if replicates < 2:
        raise BayesqidError(f"SBC needs at least 2 replicates, got {replicates}")
    cfg = config or SamplerConfig.preset("default")
    say = log or (lambda _msg: None)
    scratch = tempfile.TemporaryDirectory(prefix="bayesqid-sbc-") if out is None else None
    directory = Path(scratch.name if scratch else out)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _check_settings(directory, _settings(spec, dataset, cfg, seed, shift, max_rank_draws))
        tasks = [Task(key=f"rep-{i:05d}", fn=sbc_replicate,
                      kwargs={"spec": spec, "dataset": dataset, "config": cfg, "index": i, "root_seed": seed,
                              "shift": dict(shift or {}), "max_rank_draws": max_rank_draws})
                 for i in range(replicates)]
        say(f"SBC of spec {spec.name!r}: {replicates} replicates on {len(dataset.frame)} rows, "
            f"{cfg.chains} chains x ({cfg.tune} tune + {cfg.draws} draws) each, root seed {seed}")
        start = time.perf_counter()
        outcome = run_tasks(tasks, directory / STORE_DIR, scheduler=scheduler, n_workers=n_workers, log=say)
        wall = time.perf_counter() - start
        if len(outcome.results) < 2:
            raise BayesqidError(f"SBC: only {len(outcome.results)} replicate(s) finished; "
                                + "; ".join(f"{k}: {v}" for k, v in list(outcome.failed.items())[:3]))
        ranks = pd.concat(outcome.results.values(), ignore_index=True)
        summary = {"spec": spec.name, "replicates": replicates, "finished": len(outcome.results),
                   "failed": len(outcome.failed), "resumed": len(outcome.resumed), "wall_seconds": wall,
                   "root_seed": int(seed), "rows": len(dataset.frame), "sampler": _sampler_settings(cfg),
                   "shift": dict(shift or {}), "alpha": alpha,
                   "gate_failures": int((~ranks.groupby("replicate")["gate_passed"].first()).sum()),
                   "median_replicate_seconds": float(ranks.groupby("replicate")["seconds"].first().median())}
        result = summarise(ranks, summary, alpha=alpha, directory=None if scratch else directory)
        if scratch is None:
            save_sbc(result, directory)
        return result
    finally:
        if scratch is not None:
            scratch.cleanup()


def summarise(ranks: pd.DataFrame, summary: dict[str, Any], *, alpha: float = ALPHA,
              directory: Path | None = None) -> SBCResult:
    """Tests and verdict of a table of ranks."""
    tests = uniformity(ranks, alpha)
    finished = int(ranks["replicate"].nunique())
    line = verdict(tests, finished, int(summary.get("failed", 0)), alpha)
    summary = dict(summary) | {"verdict": line, "passed": not bool(tests["flagged"].any())}
    return SBCResult(ranks=ranks, tests=tests, verdict=line, passed=summary["passed"], summary=summary,
                     directory=directory)


def format_tests(result: SBCResult) -> str:
    """Text table of the uniformity tests, for the terminal."""
    tests = result.tests
    width = max(len("quantity"), *(len(q) for q in tests["quantity"]))
    lines = [f"{'quantity':<{width}} {'chi2':>7} {'p':>8} {'KS':>6} {'p':>8} {'mean u':>6}  flagged"]
    for r in tests.itertuples(index=False):
        lines.append(f"{r.quantity:<{width}} {r.chi2:>7.2f} {r.chi2_p:>8.2g} {r.ks:>6.3f} {r.ks_p:>8.2g} "
                     f"{r.mean_u:>6.2f}  {'FLAGGED' if r.flagged else '-'}")
    s = result.summary
    lines.append(f"{s.get('finished', '?')} replicates ranked ({s.get('resumed', 0)} resumed, "
                 f"{s.get('failed', 0)} failed, {s.get('gate_failures', 0)} with a failed convergence gate); "
                 f"wall time {s.get('wall_seconds', float('nan')):.0f} s")
    return "\n".join(lines)


def save_sbc(result: SBCResult, directory: str | Path) -> Path:
    """Write ranks, tests, summary and the ECDF figure into ``directory`` (each file atomically)."""
    directory = Path(directory)
    write_csv(result.ranks, directory / RANKS_FILE)
    write_csv(result.tests, directory / TESTS_FILE)
    write_atomic(directory / SUMMARY_FILE, lambda tmp: Path(tmp).write_text(
        json.dumps(result.summary, indent=2), encoding="utf-8"))
    fig = ecdf_figure(result.ranks)
    write_atomic(directory / ECDF_FILE, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return directory


def load_sbc(directory: str | Path) -> SBCResult:
    """Read the result :func:`run_sbc` wrote into ``directory``.

    Raises
    ------
    BayesqidError
        The directory does not hold a finished SBC run.
    """
    directory = Path(directory)
    missing = [f for f in (RANKS_FILE, TESTS_FILE, SUMMARY_FILE) if not (directory / f).is_file()]
    if not directory.is_dir() or missing:
        raise BayesqidError(f"{directory}: not a finished SBC directory (missing "
                            f"{missing or [directory.name]}); run 'bayesqid sbc --out DIR' first")
    try:
        summary = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
        ranks = pd.read_csv(directory / RANKS_FILE)
        tests = pd.read_csv(directory / TESTS_FILE)
    except (OSError, ValueError) as err:
        raise BayesqidError(f"{directory}: unreadable SBC result ({err.__class__.__name__})") from None
    return SBCResult(ranks=ranks, tests=tests, verdict=str(summary.get("verdict", "")),
                     passed=bool(summary.get("passed", False)), summary=summary, directory=directory)


__all__ = ["SBCResult", "load_sbc", "run_sbc", "sbc_replicate", "uniformity", "verdict"]
