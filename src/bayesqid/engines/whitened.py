"""Whitened hierarchical model: NUTS on the scales and on coefficients whitened by their
Gaussian conditional (:mod:`bayesqid.whiten`), with the exact likelihood of any spec.

For a law linear in its coefficients, the hierarchical model's posterior is sampled in
coordinates ``u`` where ``theta = A^-1 b + L^-T u`` and ``A`` is the coefficients' conditional
precision under a Gaussian stand-in for the likelihood (per-row weights below). The model's
log density is the uncollapsed model's - population priors, ``Normal(0, sd)`` offsets,
Student-t or Normal residuals, censored rows through the CDF - plus the transform's
log-Jacobian, so the posterior is the same; only the geometry NUTS sees is different. Measured
on the reference data with the default Student-t spec: ~15 leapfrog steps per draw instead of
~170, no divergences, and no latent value per censored row (the CDF handles them).

Data enter through containers (weighted sufficient statistics, per-row values and masks) over
the template's rows, so a compiled model serves every fit on a subset of those rows or on new
measurements of the same design (CV folds, SBC replicates): only the containers change.

The residual scale is sampled as ``log sigma = loc + scale * s`` with ``loc`` the pilot fit's
``log sigma`` and ``scale`` its rough posterior width (:func:`log_sigma_width`), so that every
coordinate NUTS sees starts out near unit scale. Saved runs hold the same variables as the
uncollapsed model (population coefficients, ``sd_*``, standardised effects ``z_*``,
``sigma``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from threadpoolctl import threadpool_limits

from bayesqid.data.design import Design
from bayesqid.engines.linear import (
    LinearSystem,
    flat_draws,
    gram,
    linear_system,
    named_coefficients,
    posterior_precisions,
)
from bayesqid.engines.ops.rowlogp import row_logp
from bayesqid.engines.ops.whiten import whiten, whiten_batch
from bayesqid.engines.sampler import SAMPLERS, SamplerConfig, nutpie_sample, quiet_sampling
from bayesqid.lang.effects import OBSERVED, lam_name, sd_name, z_name
from bayesqid.lang.likelihood import NUMPY, observe, std_logcdf, std_logpdf
from bayesqid.lang.spec import Likelihood, ModelSpec

HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))

#: Name of the whitened coefficients (internal: not kept in traces).
WHITE = "theta_white"

#: Name of the standardised log residual scale (internal: not kept in traces).
WHITE_SIGMA = "sigma_white"

#: Name of the standardised log residual scales of the levels of ``likelihood.sigma_by``.
WHITE_LEVELS = "sigma_levels_white"

#: The sampler's internal coordinates, dropped from saved runs.
INTERNAL = (WHITE, WHITE_SIGMA, WHITE_LEVELS)

#: Weight of a censored row in the Gaussian stand-in: a left-censored Normal observation near
#: its limit carries about 0.64 of an exact one's information, far below it almost none.
CENSORED_WEIGHT = 0.5


def whitenable(spec: ModelSpec) -> str | None:
    """Why ``spec`` cannot be whitened, or None when it can (it needs a linear law)."""
    law = spec.law_obj
    if not law.is_linear:
        return f"law {law.name!r} is not linear in its coefficients"
    return None


def exact_weight(lik: Likelihood) -> float:
    """Weight of an uncensored row: the Fisher information of its residual in units of
    ``1 / sigma^2`` ((nu + 1) / (nu + 3) for Student-t, 1 for Normal)."""
    return 1.0 if lik.kind == "normal" else (lik.nu + 1.0) / (lik.nu + 3.0)


@dataclass(frozen=True)
class WhiteData:
    """Everything the whitened model reads from a fit's data; shapes fixed by the template.

    Attributes
    ----------
    y : ndarray (rows,)
        Log QiD; censored rows carry the log resolution.
    exact, censored : ndarray (rows,)
        1.0 on rows in the fit that are measured exactly / censored, 0.0 elsewhere.
    sxx, sxy : ndarray (p, p), ndarray (p,)
        ``X' Omega X`` and ``X' Omega y`` of the rows in the fit (Gaussian stand-in weights).
    sigma_loc, sigma_scale : ndarray ()
        Centre and width of ``log sigma`` under the stand-in: ``log sigma = sigma_loc +
        sigma_scale * s`` with ``s`` the sampled coordinate.
    level_loc, level_scale : ndarray (levels,)
        The same for each level's ``log sigma`` when the residual scale varies by a group
        (``likelihood.sigma_by``); one unused entry otherwise.
    """

    y: np.ndarray
    exact: np.ndarray
    censored: np.ndarray
    sxx: np.ndarray
    sxy: np.ndarray
    sigma_loc: np.ndarray
    sigma_scale: np.ndarray
    level_loc: np.ndarray
    level_scale: np.ndarray

    def as_data(self, by_level: bool = False) -> dict[str, np.ndarray]:
        """Values of the model's data containers (``by_level``: a scale per level of a group,
        whose model reads the level scales instead of ``sigma_scale``)."""
        out = {"y": self.y, "exact": self.exact, "censored": self.censored, "sxx": self.sxx,
               "sxy": self.sxy, "sigma_loc": self.sigma_loc}
        if by_level:
            return out | {"level_loc": self.level_loc, "level_scale": self.level_scale}
        return out | {"sigma_scale": self.sigma_scale}


#: Pseudo-rows at the pooled mean square that each level's scale is shrunk with in the pilot.
LEVEL_PRIOR_ROWS = 5.0

#: Iterations of the pilot fit that places the Gaussian stand-in (converged to ~1e-6 in ~10 on
#: the reference data; the stand-in only has to be close, not exact).
PILOT_ITERATIONS = 12


def stand_in(spec: ModelSpec, system: LinearSystem, y: np.ndarray, censored: np.ndarray,
              use: np.ndarray, group: np.ndarray | None = None,
              n_levels: int = 1) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Per-row weights and pseudo-values of the Gaussian stand-in, and the pilot's ``sigma``: a
    Laplace approximation of every row's likelihood term at a pilot fit (iteratively
    reweighted least squares).

    The pilot fixes the effect scales at their prior medians and iterates coefficients and
    sigma: exact rows get the Student-t IRLS weight ``(nu + 1) / (nu + t^2)`` (1 for Normal),
    censored rows a pseudo-value below their fitted mean with the log-CDF's curvature as
    weight, so that value, slope and curvature of each term match at the pilot point. Why it
    matters: the whitened coordinates are standard Normal only as far as the stand-in's mean
    tracks the posterior's; with fixed weights and censored rows placed at the resolution, the
    stand-in's bias grew with the data (measured: min ESS 141, 18, 11 for the reference design
    replicated x1, x10, x100). The pilot uses no parameter, so the map stays exact.

    With a residual scale per level of a group (``group``: every row's level; the spec's
    ``likelihood.sigma_by``, ``n_levels`` of them) the pilot estimates one scale per level
    too, and the returned weights carry each row's ``(sigma / sigma_level)^2``: the map is then
    scaled by the one pooled ``sigma`` while a noisy level's rows still count for less.

    Returns the weights, the pseudo-values, the pooled ``sigma`` (the levels' geometric mean)
    and every level's scale (levels without exact rows in the fit get the pooled one).
    """
    lik = spec.likelihood
    p = system.n_cols
    lam = np.empty(p)
    lam[: len(system.pop_precision)] = system.pop_precision
    for b in system.effect_blocks:
        sd_prior = spec.effect_sd(spec.effect(b.group), b.param)
        # A prior whose median underflows (a Gamma with a tiny shape) must not make the pilot's
        # precision infinite: the median only seeds the pilot, so it is kept within 1e-6..1e6.
        lam[b.start:b.start + b.size] = float(np.clip(sd_prior.to_scipy().median(), 1e-6, 1e6)) ** -2
    exact = use & ~censored
    cens = use & censored
    weight = np.where(cens, CENSORED_WEIGHT, exact_weight(lik)) * use
    pseudo = y.copy()
    # The prior median only seeds sigma, which the first pass re-estimates and floors at 1e-3:
    # the seed gets the same floor, or a median that underflows makes the first solve singular.
    sigma = float(np.clip(lik.sigma.to_scipy().median(), 1e-3, 1e3))
    group = np.zeros(len(y), np.int64) if group is None else np.asarray(group, np.int64)
    ratio = np.ones(max(int(n_levels), int(group.max(initial=0)) + 1))  # sigma_level / sigma
    for _ in range(PILOT_ITERATIONS):
        scaled = weight / ratio[group] ** 2
        sxx = gram(system.idx, system.val * np.sqrt(scaled)[:, None], p)
        sxy = np.bincount(system.idx.ravel(), (system.val * (scaled * pseudo)[:, None]).ravel(), minlength=p)
        a = sxx / sigma**2
        # A prior precision far below the data's (a valid spec's scale up to 1e6) leaves
        # collinear columns (a recipe column unknown on every row equals the intercept's)
        # singular in floating point: the pilot only seeds the map, so floor it relative to the
        # data's information (reached only by priors of scale ~1e3 or wider).
        a[np.diag_indices(p)] += np.maximum(lam, 1e-12 * np.abs(np.diag(a)).max(initial=0.0))
        theta = np.linalg.solve(a, lam * system.m0 + sxy / sigma**2)
        mu = (theta[system.idx] * system.val).sum(axis=1)
        if exact.any():
            resid = y[exact] - mu[exact]
            pooled_sq = float((weight[exact] * resid**2).sum() / exact.sum())
            if len(ratio) == 1:
                sigma = float(np.sqrt(pooled_sq))
            else:
                sq = np.where(exact, weight * (y - mu) ** 2, 0.0)
                # Each level's mean square, shrunk towards the pooled one by LEVEL_PRIOR_ROWS
                # pseudo-rows (a level with two rows must not set a scale of ~0); the pooled
                # scale is the measured levels' geometric mean, the population median the
                # model samples. A level with no exact rows in the fit keeps it.
                n_level = np.bincount(group, exact, minlength=len(ratio))
                level = np.sqrt((np.bincount(group, sq, minlength=len(ratio)) + LEVEL_PRIOR_ROWS * pooled_sq)
                                / (n_level + LEVEL_PRIOR_ROWS))
                measured = n_level > 0
                sigma = float(np.exp(np.log(level[measured]).mean()))
                ratio = np.where(measured, level / sigma, 1.0)
            sigma = max(sigma, 1e-3)
        t = (y - mu) / (sigma * ratio[group])
        dlogpdf = -t if lik.kind == "normal" else -(lik.nu + 1.0) * t / (lik.nu + t * t)
        weight = np.where(exact, 1.0 if lik.kind == "normal" else (lik.nu + 1.0) / (lik.nu + t * t), 0.0)
        if cens.any():
            # g = f/F at t: the log-CDF's slope; its curvature is -g (g - f'/f). t is clipped: a
            # censored row 50 scales from the mean says nothing more at 1e300 scales, where the
            # product below overflows (a spec whose every row is censored drifts there).
            tc = np.clip(t[cens], -50.0, 50.0)
            slope = -tc if lik.kind == "normal" else -(lik.nu + 1.0) * tc / (lik.nu + tc * tc)
            g = np.exp(std_logpdf(tc, lik, NUMPY) - std_logcdf(tc, lik, NUMPY))
            curvature = np.maximum(g * (g - slope), 1e-3)
            weight[cens] = curvature
            pseudo[cens] = mu[cens] - sigma * ratio[group][cens] * g / curvature
    return weight / ratio[group] ** 2, pseudo, sigma, sigma * ratio


