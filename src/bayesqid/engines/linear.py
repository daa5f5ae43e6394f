"""The linear system shared by the whitened and the collapsed engine.

For a law linear in its coefficients, ``log QiD = X theta + e`` where ``theta`` stacks the
population coefficients and every group offset. ``X`` is kept as sparse rows (one non-zero per
population coefficient and one per effect), so ``X'X`` and ``X'y`` cost O(rows * k^2) whatever
the number of levels. Both engines build their Gaussian conditional of ``theta`` from it and
name their coefficient draws through :func:`named_coefficients`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from bayesqid.data.design import Design
from bayesqid.lang.effects import lam_name
from bayesqid.lang.priors import Prior
from bayesqid.lang.spec import ModelSpec


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
    # Recipe shifts are population coefficients too: feature = recipe column x coefficient's feature.
    for name, (p, col) in zip(spec.recipe_shifts, spec.recipe_terms, strict=True):
        j = len(blocks)
        blocks.append(Block(None, name, j, 1))
        idx.append(np.full(n, j))
        val.append(design.recipe[col] * feature(p))
        mean, var = gaussian_moments(spec.prior(name))
        m0.append(mean)
        prec.append(1.0 / var)
    start = len(blocks)
    for eff in spec.effects:
        size = len(design.levels[eff.group])
        for p in eff.params:
            blocks.append(Block(eff.group, p, start, size))
            idx.append(start + design.codes[eff.group])
            val.append(feature(p) - spec.centre_shift(eff.group, p))
            start += size
    m0_all = np.zeros(start)
    m0_all[: len(m0)] = m0
    return LinearSystem(tuple(blocks), start, np.column_stack(idx).astype(np.int64),
                        np.column_stack(val), m0_all, np.asarray(prec))


def gram(idx: np.ndarray, val: np.ndarray, n_cols: int) -> np.ndarray:
    """``X'X`` from sparse rows, in O(rows * k^2) (bincount beats a dense product)."""
    k = idx.shape[1]
    flat = (idx[:, :, None] * n_cols + idx[:, None, :]).reshape(-1, k * k)
    prod = (val[:, :, None] * val[:, None, :]).reshape(-1, k * k)
    return np.bincount(flat.ravel(), prod.ravel(), minlength=n_cols * n_cols).reshape(n_cols, n_cols)


def flat_draws(posterior: xr.Dataset, name: str) -> np.ndarray:
    """Draws of ``name`` as (chain * draw, ...)."""
    da = posterior[name]
    return da.to_numpy().reshape(-1, *da.shape[2:])


def posterior_precisions(posterior: xr.Dataset,
                         system: LinearSystem) -> tuple[np.ndarray, dict[Block, np.ndarray]]:
    """Prior precisions of ``theta`` per draw (draws, p) and each effect block's scale draws.

    A block with Student-t offsets (a ``lam_<group>_<param>`` variable in ``posterior``) has
    per-level precisions ``sd^-2 / lam``."""
    lam = np.empty((posterior.sizes["chain"] * posterior.sizes["draw"], system.n_cols))
    lam[:, : len(system.pop_precision)] = system.pop_precision
    sd = {}
    for b in system.effect_blocks:
        sd[b] = flat_draws(posterior, f"sd_{b.group}_{b.param}")
        mix = lam_name(b.group, b.param)
        scale = flat_draws(posterior, mix) if mix in posterior else 1.0
        lam[:, b.start:b.start + b.size] = sd[b][:, None] ** -2 / scale
    return lam, sd


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
