"""The folds of a comparison and the work done for each on a worker.

The splits ask the users' questions: leave-one-family-out (a new family at its own D),
forecast (families trained longer than any in the fit, predicted as new families), scale-up (a
family's largest size predicted from its smaller ones, as a known family) and extrapolation (each
family's largest D). Masks over a dataset's rows, and the task functions
:func:`bayesqid.checks.compare.compare` fans out: a full fit (returned as NetCDF bytes), a fold
refit scored on its held-out rows (:func:`score_rows`: elpd, joint elpd per family, coverage and
the sharpness scores). Every task returns a small tidy frame, stored as it finishes.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
from scipy.special import logsumexp

from bayesqid.checks.scores import joint_elpd
from bayesqid.checks.sharpness import band_scores
from bayesqid.constants import CI_PROB
from bayesqid.data.dataset import Dataset
from bayesqid.data.design import build_design
from bayesqid.engines.sampler import SamplerConfig
from bayesqid.errors import BayesqidError, ConvergenceWarning
from bayesqid.lang.likelihood import NUMPY, draw_residuals, observe, pointwise_logp
from bayesqid.lang.spec import ModelSpec
from bayesqid.sampling.draws import row_log_mu, row_sigma
from bayesqid.sampling.refit import refitter_for
from bayesqid.sampling.run import Run

#: Default share of each family's rows (by training tokens) that the extrapolation split fits on.
DEFAULT_QUANTILE = 0.75

#: Default share of families, by their largest D, that the forecast split holds out.
DEFAULT_FORECAST_SHARE = 0.25
#: The forecast split holds out at least this many families.
MIN_FORECAST_FAMILIES = 2
#: A family enters the scale-up split when it has at least this many sizes (distinct N).
MIN_SCALEUP_SIZES = 3

#: Label given to a held-out family, so that it can never match a fitted level.
HELD_OUT = "held-out:"


# --- folds -------------------------------------------------------------------------------------


def logo_masks(dataset: Dataset) -> dict[str, np.ndarray]:
    """Training masks of leave-one-family-out: family -> rows of every other family."""
    family = dataset.frame["family"].astype(str).to_numpy()
    return {f: family != f for f in sorted(set(family))}


def extrapolation_mask(dataset: Dataset, quantile: float = DEFAULT_QUANTILE) -> np.ndarray:
    """Training mask of the extrapolation split: rows whose D is at or below a token quantile.

    A family measured at several D is split at the ``quantile`` of its own rows' D (at least its
    largest D is held out, its smallest kept), so the fit must extrapolate that family to larger
    D. A family measured at one D is kept or held out whole, by comparing its D with the
    ``quantile`` of all rows' D; held out, it is predicted as a family never seen.
    """
    if not 0 < quantile < 1:
        raise BayesqidError(f"token quantile must be in (0, 1), got {quantile!r}")
    frame = dataset.frame
    tokens = frame["tokens"].to_numpy(float)
    family = frame["family"].astype(str).to_numpy()
    cut_all = float(np.quantile(tokens, quantile))
    train = np.ones(len(frame), dtype=bool)
    for fam in set(family):
        rows = family == fam
        values = np.unique(tokens[rows])
        if len(values) == 1:
            train[rows] = values[0] <= cut_all
            continue
        cut = min(float(np.quantile(tokens[rows], quantile)), float(values[-2]))
        train[rows] = tokens[rows] <= cut
    if train.all() or not train.any():
        raise BayesqidError(f"the token quantile {quantile} leaves no rows to "
                            f"{'predict' if train.all() else 'fit'}; choose another --quantile")
    return train


def forecast_families(dataset: Dataset, share: float = DEFAULT_FORECAST_SHARE) -> tuple[str, ...]:
    """Families held out by the forecast split: the most-trained ``share`` of families.

    Families are ranked by their largest D (ties by name); the top ``ceil(share * families)``
    are held out, at least :data:`MIN_FORECAST_FAMILIES`, and at least one family is kept.
    """
    if not 0 < share < 1:
        raise BayesqidError(f"forecast share must be in (0, 1), got {share!r}")
    largest = dataset.frame.groupby("family", observed=True)["tokens"].max()
    if len(largest) <= MIN_FORECAST_FAMILIES:
        raise BayesqidError(f"the forecast split needs more than {MIN_FORECAST_FAMILIES} families, "
                            f"the data has {len(largest)}")
    ranked = sorted(largest.items(), key=lambda item: (-item[1], str(item[0])))
    n = max(MIN_FORECAST_FAMILIES, int(np.ceil(share * len(ranked))))
    return tuple(str(f) for f, _ in ranked[: min(n, len(ranked) - 1)])


def forecast_mask(dataset: Dataset, share: float = DEFAULT_FORECAST_SHARE) -> np.ndarray:
    """Training mask of the forecast split: every row of the families not held out."""
    held = set(forecast_families(dataset, share))
    return ~dataset.frame["family"].astype(str).isin(held).to_numpy()


def scaleup_masks(dataset: Dataset) -> dict[str, np.ndarray]:
    """Training masks of the scale-up split: family -> every row but that family's largest size.

    Only families with at least :data:`MIN_SCALEUP_SIZES` sizes (distinct N) enter; every other
    family's rows stay in each fit.
    """
    frame = dataset.frame
    family = frame["family"].astype(str).to_numpy()
    params = frame["params"].to_numpy(float)
    masks = {}
    for fam in sorted(set(family)):
        rows = family == fam
        sizes = np.unique(params[rows])
        if len(sizes) >= MIN_SCALEUP_SIZES:
            masks[fam] = ~(rows & (params == sizes[-1]))
    return masks


# --- worker-side task functions ------------------------------------------------------------------


def full_fit_task(spec: ModelSpec, dataset: Dataset, config: SamplerConfig, seed: int) -> pd.DataFrame:
    """Fit ``spec`` on all rows; return the run as NetCDF bytes in a one-row frame.

    The pointwise log-likelihood is left out (it is most of the bytes) and recomputed from the
    posterior where the run is read back (:func:`bayesqid.checks.compare.compare`).
    """
    run = fit_rows(spec, dataset, config, seed, rows=None)
    idata = run.idata
    slim = az.InferenceData(**{g: idata[g] for g in idata.groups() if g != "log_likelihood"})
    slim.attrs.update(idata.attrs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.nc"
        slim.to_netcdf(str(path), engine="h5netcdf")
        blob = path.read_bytes()
    return pd.DataFrame({"spec": [spec.name], "run_netcdf": [blob],
                         "gate_passed": [run.diagnostics.passed]})


def logo_fold_task(spec: ModelSpec, dataset: Dataset, config: SamplerConfig, mask: np.ndarray,
                   seed: int, family: str, prob: float = CI_PROB) -> pd.DataFrame:
    """Fit without ``family`` (``mask`` = training rows), score its rows as a new family.

    Returns one row per held-out row: ``elpd`` (its own log predictive density), ``covered``
    (inside the ``prob`` new-measurement interval) and ``elpd_joint`` (the family's joint log
    predictive density, repeated on each of its rows).
    """
    run = fit_rows(spec, dataset, config, seed, rows=mask)
    held = dataset.frame[~np.asarray(mask, dtype=bool)].copy()
    label = HELD_OUT + family
    if label in run.levels["family"]:  # cannot happen with real data; guards the promise
        raise BayesqidError(f"held-out label {label!r} is a fitted family")
    held["family"] = label
    scores = score_rows(run, held, seed=seed, prob=prob)
    return scores.assign(spec=spec.name, scheme="logo", fold=family, family=family,
                         gate_passed=run.diagnostics.passed)


def forecast_task(spec: ModelSpec, dataset: Dataset, config: SamplerConfig, mask: np.ndarray,
                  seed: int, prob: float = CI_PROB) -> pd.DataFrame:
    """Fit without the most-trained families (``mask`` = training rows), score them as new families.

    Each held-out family is its own new level (one family effect per draw, its own), scored as
    :func:`logo_fold_task` scores one family. One row per held-out row.
    """
    run = fit_rows(spec, dataset, config, seed, rows=mask)
    held = dataset.frame[~np.asarray(mask, dtype=bool)].copy()
    family = held["family"].astype(str).to_numpy()
    held["family"] = [HELD_OUT + f for f in family]
    scores = score_rows(run, held, seed=seed, prob=prob)
    return scores.assign(spec=spec.name, scheme="forecast", fold="forecast", family=family,
                         gate_passed=run.diagnostics.passed)


def scaleup_task(spec: ModelSpec, dataset: Dataset, config: SamplerConfig, mask: np.ndarray,
                 seed: int, family: str, prob: float = CI_PROB) -> pd.DataFrame:
    """Fit without ``family``'s largest size, score that size as the known family it belongs to."""
    run = fit_rows(spec, dataset, config, seed, rows=mask)
    held = dataset.frame[~np.asarray(mask, dtype=bool)].copy()
    if family not in run.levels["family"]:  # the family's smaller sizes are in the fit
        raise BayesqidError(f"scale-up fold {family!r}: the family is not in its own fit")
    scores = score_rows(run, held, seed=seed, prob=prob)
    return scores.assign(spec=spec.name, scheme="scale-up", fold=f"scale-up:{family}", family=family,
                         params=held["params"].to_numpy(float), gate_passed=run.diagnostics.passed)