def log_sigma_width(spec: ModelSpec, n_exact: Any) -> Any:
    """Rough posterior width of ``log sigma``: ``1 / sqrt(1 + I)`` with ``I`` the Fisher
    information of ``n_exact`` exactly measured rows (``2 nu / (nu + 3)`` each for Student-t,
    2 for Normal); never wider than the prior-scale 1 when there are few rows.

    Why: ``log sigma`` is the stiffest direction of the posterior (width 0.034 on the reference
    data, against 0.2-0.7 for the effect scales and ~1 for the whitened coefficients). NUTS
    starts warm-up with a unit mass matrix, so until its first adaptation window closes it
    needs step sizes of that width: 163 leapfrog steps per draw over the first 100 warm-up
    draws, a third of all gradients of a default fit with PyMC's sampler.
    """
    lik = spec.likelihood
    per_row = 2.0 if lik.kind == "normal" else 2.0 * lik.nu / (lik.nu + 3.0)
    width = 1.0 / np.sqrt(1.0 + per_row * np.asarray(n_exact, float))
    return float(width) if width.ndim == 0 else width


def white_data(spec: ModelSpec, system: LinearSystem, qid: np.ndarray,
               rows: np.ndarray | None = None, group: np.ndarray | None = None,
               n_levels: int = 1) -> WhiteData:
    """The containers' values for measurements ``qid`` on the rows where ``rows`` is True
    (``group``: every row's level of ``likelihood.sigma_by``, one of ``n_levels``)."""
    y, censored = observe(np.asarray(qid, dtype=float), spec.likelihood)
    use = np.ones(len(y), bool) if rows is None else np.asarray(rows, bool)
    n_levels = 1 if group is None else int(n_levels)
    weight, pseudo, sigma, level_sigma = stand_in(spec, system, y, censored, use, group, n_levels)
    sxx = gram(system.idx, system.val * np.sqrt(weight)[:, None], system.n_cols)
    sxy = np.bincount(system.idx.ravel(), (system.val * (weight * pseudo)[:, None]).ravel(),
                      minlength=system.n_cols)
    exact = use & ~censored
    level_exact = np.bincount(np.zeros(len(y), np.int64) if group is None else group, exact,
                              minlength=n_levels)
    return WhiteData(y, exact.astype(float), (use & censored).astype(float), sxx, sxy,
                     np.asarray(np.log(sigma)), np.asarray(log_sigma_width(spec, int(exact.sum()))),
                     np.log(level_sigma), np.atleast_1d(log_sigma_width(spec, level_exact)))


