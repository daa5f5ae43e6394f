"""Build the hierarchical PyMC model of a spec on a design. No sampling happens here.

Structure, for every law coefficient ``theta`` and observation ``i``::

    theta_i = theta + sum over groups g varying theta of  sd_g_theta * z_g_theta[level_g(i)]
    log QiD_i ~ StudentT(nu, law.log_mu(x_i, theta_i), sigma), left-censored below resolution

Most families contribute one training-token count, so their D effects are informed by the
prior alone, and a centred form funnels there: such effects are non-centred,
``offset = sd * z`` with ``z ~ Normal(0, 1)``.

But a non-centred effect whose level *is* pinned down by its data (OLMo's D slope, the
intercept of a quantizer with hundreds of rows) forms a banana with its scale: measured on the
reference data, the family D-slope alone caused most divergences. So the default
parametrization is chosen per level (see :func:`informed_levels`): centred where the level's
own rows identify it, non-centred elsewhere. The joint density is the same either way.
"""

from __future__ import annotations

from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesqid.data.design import Design
from bayesqid.engines.sampler import SAMPLERS, SamplerConfig, quiet_sampling
from bayesqid.lang.effects import OBSERVED, compose, lam_name, sd_name, z_name
from bayesqid.lang.likelihood import TENSOR, observe, std_logcdf, std_logpdf
from bayesqid.lang.spec import ModelSpec

#: A level informs an effect when it has at least this many rows ...
MIN_ROWS_INFORMED = 10
#: ... and, for a slope, its rows spread the slope's covariate by at least this (log units).
MIN_SPREAD_INFORMED = 0.25


def informed_levels(spec: ModelSpec, design: Design, group: str, param: str) -> np.ndarray:
    """Boolean mask of the levels of ``group`` whose own rows identify their ``param`` offset.

    Used by ``parametrization = "auto"``: identified levels are sampled centred, the others
    non-centred. An intercept is identified by enough rows; a slope also needs spread in its
    covariate (OPT spans N widely but has one D, so its N slope is informed and its D slope is
    not). Laws that are not linear fall back to the row count for every coefficient.
    """
    law = spec.law_obj
    codes = design.codes[group]
    n_levels = len(design.levels[group])
    counts = np.bincount(codes, minlength=n_levels)
    informed = counts >= MIN_ROWS_INFORMED
    if law.is_linear and param != law.intercept:
        feature = np.asarray(law.features[param](design.x), dtype=float)
        spread = np.array([feature[codes == lv].std() if counts[lv] else 0.0 for lv in range(n_levels)])
        informed &= spread >= MIN_SPREAD_INFORMED
    return informed


def _level_effects(name: str, sd: Any, centred: np.ndarray, dims: str, lam: Any = None) -> Any:
    """Standardised effects with a per-level choice of centred or non-centred sampling.

    ``u ~ Normal(0, 1)`` is sampled for every level. Non-centred levels use ``z = u``; centred
    levels use ``u`` as the offset itself, ``z = u / sd``, and a potential swaps their
    ``Normal(0, 1)`` density for ``Normal(0, sd)``, so the joint density is exactly the
    hierarchical prior in both cases. With per-level variance multipliers ``lam`` (Student-t
    offsets as a scale mixture) the offsets' scale is ``sd * sqrt(lam)`` instead of ``sd``.
    """
    u = pm.Normal(f"u_{name}", 0.0, 1.0, dims=dims)
    # Normal offsets keep the plain graph (no "* 1"): a seed gives the draws it always gave.
    z_nc = u if lam is None else u * pt.sqrt(lam)
    if not centred.any():
        return pm.Deterministic(name, z_nc, dims=dims)
    mask = pt.as_tensor_variable(centred)
    scale = sd if lam is None else sd * pt.sqrt(lam)
    swap = -pt.log(scale) - 0.5 * (u / scale) ** 2 + 0.5 * u**2
    pm.Potential(f"centring_{name}", pt.switch(mask, swap, 0.0).sum())
    return pm.Deterministic(name, pt.switch(mask, u / sd, z_nc), dims=dims)


#: Aggregate repeated design points when there are fewer than this fraction of distinct ones.
AGGREGATE_BELOW = 0.8


