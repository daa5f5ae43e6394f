"""Law coefficients on posterior draws, for observed rows or any grid.

Everything here is numpy on flattened draws (``sample`` = chain x draw): the law's own
``log_mu`` is evaluated on per-row coefficient arrays, so predictions and pointwise
log-likelihoods use exactly the formula the model was fitted with.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import arviz as az
import numpy as np
import xarray as xr

from bayesqid.data.design import NEW_LEVEL, Design
from bayesqid.lang.effects import compose, draw_z, sd_name, z_name
from bayesqid.lang.likelihood import NUMPY, observe, pointwise_logp
from bayesqid.lang.spec import ModelSpec


def flat(idata: az.InferenceData, name: str) -> np.ndarray:
    """Posterior draws of ``name`` with chain and draw merged into a leading sample axis.

    Chain-major, the order of ``stack(sample=("chain", "draw"))``; a reshape rather than
    xarray's stack, which copied through a MultiIndex and dominated prediction time.
    """
    da = idata.posterior[name].transpose("chain", "draw", ...)
    # The sample count spelled out, not -1: a group with no fitted level has a zero-length axis.
    return da.to_numpy().reshape(da.shape[0] * da.shape[1], *da.shape[2:])


def n_samples(idata: az.InferenceData) -> int:
    """Number of posterior draws over all chains."""
    return int(idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"])


def _new_level_z(label: str, group: str, param: str, seed: int, size: int,
                 nu: float | None = None) -> np.ndarray:
    """Standardised effects of an unseen level: one per draw, stable per label and seed;
    standard Normal, or standard Student-t with ``nu`` degrees of freedom (the prior of the
    spec's offsets, :attr:`bayesqid.lang.spec.Effect.nu`).

    Seeding by the label's checksum makes the draws of a new level identical across calls,
    grid orders and chunks, so every row of one new family shares one family effect per draw.
    """
    key = zlib.crc32(f"{group}\x1f{param}\x1f{label}".encode())
    return draw_z(np.random.default_rng([seed, key]), size, nu)


def row_z(idata: az.InferenceData, design: Design, group: str, param: str, *, seed: int,
          nu: float | None = None) -> np.ndarray:
    """Standardised effects ``z_<group>_<param>`` of every (draw, row): (samples, rows).

    A fitted level's row takes its posterior draws; an unseen level (code
    :data:`~bayesqid.design.NEW_LEVEL`) draws from the prior (:func:`_new_level_z`: Normal, or
    Student-t with ``nu``), one value per draw shared by all rows of that label.
    """
    z = flat(idata, z_name(group, param))
    codes = design.codes[group]
    labels = design.labels[group]
    # A group without fitted levels (a fabricated run's size group) leaves every row new.
    out = z[:, np.where(codes == NEW_LEVEL, 0, codes)] if z.shape[1] else np.empty((len(z), len(codes)))
    for lab in sorted({str(lab) for lab, c in zip(labels, codes, strict=True) if c == NEW_LEVEL}):
        rows = (codes == NEW_LEVEL) & (labels == lab)
        out[:, rows] = _new_level_z(lab, group, param, seed, len(z), nu)[:, None]
    return out


def row_theta(idata: az.InferenceData, spec: ModelSpec, design: Design, *,
              seed: int) -> dict[str, np.ndarray]:
    """Law coefficients of every (draw, row): population value plus the row's group offsets.

    Unknown levels (code :data:`~bayesqid.design.NEW_LEVEL`) get effects drawn from the
    population, ``sd * Normal(0, 1)`` per draw (``sd * StudentT(nu)`` for Student-t offsets;
    :func:`row_z`). Arrays broadcast to (samples, rows); exposed so that callers which must
    evaluate the law at per-draw covariates (root finding in :mod:`bayesqid.inverse`) use
    exactly the draws :func:`row_log_mu` uses.
    """
    values, offsets = row_offsets(idata, spec, design, seed=seed)
    return compose(spec, values, offsets)


def row_offsets(idata: az.InferenceData, spec: ModelSpec, design: Design, *,
                seed: int) -> tuple[dict[str, np.ndarray], dict[tuple[str, str], np.ndarray]]:
    """The pieces :func:`row_theta` composes: population draws and every row's offsets.

    Returns
    -------
    values : dict
        Population coefficient draws, (samples, 1) each.
    offsets : dict
        ``(group, param)`` -> (samples, rows) offsets ``sd * z`` (new levels drawn as in
        :func:`row_z`), and ``("recipe:<column>", param)`` -> the recipe shifts of each row.
    """
    values = {p: flat(idata, p)[:, None] for p in spec.law_obj.param_names}
    offsets = {}
    for eff in spec.effects:
        for p in eff.params:
            sd = flat(idata, sd_name(eff.group, p))
            offsets[(eff.group, p)] = sd[:, None] * row_z(idata, design, eff.group, p, seed=seed,
                                                          nu=eff.nu_of(p))
    for name, (p, col) in zip(spec.recipe_shifts, spec.recipe_terms, strict=True):
        offsets[(f"recipe:{col}", p)] = flat(idata, name)[:, None] * design.recipe[col][None, :]
    return values, offsets


def row_log_mu(idata: az.InferenceData, spec: ModelSpec, design: Design, *, seed: int) -> np.ndarray:
    """Log-mean of QiD for every (draw, row): array of shape (samples, rows).

    Unknown levels (code :data:`~bayesqid.design.NEW_LEVEL`) get effects drawn from the
    population, ``sd * Normal(0, 1)`` per draw (see :func:`row_theta`).
    """
    if spec.law_obj.is_linear:
        return _linear_log_mu(idata, spec, design, seed=seed)
    theta = row_theta(idata, spec, design, seed=seed)
    s = n_samples(idata)
    return np.asarray(spec.law_obj.log_mu(design.x, theta), dtype=float) * np.ones((s, design.n_rows))


def _level_keys(design: Design, group: str) -> np.ndarray:
    """Level key of every row: its code, or ``-1 - i`` for the i-th distinct unseen label."""
    codes = design.codes[group]
    keys = codes.copy()
    unseen = codes == NEW_LEVEL
    if unseen.any():
        _, inverse = np.unique(design.labels[group][unseen].astype(str), return_inverse=True)
        keys[unseen] = -1 - inverse
    return keys


def _linear_log_mu(idata: az.InferenceData, spec: ModelSpec, design: Design, *, seed: int) -> np.ndarray:
    """:func:`row_log_mu` for laws linear in their coefficients, as one product per cell.

    Rows sharing their levels (a cell) share their coefficient draws, so each cell's log-means
    are ``theta_cell (samples x coefficients) @ features (coefficients x rows)``: a matrix
    product instead of per-row coefficient arrays. Same numbers as the generic path (a test
    checks it), several times faster on large grids.
    """
    law = spec.law_obj
    names = law.param_names
    n = design.n_rows
    features = np.column_stack([np.ones(n) if p == law.intercept
                                else np.asarray(law.features[p](design.x), dtype=float) * np.ones(n)
                                for p in names])
    groups = [e.group for e in spec.effects]
    keys = np.column_stack([_level_keys(design, g) for g in groups]) if groups else np.zeros((n, 0), int)
    cells, cell_of_row = np.unique(keys, axis=0, return_inverse=True)
    pop = np.column_stack([flat(idata, p) for p in names])
    draws = {}
    for eff in spec.effects:
        for p in eff.params:
            draws[(eff.group, p)] = (flat(idata, sd_name(eff.group, p)), flat(idata, z_name(eff.group, p)))
    # A slope offset of a group with a centre pivots there (lang.effects.compose): it also moves
    # the intercept by -offset * shift. Looked up once, not per cell.
    shifts = {key: spec.centre_shift(*key) for key in draws}
    # Filled row-major as (rows, samples) and returned transposed: callers that reduce over
    # draws per row (quantiles) then read contiguous memory without a copy.
    out = np.empty((n, pop.shape[0]))
    for c, cell in enumerate(cells):
        rows = np.flatnonzero(cell_of_row.ravel() == c)
        theta = pop.copy()
        for g_index, eff in enumerate(spec.effects):
            key = int(cell[g_index])
            for p in eff.params:
                sd, z = draws[(eff.group, p)]
                if key >= 0:
                    zc = z[:, key]
                else:
                    label = str(design.labels[eff.group][rows[0]])
                    zc = _new_level_z(label, eff.group, p, seed, len(sd), eff.nu_of(p))
                theta[:, names.index(p)] += sd * zc
                if shifts[(eff.group, p)]:
                    theta[:, names.index(law.intercept)] -= sd * zc * shifts[(eff.group, p)]
        out[rows] = features[rows] @ theta.T
    # Recipe shifts vary by row, not by cell: one more product over all rows.
    if spec.recipe_terms:
        shift_features = np.column_stack([design.recipe[col] * features[:, names.index(p)]
                                          for p, col in spec.recipe_terms])
        shifts = np.column_stack([flat(idata, name) for name in spec.recipe_shifts])
        out += shift_features @ shifts.T
    return out.T


def row_sigma(idata: az.InferenceData, spec: ModelSpec, design: Design, *, seed: int) -> np.ndarray:
    """Residual scale of every (draw, row): shape (samples, rows), or (samples, 1) when every
    row shares one scale.

    With ``likelihood.sigma_by`` a row's scale is ``sigma * exp(sd * z[level])``; an unseen
    level draws ``z`` from Normal(0, 1) per draw, stable per label and seed as its law effects
    are (:func:`row_z`), so all rows of one new family share one scale per draw.
    """
    sigma = flat(idata, "sigma")
    by = spec.likelihood.sigma_by
    if by is None:
        return sigma[:, None]
    sd = flat(idata, sd_name(by, "log_sigma"))
    return sigma[:, None] * np.exp(sd[:, None] * row_z(idata, design, by, "log_sigma", seed=seed))


def log_likelihood(idata: az.InferenceData, spec: ModelSpec, design: Design, qid: np.ndarray) -> xr.Dataset:
    """Pointwise log-likelihood (chain, draw, obs) of the observed rows, for LOO and WAIC."""
    log_mu = row_log_mu(idata, spec, design, seed=0)
    sigma = row_sigma(idata, spec, design, seed=0)
    y, censored = observe(qid, spec.likelihood)
    ll = pointwise_logp(y[None, :], censored[None, :], log_mu, sigma, spec.likelihood, NUMPY)
    chains, draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    arr = ll.reshape(chains, draws, -1)
    return xr.Dataset({"log_qid": (("chain", "draw", "obs"), arr)},
                      coords={"chain": idata.posterior.chain, "draw": idata.posterior.draw})


def chunks(n: int, size: int) -> Iterator[slice]:
    """Row slices of at most ``size`` rows, to bound memory on large grids."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