def build_whitened_model(spec: ModelSpec, system: LinearSystem, levels: dict[str, tuple[str, ...]],
                         data: WhiteData, sigma_group: np.ndarray | None = None) -> pm.Model:
    """The whitened PyMC model of ``spec``; data live in containers swapped between fits.

    ``sigma_group``: every template row's level of ``likelihood.sigma_by`` (needed with it)."""
    lik = spec.likelihood
    with pm.Model(coords={g: list(v) for g, v in levels.items()}) as model:
        box = {k: pm.Data(k, v) for k, v in data.as_data(lik.sigma_by is not None).items()}
        sds, lams, parts = {}, {}, [pt.as_tensor_variable(system.pop_precision)]
        for b in system.effect_blocks:
            eff = spec.effect(b.group)
            sds[b] = spec.effect_sd(eff, b.param).to_pymc(sd_name(b.group, b.param))
            nu = eff.nu_of(b.param)
            if nu is None:
                parts.append(pt.repeat(sds[b] ** -2, b.size))
            else:
                # Student-t offsets as a scale mixture: given lam the offsets stay Gaussian, so
                # the whitening below still integrates them exactly, level by level.
                lams[b] = pm.InverseGamma(lam_name(b.group, b.param), alpha=nu / 2, beta=nu / 2,
                                          dims=b.group)
                parts.append(sds[b] ** -2 / lams[b])
        sigma_prior = lik.sigma
        if lik.sigma_by is None:
            # log sigma = loc + scale * s, centred and scaled by the stand-in (log_sigma_width):
            # the prior enters below with this map's log-Jacobian, log(scale) + log(sigma).
            log_sigma = box["sigma_loc"] + box["sigma_scale"] * pm.Flat(WHITE_SIGMA)
            sigma = pt.exp(log_sigma)  # recovered from the draws by coefficients(), as theta is
            row_scales, scale_group, w = sigma, None, sigma**-2
            scale_prior = (pm.logp(sigma_prior.family.pymc.dist(**sigma_prior.args), sigma)
                           + pt.log(box["sigma_scale"]) + log_sigma)
        else:
            # One scale per level, each well identified by its own rows: sampled centred, as
            # log sigma_g = loc_g + scale_g * s_g (the stand-in's level scales and Fisher widths),
            # with the hierarchical prior log sigma_g ~ Normal(log sigma, sd) and the map's
            # log-Jacobian log(scale_g). (Non-centred, the population sigma and the z_g formed a
            # ridge: ESS 41 in a 1000-draw fit.) The coefficients' map uses the stand-in's pooled
            # scale, a constant: any fixed stand-in keeps the map exact.
            by = lik.sigma_by
            log_levels = box["level_loc"] + box["level_scale"] * pm.Flat(WHITE_LEVELS, dims=by)
            sigma = sigma_prior.to_pymc("sigma")
            sd_s = lik.sigma_sd.to_pymc(sd_name(by, "log_sigma"))
            z_s = (log_levels - pt.log(sigma)) / sd_s
            pm.Deterministic(z_name(by, "log_sigma"), z_s, dims=by)
            row_scales = pt.exp(log_levels)
            scale_group = pt.as_tensor_variable(np.asarray(sigma_group, np.int64))
            w = pt.exp(-2.0 * box["sigma_loc"])
            scale_prior = (-0.5 * (z_s**2).sum() - z_s.shape[0] * (pt.log(sd_s) + HALF_LOG_2PI)
                           + pt.log(box["level_scale"]).sum())
        u = pm.Flat(WHITE, shape=system.n_cols)
        theta, log_jac = whiten(pt.concatenate(parts), w, u, box["sxx"], box["sxy"], system.m0)[:2]
        prior = log_jac + scale_prior
        for b in system.blocks:
            values = theta[b.start:b.start + b.size]
            if b.group is None:
                pop = spec.prior(b.param)
                prior = prior + pm.logp(pop.family.pymc.dist(**pop.args), values[0])
            elif b in lams:
                z = values / (sds[b] * pt.sqrt(lams[b]))
                prior = (prior - 0.5 * (z**2).sum() - b.size * (pt.log(sds[b]) + HALF_LOG_2PI)
                         - 0.5 * pt.log(lams[b]).sum())
            else:
                z = values / sds[b]
                prior = prior - 0.5 * (z**2).sum() - b.size * (pt.log(sds[b]) + HALF_LOG_2PI)
        pm.Potential("whitened_prior", prior)
        # One fused loop over the rows (bayesqid.rowlogp): masks rather than row slices keep
        # the shapes of every fit on the template equal, so one compiled model serves them all.
        logp = row_logp(lik, theta, row_scales, box["y"], box["exact"], box["censored"], system.idx,
                        system.val, scale_group)
        pm.Potential(OBSERVED, logp)
    return model


