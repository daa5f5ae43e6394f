"""The size group: one offset per trained network (family x N), drawn afresh for a size not fitted."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
from tests.conftest import make_mock_run

import bayesqid as bq
from bayesqid.constants import SIZE
from bayesqid.data.design import NEW_LEVEL, build_design, size_label
from bayesqid.questions.predict import default_grid
from bayesqid.questions.shares import SHARE_COLUMNS
from helpers import saved_without_levels

SIZED = """
spec_version = 1
name = "sized"
law = "ouyang"
[likelihood]
kind = "student_t"
nu = 4
[effects.family]
params = ["log_k", "alpha"]
[effects.size]
params = ["log_k"]
sd.log_k = { dist = "gamma", alpha = 2.0, beta = 8.0 }
[effects.quantizer]
params = ["log_k"]
"""


@pytest.fixture(scope="module")
def sized_run(reference):
    return make_mock_run(reference, bq.ModelSpec.from_dict(tomllib.loads(SIZED)), draws=200)


def test_a_size_is_a_family_and_its_parameter_count(reference):
    design = build_design(reference.frame)
    frame = reference.frame
    expected = {size_label(f, n) for f, n in zip(frame["family"], frame["params"], strict=True)}
    assert set(design.levels[SIZE]) == expected
    # Two families never share a size level, even at equal N.
    assert len(expected) == len(set(zip(frame["family"], frame["params"], strict=True)))
    grid = pd.concat([default_grid(family="Llama-2"), default_grid(family="Llama-2", params=(6.74e9,))],
                     ignore_index=True)
    fitted = set(frame.loc[frame["family"] == "Llama-2", "params"])
    codes = build_design(grid, design.levels).codes[SIZE]
    for n, code in zip(grid["params"], codes, strict=True):
        assert (code == NEW_LEVEL) == (n not in fitted), n


def test_rows_of_one_unseen_size_share_one_offset_per_draw(sized_run):
    # Two grids of one new size, predicted apart and together: each row's band is the same,
    # so the size's offset is keyed by its label, not drawn per row or per call.
    grid = default_grid(family="Llama-2", params=(5e9,))
    together = bq.predict(sized_run, pd.concat([grid, grid.assign(params=3e9)], ignore_index=True))
    alone = bq.predict(sized_run, grid)
    np.testing.assert_allclose(together.iloc[: len(grid)]["pred_upper"].to_numpy(),
                               alone["pred_upper"].to_numpy(), rtol=1e-12)


def test_share_size_is_zero_without_a_size_effect_and_positive_with_one(sharp_mock_run, sized_run):
    grid = default_grid(family="Llama-2", params=(5e9,))
    plain = bq.predict(sharp_mock_run, grid)
    sized = bq.predict(sized_run, grid)
    for table in (plain, sized):
        np.testing.assert_allclose(table[list(SHARE_COLUMNS)].sum(axis=1), 1.0, atol=1e-12)
    assert (plain["share_size"] == 0).all()
    assert (sized["share_size"] > 0).all()


def test_a_run_saved_before_the_size_group_still_loads(sharp_mock_run, tmp_path):
    run = saved_without_levels(sharp_mock_run, SIZE, tmp_path / "old.nc")
    assert run.levels[SIZE] == ()
    table = bq.predict(run, default_grid(family="Llama-2"))
    assert (table["share_size"] == 0).all()


def test_a_new_size_of_a_known_family_integrates_its_offset_by_quadrature(sized_run, monkeypatch):
    # The quadrature over the new size's intercept offset against its definition: the mean over
    # many Monte Carlo draws of that offset (the path every other unseen effect takes).
    from bayesqid.questions import training

    rows = pd.DataFrame({"family": "Llama-2", "params": 5e9, "bits": [2, 3, 4], "method": "GPTQ",
                         "group_size": 128, "eval_set": "wikitext2", "qid": [1.5, 0.3, 0.08]})
    rows["group_size"] = rows["group_size"].astype("Int64")
    design = build_design(rows.assign(tokens=1e12), sized_run.levels)
    assert training._shared_intercept_offsets(sized_run, design) == [(SIZE, "log_k")]
    quad = bq.training_level(sized_run, rows, family="Llama-2", grid_size=41)
    monkeypatch.setattr(training, "_shared_intercept_offsets", lambda run, design: None)
    mc = bq.training_level(sized_run, rows, family="Llama-2", grid_size=41, effect_draws=3000)
    np.testing.assert_allclose(quad.grid["mass"], mc.grid["mass"], atol=0.01)
    for col in ("tokens_lower", "tokens_median", "tokens_upper"):
        assert abs(np.log10(quad.summary[col].iloc[0] / mc.summary[col].iloc[0])) < 0.1, col
    # A new family has effects on every coefficient: copies, not quadrature.
    new = build_design(rows.assign(family="Zeta", tokens=1e12), sized_run.levels)
    assert training._shared_intercept_offsets(sized_run, new) is None
