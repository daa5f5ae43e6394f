"""Posterior bands on grids, on the sampling-free mock run (pure and fast)."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from bayesqid.constants import CI_PROB, DEFAULT_TABLE_BITS, DEFAULT_TABLE_PARAMS, DEFAULT_TABLE_TOKENS
from bayesqid.data.dataset import GRID_COLUMNS
from bayesqid.data.design import lineage_label, size_label
from bayesqid.errors import BayesqidError
from bayesqid.questions.predict import BAND_COLUMNS, NEW_FAMILY, default_grid, format_table, predict

# `bayesqid.predict` the attribute is the function (re-exported by the package); the module:
predict_module = importlib.import_module("bayesqid.questions.predict")

BANDS = list(BAND_COLUMNS[:6])
MEAN, PRED = BANDS[:3], BANDS[3:]


def known_grid(run) -> pd.DataFrame:
    """Rows for families, sizes (the fitted N), quantizers and eval sets the run has seen."""
    rows = [
        {"family": "OPT", "params": 1208602624.0, "tokens": 1.8e11, "bits": 3, "method": "GPTQ",
         "group_size": 128, "eval_set": "wikitext2"},
        {"family": "LLaMA-1", "params": 6476271616.0, "tokens": 1e12, "bits": 4, "method": "RTN",
         "group_size": None, "eval_set": "c4"},
        {"family": "OLMo", "params": 1073741824.0, "tokens": 3e12, "bits": 2, "method": "AWQ",
         "group_size": 128, "eval_set": "wikitext2"},
    ]
    grid = pd.DataFrame(rows, columns=list(GRID_COLUMNS))
    grid["group_size"] = grid["group_size"].astype("Int64")
    for g, col in (("family", "family"), ("eval_set", "eval_set")):
        assert set(grid[col]) <= set(run.levels[g])
    return grid


def mixed_grid(run) -> pd.DataFrame:
    """Known rows, the default table, and rows with unseen quantizer / eval set."""
    odd = known_grid(run).iloc[:2].copy()
    odd.loc[0, "method"] = "NewQuant"
    odd.loc[1, "eval_set"] = "newset"
    return pd.concat([known_grid(run), default_grid(), odd], ignore_index=True)


def test_default_grid():
    grid = default_grid()
    assert len(grid) == len(DEFAULT_TABLE_PARAMS) * len(DEFAULT_TABLE_BITS) == 12
    assert list(grid.columns) == list(GRID_COLUMNS)
    assert (grid["tokens"] == DEFAULT_TABLE_TOKENS).all() and DEFAULT_TABLE_TOKENS == 1e14
    assert (grid["family"] == NEW_FAMILY).all()
    assert sorted(set(grid["params"])) == sorted(DEFAULT_TABLE_PARAMS)
    assert sorted(set(grid["bits"])) == [2, 3, 4]
    assert set(zip(grid["params"], grid["bits"], strict=True)) == {
        (n, b) for n in DEFAULT_TABLE_PARAMS for b in DEFAULT_TABLE_BITS}
    assert (grid["method"] == "GPTQ").all() and (grid["group_size"] == 128).all()
    assert (grid["eval_set"] == "wikitext2").all()


def test_default_grid_options():
    grid = default_grid(tokens=1e13, params=(1e9,), bits=(8,), family="OPT", group_size=None)
    assert len(grid) == 1 and grid["tokens"][0] == 1e13 and grid["bits"][0] == 8
    assert pd.isna(grid["group_size"][0])


def test_predict_columns_and_ordering(mock_run):
    grid = mixed_grid(mock_run)
    out = predict(mock_run, grid)
    assert list(out.columns) == [*grid.columns, *BAND_COLUMNS]
    assert len(out) == len(grid)
    pd.testing.assert_frame_equal(out[list(grid.columns)], grid)
    values = out[BANDS].to_numpy(float)
    assert np.isfinite(values).all() and (values > 0).all()
    for lo, mid, hi in (MEAN, PRED):
        assert (out[lo] <= out[mid]).all() and (out[mid] <= out[hi]).all()


def test_pred_band_wider_than_mean_band_on_average(mock_run):
    out = predict(mock_run, mixed_grid(mock_run))
    mean_width = np.log(out["mean_upper"] / out["mean_lower"])
    pred_width = np.log(out["pred_upper"] / out["pred_lower"])
    assert pred_width.mean() > mean_width.mean()


def test_new_levels_are_named(mock_run):
    grid = mixed_grid(mock_run)
    out = predict(mock_run, grid)
    known = out.iloc[:3]
    assert (known["new_levels"] == "").all()
    table = out.iloc[3:15]
    assert list(table["new_levels"]) == [
        f"lineage={NEW_FAMILY};family={NEW_FAMILY};size={size_label(NEW_FAMILY, n)}" for n in table["params"]]
    assert out["new_levels"].iloc[15] == "quantizer=NewQuant g128"
    assert out["new_levels"].iloc[16] == "eval_set=newset"


def test_several_new_levels_in_one_row(mock_run):
    grid = default_grid(params=(1e9,), bits=(3,), method="Brand", group_size=None, eval_set="other")
    out = predict(mock_run, grid)
    new = f"lineage={NEW_FAMILY};family={NEW_FAMILY};size={size_label(NEW_FAMILY, 1e9)}"
    assert out["new_levels"][0] == f"{new};quantizer=Brand per-channel;eval_set=other"


def test_same_seed_same_output(mock_run):
    grid = mixed_grid(mock_run)
    a = predict(mock_run, grid)
    b = predict(mock_run, grid)
    pd.testing.assert_frame_equal(a, b)
    c = predict(mock_run, grid, seed=mock_run.seed)
    pd.testing.assert_frame_equal(a, c)


def test_other_seed_changes_only_random_parts(mock_run):
    grid = mixed_grid(mock_run)
    a = predict(mock_run, grid, seed=1)
    b = predict(mock_run, grid, seed=2)
    known = slice(0, 3)
    # known levels: the mean band uses posterior draws only, no randomness
    np.testing.assert_array_equal(a[MEAN].to_numpy()[known], b[MEAN].to_numpy()[known])
    assert not np.array_equal(a[PRED].to_numpy(), b[PRED].to_numpy())
    # new family: its effects are drawn with the seed
    assert not np.array_equal(a[MEAN].to_numpy()[3:15], b[MEAN].to_numpy()[3:15])


def test_new_family_shares_one_effect_per_draw(mock_run):
    """All rows of one new family use the same family effect: the same row gives the same mean
    band wherever it sits, and two labels for new families give different bands."""
    grid = pd.concat([default_grid(), default_grid(family="another new")], ignore_index=True)
    out = predict(mock_run, grid)
    assert not np.allclose(out[MEAN].to_numpy()[:12], out[MEAN].to_numpy()[12:])


def test_row_order_does_not_change_mean_bands(mock_run):
    grid = mixed_grid(mock_run)
    perm = np.random.default_rng(0).permutation(len(grid))
    a = predict(mock_run, grid)
    b = predict(mock_run, grid.iloc[perm].reset_index(drop=True))
    np.testing.assert_array_equal(a[MEAN].to_numpy()[perm], b[MEAN].to_numpy())
    assert list(a["new_levels"][perm]) == list(b["new_levels"])




def test_row_order_does_not_change_pred_bands(mock_run):
    grid = mixed_grid(mock_run)
    perm = np.random.default_rng(0).permutation(len(grid))
    a = predict(mock_run, grid)
    b = predict(mock_run, grid.iloc[perm].reset_index(drop=True))
    np.testing.assert_array_equal(a[PRED].to_numpy()[perm], b[PRED].to_numpy())


def test_chunking_does_not_change_mean_bands(mock_run, monkeypatch):
    grid = mixed_grid(mock_run)
    whole = predict(mock_run, grid)
    monkeypatch.setattr(predict_module, "CHUNK", 3)
    chunked = predict(mock_run, grid)
    np.testing.assert_array_equal(whole[MEAN].to_numpy(), chunked[MEAN].to_numpy())
    assert list(whole["new_levels"]) == list(chunked["new_levels"])


def test_chunking_does_not_change_pred_bands(mock_run, monkeypatch):
    grid = mixed_grid(mock_run)
    whole = predict(mock_run, grid)
    monkeypatch.setattr(predict_module, "CHUNK", 3)
    chunked = predict(mock_run, grid)
    pd.testing.assert_frame_equal(whole, chunked)


def test_narrower_interval_is_narrower(mock_run):
    grid = mixed_grid(mock_run)
    wide = predict(mock_run, grid, prob=0.9)
    narrow = predict(mock_run, grid, prob=0.5)
    for lo, _, hi in (MEAN, PRED):
        assert (narrow[lo] >= wide[lo]).all() and (narrow[hi] <= wide[hi]).all()
        assert (np.log(narrow[hi] / narrow[lo]) < np.log(wide[hi] / wide[lo])).all()
    np.testing.assert_array_equal(narrow["mean_median"], wide["mean_median"])


def test_default_interval_is_the_package_convention(mock_run):
    grid = known_grid(mock_run)
    pd.testing.assert_frame_equal(predict(mock_run, grid), predict(mock_run, grid, prob=CI_PROB))


@pytest.mark.parametrize("prob", [0.0, 1.0, 1.5, -0.1])
def test_invalid_interval(mock_run, prob):
    with pytest.raises(BayesqidError, match="interval"):
        predict(mock_run, known_grid(mock_run), prob=prob)


def test_extra_grid_columns_are_carried_and_index_reset(mock_run):
    grid = known_grid(mock_run).assign(note=["a", "b", "c"])
    grid.index = [10, 20, 30]
    out = predict(mock_run, grid)
    assert list(out["note"]) == ["a", "b", "c"]
    assert list(out.index) == [0, 1, 2]
    assert list(grid.index) == [10, 20, 30], "the caller's grid is not modified"
    assert "mean_lower" not in grid.columns


def test_mean_band_matches_the_law_on_the_draws(mock_run):
    """Recompute one known row's mean band by hand from the posterior draws."""
    from bayesqid.lang.laws import covariates
    from bayesqid.sampling.draws import flat

    grid = known_grid(mock_run).iloc[[0]].reset_index(drop=True)
    row = grid.iloc[0]
    post = mock_run.idata.posterior
    levels = mock_run.levels
    x = covariates([row.params], [row.tokens], [row.bits])
    theta = {p: flat(mock_run.idata, p) for p in mock_run.spec.law_obj.param_names}
    label = {"lineage": lineage_label(row.family), "family": row.family,
             "size": size_label(row.family, row.params), "quantizer": f"{row.method} g{row.group_size}",
             "eval_set": row.eval_set}
    for eff in mock_run.spec.effects:
        i = levels[eff.group].index(label[eff.group])
        for p in eff.params:
            sd = post[f"sd_{eff.group}_{p}"].stack(s=("chain", "draw")).to_numpy()
            z = post[f"z_{eff.group}_{p}"].isel({eff.group: i}).stack(s=("chain", "draw")).to_numpy()
            theta[p] = theta[p] + sd * z
            # A slope offset of a group with a centre pivots there (ModelSpec.centre_shift).
            theta["log_k"] = theta["log_k"] - sd * z * mock_run.spec.centre_shift(eff.group, p)
    log_mu = mock_run.spec.law_obj.log_mu({k: v[0] for k, v in x.items()}, theta)
    q = np.quantile(log_mu, [0.05, 0.5, 0.95])
    out = predict(mock_run, grid)
    np.testing.assert_allclose(out[MEAN].to_numpy()[0], np.exp(q), rtol=1e-12)


def test_format_table(mock_run):
    out = predict(mock_run, default_grid())
    text = format_table(out)
    lines = text.splitlines()
    assert len(lines) == 13
    assert "params" in lines[0] and "bits" in lines[0]
    assert all(NEW_FAMILY in line for line in lines[1:])