def extrapolation_task(spec: ModelSpec, dataset: Dataset, config: SamplerConfig, mask: np.ndarray,
                       seed: int, prob: float = CI_PROB) -> pd.DataFrame:
    """Fit on the rows below the token split (``mask``), score the rest.

    Held-out rows of fitted families use their family's effects; families held out whole are
    new to the fit and take the population path. One row per held-out row, as
    :func:`logo_fold_task`, with ``elpd_joint`` per family and a ``known_family`` flag.
    """
    run = fit_rows(spec, dataset, config, seed, rows=mask)
    held = dataset.frame[~np.asarray(mask, dtype=bool)].copy()
    scores = score_rows(run, held, seed=seed, prob=prob)
    fitted = set(run.levels["family"])
    return scores.assign(spec=spec.name, scheme="extrapolate", fold="extrapolate",
                         family=held["family"].astype(str).to_numpy(),
                         known_family=[f in fitted for f in held["family"].astype(str)],
                         gate_passed=run.diagnostics.passed)


def fit_rows(spec: ModelSpec, dataset: Dataset, config: SamplerConfig, seed: int,
             rows: np.ndarray | None) -> Run:
    """Fit ``spec`` to the ``rows`` of ``dataset`` (all rows: None) on the fold refitter, the
    convergence gate recorded in the run rather than warned about."""
    with warnings.catch_warnings():
        # The gate is recorded with every score (gate_passed) rather than warned about per fold.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return refitter_for(spec, dataset, config).fit(seed=seed, rows=rows)


