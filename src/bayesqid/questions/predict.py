"""Posterior bands for QiD on any grid: the law's mean and a new measurement.

Two bands per row, as central intervals of posterior draws:

- ``mean_*``: the law itself, ``exp(log_mu)``, for the row's family, quantizer and eval set;
- ``pred_*``: a new measurement, ``exp(log_mu + sigma * t)``, with the likelihood's residual;
- ``share_*``: where the new-measurement band's width comes from (family, population
  coefficients, quantizer, evaluation set, residual noise; :mod:`bayesqid.questions.shares`).

Levels the run has never seen (a new family, say) get effects drawn from the population, per
posterior draw; the ``new_levels`` column names them, so known and new are never confused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesqid.constants import (
    CI_PROB,
    DEFAULT_TABLE_BITS,
    DEFAULT_TABLE_PARAMS,
    DEFAULT_TABLE_TOKENS,
    GROUPS,
)
from bayesqid.data.design import NEW_LEVEL, build_design
from bayesqid.errors import BayesqidError
from bayesqid.lang.likelihood import draw_residuals
from bayesqid.questions.grid import check_grid, grid
from bayesqid.questions.shares import SHARE_COLUMNS, variance_shares
from bayesqid.sampling.draws import chunks, n_samples, row_log_mu, row_sigma
from bayesqid.sampling.run import Run

#: Columns added by :func:`predict`, in order.
BAND_COLUMNS = ("mean_lower", "mean_median", "mean_upper", "pred_lower", "pred_median", "pred_upper",
                "new_levels", *SHARE_COLUMNS)

#: Label of the unseen family in the default table.
NEW_FAMILY = "new family"

# Rows per chunk: bounds memory at draws x CHUNK doubles (4000 x 2000 x 8 B = 64 MB).
CHUNK = 2000


def default_grid(*, tokens: float = DEFAULT_TABLE_TOKENS, params: tuple[float, ...] = DEFAULT_TABLE_PARAMS,
                 bits: tuple[int, ...] = DEFAULT_TABLE_BITS, family: str = NEW_FAMILY,
                 method: str = "GPTQ", group_size: int | None = 128,
                 eval_set: str = "wikitext2") -> pd.DataFrame:
    """The 100T-token table: every (params, bits) pair for one family and quantizer setting.

    The default quantizer and evaluation set (GPTQ, group 128, WikiText-2) are the setting of
    Ouyang et al.'s Eq. 8, so the table is comparable with the published point law.
    """
    # Sizes outermost, in the order given, as Ouyang et al. lay out their table.
    return pd.concat([grid(family=family, params=n, tokens=tokens, bits=bits, method=method,
                           group_size=group_size, eval_set=eval_set) for n in params], ignore_index=True)


def predict(run: Run, grid: pd.DataFrame, *, prob: float = CI_PROB,
            seed: int | None = None) -> pd.DataFrame:
    """Bands for every row of ``grid``.

    Parameters
    ----------
    run : Run
        A fitted (or loaded) run.
    grid : DataFrame
        Columns :data:`bayesqid.data.dataset.GRID_COLUMNS` (see :func:`bayesqid.questions.grid.grid`);
        other columns are carried through.
    prob : float
        Mass of the central interval (default :data:`bayesqid.constants.CI_PROB`).
    seed : int, optional
        Seed of new-level and residual draws (default: the run's seed), so the same run and
        grid always give the same table.

    Returns
    -------
    DataFrame
        ``grid`` plus :data:`BAND_COLUMNS`: bands of QiD in nats, the unseen levels drawn from
        the population, and the shares of the new-measurement band's variance (of log QiD) by
        source, which sum to 1 (:func:`bayesqid.questions.shares.variance_shares`).

    Raises
    ------
    DataError
        A grid cell breaks a data-file rule, or a grid column is named like a band column.
    """
    if not 0 < prob < 1:
        raise BayesqidError(f"interval must be between 0 and 1, got {prob!r}")
    seed = run.seed if seed is None else int(seed)
    q = [(1 - prob) / 2, 0.5, (1 + prob) / 2]
    # One standardised residual per posterior draw, shared by all rows: each row's predictive
    # band is then independent of its position in the grid and of chunking.
    noise = draw_residuals(run.spec.likelihood, np.random.default_rng([seed, 1]), (n_samples(run.idata),))
    # The grid's cells pass the data-file rules, and no column of it is overwritten by a band.
    grid = check_grid(grid, outputs=BAND_COLUMNS)
    bands = np.empty((len(grid), 6))
    shares = np.empty((len(grid), len(SHARE_COLUMNS)))
    new_levels = np.empty(len(grid), dtype=object)
    for rows in chunks(len(grid), CHUNK):
        part = grid.iloc[rows]
        design = build_design(part, run.levels)
        # Rows x draws, contiguous along draws: quantiles partition along the last axis, which
        # is several times faster than along a strided first axis.
        log_mu = np.ascontiguousarray(row_log_mu(run.idata, run.spec, design, seed=seed).T)
        bands[rows, 0:3] = np.exp(np.quantile(log_mu, q, axis=1)).T
        log_mu += noise[None, :] * row_sigma(run.idata, run.spec, design, seed=seed).T
        bands[rows, 3:6] = np.exp(np.quantile(log_mu, q, axis=1)).T
        shares[rows] = variance_shares(run, design, seed=seed, prob=prob).to_numpy()
        varied = {e.group for e in run.spec.effects}
        new_levels[rows] = [
            ";".join(f"{g}={design.labels[g][i]}" for g in GROUPS
                     if g in varied and design.codes[g][i] == NEW_LEVEL)
            for i in range(len(part))
        ]
    out = grid.copy()
    for j, col in enumerate(BAND_COLUMNS[:6]):
        out[col] = bands[:, j]
    out["new_levels"] = new_levels
    for j, col in enumerate(SHARE_COLUMNS):
        out[col] = shares[:, j]
    return out


def format_table(table: pd.DataFrame) -> str:
    """Compact text table of bands: params x bits with median and interval, in nats."""
    lines = [f"{'params':>9} {'bits':>4} {'family':<16} {'mean QiD [interval]':>30} "
             f"{'new measurement [interval]':>32}"]
    for r in table.itertuples(index=False):
        lines.append(
            f"{r.params:>9.3g} {int(r.bits):>4d} {str(r.family)[:16]:<16} "
            f"{_num(r.mean_median):>9} [{_num(r.mean_lower)}, {_num(r.mean_upper)}]".ljust(63)
            + f" {_num(r.pred_median):>9} [{_num(r.pred_lower)}, {_num(r.pred_upper)}]")
    return "\n".join(lines)


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"
