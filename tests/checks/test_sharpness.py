"""Proper scores against their definitions (Gneiting & Raftery 2007)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bayesqid.checks.sharpness import band_scores, crps_samples, interval_score


def test_interval_score_by_hand():
    # Inside: the width only. Below: width + 2/alpha * miss. Above: likewise.
    assert interval_score(np.array([0.0]), np.array([2.0]), np.array([1.0]), 0.1)[0] == pytest.approx(2.0)
    assert interval_score(np.array([0.0]), np.array([2.0]), np.array([-1.0]), 0.1)[0] == pytest.approx(22.0)
    assert interval_score(np.array([0.0]), np.array([2.0]), np.array([2.5]), 0.2)[0] == pytest.approx(7.0)


def test_interval_score_is_minimised_by_the_true_quantiles():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(200_000)
    alpha = 0.1
    true = stats.norm.ppf([alpha / 2, 1 - alpha / 2])

    def mean_score(lo, hi):
        return interval_score(np.full_like(y, lo), np.full_like(y, hi), y, alpha).mean()

    best = mean_score(*true)
    assert best < mean_score(true[0] * 0.7, true[1] * 0.7)   # too narrow
    assert best < mean_score(true[0] * 1.4, true[1] * 1.4)   # too wide


def test_crps_of_samples_matches_the_normal_closed_form():
    rng = np.random.default_rng(2)
    draws = rng.standard_normal((40_000, 3))
    y = np.array([0.0, 1.0, -2.5])
    z = y
    exact = z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi)
    np.testing.assert_allclose(crps_samples(draws, y), exact, atol=0.01)


def test_crps_of_a_point_forecast_is_the_absolute_error():
    draws = np.full((50, 2), 1.5)
    np.testing.assert_allclose(crps_samples(draws, np.array([1.0, 4.0])), [0.5, 2.5])


def test_band_scores_coverage_width_and_censoring():
    rng = np.random.default_rng(3)
    draws = rng.standard_normal((20_000, 4))
    log_c = np.log(0.02)
    # Rows: centre (covered at every level), far above (never covered), censored with a band
    # reaching below the resolution (covered), censored with a band entirely above it (not).
    shifted = draws + np.array([0.0, 0.0, log_c, log_c + 10.0])[None, :]
    y = np.array([0.0, 5.0, np.nan, np.nan])
    censored = np.array([False, False, True, True])
    out = band_scores(shifted, np.nan_to_num(y), censored, log_c, prob=0.9)
    assert list(out.columns) == ["covered50", "covered80", "covered90", "width", "interval_score", "crps"]
    assert out["covered50"].tolist() == [True, False, True, False]
    assert out["covered90"].tolist() == [True, False, True, False]
    np.testing.assert_allclose(out["width"], 2 * stats.norm.ppf(0.95), atol=0.05)
    # The censored row whose band lies far above the resolution pays the miss penalty.
    assert out["interval_score"][3] == pytest.approx(2 * 1.645 + 20 * (10 - 1.645), rel=0.02)
    assert out["crps"][3] > 9
    # A sharper correct band scores better than a wider one around the same outcome.
    wide = band_scores(3 * draws[:, :1], np.zeros(1), np.zeros(1, bool), log_c, prob=0.9)
    assert out["interval_score"][0] < wide["interval_score"][0]
    assert out["crps"][0] < wide["crps"][0]
