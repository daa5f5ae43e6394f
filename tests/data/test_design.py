"""Coding rows for the model: group labels, levels of fitted runs, unseen levels."""

from __future__ import annotations

import numpy as np

from bayesqid.constants import FAMILY_METHOD, GROUPS
from bayesqid.data.design import NEW_LEVEL, build_design


def test_family_method_levels_pair_a_family_with_a_method_whatever_the_group_size(reference):
    frame = reference.frame
    design = build_design(frame)
    labels = design.labels[FAMILY_METHOD]
    assert list(labels[:3]) == [f"{f} / {m}" for f, m in zip(frame["family"][:3], frame["method"][:3], strict=True)]
    opt_rtn = (frame["family"] == "OPT") & (frame["method"] == "RTN")
    assert opt_rtn.any() and frame.loc[opt_rtn, "group_size"].nunique(dropna=False) > 1
    assert set(labels[opt_rtn.to_numpy()]) == {"OPT / RTN"}  # per-channel and grouped RTN share it
    assert set(design.levels) == set(GROUPS)


def test_a_new_family_has_new_family_method_levels(reference):
    fitted = build_design(reference.frame)
    grid = reference.frame.head(5).assign(family="Mine")
    design = build_design(grid, fitted.levels)
    assert (design.codes[FAMILY_METHOD] == NEW_LEVEL).all()
    known = build_design(reference.frame.head(5), fitted.levels)
    assert (known.codes[FAMILY_METHOD] >= 0).all()


def test_levels_of_a_run_saved_before_a_group_existed_are_taken_from_the_rows(reference):
    fitted = build_design(reference.frame)
    old = {g: fitted.levels[g] for g in GROUPS if g != FAMILY_METHOD}
    design = build_design(reference.frame.head(20), old)
    assert design.levels["family"] == fitted.levels["family"]
    np.testing.assert_array_equal(design.codes["family"], fitted.codes["family"][:20])
    assert design.levels[FAMILY_METHOD] == tuple(sorted(set(design.labels[FAMILY_METHOD])))