def score_rows(run: Run, frame: pd.DataFrame, *, seed: int, prob: float = CI_PROB) -> pd.DataFrame:
    """Out-of-sample scores of ``frame``'s rows under ``run``.

    Levels the run has not seen take the population path, with one effect per draw shared by
    all rows of a level (the same draws :func:`bayesqid.predict.predict` uses with ``seed``).

    Returns
    -------
    DataFrame
        Per row: ``row`` (index in the template data), ``qid``, ``censored``, ``elpd``
        (log-mean over draws of the row's likelihood, censoring included), ``pred_lower``,
        ``pred_upper`` (the ``prob`` new-measurement interval), ``covered`` (inside it; a
        censored row counts as covered when the lower bound is below the resolution),
        ``elpd_joint`` (log-mean over draws of the product over the rows of the row's family),
        with its Monte Carlo reliability ``joint_khat`` and ``joint_mcse`` (see
        :func:`bayesqid.checks.scores.joint_elpd`), and the sharpness scores of
        :func:`bayesqid.checks.sharpness.band_scores` (``covered50``, ``covered80``, ``width``,
        ``interval_score``, ``crps``).
    """
    lik = run.spec.likelihood
    qid = frame["qid"].to_numpy(float)
    design = build_design(frame, run.levels)
    log_mu = row_log_mu(run.idata, run.spec, design, seed=seed)
    sigma = row_sigma(run.idata, run.spec, design, seed=seed)
    y, censored = observe(qid, lik)
    ll = pointwise_logp(y[None, :], censored[None, :], log_mu, sigma, lik, NUMPY)
    s = ll.shape[0]
    elpd = logsumexp(ll, axis=0) - np.log(s)
    family = frame["family"].astype(str).to_numpy()
    joint, khat, mcse = np.empty(len(frame)), np.empty(len(frame)), np.empty(len(frame))
    for fam in set(family):
        rows = family == fam
        joint[rows], khat[rows], mcse[rows] = joint_elpd(ll[:, rows].sum(axis=1))
    # A new measurement's draws, exactly as predict() makes them for this seed: one standardised
    # residual per posterior draw, shared by all rows.
    noise = draw_residuals(lik, np.random.default_rng([seed, 1]), (s,))
    draws = log_mu + noise[:, None] * sigma
    lower, upper = np.exp(np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0))
    bands = band_scores(draws, np.log(np.where(censored, lik.censor_below, qid)), censored,
                        float(np.log(lik.censor_below)), prob=prob)
    out = pd.DataFrame({"row": frame.index.to_numpy(), "qid": qid, "censored": censored, "elpd": elpd,
                        "pred_lower": lower, "pred_upper": upper,
                        "covered": bands.pop(f"covered{round(prob * 100)}").to_numpy(),
                        "elpd_joint": joint, "joint_khat": khat, "joint_mcse": mcse})
    return pd.concat([out, bands], axis=1)
