"""Collapsed hierarchical model: coefficients integrated out, NUTS on the scales only.

For a law linear in its coefficients (``log_mu = intercept + sum theta_j feature_j``) with a
Normal likelihood and Normal population priors, the hierarchical model is a linear mixed
model on log QiD. Every coefficient - population values and all group offsets - can then be
integrated out in closed form (:mod:`bayesqid.marginal`), and NUTS samples only

- the group-effect scales ``sd_<group>_<param>`` and the residual scale ``sigma``, and
- the latent log values of left-censored rows (``censored_gap``: distance below resolution).

The coefficients are drawn afterwards, exactly, from their Gaussian conditional posterior
given each draw of the scales (:func:`draw_coefficients`); the joint draws are draws from the
same posterior as the uncollapsed model's. Why: the uncollapsed posterior has ridges NUTS
crawls along (OLMo's family intercept against its quantizers and evaluation sets: only their
sum is identified), and those directions simply do not exist once the coefficients are
integrated out. The data enter only as sufficient statistics, so the cost of a gradient does
not grow with the number of uncensored rows.

Saved runs hold the same variables as the uncollapsed model (population coefficients,
``sd_*``, standardised effects ``z_*``, ``sigma``), so everything downstream is unchanged.
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
from bayesqid.engines.ops.marginal import marginal_logp
from bayesqid.engines.ops.whiten import whiten_batch
from bayesqid.engines.sampler import SAMPLERS, SamplerConfig, nutpie_sample, quiet_sampling
from bayesqid.lang.likelihood import observe
from bayesqid.lang.spec import ModelSpec

#: Name of the latent variable of the censored rows (log resolution minus latent log QiD).
GAP = "censored_gap"
#: Name of ``X_c' y_c``, all that the coefficient draws need from the censored values; kept in
#: traces instead of the values themselves (one number per coefficient, not per censored row).
CENSORED_XTY = "censored_xty"
#: Salt of the coefficient draws' random stream (kept apart from the sampler's own stream).
_COEF_STREAM = 0xC0EF

#: Name of the likelihood term in the model.
OBSERVED = "log_qid"


def collapsible(spec: ModelSpec) -> str | None:
    """Why ``spec`` cannot be collapsed, or None when it can.

    Needs a law linear in its coefficients, a Normal likelihood and Normal population priors
    (the conjugate structure the closed form relies on).
    """
    law = spec.law_obj
    if not law.is_linear:
        return f"law {law.name!r} is not linear in its coefficients"
    if spec.likelihood.kind != "normal":
        return f"likelihood {spec.likelihood.kind!r} is not Normal"
    for p in law.param_names:
        if spec.prior(p).dist != "normal":
            return f"the prior of {p!r} is {spec.prior(p).dist}, not Normal"
    for eff in spec.effects:
        if eff.nu:
            return f"effects.{eff.group} has Student-t offsets (nu), not Normal ones"
    if spec.likelihood.sigma_by is not None:
        return f"the residual scale varies by {spec.likelihood.sigma_by} (likelihood.sigma_by)"
    return None


@dataclass(frozen=True)
class Stats:
    """Everything the marginal likelihood reads from the data; fixed shapes for a given system.

    ``sxx`` covers all rows in use (uncensored and censored), ``sxy``, ``syy`` and ``n`` the
    uncensored ones; censored rows sit in ``slots`` padded rows (``cmask`` 0 marks padding).
    """

    sxx: np.ndarray
    sxy: np.ndarray
    syy: float
    n: float
    cidx: np.ndarray
    cval: np.ndarray
    cmask: np.ndarray
    log_resolution: float

    def as_data(self) -> dict[str, np.ndarray]:
        """Values of the model's data containers."""
        return {"sxx": self.sxx, "sxy": self.sxy, "syy": np.asarray(self.syy), "n": np.asarray(self.n),
                "cidx": self.cidx, "cval": self.cval, "cmask": self.cmask}

    @property
    def slots(self) -> int:
        """Number of censored-row slots."""
        return len(self.cmask)


