"""Known-family training level, checked: hold out one model, infer its D from its own rows.

The question :func:`bayesqid.training_level` answers with ``family=F``: "how many tokens has
this checkpoint of F seen?", when F's other models were measured. The check asks it of models
whose D is known: each held-out model (a family's rows at one N and one D) is removed from the
fit, the rest of its family stays, and the model's measured QiD is turned into a posterior of
D as a member of its family. Over all hold-outs it reports how often the central interval
covers the true D and how wide it is, in decades.

Which models: in every family with two models or more, ``per_family`` of them evenly spaced
over the family's models ordered by (D, N) (checkpoint suites over D, sizes over N), so the
hold-outs include interpolation and, where the spacing reaches the ends, extrapolation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bayesqid.constants import CI_PROB
from bayesqid.data.dataset import Dataset
from bayesqid.engines.sampler import SamplerConfig
from bayesqid.errors import BayesqidError
from bayesqid.lang.spec import ModelSpec

log = logging.getLogger(__name__)

#: Columns of the measurements a held-out model hands to :func:`bayesqid.training_level`.
_MEASURED = ("family", "params", "bits", "method", "group_size", "eval_set", "qid")


@dataclass(frozen=True)
class HeldModel:
    """One model held out: a family's rows at one parameter count and one token count."""

    family: str
    params: float
    tokens: float

    @property
    def key(self) -> str:
        """A filesystem-safe task key."""
        safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in self.family)
        return f"level-{safe}-{self.params:.4g}-{self.tokens:.4g}".replace("+", "")


def held_models(dataset: Dataset, per_family: int = 2) -> list[HeldModel]:
    """The models to hold out: ``per_family`` evenly spaced models of every family with two or more.

    Parameters
    ----------
    dataset : Dataset
        The data of the fit.
    per_family : int
        Hold-outs per family (at most the family's number of models).

    Returns
    -------
    list of HeldModel
    """
    if int(per_family) < 1:
        raise BayesqidError(f"per_family must be at least 1, got {per_family!r}")
    models = (dataset.frame.groupby(["family", "params", "tokens"], sort=True).size()
              .reset_index()[["family", "params", "tokens"]])
    out = []
    for family, group in models.groupby("family", sort=True):
        group = group.sort_values(["tokens", "params"]).reset_index(drop=True)
        n = len(group)
        if n < 2:
            continue
        k = min(int(per_family), n)
        # Evenly spaced interior positions (k = 1: the middle model); where too few models leave
        # k distinct interior ones, evenly spaced positions that include the ends.
        picks = np.unique(np.linspace(0, n - 1, k + 2)[1:-1].round().astype(int))
        if len(picks) < k:
            picks = np.unique(np.linspace(0, n - 1, k).round().astype(int))
        out += [HeldModel(str(family), float(group.at[int(i), "params"]),
                          float(group.at[int(i), "tokens"])) for i in picks]
    return out


def training_level_task(spec: ModelSpec, dataset: Dataset, config: SamplerConfig, seed: int,
                        family: str, params: float, tokens: float, prob: float = CI_PROB) -> pd.DataFrame:
    """Fit without one model, infer its D as a member of its family; one row of results."""
    from bayesqid.checks.folds import fit_rows
    from bayesqid.questions.training import training_level

    frame = dataset.frame
    held = ((frame["family"] == family) & (frame["params"] == params)
            & (frame["tokens"] == tokens)).to_numpy()
    if not held.any():
        raise BayesqidError(f"no rows of {family} at N = {params:.4g}, D = {tokens:.4g}")
    run = fit_rows(spec, dataset, config, seed, rows=~held)
    if family not in run.levels["family"]:
        raise BayesqidError(f"hold-out {family} {params:.4g}: the family is not in its own fit")
    rows = frame.loc[held, list(_MEASURED)].reset_index(drop=True)
    level = training_level(run, rows, family=family, prob=prob, seed=seed)
    s = level.summary.iloc[0]
    lo, hi = float(s["tokens_lower"]), float(s["tokens_upper"])
    size_fitted = bool(((frame["family"] == family) & (frame["params"] == params) & ~held).any())
    return pd.DataFrame([{
        "spec": spec.name, "family": family, "params": params, "tokens": tokens,
        "n_rows": int(held.sum()), "size_fitted": size_fitted,
        "tokens_lower": lo, "tokens_median": float(s["tokens_median"]), "tokens_upper": hi,
        "covered": bool(lo <= tokens <= hi), "width_decades": float(np.log10(hi / lo)),
        "log10_error": float(np.log10(float(s["tokens_median"]) / tokens)),
        "limited_by": str(s["limited_by"]), "ess": float(s["ess"]),
        "gate_passed": bool(run.diagnostics.passed),
    }])


def check_training_levels(spec: ModelSpec, dataset: Dataset, *, config: SamplerConfig, seed: int,
                          out: str | Path, per_family: int = 2, prob: float = CI_PROB,
                          scheduler: str | None = "synchronous", workers: int | None = None,
                          log_fn: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Hold out each of :func:`held_models`, infer its D as a known family's; resumable from ``out``.

    Parameters
    ----------
    spec : ModelSpec
        The model.
    dataset : Dataset
        The data (every hold-out is refitted without its model).
    config : SamplerConfig
        Sampler settings of every refit.
    seed : int
        Root seed (every refit and its new-level draws use it).
    out : path
        Store of finished hold-outs (``<key>.parquet``); rerunning resumes.
    per_family : int
        Hold-outs per family.
    prob : float
        Mass of the central interval.
    scheduler, workers
        As :func:`bayesqid.checks.fanout.run_tasks`.
    log_fn : callable, optional
        Progress lines.

    Returns
    -------
    DataFrame
        One row per hold-out (see :func:`training_level_task`); failed hold-outs are reported
        by ``log_fn`` and left out.
    """
    from bayesqid.checks.fanout import Task, run_tasks

    models = held_models(dataset, per_family)
    tasks = [Task(m.key, training_level_task,
                  {"spec": spec, "dataset": dataset, "config": config, "seed": int(seed),
                   "family": m.family, "params": m.params, "tokens": m.tokens, "prob": float(prob)})
             for m in models]
    outcome = run_tasks(tasks, Path(out), scheduler=scheduler, n_workers=workers, log=log_fn)
    frames = [outcome.results[t.key] for t in tasks if t.key in outcome.results]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarise_levels(table: pd.DataFrame) -> pd.DataFrame:
    """Coverage, median width (decades) and median |log10 error| over hold-outs, overall and by
    whether the held-out model's size was in the fit (a checkpoint of a fitted size) or not."""
    if table.empty:
        return pd.DataFrame()
    parts = {"all": table, "size fitted": table[table["size_fitted"]],
             "size not fitted": table[~table["size_fitted"]]}
    return pd.DataFrame([{
        "hold-outs": k, "n": len(t), "coverage": t["covered"].mean() if len(t) else np.nan,
        "median_width_decades": t["width_decades"].median() if len(t) else np.nan,
        "median_abs_log10_error": t["log10_error"].abs().median() if len(t) else np.nan,
    } for k, t in parts.items()])