def coefficients(posterior: xr.Dataset, system: LinearSystem, data: WhiteData,
                 levels: dict[str, tuple[str, ...]]) -> dict[str, xr.DataArray]:
    """``sigma`` and the coefficients of every draw, from its whitened values and scales, under
    the uncollapsed model's names (population coefficients and ``z_<group>_<param>``)."""
    shape = (posterior.sizes["chain"], posterior.sizes["draw"])
    if WHITE_SIGMA in posterior:
        sigma = np.exp(data.sigma_loc + data.sigma_scale * flat_draws(posterior, WHITE_SIGMA))
        w = sigma**-2
    else:  # scales per level: sigma is a model variable, the map used the pooled stand-in scale
        sigma = flat_draws(posterior, "sigma")
        w = np.full(len(sigma), float(np.exp(-2.0 * data.sigma_loc)))
    lam, sd = posterior_precisions(posterior, system)
    theta = whiten_batch(lam, w, flat_draws(posterior, WHITE), data.sxx, data.sxy, system.m0)
    out = {"sigma": xr.DataArray(sigma.reshape(shape), dims=("chain", "draw"))}
    return out | named_coefficients(theta, sd, system, levels, shape)


class WhitenedEngine:
    """Scales and whitened coefficients by NUTS; any likelihood; compiled once per template."""

    name = "whitened"

    def __init__(self, spec: ModelSpec, design: Design) -> None:
        reason = whitenable(spec)
        if reason is not None:
            raise ValueError(f"spec {spec.name!r} cannot be whitened: {reason}")
        self.spec = spec
        self.design = design
        self.system = linear_system(spec, design)
        by = spec.likelihood.sigma_by
        self.sigma_group = None if by is None else np.asarray(design.codes[by], np.int64)
        self.n_sigma_levels = 1 if by is None else len(design.levels[by])
        self._compiled: Any = None

    def _nutpie_model(self, data: Any) -> Any:
        """The nutpie-compiled model (compiled on first use) with ``data`` swapped in."""
        import nutpie

        if self._compiled is None:
            model = build_whitened_model(self.spec, self.system, self.design.levels, data, self.sigma_group)
            keep = [v.name for v in (*model.free_RVs, *model.deterministics)]
            self._compiled = nutpie.compile_pymc_model(model, var_names=keep)
        return self._compiled.with_data(**data.as_data(self.spec.likelihood.sigma_by is not None))

    def sample(self, cfg: SamplerConfig, qid: np.ndarray, rows: np.ndarray | None = None) -> az.InferenceData:
        """Posterior of the spec on ``rows`` of the template with measurements ``qid``."""
        data = white_data(self.spec, self.system, qid, rows, self.sigma_group, self.n_sigma_levels)
        # One BLAS thread: see CollapsedEngine.sample.
        with threadpool_limits(limits=1, user_api="blas"), quiet_sampling():
            if cfg.sampler == "nutpie":
                raw = nutpie_sample(self._nutpie_model(data), cfg)
            else:
                model = build_whitened_model(self.spec, self.system, self.design.levels, data,
                                             self.sigma_group)
                raw = SAMPLERS[cfg.sampler](model, cfg)
            posterior = getattr(raw, "posterior", None)
            if posterior is None or posterior.sizes.get("draw", 0) != cfg.draws:
                return raw  # interrupted: the caller refuses partial traces
            # Inside the one-thread limit too: LAPACK's results on a stack of matrices can
            # differ in the last bits with the thread count, and a seed must give equal draws.
            coefs = coefficients(posterior, self.system, data, self.design.levels)
        # The whitened coordinates are internal (and depend on the scales and the data): runs
        # keep the coefficients and sigma, as every other engine's do.
        internal = tuple(f"{n}_" for n in INTERNAL)
        raw.posterior = posterior.drop_vars([v for v in posterior.data_vars
                                             if v in INTERNAL or v.startswith(internal)])
        for name, da in coefs.items():
            raw.posterior[name] = da.assign_coords(chain=posterior.chain, draw=posterior.draw)
        return raw
