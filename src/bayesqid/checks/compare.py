"""Comparing law forms: PSIS-LOO, leave-one-family-out, forecast, scale-up and extrapolation CV,
stacking.

The question behind a comparison is extrapolation: which form predicts a family it has never
seen, trained longer than any it was fitted on, or larger than the sizes it was measured at?
The scores that answer it:

- **PSIS-LOO** (and WAIC) on the full fit of each spec, with ArviZ's stacking weights;
- **leave-one-family-out** (LOGO): exact refits without one family, whose rows are then
  predicted *as a new family* (effects drawn from the population). A family's score is the
  joint log predictive density of its rows (they share one family effect per draw);
- **forecast**: one refit without the most-trained families (the top quarter by their largest
  D, at least two), predicting each as a new family: the users' question at 15-100T tokens;
- **scale-up**: for every family with three sizes or more, a refit without its largest size,
  predicting it as the known family ("my small models are measured; what about my big one?");
- **extrapolation**: refits on the rows below a token quantile, predicting the larger-D rest.

Each split is scored by elpd (joint per held-out family for the family splits) and by the
sharpness scores of :mod:`bayesqid.checks.sharpness` (coverage 50/80/90%, log-width, interval
score, CRPS).

Every fit (full and per fold) goes through :func:`bayesqid.refit.refitter_for` and is fanned
out with :func:`bayesqid.fanout.run_tasks`; fold tasks (:mod:`bayesqid.checks.folds`) return
small tidy frames computed on the worker, stored as they finish, so an interrupted comparison
resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayesqid.checks.fanout import Outcome, Task, run_tasks
from bayesqid.checks.folds import (
    DEFAULT_FORECAST_SHARE,
    DEFAULT_QUANTILE,
    extrapolation_mask,
    extrapolation_task,
    forecast_mask,
    forecast_task,
    full_fit_task,
    logo_fold_task,
    logo_masks,
    scaleup_masks,
    scaleup_task,
)
from bayesqid.checks.scores import (
    FAMILY_SPLITS,
    Fold,
    empty_extrapolation,
    empty_logo,
    extrapolation_table,
    extrapolation_totals,
    fold_rows,
    format_summary,
    logo_table,
    logo_totals,
    loo_table,
    sharpness_totals,
    stacked_table,
)
from bayesqid.constants import CI_PROB, DEFAULT_SEED, OBS
from bayesqid.data.dataset import Dataset
from bayesqid.data.design import build_design
from bayesqid.data.sources import load_dataset
from bayesqid.engines.sampler import SamplerConfig
from bayesqid.errors import BayesqidError, RunError
from bayesqid.lang.spec import ModelSpec, load_spec
from bayesqid.outputs import write_atomic, write_csv
from bayesqid.sampling.draws import log_likelihood
from bayesqid.sampling.refit import derive_seed
from bayesqid.sampling.run import Run, load_run

#: Cross-validation schemes that refit (PSIS-LOO and WAIC come with every comparison).
CV_SCHEMES: tuple[str, ...] = ("loo", "logo", "forecast", "scale-up", "extrapolate")

@dataclass(frozen=True)
class Candidate:
    """One law form in a comparison: a spec, and its full run when one was given.

    Attributes
    ----------
    name : str
        The spec's name (unique within a comparison).
    spec : ModelSpec
        The model.
    source : str
        Where it came from (spec file, shipped name or run file).
    run : Run or None
        A saved run of ``spec`` on the comparison's data, reused instead of a full fit.
    """

    name: str
    spec: ModelSpec
    source: str
    run: Run | None = None


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`; every table is a tidy DataFrame.

    Attributes
    ----------
    table : DataFrame
        One row per spec (best first by PSIS-LOO): LOO, WAIC, stacking ``weight`` (sums to 1),
        LOGO and extrapolation totals with the SE of their difference to the best spec.
    logo : DataFrame
        One row per spec x held-out family: joint and summed elpd, 90% coverage, status.
    forecast : DataFrame
        As ``logo``, for the families the forecast split held out (predicted as new families).
    scaleup : DataFrame
        As ``logo``, one row per spec x family whose largest size the scale-up split held out.
    extrapolation : DataFrame
        One row per spec x family with held-out rows: elpd, coverage, whether the family was fitted.
    stacked_100t : DataFrame
        The default 100T table (new family) per spec and stacked by the weights (``model``).
    failed : dict
        Fold or fit key -> one-line error, for tasks that failed after their retries.
    runs : dict
        Spec name -> full run.
    cv : tuple of str
        The schemes that were run.
    dataset_label : str
        Data path and size, for the summary.
    """

    table: pd.DataFrame
    logo: pd.DataFrame
    extrapolation: pd.DataFrame
    stacked_100t: pd.DataFrame
    forecast: pd.DataFrame = field(default_factory=empty_logo)
    scaleup: pd.DataFrame = field(default_factory=empty_logo)
    failed: dict[str, str] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    cv: tuple[str, ...] = ("loo",)
    dataset_label: str = ""

    def summary(self) -> str:
        """Plain-text verdict: the preferred form per score and how sure (elpd differences, SE)."""
        return format_summary(self)

    def write(self, out: str | os.PathLike[str]) -> list[Path]:
        """Write ``compare.csv``, the tables of the splits that ran (``logo.csv``, ``forecast.csv``,
        ``scaleup.csv``, ``extrapolation.csv``), ``stacked_100t.csv`` and ``summary.txt`` to
        ``out`` (atomically, one by one); returns the paths written."""
        out = Path(out)
        paths = [write_csv(self.table, out / "compare.csv")]
        if "logo" in self.cv:
            paths.append(write_csv(self.logo, out / "logo.csv"))
        if "forecast" in self.cv:
            paths.append(write_csv(self.forecast, out / "forecast.csv"))
        if "scale-up" in self.cv:
            paths.append(write_csv(self.scaleup, out / "scaleup.csv"))
        if "extrapolate" in self.cv:
            paths.append(write_csv(self.extrapolation, out / "extrapolation.csv"))
        paths.append(write_csv(self.stacked_100t, out / "stacked_100t.csv"))
        text = self.summary() + "\n"
        paths.append(write_atomic(out / "summary.txt", lambda tmp: Path(tmp).write_text(text, "utf-8")))
        return paths