def _design_points(x: dict[str, np.ndarray],
                   codes: dict[str, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """Distinct design points of the rows: (count, first row of each, point of every row)."""
    keys = np.column_stack([x[k] for k in sorted(x)] + [codes[g].astype(float) for g in sorted(codes)])
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return len(first), first, inverse.ravel()


def build_model(spec: ModelSpec, design: Design, qid: np.ndarray) -> pm.Model:
    """Create the PyMC model of ``spec`` for the rows in ``design`` with measured ``qid``.

    Parameters
    ----------
    spec : ModelSpec
        Law, hierarchy, likelihood and priors.
    design : Design
        Covariates and group codes of the observed rows (no unseen levels).
    qid : ndarray
        Measured QiD in nats; values below the spec's resolution are censored.

    Returns
    -------
    pymc.Model
    """
    coords: dict[str, list[str]] = {g: list(design.levels[g]) for g in design.levels}
    y, censored = observe(qid, spec.likelihood)
    # Rows sorted so that censored ones come last: each likelihood branch then works on a
    # contiguous slice, and the density and the CDF are each computed only where needed
    # (computing both for every row and selecting doubled the cost of a gradient).
    order = np.argsort(censored, kind="stable")
    n_exact = int((~censored).sum())
    codes = {g: c[order] for g, c in design.codes.items()}
    by = spec.likelihood.sigma_by
    scale_codes = None if by is None else codes[by]  # per row, before rows are aggregated
    x_rows = {k: v[order] for k, v in design.x.items()}
    # Recipe columns are per-row covariates too: part of a design point's identity.
    x_rows |= {f"recipe:{c}": design.recipe[c][order] for _p, c in spec.recipe_terms}
    y = y[order]
    # Rows that repeat a design point (same covariates and levels: repeated evaluations) share
    # their law mean, so it is computed once per distinct point and gathered; the per-row work
    # left is the residual density, which keeps a gradient cheap as rows multiply.
    points, first, inverse = _design_points(x_rows, codes)
    if points < AGGREGATE_BELOW * len(y):
        codes = {g: c[first] for g, c in codes.items()}
        x_rows = {k: v[first] for k, v in x_rows.items()}
    else:
        inverse = None
    x = {k: pt.as_tensor_variable(v) for k, v in x_rows.items()}
    lik = spec.likelihood
    with pm.Model(coords=coords) as model:
        values = {p: spec.prior(p).to_pymc(p) for p in spec.law_obj.param_names}
        offsets = {}
        for eff in spec.effects:
            params = eff.params
            sds = [spec.effect_sd(eff, p).to_pymc(sd_name(eff.group, p)) for p in params]
            zs = []
            for p, sd in zip(params, sds, strict=True):
                centred = {"centered": np.ones(len(design.levels[eff.group]), bool),
                           "non_centered": np.zeros(len(design.levels[eff.group]), bool),
                           "auto": None}[eff.parametrization_of(p)]
                if centred is None:
                    centred = informed_levels(spec, design, eff.group, p)
                nu = eff.nu_of(p)
                lam = (None if nu is None else
                       pm.InverseGamma(lam_name(eff.group, p), alpha=nu / 2, beta=nu / 2, dims=eff.group))
                zs.append(_level_effects(z_name(eff.group, p), sd, centred, eff.group, lam))
            for p, sd, z in zip(params, sds, zs, strict=True):
                offsets[(eff.group, p)] = sd * z[codes[eff.group]]
        for name, (p, col) in zip(spec.recipe_shifts, spec.recipe_terms, strict=True):
            offsets[(f"recipe:{col}", p)] = spec.prior(name).to_pymc(name) * x[f"recipe:{col}"]
        theta = compose(spec, values, offsets)
        log_mu = spec.law_obj.log_mu(x, theta)
        if inverse is not None:
            log_mu = log_mu[inverse]
        sigma = lik.sigma.to_pymc("sigma")
        if scale_codes is None:
            t = (pt.as_tensor_variable(y) - log_mu) / sigma
            log_scale = n_exact * pt.log(sigma)
        else:
            # One scale per level: log sigma_g = log sigma + sd * z_g (non-centred).
            sd_s = lik.sigma_sd.to_pymc(sd_name(by, "log_sigma"))
            z_s = pm.Normal(z_name(by, "log_sigma"), 0.0, 1.0, dims=by)
            log_row = pt.log(sigma) + sd_s * z_s[scale_codes]
            t = (pt.as_tensor_variable(y) - log_mu) / pt.exp(log_row)
            log_scale = log_row[:n_exact].sum()
        logp = (std_logpdf(t[:n_exact], lik, TENSOR).sum() - log_scale
                + std_logcdf(t[n_exact:], lik, TENSOR).sum())
        # A Potential rather than an observed variable: the censored/uncensored mixture has no
        # PyMC distribution, and predictions and log-likelihoods are computed on the draws by
        # the same formulas in numpy (bayesqid.posterior), not by PyMC.
        pm.Potential(OBSERVED, logp)
    return model


class DirectEngine:
    """NUTS on all coefficients; any spec. Builds (and the sampler compiles) per fit."""

    name = "direct"

    def __init__(self, spec: ModelSpec, design: Design) -> None:
        self.spec = spec
        self.design = design

    def sample(self, cfg: SamplerConfig, qid: np.ndarray, rows: np.ndarray | None = None) -> az.InferenceData:
        """Posterior of the spec on ``rows`` of the template (all rows by default)."""
        design = self.design
        if rows is not None:
            design = design.subset(rows)
            qid = qid[rows]
        model = build_model(self.spec, design, qid)
        with quiet_sampling():
            return SAMPLERS[cfg.sampler](model, cfg)
