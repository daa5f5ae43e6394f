"""The simulator of simulation-based calibration: small designs, prior draws of every model
parameter, and QiD simulated from them through the likelihood.

Truths are named as fitted runs name their variables (population coefficients, effect scales
``sd_<group>_<param>``, standardised effects ``z_<group>_<param>``, ``sigma``, and with
``likelihood.sigma_by`` the level scales' ``sd`` and ``z``), so :mod:`bayesqid.checks.sbc` can rank
each true value among the posterior draws of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bayesqid.constants import FAMILY
from bayesqid.data.dataset import Dataset
from bayesqid.data.design import NEW_LEVEL, Design, group_labels
from bayesqid.errors import BayesqidError
from bayesqid.lang.effects import compose, draw_z, sd_name, z_name
from bayesqid.lang.likelihood import draw_residuals
from bayesqid.lang.spec import ModelSpec


# --- design ------------------------------------------------------------------------------------


def tiny_design(dataset: Dataset, *, families: int = 3, quantizers: int = 2, eval_sets: int = 1,
                max_rows: int = 60) -> Dataset:
    """A small design subsampled from ``dataset``: its most measured families, quantizers, eval sets.

    Rows are kept evenly spaced within each family (at most ``max_rows`` in all), so every kept
    family keeps its spread of N, D and bits. Used for quick calibration checks and tests.
    """
    frame = dataset.frame
    labels = group_labels(frame)
    keep = np.ones(len(frame), bool)
    for group, n in ((FAMILY, families), ("quantizer", quantizers), ("eval_set", eval_sets)):
        top = pd.Series(labels[group][keep]).value_counts().index[:n]
        keep &= np.isin(labels[group], top)
    sub = frame[keep]
    per_family = max(1, max_rows // max(1, sub["family"].nunique()))
    parts = [g.iloc[np.unique(np.linspace(0, len(g) - 1, min(len(g), per_family)).round().astype(int))]
             for _, g in sub.groupby("family", sort=True)]
    out = pd.concat(parts).reset_index(drop=True)
    if out.empty:
        raise BayesqidError("the subsampled design is empty")
    return Dataset(out, f"{dataset.path} (subsampled: {len(out)} rows)", ())


# --- the simulator -----------------------------------------------------------------------------


def draw_truth(spec: ModelSpec, design: Design, rng: np.random.Generator) -> dict[str, Any]:
    """One draw of every model parameter from the spec's priors, named as in fitted runs."""
    truth: dict[str, Any] = {p: float(spec.prior(p).draw(rng, 1)[0]) for p in spec.law_obj.param_names}
    for eff in spec.effects:
        for p in eff.params:
            truth[sd_name(eff.group, p)] = float(spec.effect_sd(eff, p).draw(rng, 1)[0])
            truth[z_name(eff.group, p)] = draw_z(rng, len(design.levels[eff.group]), eff.nu_of(p))
    for name in spec.recipe_shifts:
        truth[name] = float(spec.prior(name).draw(rng, 1)[0])
    truth["sigma"] = float(spec.likelihood.sigma.draw(rng, 1)[0])
    by = spec.likelihood.sigma_by
    if by is not None:
        truth[sd_name(by, "log_sigma")] = float(spec.likelihood.sigma_sd.draw(rng, 1)[0])
        truth[z_name(by, "log_sigma")] = rng.standard_normal(len(design.levels[by]))
    return truth


def truth_log_mu(spec: ModelSpec, design: Design, truth: Mapping[str, Any], rng: np.random.Generator,
                 shift: Mapping[str, float] | None = None) -> np.ndarray:
    """Law-mean log QiD of every row of ``design`` under ``truth``.

    Unseen levels (code :data:`~bayesqid.design.NEW_LEVEL`) get fresh standardised effects
    from ``rng`` (:func:`~bayesqid.lang.effects.draw_z`), one per label, as the population says. ``shift`` adds to population
    coefficients: a deliberately mis-specified simulator for negative controls.
    """
    values = {p: truth[p] + (shift or {}).get(p, 0.0) for p in spec.law_obj.param_names}
    offsets = {}
    for eff in spec.effects:
        codes = design.codes[eff.group]
        labels = design.labels[eff.group]
        for p in eff.params:
            z = np.asarray(truth[z_name(eff.group, p)], float)[np.where(codes == NEW_LEVEL, 0, codes)]
            for lab in sorted({str(x) for x, c in zip(labels, codes, strict=True) if c == NEW_LEVEL}):
                z = np.where((codes == NEW_LEVEL) & (labels == lab), draw_z(rng, None, eff.nu_of(p)), z)
            offsets[(eff.group, p)] = truth[sd_name(eff.group, p)] * z
    for name, (p, col) in zip(spec.recipe_shifts, spec.recipe_terms, strict=True):
        offsets[(f"recipe:{col}", p)] = truth.get(name, 0.0) * design.recipe[col]
    log_mu = spec.law_obj.log_mu(design.x, compose(spec, values, offsets))
    return np.asarray(log_mu, float) * np.ones(design.n_rows)


def simulate_qid(spec: ModelSpec, design: Design, truth: Mapping[str, Any], rng: np.random.Generator,
                 shift: Mapping[str, float] | None = None) -> np.ndarray:
    """QiD in nats for the rows of ``design``: law mean times a likelihood residual.

    Values come out positive; the fit censors those below the spec's resolution.
    """
    log_mu = truth_log_mu(spec, design, truth, rng, shift)
    eps = draw_residuals(spec.likelihood, rng, (design.n_rows,))
    sigma = truth["sigma"]
    by = spec.likelihood.sigma_by
    if by is not None:  # the design's own levels: SBC simulates the rows it fits
        sigma = sigma * np.exp(truth[sd_name(by, "log_sigma")] * truth[z_name(by, "log_sigma")][design.codes[by]])
    return np.exp(log_mu + sigma * eps)
