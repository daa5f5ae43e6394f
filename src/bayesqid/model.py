"""Build the hierarchical PyMC model of a spec on a design. No sampling happens here.

Structure, for every law coefficient ``theta`` and observation ``i``::

    theta_i = theta + sum over groups g varying theta of  sd_g_theta * z_g_theta[level_g(i)]
    log QiD_i ~ StudentT(nu, law.log_mu(x_i, theta_i), sigma), left-censored below resolution

Effects are non-centred (``z ~ Normal(0, 1)``): most families contribute one training-token
count, so their effects are weakly identified and a centred form funnels.

For linear laws one more, exact, change of variables removes the worst correlation: a level's
data pin down its log QiD *at its own centroid* (e.g. OPT at 0.18T tokens), which is one
linear combination of its intercept and slope effects. Per level, an orthogonal (Householder)
reflection maps the sampled ``xi ~ Normal(0, I)`` to ``z`` so that ``xi[0]`` is exactly that
combination. An orthogonal map of a standard normal is standard normal with unit Jacobian,
so the model is unchanged; only the sampler's coordinates are better aligned with the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesqid.design import Design
from bayesqid.likelihood import TENSOR, observe, pointwise_logp
from bayesqid.spec import ModelSpec

#: Name of the likelihood term in the model and of the observed variable in saved runs.
OBSERVED = "log_qid"


def sd_name(group: str, param: str) -> str:
    """Variable name of the effect standard deviation of ``param`` over ``group``."""
    return f"sd_{group}_{param}"


def z_name(group: str, param: str) -> str:
    """Variable name of the standardised effects of ``param`` over ``group``."""
    return f"z_{group}_{param}"


def effect_pairs(spec: ModelSpec) -> list[tuple[str, str]]:
    """All (group, parameter) pairs that carry random effects, in spec order."""
    return [(e.group, p) for e in spec.effects for p in e.params]


def compose(spec: ModelSpec, values: Mapping[str, Any], offsets: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    """Per-row law coefficients: population value plus the row's group offsets.

    ``values`` holds population coefficients; ``offsets[(group, param)]`` the already-indexed
    offset of each row (``sd * z[code]``). Works on tensors and arrays alike.
    """
    out = {}
    for p in spec.law_obj.param_names:
        theta = values[p]
        for (g, q), off in offsets.items():
            if q == p:
                theta = theta + off
        out[p] = theta
    return out


def xi_name(group: str) -> str:
    """Variable name of the rotated standard-normal effects of ``group`` (linear laws)."""
    return f"xi_{group}"


def coef_dim(group: str) -> str:
    """Dimension name of the coefficients that vary by ``group``."""
    return f"{group}_coef"


def level_centroids(design: Design, group: str, features: list[Any]) -> np.ndarray:
    """Mean of each feature over the rows of each level of ``group`` (levels x features)."""
    codes = design.codes[group]
    n_levels = len(design.levels[group])
    counts = np.bincount(codes, minlength=n_levels).astype(float)
    out = np.zeros((n_levels, len(features)))
    for j, feature in enumerate(features):
        sums = np.bincount(codes, weights=np.asarray(feature(design.x), dtype=float), minlength=n_levels)
        out[:, j] = np.divide(sums, counts, out=np.zeros(n_levels), where=counts > 0)
    return out


def _rotated_effects(spec: ModelSpec, eff: Any, sds: list[Any], design: Design) -> list[Any]:
    """Standardised effects ``z`` (one vector per coefficient) from a Householder-rotated ``xi``.

    Coefficient order puts the intercept first. ``n`` is the direction in ``z``-space along
    which a level's log QiD at its centroid moves; the reflection ``H = I - 2 v v'/v'v`` with
    ``v = n/|n| + e1`` maps ``e1`` to ``-n/|n|``, so ``xi[0]`` is that (negated) combination.
    ``v'v >= 2`` always, since ``n[0] = sd_intercept > 0``.
    """
    law = spec.law_obj
    slopes = [p for p in eff.params if p != law.intercept]
    centroid = level_centroids(design, eff.group, [law.features[p] for p in slopes])
    scale = pt.stack(sds)  # intercept sd first, then slope sds
    n = pt.concatenate([pt.ones((centroid.shape[0], 1)), pt.as_tensor_variable(centroid)], axis=1) * scale
    n_hat = n / pt.sqrt((n * n).sum(axis=1, keepdims=True))
    v = n_hat + pt.as_tensor_variable(np.eye(1, len(eff.params)))
    xi = pm.Normal(xi_name(eff.group), 0.0, 1.0, dims=(eff.group, coef_dim(eff.group)))
    z = xi - 2.0 * v * ((v * xi).sum(axis=1, keepdims=True) / (v * v).sum(axis=1, keepdims=True))
    return [z[:, j] for j in range(len(eff.params))]


def _ordered(spec: ModelSpec, params: tuple[str, ...]) -> tuple[str, ...]:
    """Coefficients of an effect with the law's intercept first (rotation needs it there)."""
    icpt = spec.law_obj.intercept
    return tuple(sorted(params, key=lambda p: p != icpt))


def rotates(spec: ModelSpec, group: str) -> bool:
    """Whether the effects of ``group`` are sampled in Householder-rotated coordinates."""
    eff = spec.effect(group)
    law = spec.law_obj
    return (eff is not None and not eff.centered and law.is_linear and law.intercept in eff.params
            and len(eff.params) > 1)


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
    for eff in spec.effects:
        coords[coef_dim(eff.group)] = list(_ordered(spec, eff.params))
    y, censored = observe(qid, spec.likelihood)
    with pm.Model(coords=coords) as model:
        values = {p: spec.prior(p).to_pymc(p) for p in spec.law_obj.param_names}
        offsets = {}
        for eff in spec.effects:
            params = _ordered(spec, eff.params)
            sds = [spec.effect_sd(eff, p).to_pymc(sd_name(eff.group, p)) for p in params]
            if eff.centered:
                deltas = [pm.Normal(f"offset_{eff.group}_{p}", 0.0, sd, dims=eff.group)
                          for p, sd in zip(params, sds, strict=True)]
                zs = [pm.Deterministic(z_name(eff.group, p), d / sd, dims=eff.group)
                      for p, d in zip(params, deltas, strict=True)]
            elif rotates(spec, eff.group):
                zs = _rotated_effects(spec, eff, sds, design)
                zs = [pm.Deterministic(z_name(eff.group, p), z, dims=eff.group)
                      for p, z in zip(params, zs, strict=True)]
            else:
                zs = [pm.Normal(z_name(eff.group, p), 0.0, 1.0, dims=eff.group) for p in params]
            for p, sd, z in zip(params, sds, zs, strict=True):
                offsets[(eff.group, p)] = sd * z[design.codes[eff.group]]
        theta = compose(spec, values, offsets)
        x = {k: pt.as_tensor_variable(v) for k, v in design.x.items()}
        log_mu = spec.law_obj.log_mu(x, theta)
        sigma = spec.likelihood.sigma.to_pymc("sigma")
        logp = pointwise_logp(pt.as_tensor_variable(y), pt.as_tensor_variable(censored), log_mu,
                              sigma, spec.likelihood, TENSOR)
        # A Potential rather than an observed variable: the censored/uncensored mixture has no
        # PyMC distribution, and predictions and log-likelihoods are computed on the draws by
        # the same formula in numpy (bayesqid.posterior), not by PyMC.
        pm.Potential(OBSERVED, logp.sum())
    return model
