"""Known-family training level checked by holding out models (bayesqid.checks.levels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesqid as bq
from bayesqid.checks.levels import (
    HeldModel,
    check_training_levels,
    held_models,
    summarise_levels,
)
from bayesqid.checks.simulate import tiny_design
from bayesqid.errors import BayesqidError


def _models(reference):
    return reference.frame.groupby(["family", "params", "tokens"]).size()


def test_hold_outs_are_models_of_families_with_relatives(reference):
    models = _models(reference)
    per_family = models.groupby(level="family").size()
    held = held_models(reference, per_family=2)
    assert {m.family for m in held} == set(per_family[per_family >= 2].index)
    for m in held:
        assert (m.family, m.params, m.tokens) in models.index
    counts = pd.Series([m.family for m in held]).value_counts().to_dict()
    assert counts == {f: min(2, int(n)) for f, n in per_family.items() if n >= 2}
    # One per family is the middle model by (D, N): OLMo's middle checkpoint, not an end.
    olmo = [m for m in held_models(reference, per_family=1) if m.family == "OLMo"][0]
    tokens = sorted(reference.frame.loc[reference.frame["family"] == "OLMo", "tokens"].unique())
    assert tokens[0] < olmo.tokens < tokens[-1]
    assert len({m.key for m in held}) == len(held)
    with pytest.raises(BayesqidError, match="per_family"):
        held_models(reference, per_family=0)


def test_summary_counts_coverage_and_width_by_whether_the_size_was_fitted():
    table = pd.DataFrame({"covered": [True, False, True, True], "width_decades": [1.0, 2.0, 0.5, 3.0],
                          "log10_error": [0.1, -1.5, 0.2, 0.0],
                          "size_fitted": [True, True, False, False]})
    s = summarise_levels(table).set_index("hold-outs")
    assert s.loc["all", "coverage"] == 0.75 and s.loc["all", "median_width_decades"] == 1.5
    assert s.loc["size fitted", "n"] == 2 and s.loc["size fitted", "coverage"] == 0.5
    assert s.loc["size not fitted", "median_abs_log10_error"] == pytest.approx(0.1)


@pytest.mark.nuts
def test_a_held_out_checkpoint_gets_a_posterior_of_its_tokens(reference, tmp_path):
    # OLMo's checkpoints and two other families, small enough for a quick real fit; the check
    # stores each hold-out, so a second call only reads the store.
    frame = reference.frame
    olmo = frame[frame["family"] == "OLMo"]
    sub = tiny_design(bq.Dataset(olmo, "olmo", ()), families=1, quantizers=1, max_rows=40)
    held = held_models(sub, per_family=1)
    assert len(held) == 1 and isinstance(held[0], HeldModel)
    config = bq.SamplerConfig.preset("ci", draws=200, tune=300)
    spec = bq.load_spec("ouyang_sharp")
    table = check_training_levels(spec, sub, config=config, seed=3, out=tmp_path, per_family=1)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["tokens_lower"] < row["tokens_median"] < row["tokens_upper"]
    assert row["width_decades"] == pytest.approx(np.log10(row["tokens_upper"] / row["tokens_lower"]))
    assert row["covered"] == (row["tokens_lower"] <= row["tokens"] <= row["tokens_upper"])
    assert row["size_fitted"]  # another checkpoint of the same size stays in the fit
    again = check_training_levels(spec, sub, config=config, seed=3, out=tmp_path, per_family=1)
    pd.testing.assert_frame_equal(table, again)
