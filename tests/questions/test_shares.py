"""Where a band's width comes from: the ``share_*`` columns of predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesqid as bq
from bayesqid.questions.predict import default_grid
from bayesqid.questions.shares import SHARE_COLUMNS, _sequential_projections, noise_variance_factor


@pytest.fixture(scope="module")
def table(ci_run):
    grid = pd.concat([default_grid(), default_grid(family="Llama-2"), default_grid(family="Qwen2.5")],
                     ignore_index=True)
    return bq.predict(ci_run, grid)


def test_shares_are_fractions_that_sum_to_one(table):
    shares = table[list(SHARE_COLUMNS)]
    assert (shares >= 0).all().all() and (shares <= 1).all().all()
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=1e-12)


def test_a_known_family_owes_less_of_its_band_to_the_family_than_a_new_one(table):
    new = table[table["family"] == "new family"]
    for known in ("Llama-2", "Qwen2.5"):
        fam = table[table["family"] == known]
        assert (fam["share_family"].to_numpy() < new["share_family"].to_numpy()).all(), known
    # A new family's band is mostly the spread of families: measuring one's model narrows it.
    assert new["share_family"].min() > 0.3


def test_shares_do_not_depend_on_the_grid_around_a_row(ci_run, table):
    one = bq.predict(ci_run, default_grid(family="Llama-2").iloc[[4]])
    row = table[table["family"] == "Llama-2"].iloc[4]
    for col in SHARE_COLUMNS:
        assert one[col].iloc[0] == pytest.approx(row[col], rel=1e-9)


def test_sequential_projections_are_nested_least_squares():
    # The explained sums of squares are the increments of nested regressions' R^2 (definition).
    rng = np.random.default_rng(5)
    draws, rows = 500, 3
    base = rng.normal(size=(draws, rows))
    cols = np.stack([base, -0.8 * base + 0.3 * rng.normal(size=(draws, rows)),
                     rng.normal(size=(draws, rows)), np.zeros((draws, rows))])
    cols -= cols.mean(axis=1, keepdims=True)
    y = cols.sum(axis=0)
    got = _sequential_projections(cols, y)
    for r in range(rows):
        previous = 0.0
        for k in range(1, 4):
            x = cols[:k, :, r].T
            fit = x @ np.linalg.lstsq(x, y[:, r], rcond=None)[0]
            assert got[k - 1, r] == pytest.approx(fit @ fit - previous, rel=1e-8, abs=1e-8)
            previous = fit @ fit
    assert np.all(got[3] == 0)  # a column of zeros explains nothing
    np.testing.assert_allclose(got.sum(axis=0), (y**2).sum(axis=0))


def test_noise_variance_of_a_student_t_is_that_of_the_normal_with_its_band(default_spec):
    factor = noise_variance_factor(default_spec, 0.9)
    nu = default_spec.likelihood.nu
    assert factor == pytest.approx((stats.t.ppf(0.95, nu) / stats.norm.ppf(0.95)) ** 2)
    assert factor > 1
