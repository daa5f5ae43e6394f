"""The lineage group: families of one developer's series share an offset; a new family finds its
relatives by its name."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
from tests.conftest import make_mock_run

import bayesqid as bq
from bayesqid.constants import FAMILY, LINEAGE
from bayesqid.data.design import NEW_LEVEL, build_design, lineage_label
from bayesqid.questions.predict import default_grid
from bayesqid.questions.shares import SHARE_COLUMNS
from helpers import saved_without_levels

LINEAGED = """
spec_version = 1
name = "lineaged"
law = "ouyang"
[likelihood]
kind = "student_t"
nu = 4
[effects.lineage]
params = ["log_k", "alpha"]
[effects.family]
params = ["log_k", "alpha"]
[effects.quantizer]
params = ["log_k"]
"""


@pytest.fixture(scope="module")
def lineage_run(reference):
    return make_mock_run(reference, bq.ModelSpec.from_dict(tomllib.loads(LINEAGED)), draws=200)


@pytest.mark.parametrize(("family", "lineage"), [
    ("LLaMA-1", "llama"), ("Llama-2", "llama"), ("Llama-3.2", "llama"), ("Qwen2", "qwen"),
    ("Qwen2.5", "qwen"), ("Gemma-2", "gemma"), ("OPT-v2", "opt"), ("TinyLlama", "tinyllama"),
    ("Spectra-FloatLM", "spectra-floatlm"), ("OLMo", "olmo"), ("Yi", "yi"), ("7", "7"),
])
def test_a_lineage_is_the_family_name_without_its_version(family, lineage):
    assert lineage_label(family) == lineage


def test_the_reference_families_fall_into_their_developers_lineages(reference):
    design = build_design(reference.frame)
    by_family = dict(zip(design.labels[FAMILY], design.labels[LINEAGE], strict=True))
    llama = {f for f, g in by_family.items() if g == "llama"}
    assert llama == {"LLaMA-1", "Llama-2", "Llama-3", "Llama-3.2"}
    assert {f for f, g in by_family.items() if g == "qwen"} == {"Qwen2", "Qwen2.5"}
    # Every other family is a lineage of its own.
    assert len(design.levels[LINEAGE]) == len(design.levels[FAMILY]) - 4


def test_a_new_family_of_a_known_lineage_draws_only_its_own_offset(lineage_run):
    grid = pd.concat([default_grid(family="Llama-9"), default_grid(family="Zeta-1")], ignore_index=True)
    design = build_design(grid, lineage_run.levels)
    relative, stranger = grid["family"] == "Llama-9", grid["family"] == "Zeta-1"
    assert (design.codes[LINEAGE][relative] != NEW_LEVEL).all()
    assert (design.codes[LINEAGE][stranger] == NEW_LEVEL).all()
    table = bq.predict(lineage_run, grid)
    assert set(table.loc[relative, "new_levels"]) == {"family=Llama-9"}
    assert set(table.loc[stranger, "new_levels"]) == {"lineage=zeta;family=Zeta-1"}
    np.testing.assert_allclose(table[list(SHARE_COLUMNS)].sum(axis=1), 1.0, atol=1e-12)
    # The relative's band is centred on its lineage's fitted offset, the stranger's on a draw.
    assert not np.allclose(table.loc[relative, "pred_median"].to_numpy(),
                           table.loc[stranger, "pred_median"].to_numpy())


def test_a_run_saved_before_the_lineage_group_still_loads(sharp_mock_run, tmp_path):
    run = saved_without_levels(sharp_mock_run, LINEAGE, tmp_path / "old.nc")
    assert run.levels[LINEAGE] == ()
    bq.predict(run, default_grid(family="Llama-2"))
