"""Proper scores of predictive draws on held-out rows: calibration *and* sharpness.

Coverage alone rewards wide bands: a band from 1e-6 to 1e6 nats covers everything and decides
nothing. The scores here judge a predictive distribution of log QiD by both:

- **coverage** of central intervals at several levels (calibration);
- **log-width** of the central interval (sharpness; ``log(upper / lower)``);
- the **interval score** of Gneiting & Raftery (2007, Eq. 43), a proper score of a central
  ``(1 - alpha)`` interval: ``(u - l) + (2 / alpha) (l - y)_+ + (2 / alpha) (y - u)_+``;
- the **CRPS** from samples, ``E|X - y| - E|X - X'| / 2`` (Gneiting & Raftery 2007, Eq. 21).

All on log QiD. Measurements are censored: anything below the resolution ``c`` is only known
to be below it. So the observable is ``max(log QiD, log c)``, and interval score and CRPS score
the forecast of that observable on every row: draws and interval ends become ``max(., log c)``
and a censored row's outcome is ``log c`` (a standard treatment of censored observations; no
row is dropped). A band that reaches far below the resolution is therefore not charged for
width nobody could observe. A censored row is covered when its band reaches below ``log c``.
The log-width is that of the uncensored forecast, so sharpness is measured alike on every row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Central-interval levels whose coverage is reported for every held-out row.
COVERAGE_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9)

__all__ = ["COVERAGE_LEVELS", "band_scores", "crps_samples", "interval_score"]


def interval_score(lower: np.ndarray, upper: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Interval score of central ``(1 - alpha)`` intervals ``[lower, upper]`` at outcomes ``y``.

    Lower is better; its expectation is minimised by the true ``alpha/2`` and ``1 - alpha/2``
    quantiles (Gneiting & Raftery 2007, Eq. 43).
    """
    lower, upper, y = (np.asarray(a, dtype=float) for a in (lower, upper, y))
    return ((upper - lower) + (2.0 / alpha) * np.maximum(lower - y, 0.0)
            + (2.0 / alpha) * np.maximum(y - upper, 0.0))


def crps_samples(draws: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of the empirical distribution of ``draws`` (samples x rows) at outcomes ``y`` (rows).

    ``E|X - y| - E|X - X'| / 2`` with ``E|X - X'|`` from the sorted samples in O(S log S):
    ``E|X - X'| = 2 / S^2 * sum_i (2 i - S - 1) x_(i)`` (i = 1..S).
    """
    draws = np.asarray(draws, dtype=float)
    s = draws.shape[0]
    x = np.sort(draws, axis=0)
    first = np.abs(x - np.asarray(y, dtype=float)[None, :]).mean(axis=0)
    weights = (2.0 * np.arange(1, s + 1) - s - 1.0)[:, None]
    spread = 2.0 / s**2 * (weights * x).sum(axis=0)
    return first - 0.5 * spread


def band_scores(draws: np.ndarray, log_qid: np.ndarray, censored: np.ndarray, log_resolution: float,
                *, prob: float, levels: Sequence[float] = COVERAGE_LEVELS) -> pd.DataFrame:
    """Per-row calibration and sharpness of predictive draws of log QiD.

    Parameters
    ----------
    draws : ndarray (samples, rows)
        Posterior predictive draws of log QiD (a new measurement, residual included).
    log_qid : ndarray (rows,)
        Observed log QiD (any value on censored rows: they are scored at ``log_resolution``).
    censored : ndarray of bool (rows,)
        Rows measured below the resolution.
    log_resolution : float
        ``log`` of the censoring threshold in nats.
    prob : float
        Level of the interval whose width and interval score are reported.
    levels : sequence of float
        Levels whose coverage is reported (``prob`` is added when missing).

    Returns
    -------
    pandas.DataFrame
        One row per held-out row: ``covered<pct>`` per level (e.g. ``covered50``), ``width``
        (log-width of the ``prob`` interval), ``interval_score`` (at ``alpha = 1 - prob``) and
        ``crps``.
    """
    draws = np.asarray(draws, dtype=float)
    censored = np.asarray(censored, dtype=bool)
    y = np.where(censored, log_resolution, np.asarray(log_qid, dtype=float))
    out: dict[str, np.ndarray] = {}
    for level in sorted({*levels, prob}):
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
        inside = np.where(censored, lo < log_resolution, (lo <= y) & (y <= hi))
        out[f"covered{round(level * 100)}"] = inside
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    out["width"] = hi - lo
    # The forecast of the observable, max(log QiD, log c), on every row.
    out["interval_score"] = interval_score(np.maximum(lo, log_resolution), np.maximum(hi, log_resolution),
                                           y, 1 - prob)
    out["crps"] = crps_samples(np.maximum(draws, log_resolution), y)
    return pd.DataFrame(out)
