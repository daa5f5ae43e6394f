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

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from bayesqid.design import Design
from bayesqid.likelihood import observe
from bayesqid.marginal import marginal_logp
from bayesqid.priors import Prior
from bayesqid.spec import ModelSpec
from bayesqid.whiten import whiten_batch

#: Name of the latent variable of the censored rows (log resolution minus latent log QiD).
GAP = "censored_gap"
#: Name of ``X_c' y_c``, all that the coefficient draws need from the censored values; kept in
#: traces instead of the values themselves (one number per coefficient, not per censored row).
CENSORED_XTY = "censored_xty"
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
    return None


@dataclass(frozen=True)
class Block:
    """A run of columns of the coefficient vector: one population value or one effect's levels."""

    group: str | None
    param: str
    start: int
    size: int


@dataclass(frozen=True)
class LinearSystem:
    """The model's design as sparse rows of ``X`` in ``log QiD = X theta + e``.

    Attributes
    ----------
    blocks : tuple of Block
        Population coefficients first (``group`` None), then effects in spec order.
    n_cols : int
        Length of ``theta``.
    idx, val : ndarray (rows, k)
        Column index and value of each row's ``k`` non-zeros (population + one level per effect).
    m0 : ndarray (n_cols,)
        Prior means (population priors; zero for offsets).
    pop_precision : ndarray
        Prior precisions of the population coefficients.
    """

    blocks: tuple[Block, ...]
    n_cols: int
    idx: np.ndarray
    val: np.ndarray
    m0: np.ndarray
    pop_precision: np.ndarray

    @property
    def effect_blocks(self) -> tuple[Block, ...]:
        """The blocks of group offsets."""
        return tuple(b for b in self.blocks if b.group is not None)


def gaussian_moments(prior: Prior) -> tuple[float, float]:
    """Mean and variance of a Normal matching ``prior``: its own for a Normal (the collapsed
    model's conjugate case); otherwise moments of the distribution, or its median and
    IQR-matched variance where moments do not exist (the whitened engine only needs a
    stand-in: its prior density stays exact)."""
    if prior.dist == "normal":
        return float(prior.args["mu"]), float(prior.args["sigma"]) ** 2
    dist = prior.to_scipy()
    mean, var = float(dist.mean()), float(dist.var())
    if not (np.isfinite(mean) and np.isfinite(var) and var > 0):
        q1, q2, q3 = dist.ppf([0.25, 0.5, 0.75])
        mean, var = float(q2), float((q3 - q1) / 1.349) ** 2
    return mean, var


def linear_system(spec: ModelSpec, design: Design) -> LinearSystem:
    """Build the sparse design of ``spec`` on ``design`` (all rows, every level known)."""
    law = spec.law_obj
    n = design.n_rows

    def feature(p: str) -> np.ndarray:
        if p == law.intercept:
            return np.ones(n)
        return np.asarray(law.features[p](design.x), dtype=float) * np.ones(n)

    blocks, idx, val, m0, prec = [], [], [], [], []
    for j, p in enumerate(law.param_names):
        prior = spec.prior(p)
        blocks.append(Block(None, p, j, 1))
        idx.append(np.full(n, j))
        val.append(feature(p))
        mean, var = gaussian_moments(prior)
        m0.append(mean)
        prec.append(1.0 / var)
    start = len(law.param_names)
    for eff in spec.effects:
        size = len(design.levels[eff.group])
        for p in eff.params:
            blocks.append(Block(eff.group, p, start, size))
            idx.append(start + design.codes[eff.group])
            val.append(feature(p))
            start += size
    m0_all = np.zeros(start)
    m0_all[: len(m0)] = m0
    return LinearSystem(tuple(blocks), start, np.column_stack(idx).astype(np.int64),
                        np.column_stack(val), m0_all, np.asarray(prec))


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


def _gram(idx: np.ndarray, val: np.ndarray, n_cols: int) -> np.ndarray:
    """``X'X`` from sparse rows, in O(rows * k^2) (bincount beats a dense product)."""
    k = idx.shape[1]
    flat = (idx[:, :, None] * n_cols + idx[:, None, :]).reshape(-1, k * k)
    prod = (val[:, :, None] * val[:, None, :]).reshape(-1, k * k)
    return np.bincount(flat.ravel(), prod.ravel(), minlength=n_cols * n_cols).reshape(n_cols, n_cols)


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
    sxx = _gram(system.idx[use], system.val[use], system.n_cols)
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


def flat_draws(posterior: xr.Dataset, name: str) -> np.ndarray:
    """Draws of ``name`` as (chain * draw, ...)."""
    da = posterior[name]
    return da.to_numpy().reshape(-1, *da.shape[2:])


def posterior_precisions(posterior: xr.Dataset,
                         system: LinearSystem) -> tuple[np.ndarray, dict[Block, np.ndarray]]:
    """Prior precisions of ``theta`` per draw (draws, p) and each effect block's scale draws."""
    lam = np.empty((posterior.sizes["chain"] * posterior.sizes["draw"], system.n_cols))
    lam[:, : len(system.pop_precision)] = system.pop_precision
    sd = {}
    for b in system.effect_blocks:
        sd[b] = flat_draws(posterior, f"sd_{b.group}_{b.param}")
        lam[:, b.start:b.start + b.size] = sd[b][:, None] ** -2
    return lam, sd


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


def named_coefficients(theta: np.ndarray, sd: dict[Block, np.ndarray], system: LinearSystem,
                       levels: dict[str, tuple[str, ...]],
                       shape: tuple[int, int]) -> dict[str, xr.DataArray]:
    """Coefficient draws ``theta`` (draws, p) under the uncollapsed model's variable names:
    population coefficients (chain, draw) and standardised effects ``z_<group>_<param>``
    (offsets divided by their draw's scale ``sd[block]``)."""
    chains, draws = shape
    out = {}
    for b in system.blocks:
        values = theta[:, b.start:b.start + b.size]
        if b.group is None:
            out[b.param] = xr.DataArray(values[:, 0].reshape(chains, draws), dims=("chain", "draw"))
        else:
            z = values / sd[b][:, None]
            out[f"z_{b.group}_{b.param}"] = xr.DataArray(
                z.reshape(chains, draws, b.size), dims=("chain", "draw", b.group),
                coords={b.group: list(levels[b.group])})
    return out
