"""Pure tests of the comparison's score arithmetic (bayesqid.scores)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesqid.checks.scores import (
    Fold,
    _certainty,
    _paired,
    _unreliable_joint,
    _weighted_quantiles,
    joint_elpd,
    logo_table,
    logo_totals,
)


def test_weighted_quantiles_match_plain_quantiles_under_equal_weights():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(4001, 3))
    q = np.array([0.05, 0.5, 0.95])
    got = _weighted_quantiles(draws, np.ones(4001), q)
    np.testing.assert_allclose(got, np.quantile(draws, q, axis=0).T, atol=0.01)


def test_weighted_quantiles_follow_the_weights():
    """A two-component mixture: the weights, not the draw counts, set the mixture's median."""
    draws = np.concatenate([np.zeros(1000), np.ones(3000)])[:, None]
    weights = np.concatenate([np.full(1000, 0.8 / 1000), np.full(3000, 0.2 / 3000)])
    assert _weighted_quantiles(draws, weights, np.array([0.5]))[0, 0] == pytest.approx(0.0)
    assert _weighted_quantiles(draws, weights, np.array([0.9]))[0, 0] == pytest.approx(1.0)


def test_paired_differences_follow_arviz_conventions():
    wide = pd.DataFrame({"a": [-1.0, -2.0, -3.0], "b": [-1.5, -2.0, -4.5]})
    out = _paired(wide)
    d = np.array([0.5, 0.0, 1.5])
    assert out["a"] == (0.0, 0.0)
    assert out["b"][0] == pytest.approx(2.0) and out["b"][1] == pytest.approx(np.sqrt(3 * d.var()))


@pytest.mark.parametrize(("diff", "se", "words"), [
    (1.0, 1.0, "not distinguishable"), (3.0, 1.0, "probably better"), (10.0, 2.0, "clearly better"),
    (np.nan, 1.0, "not available"), (0.0, 0.0, "identical scores"),
])
def test_certainty_in_words(diff, se, words):
    assert words in _certainty(diff, se)


def test_logo_totals_use_only_families_every_spec_scored_and_keep_failures_visible():
    rows = pd.DataFrame({
        "spec": ["a", "a", "a", "b", "b"], "family": ["F", "F", "G", "F", "F"], "fold": "logo",
        "elpd": [-1.0, -2.0, -5.0, -2.0, -3.0], "elpd_joint": [-3.5, -3.5, -5.0, -5.5, -5.5],
        "covered": [True, False, True, True, True], "gate_passed": True,
    })
    failed = {"logo-b-G": (Fold("logo", "b", "G"), "did not converge")}
    table = logo_table(rows, ["a", "b"], failed)
    assert list(table["status"]) == ["ok", "ok", "ok", "failed: did not converge"]
    totals = logo_totals(table).set_index("spec")
    # Only F was scored by both specs: G (scored by a alone) does not enter the totals.
    assert totals.loc["a", "logo_elpd"] == -3.5 and totals.loc["b", "logo_elpd"] == -5.5
    assert totals.loc["b", "logo_diff"] == pytest.approx(2.0) and totals.loc["a", "logo_families"] == 1
    assert totals.loc["a", "logo_coverage"] == pytest.approx(0.5)
    # Fold results stored without the Monte Carlo columns (an older comparison, resumed): NaN.
    assert np.isnan(totals.loc["a", "logo_mcse"]) and np.isnan(table["joint_khat"]).all()


def test_logo_totals_carry_the_joint_scores_monte_carlo_error():
    rows = pd.DataFrame({
        "spec": ["a", "a", "b", "b"], "family": ["F", "G", "F", "G"], "fold": "logo",
        "elpd": [-1.0, -2.0, -1.5, -2.5], "elpd_joint": [-1.0, -2.0, -1.5, -2.5],
        "joint_khat": [0.2, 0.9, 0.3, 0.4], "joint_mcse": [3.0, 4.0, 0.5, 0.5],
        "covered": True, "gate_passed": True,
    })
    logo = logo_table(rows, ["a", "b"], {})
    totals = logo_totals(logo).set_index("spec")
    assert totals.loc["a", "logo_mcse"] == pytest.approx(5.0) and totals.loc["a", "logo_khat_max"] == 0.9
    (warning,) = _unreliable_joint(logo)
    assert warning.startswith("warning: a:") and "G (k 0.90, MCSE 4.0)" in warning


def test_joint_elpd_reports_when_a_few_draws_carry_the_mean():
    rng = np.random.default_rng(1)
    flat = rng.normal(0.0, 0.1, 4000)  # every draw alike: a reliable mean
    elpd, khat, mcse = joint_elpd(flat)
    assert elpd == pytest.approx(np.log(np.mean(np.exp(flat)))) and khat < 0.5 and mcse < 0.01
    # A joint density over hundreds of rows: log-likelihoods spread over tens of nats.
    spread = rng.normal(0.0, 15.0, 4000)
    elpd, khat, mcse = joint_elpd(spread)
    assert np.isfinite(elpd) and khat > 0.7 and mcse > 0.3


def test_sharpness_totals_mean_difference_by_family():
    """Mean interval score over rows, and the per-row excess over the best spec with families as
    the paired units: a spec worse by 1 on every row of one family of two (2 rows of 4) is worse
    by 0.5 per row."""
    from bayesqid.checks.scores import sharpness_totals

    base = pd.DataFrame({"row": [0, 1, 2, 3], "family": ["a", "a", "b", "b"], "fold": ["a", "a", "b", "b"],
                         "covered": [True, True, False, True], "covered50": [True, False, False, True],
                         "covered80": [True, True, False, True], "width": [1.0, 2.0, 3.0, 4.0],
                         "interval_score": [1.0, 2.0, 5.0, 4.0], "crps": [0.1, 0.2, 0.3, 0.4]})
    worse = base.assign(interval_score=base["interval_score"] + [1.0, 1.0, 0.0, 0.0])
    rows = pd.concat([base.assign(spec="good"), worse.assign(spec="bad")], ignore_index=True)
    out = sharpness_totals(rows, "logo", "logo").set_index("spec")
    assert out.loc["good", "logo_interval_score"] == pytest.approx(3.0)
    assert out.loc["bad", "logo_interval_score"] == pytest.approx(3.5)
    assert out.loc["good", "logo_is_diff"] == 0.0 and out.loc["bad", "logo_is_diff"] == pytest.approx(0.5)
    assert out.loc["bad", "logo_is_dse"] == pytest.approx(np.sqrt(2 * np.var([2.0, 0.0])) / 4)
    assert out.loc["good", "logo_coverage90"] == 0.75 and out.loc["good", "logo_width"] == 2.5