def slot_count(n_censored: int) -> int:
    """Slots for ``n_censored`` rows, rounded up (to a multiple of 64) so that refits with a
    few more censored rows, such as simulated replicates, reuse the compiled model."""
    return max(64, -(-n_censored // 64) * 64)


def sufficient_stats(spec: ModelSpec, system: LinearSystem, qid: np.ndarray,
                     rows: np.ndarray | None = None, slots: int | None = None) -> Stats:
    """Sufficient statistics of the measured ``qid`` on the rows where ``rows`` is True."""
    y, censored = observe(np.asarray(qid, dtype=float), spec.likelihood)
    use = np.ones(len(y), bool) if rows is None else np.asarray(rows, bool)
    exact = use & ~censored
    cens = use & censored
    sxx = gram(system.idx[use], system.val[use], system.n_cols)
    sxy = np.bincount(system.idx[exact].ravel(), (system.val[exact] * y[exact, None]).ravel(),
                      minlength=system.n_cols)
    n_cens = int(cens.sum())
    slots = slot_count(n_cens) if slots is None else slots
    if slots < n_cens:
        raise ValueError(f"{n_cens} censored rows do not fit in {slots} slots")
    k = system.idx.shape[1]
    cidx = np.zeros((slots, k), np.int64)
    cval = np.zeros((slots, k))
    cmask = np.zeros(slots)
    cidx[:n_cens] = system.idx[cens]
    cval[:n_cens] = system.val[cens]
    cmask[:n_cens] = 1.0
    return Stats(sxx, sxy, float(y[exact] @ y[exact]), float(exact.sum()), cidx, cval, cmask,
                 float(np.log(spec.likelihood.censor_below)))


def _precisions(spec: ModelSpec,
                system: LinearSystem) -> tuple[pt.TensorVariable, dict[str, pt.TensorVariable]]:
    """Prior precision vector of ``theta`` (inside a model context) and the scale variables."""
    parts = [pt.as_tensor_variable(system.pop_precision)]
    sds = {}
    for b in system.effect_blocks:
        eff = spec.effect(b.group)
        name = f"sd_{b.group}_{b.param}"
        sds[name] = spec.effect_sd(eff, b.param).to_pymc(name)
        parts.append(pt.repeat(sds[name] ** -2, b.size))
    return pt.concatenate(parts), sds


def build_collapsed_model(spec: ModelSpec, system: LinearSystem, stats: Stats) -> pm.Model:
    """The collapsed PyMC model; data live in containers, swapped between fits by the engine.

    Unused censored slots get an independent standard Normal on their log gap, so they are
    proper, cheap and do not touch the likelihood.
    """
    with pm.Model() as model:
        data = {k: pm.Data(k, v) for k, v in stats.as_data().items()}
        lam, _ = _precisions(spec, system)
        sigma = spec.likelihood.sigma.to_pymc("sigma")
        gap = pm.HalfFlat(GAP, shape=stats.slots)
        log_gap = pt.log(gap)
        # HalfFlat's log transform contributes log_gap; cancel it and add N(0, 1) for padding.
        pm.Potential("unused_slots", ((1.0 - data["cmask"]) * (-0.5 * log_gap**2 - log_gap)).sum())
        # Gaps in residual-scale units: their conditional spread is then ~1 whatever sigma is.
        yc = stats.log_resolution - sigma * gap
        pm.Potential("gap_jacobian", data["cmask"].sum() * pt.log(sigma))
        used = yc * data["cmask"]
        xty = pt.zeros(system.n_cols)[data["cidx"].ravel()].inc((data["cval"] * used[:, None]).ravel())
        pm.Deterministic(CENSORED_XTY, xty)
        logp = marginal_logp(lam, sigma**-2, yc, data["sxx"], data["sxy"], data["syy"], data["n"],
                             system.m0, data["cidx"], data["cval"], data["cmask"])[0]
        pm.Potential(OBSERVED, logp)
    return model


def draw_coefficients(posterior: xr.Dataset, spec: ModelSpec, system: LinearSystem, stats: Stats,
                      levels: dict[str, tuple[str, ...]],
                      rng: np.random.Generator) -> dict[str, xr.DataArray]:
    """Exact draws of every coefficient from ``p(theta | scales, censored values, data)``.

    Returns population coefficients (chain, draw) and standardised effects
    ``z_<group>_<param>`` (chain, draw, level), named as in the uncollapsed model.
    """
    shape = (posterior.sizes["chain"], posterior.sizes["draw"])
    lam, sd = posterior_precisions(posterior, system)
    xty = stats.sxy + flat_draws(posterior, CENSORED_XTY)
    # The conditional is Normal(A^-1 b, A^-1): the whitening map applied to standard Normals.
    eps = rng.standard_normal(lam.shape)
    theta = whiten_batch(lam, flat_draws(posterior, "sigma") ** -2, eps, stats.sxx, xty, system.m0)
    return named_coefficients(theta, sd, system, levels, shape)


class CollapsedEngine:
    """Coefficients integrated out; NUTS on scales and censored values; compiled once."""

    name = "collapsed"

    def __init__(self, spec: ModelSpec, design: Design, design_qid: np.ndarray) -> None:
        reason = collapsible(spec)
        if reason is not None:
            raise ValueError(f"spec {spec.name!r} cannot be collapsed: {reason}")
        self.spec = spec
        self.design = design
        self.system = linear_system(spec, design)
        self._compiled: dict[int, Any] = {}
        #: Censored slots of every fit: enough for the template's censored rows, so fits on
        #: row subsets all reuse one compiled model.
        self.slots = slot_count(int((np.asarray(design_qid, float) < spec.likelihood.censor_below).sum()))

    def _nutpie_model(self, stats: Any) -> Any:
        """The nutpie-compiled model for this many censored slots (compiled on first use)."""
        import nutpie

        if stats.slots not in self._compiled:
            model = build_collapsed_model(self.spec, self.system, stats)
            # Traces keep the scales and X_c' y_c, not one latent per censored row: at 100k
            # rows the latents alone would take gigabytes.
            keep = [v.name for v in model.free_RVs if v.name != GAP] + [CENSORED_XTY]
            self._compiled[stats.slots] = nutpie.compile_pymc_model(model, var_names=keep)
        return self._compiled[stats.slots].with_data(**stats.as_data())

    def sample(self, cfg: SamplerConfig, qid: np.ndarray, rows: np.ndarray | None = None) -> az.InferenceData:
        """Posterior of the spec on ``rows`` of the template with measurements ``qid``."""
        n_cens = int(((np.asarray(qid, float) < self.spec.likelihood.censor_below)
                      & (True if rows is None else rows)).sum())
        stats = sufficient_stats(self.spec, self.system, qid, rows, slots=max(self.slots, slot_count(n_cens)))
        # One BLAS thread: the factorisations are ~100 x 100, where threading only adds
        # contention with the sampler's own chain threads.
        with threadpool_limits(limits=1, user_api="blas"):
            with quiet_sampling():
                if cfg.sampler == "nutpie":
                    raw = nutpie_sample(self._nutpie_model(stats), cfg)
                else:
                    raw = SAMPLERS[cfg.sampler](build_collapsed_model(self.spec, self.system, stats), cfg)
            posterior = getattr(raw, "posterior", None)
            if posterior is None or posterior.sizes.get("draw", 0) != cfg.draws:
                return raw  # interrupted: the caller refuses partial traces
            rng = np.random.default_rng([cfg.seed, _COEF_STREAM])
            coefs = draw_coefficients(posterior, self.spec, self.system, stats, self.design.levels, rng)
        for name, da in coefs.items():
            raw.posterior[name] = da.assign_coords(chain=posterior.chain, draw=posterior.draw)
        return raw