# --- inputs ------------------------------------------------------------------------------------


def resolve_candidates(items: Sequence[str | os.PathLike[str] | ModelSpec | Run],
                       dataset: Dataset) -> list[Candidate]:
    """Turn specs, spec names or paths, runs and run files into checked candidates.

    Raises
    ------
    BayesqidError
        Fewer than two candidates, a name given twice, an unknown spec or law, an unreadable
        run, or a run fitted on other data than ``dataset``.
    """
    if len(items) < 2:
        raise BayesqidError(f"compare needs at least two specs or runs, got {len(items)}")
    out = []
    for item in items:
        out.append(_candidate(item, dataset))
    names = [c.name for c in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BayesqidError(f"spec name(s) {twice} given more than once; each law form needs its own name")
    return out


def _candidate(item: str | os.PathLike[str] | ModelSpec | Run, dataset: Dataset) -> Candidate:
    if isinstance(item, ModelSpec):
        return Candidate(item.name, item, f"spec {item.name}")
    if isinstance(item, Run):
        _check_run_data(item, dataset, f"run of {item.spec.name!r}")
        return Candidate(item.spec.name, item.spec, f"run of {item.spec.name}", item)
    text = str(item)
    if Path(text).suffix.lower() == ".nc":
        run = load_run(text)
        _check_run_data(run, dataset, text)
        return Candidate(run.spec.name, run.spec, text, run)
    spec = load_spec(text)
    return Candidate(spec.name, spec, text)


def _check_run_data(run: Run, dataset: Dataset, where: str) -> None:
    if run.data_sha256 != dataset.sha256:
        raise RunError(f"{where}: fitted on other data (sha256 {run.data_sha256[:12]}) than the "
                       f"comparison's {dataset.path} (sha256 {dataset.sha256[:12]}); refit it or give "
                       "the spec instead")


def _check_cv(cv: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(str(c) for c in cv))
    bad = [c for c in chosen if c not in CV_SCHEMES]
    if bad:
        raise BayesqidError(f"unknown cross-validation scheme {bad[0]!r}; known: {list(CV_SCHEMES)}")
    # LOO needs no refit and feeds the stacking weights: it is always part of a comparison.
    return ("loo", *[c for c in chosen if c != "loo"])


# --- task keys -------------------------------------------------------------------------------


def _safe(text: str) -> str:
    """A filesystem-safe, still unique, rendering of a label (for task keys)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"
    return clean if clean == text else f"{clean}~{zlib.crc32(text.encode()):08x}"


def _settings_hash(spec: ModelSpec, dataset: Dataset, config: SamplerConfig, seed: int,
                   *extra: Any) -> str:
    """Hash of everything a stored fold result depends on: a store never serves stale results."""
    # cores and progress change how a fit runs, not what it computes.
    cfg = replace(config, seed=0, cores=1, progress=False)
    text = json.dumps([spec.to_json(), dataset.sha256, repr(cfg), int(seed), *map(repr, extra)])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# --- the comparison ------------------------------------------------------------------------------


def compare(items: Sequence[str | os.PathLike[str] | ModelSpec | Run],
            dataset: Dataset | str | os.PathLike[str] | None = None, *,
            cv: Iterable[str] = CV_SCHEMES, out: str | os.PathLike[str] | None = None,
            scheduler: str | None = None, n_workers: int | None = None,
            config: SamplerConfig | None = None, seed: int = DEFAULT_SEED, prob: float = CI_PROB,
            quantile: float = DEFAULT_QUANTILE, forecast_share: float = DEFAULT_FORECAST_SHARE,
            retries: int = 1, log: Callable[[str], None] | None = None) -> Comparison:
    """Compare law forms on one dataset by PSIS-LOO and held-out splits that ask users' questions.

    Parameters
    ----------
    items : sequence
        At least two of: :class:`ModelSpec`, shipped spec name, spec ``.toml`` path, :class:`Run`
        or run ``.nc`` path (a run is reused as the full fit; it must be fitted on ``dataset``).
    dataset : Dataset, path or None
        The data (default: the bundled reference data).
    cv : iterable of str
        Schemes from :data:`CV_SCHEMES`; PSIS-LOO is always included.
    out : path, optional
        Directory of the outputs; fold results are kept in ``out/folds`` so that a second call
        resumes, and full runs are written to ``out/runs/<spec>.nc``. Without it, nothing is
        kept.
    scheduler : str, optional
        ``None`` (a local Dask cluster), ``"synchronous"`` or a scheduler address.
    n_workers : int, optional
        Workers of the local cluster (default: one per core).
    config : SamplerConfig, optional
        Sampler settings of every fit (default preset ``"default"``); seeds derive from ``seed``.
    seed : int
        Root seed: every fit's seed is :func:`bayesqid.refit.derive_seed` of it.
    prob : float
        Mass of the predictive intervals whose coverage is reported.
    quantile : float
        Token quantile of the extrapolation split (:func:`bayesqid.checks.folds.extrapolation_mask`).
    forecast_share : float
        Share of families, by their largest D, that the forecast split holds out (at least two;
        :func:`bayesqid.checks.folds.forecast_families`).
    retries : int
        Extra attempts of a failing fit.
    log : callable, optional
        Progress lines.

    Returns
    -------
    Comparison
    """
    say = log or (lambda _msg: None)
    if not 0 < prob < 1:
        raise BayesqidError(f"interval must be between 0 and 1, got {prob!r}")
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    schemes = _check_cv(cv)
    candidates = resolve_candidates(items, data)
    cfg = config or SamplerConfig.preset("default")
    masks = _split_masks(data, schemes, quantile, forecast_share)
    tasks, meta = _tasks(candidates, data, cfg, seed, schemes, prob, masks)
    say(f"comparing {len(candidates)} specs ({', '.join(c.name for c in candidates)}) on "
        f"{len(data.frame)} rows: {len(tasks)} fits ({', '.join(schemes)})")
    if out is None:
        with tempfile.TemporaryDirectory(prefix="bayesqid-compare-") as tmp:
            outcome = run_tasks(tasks, Path(tmp), scheduler=scheduler, n_workers=n_workers,
                                retries=retries, log=say)
    else:
        outcome = run_tasks(tasks, Path(out) / "folds", scheduler=scheduler, n_workers=n_workers,
                            retries=retries, log=say)
    runs = _collect_runs(candidates, data, outcome, meta, out, say)
    return _assemble(candidates, runs, data, outcome, meta, schemes, seed, prob)


def _split_masks(data: Dataset, schemes: tuple[str, ...], quantile: float,
                 forecast_share: float) -> dict[str, dict[str, np.ndarray]]:
    """Training masks of every refitting split, by scheme and fold label (checked up front)."""
    masks: dict[str, dict[str, np.ndarray]] = {}
    if "logo" in schemes:
        masks["logo"] = logo_masks(data)
    if "forecast" in schemes:
        masks["forecast"] = {"": forecast_mask(data, forecast_share)}
    if "scale-up" in schemes:
        masks["scale-up"] = scaleup_masks(data)
        if not masks["scale-up"]:
            raise BayesqidError("the scale-up split needs a family measured at three sizes or more")
    if "extrapolate" in schemes:
        masks["extrapolate"] = {"": extrapolation_mask(data, quantile)}
    return masks


def _tasks(candidates: Sequence[Candidate], data: Dataset, cfg: SamplerConfig, seed: int,
           schemes: tuple[str, ...], prob: float,
           masks: dict[str, dict[str, np.ndarray]]) -> tuple[list[Task], dict[str, Fold]]:
    tasks = []
    meta: dict[str, Fold] = {}
    for cand in candidates:
        spec = cand.spec
        common = {"spec": spec, "dataset": data, "config": cfg}
        if cand.run is None:
            key = f"full-{_safe(spec.name)}-{_settings_hash(spec, data, cfg, seed)}"
            tasks.append(Task(key, full_fit_task,
                              {**common, "seed": derive_seed(seed, spec.name, "full")}))
            meta[key] = Fold("full", spec.name)
        for scheme, folds in masks.items():
            for label, mask in folds.items():
                # The mask is part of the hash: a store never serves a fold of another split.
                h = _settings_hash(spec, data, cfg, seed, prob, np.flatnonzero(~mask).tolist())
                parts = (_SCHEME_KEYS[scheme], _safe(spec.name), label and _safe(label), h)
                key = "-".join(filter(None, parts))
                args = {**common, "mask": mask, "prob": prob,
                        "seed": derive_seed(seed, spec.name, scheme, *([label] if label else []))}
                if label:
                    args["family"] = label
                tasks.append(Task(key, _scheme_task(scheme), args))
                meta[key] = Fold(scheme, spec.name, label)
    return tasks, meta


def _scheme_task(scheme: str) -> Callable[..., pd.DataFrame]:
    """The worker-side task of a refitting split (looked up when tasks are made, not bound once
    at import, so that the module's names are the one place each task lives)."""
    return {"logo": logo_fold_task, "forecast": forecast_task, "scale-up": scaleup_task,
            "extrapolate": extrapolation_task}[scheme]


#: The task-key prefix of each refitting split.
_SCHEME_KEYS = {"logo": "logo", "forecast": "forecast", "scale-up": "scaleup", "extrapolate": "extrapolate"}


def _collect_runs(candidates: Sequence[Candidate], data: Dataset, outcome: Outcome,
                  meta: dict[str, Fold], out: str | os.PathLike[str] | None,
                  say: Callable[[str], None]) -> dict[str, Run]:
    """Full runs by spec name: given ones, else decoded from the full-fit results."""
    runs: dict[str, Run] = {}
    for cand in candidates:
        if cand.run is not None:
            runs[cand.name] = cand.run
            continue
        key = next(k for k, m in meta.items() if m == Fold("full", cand.name))
        if key not in outcome.results:
            reason = outcome.failed.get(key, "not run")
            raise BayesqidError(f"the full fit of spec {cand.name!r} failed: {reason}")
        run = _decode_run(outcome.results[key], cand.spec, data)
        runs[cand.name] = run
        if out is not None:
            path = run.save(Path(out) / "runs" / f"{_safe(cand.name)}.nc")
            say(f"full run of {cand.name} saved to {path}")
    return runs


def _decode_run(frame: pd.DataFrame, spec: ModelSpec, data: Dataset) -> Run:
    """The run stored by :func:`full_fit_task`, with its pointwise log-likelihood restored."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.nc"
        path.write_bytes(frame["run_netcdf"].iloc[0])
        run = load_run(path)
        for group in run.idata.groups():  # read everything before the temporary file goes
            run.idata[group].load()
    idata = run.idata
    qid = data.frame["qid"].to_numpy(float)
    idata.add_groups(log_likelihood=log_likelihood(idata, spec, build_design(data.frame), qid)
                     .rename({"obs": OBS}))
    return run


# --- tables --------------------------------------------------------------------------------------


def _assemble(candidates: Sequence[Candidate], runs: dict[str, Run], data: Dataset, outcome: Outcome,
              meta: dict[str, Fold], schemes: tuple[str, ...], seed: int, prob: float) -> Comparison:
    names = [c.name for c in candidates]
    table = loo_table(runs, names)
    table.insert(1, "law", [runs[n].spec.law for n in table["spec"]])
    source = {c.name: c.source for c in candidates}
    table.insert(2, "source", [source[n] for n in table["spec"]])
    table.insert(3, "gate_passed", [runs[n].diagnostics.passed for n in table["spec"]])
    rows = fold_rows(outcome)
    failed = {k: (meta[k], msg) for k, msg in outcome.failed.items()}
    logo = logo_table(rows, names, failed) if "logo" in schemes else empty_logo()
    extrap = extrapolation_table(rows, names, failed) if "extrapolate" in schemes else empty_extrapolation()
    family_tables = {}
    for scheme, prefix in FAMILY_SPLITS.items():
        if scheme not in schemes:
            family_tables[scheme] = empty_logo()
            continue
        family_tables[scheme] = part = logo if scheme == "logo" else logo_table(rows, names, failed, scheme)
        table = table.merge(logo_totals(part, prefix), on="spec", how="left")
        table = table.merge(sharpness_totals(rows, scheme, prefix), on="spec", how="left")
    if "extrapolate" in schemes:
        table = table.merge(extrapolation_totals(rows, names), on="spec", how="left")
        table = table.merge(sharpness_totals(rows, "extrapolate", "extrap"), on="spec", how="left")
    failed_by_spec = {n: [k for k, (m, _msg) in failed.items() if m.spec == n] for n in names}
    table["failed_folds"] = [";".join(failed_by_spec[n]) for n in table["spec"]]
    stacked = stacked_table(runs, dict(zip(table["spec"], table["weight"], strict=True)), seed=seed,
                            prob=prob)
    label = f"{data.path}: {len(data.frame)} rows, {data.frame['family'].nunique()} families"
    return Comparison(table=table.reset_index(drop=True), logo=logo, extrapolation=extrap,
                      stacked_100t=stacked, forecast=family_tables["forecast"],
                      scaleup=family_tables["scale-up"], failed=dict(outcome.failed), runs=runs,
                      cv=schemes, dataset_label=label)



@dataclass(frozen=True)
class SavedComparison:
    """The tables a comparison wrote to a directory (see :func:`load_comparison`)."""

    directory: Path
    table: pd.DataFrame
    logo: pd.DataFrame | None
    summary: str
    forecast: pd.DataFrame | None = None
    scaleup: pd.DataFrame | None = None


def load_comparison(out: str | os.PathLike[str]) -> SavedComparison:
    """Read ``compare.csv``, ``summary.txt`` and the split tables that were written (``logo.csv``,
    ``forecast.csv``, ``scaleup.csv``) from ``out``.

    Raises
    ------
    BayesqidError
        ``out`` holds no finished comparison.
    """
    directory = Path(out)
    table_path, summary_path = directory / "compare.csv", directory / "summary.txt"
    if not table_path.is_file() or not summary_path.is_file():
        raise BayesqidError(f"{directory}: no finished comparison (compare.csv and summary.txt are "
                            "written by 'bayesqid compare --out DIR')")
    def optional(name: str) -> pd.DataFrame | None:
        path = directory / name
        return pd.read_csv(path) if path.is_file() else None

    return SavedComparison(directory, pd.read_csv(table_path), optional("logo.csv"),
                           summary_path.read_text(encoding="utf-8"), optional("forecast.csv"),
                           optional("scaleup.csv"))


__all__ = ["CV_SCHEMES", "Candidate", "Comparison", "SavedComparison", "compare", "load_comparison",
           "resolve_candidates", "stacked_table"]
