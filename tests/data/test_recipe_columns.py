"""The recipe columns of the lab's factors (dropout, gradient clipping, peak LR, weight averaging):
parsed with unknown explicit, encoded against their baselines, kept with a fit and usable in a
spec's ``[recipe]`` table; the lab's sweeps write them, so its bundled data carry them."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import bayesqid as bq
from bayesqid.data.dataset import RECIPE_COLUMNS
from bayesqid.data.design import build_design, recipe_features
from bayesqid.lang.recipe import RECIPE_COVARIATES, RECIPE_FEATURES
from bayesqid.sampling.fit import constant_data

NEW = ("dropout", "grad_clip", "peak_lr", "average_last")
ROW = {"family": "A", "model": "a", "params": "1e6", "tokens": "1e8", "bits": "3", "group_size": "32",
       "method": "RTN", "eval_set": "py", "qid": "0.1", "source": "here"}


def write(tmp_path, column, values):
    path = tmp_path / "mine.csv"
    pd.DataFrame([ROW | {column: v} for v in values]).to_csv(path, index=False)
    return path


def test_new_factors_are_recipe_columns_and_covariates():
    assert set(NEW) <= set(RECIPE_COLUMNS) and set(NEW) <= set(RECIPE_COVARIATES)
    # Every covariate a spec may name is a column a data file may carry.
    assert set(RECIPE_COVARIATES) <= set(RECIPE_COLUMNS)


@pytest.mark.parametrize(("column", "cells", "parsed"), [
    ("dropout", ["0", "0.1", "", "unknown"], [0.0, 0.1, np.nan, np.nan]),
    ("grad_clip", ["1.0", "0", "none", "None", ""], [1.0, 0.0, 0.0, 0.0, np.nan]),
    ("peak_lr", ["2e-3", "6E-3", ""], [2e-3, 6e-3, np.nan]),
    ("average_last", ["0", "3", "1.0", ""], [0.0, 3.0, 1.0, np.nan]),
])
def test_cells_parse_and_unknown_is_nan(tmp_path, column, cells, parsed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rows that differ only by an unknown cell are duplicates
        frame = bq.load_dataset(write(tmp_path, column, cells)).frame
    np.testing.assert_array_equal(frame[column].to_numpy(float), np.asarray(parsed, float))


@pytest.mark.parametrize(("column", "value", "rule"), [
    ("dropout", "0.5x", "not a number"),
    ("grad_clip", "-0.5", "must be >= 0 (0 or none: no clipping)"),
    ("peak_lr", "11", "must be > 0 and at most 10"),
    ("average_last", "0.5", "must be an integer >= 0 (0: not averaged)"),
])
def test_bad_cells_in_frames_and_grids_name_row_and_column(column, value, rule):
    grid = bq.grid(family="A", params=1e6, tokens=[1e8, 2e8, 4e8], bits=3, method="RTN", group_size=32,
                   eval_set="py")
    grid[column] = ["0", value, "0"] if column != "peak_lr" else ["1e-3", value, "1e-3"]
    with pytest.raises(bq.DataError) as err:
        bq.validate(grid.assign(qid=0.1), path="g.csv")
    assert str(err.value) == f"g.csv: row 2, column '{column}': {rule} (got {value!r})"
    with pytest.raises(bq.DataError, match=f"row 1, column '{column}': "):
        bq.grid(family="A", params=1e6, tokens=1e8, bits=3, method="RTN", group_size=32, eval_set="py",
                **{column: value})


def test_encoding_against_baselines_with_explicit_unknown():
    frame = pd.DataFrame({"dropout": [0.0, 0.1, np.nan], "grad_clip": [1.0, 0.0, np.nan],
                          "peak_lr": [1e-3, 1e-2, np.nan], "average_last": [3, 0, np.nan]})
    x = recipe_features(frame)
    assert tuple(x) == RECIPE_FEATURES
    np.testing.assert_array_equal(x["dropout"], [0.0, 0.1, 0.0])
    np.testing.assert_array_equal(x["dropout_unknown"], [0, 0, 1])
    np.testing.assert_array_equal(x["grad_clipped"], [1, 0, 0])
    np.testing.assert_array_equal(x["grad_clip_unknown"], [0, 0, 1])
    np.testing.assert_allclose(x["log10_peak_lr"], [0.0, 1.0, 0.0])  # decades above 1e-3
    np.testing.assert_array_equal(x["peak_lr_unknown"], [0, 0, 1])
    np.testing.assert_array_equal(x["averaged"], [1, 0, 0])
    np.testing.assert_array_equal(x["average_last_unknown"], [0, 0, 1])
    # A table without the columns is of unknown recipe.
    bare = recipe_features(pd.DataFrame(index=range(2)))
    assert all(bare[f"{c}_unknown"].tolist() == [1, 1] for c in ("dropout", "grad_clip", "peak_lr",
                                                                  "average_last"))


def test_bad_grid_values_raise_the_rule_in_design():
    from bayesqid.data.cells import Rule

    with pytest.raises(Rule, match="must be within 0..1"):
        recipe_features(pd.DataFrame({"dropout": [1.5]}))


@pytest.fixture(scope="module")
def lab_long():
    return bq.load_dataset("lab-long")


def test_bundled_lab_data_carry_the_factors(lab_long):
    f = lab_long.frame
    for column in (*NEW, "weight_decay", "train_precision", "lr_schedule"):
        assert f[column].notna().all() and (f[column] != "unknown").all(), column
    assert set(f["dropout"]) == {0.0} and set(f["grad_clip"]) == {1.0} and set(f["average_last"]) == {0.0}
    assert f["peak_lr"].gt(0).all()


def test_lab_sweeps_write_every_factor():
    from bayesqid.lab.sweep import RECIPE_COLUMNS as LAB_COLUMNS

    assert set(NEW) | {"weight_decay", "train_precision", "lr_schedule", "lr_frac", "annealed"} <= set(LAB_COLUMNS)


def test_spec_recipe_table_takes_the_factors_and_fits_keep_them(lab_long, tmp_path):
    from conftest import make_mock_run

    raw = bq.load_spec("ouyang").to_dict() | {"recipe": {"log_k": list(NEW), "beta": ["peak_lr"]}}
    spec = bq.ModelSpec.from_dict(raw)
    assert spec.recipe_shifts == ("d_log_k_dropout", "d_log_k_dropout_unknown", "d_log_k_grad_clipped",
                                  "d_log_k_grad_clip_unknown", "d_log_k_log10_peak_lr",
                                  "d_log_k_peak_lr_unknown", "d_log_k_averaged",
                                  "d_log_k_average_last_unknown", "d_beta_log10_peak_lr",
                                  "d_beta_peak_lr_unknown")
    assert bq.ModelSpec.from_dict(spec.to_dict()) == spec
    data = bq.Dataset(lab_long.frame.iloc[::4].reset_index(drop=True), "lab-long subset", ())
    run = make_mock_run(data, spec, draws=20)
    assert set(spec.recipe_shifts) <= set(run.idata.posterior.data_vars)
    for column in NEW:  # constant data: the fitted rows' values, NaN where unknown
        np.testing.assert_array_equal(run.idata.constant_data[column].to_numpy(),
                                      data.frame[column].to_numpy(float))
    back = bq.load_run(run.save(tmp_path / "run.nc")).data()
    for column in NEW:
        np.testing.assert_array_equal(back[column].to_numpy(float), data.frame[column].to_numpy(float))
    # A row at ten times the peak LR gets one decade of the shifts, at its own D.
    from bayesqid.sampling.draws import row_log_mu

    row = data.frame.iloc[[0]]
    mu = [row_log_mu(run.idata, spec, build_design(r, run.levels), seed=1)[:, 0]
          for r in (row, row.assign(peak_lr=row["peak_lr"] * 10))]
    post = run.idata.posterior
    x_d = build_design(row, run.levels).x["log_d"][0]
    decade = (post["d_log_k_log10_peak_lr"] + post["d_beta_log10_peak_lr"] * x_d).values.ravel()
    np.testing.assert_allclose(mu[1] - mu[0], decade, rtol=1e-9, atol=1e-12)


def test_constant_data_keeps_unknown_as_nan():
    frame = bq.validate(pd.DataFrame([ROW]))
    cd = constant_data(frame)
    for column in NEW:
        assert np.isnan(cd[column].values[0])


def test_recipe_spec_on_unknown_factor_is_one_line():
    raw = bq.load_spec("ouyang").to_dict() | {"recipe": {"log_k": ["dropout_rate"]}}
    with pytest.raises(bq.SpecError, match=r"recipe.log_k: unknown recipe covariate 'dropout_rate'"):
        bq.ModelSpec.from_dict(raw)


def test_replace_keeps_new_covariates():
    spec = replace(bq.load_spec("ouyang"), recipe={"log_k": ("average_last",)})
    assert spec.recipe_shifts == ("d_log_k_averaged", "d_log_k_average_last_unknown")
