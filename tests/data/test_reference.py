"""The bundled reference's inclusion rules, lineage and post-training marker (``rules.toml``)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from bayesqid.data.dataset import validate
from bayesqid.data.design import recipe_features
from bayesqid.data.reference import ExclusionRule, candidate_rows, load_rules
from bayesqid.data.sources import load_reference
from bayesqid.errors import DataError
from bayesqid.lang.spec import ModelSpec


@pytest.fixture(scope="module")
def reference():
    return load_reference()


@pytest.fixture(scope="module")
def verdicts():
    """Every candidate row with the id of the rule that leaves it out ('' when it enters)."""
    rules = load_rules()
    rows = candidate_rows()
    ids = [((r := rules.first_exclusion(row)) and r.id) or "" for row in rows]
    return pd.DataFrame(rows).assign(rule=ids)


def _left_out(verdicts, **fields):
    mask = np.ones(len(verdicts), dtype=bool)
    for field, pattern in fields.items():
        mask &= verdicts[field].str.contains(pattern, regex=True).to_numpy()
    assert mask.any(), fields
    return set(verdicts.loc[mask, "rule"])


def test_partial_network_quantization_is_left_out(verdicts, reference):
    assert _left_out(verdicts, method="^MatQuant") == {"partial"}
    assert _left_out(verdicts, method="MSB-sliced") == {"partial"}
    assert not reference.frame["method"].str.contains("MatQuant|MSB").any()


def test_a_failed_pipeline_is_left_out_but_its_siblings_stay(verdicts, reference):
    bitstack = verdicts[verdicts["note"].str.contains("ANOMALY.*pipeline failure")]
    assert len(bitstack) == 6 and set(bitstack["rule"]) == {"pipeline"}
    assert set(bitstack["method"]) == {"GPTQ"} and bitstack["model"].str.startswith("Llama-3.1").all()
    # AWQ from the same table (same models, same note source) enters.
    same_table = verdicts[(verdicts["source"].isin(bitstack["source"])) & (verdicts["method"] == "AWQ")]
    assert len(same_table) and set(same_table["rule"]) == {""}


def test_a_flagged_misprint_is_left_out(verdicts):
    flagged = verdicts[verdicts["note"].str.contains("ANOMALY") & ~verdicts["note"].str.contains("pipeline")]
    assert len(flagged) == 1 and set(flagged["rule"]) == {"anomaly"}


def test_non_integer_formats_are_left_out_except_integer_blocks(verdicts, reference):
    for fmt in ("^AQLM", "lattice codebook", "NFL lookup", "^NF4", "^fp[68]", "ternary", "Q4_K_M", "IQ2_XS",
                "QTIP trellis"):  # fmt: skip
        assert _left_out(verdicts, format=fmt) == {"format"}, fmt
    # llama.cpp's legacy blocks are integer grids: RTN at group size 32.
    assert _left_out(verdicts, format="^GGUF Q[4-8]_[01]") == {""}
    legacy = reference.frame[reference.frame["method"].str.contains("GGUF Q")]
    assert len(legacy) == 20 and set(legacy["group_size"]) == {32}


def test_unknown_group_size_tokens_and_losses_are_left_out(verdicts):
    assert _left_out(verdicts, group_size="^unknown$") == {"group"}
    assert _left_out(verdicts, family="^Mistral$") == {"tokens"}
    assert _left_out(verdicts, model="^OLMo-1B step 40000$") == {"loss"}


def test_each_rules_count_is_what_data_and_the_report_print(verdicts, reference):
    counted = {e.reason: e.count for e in reference.excluded}
    by_id = verdicts["rule"].value_counts().to_dict()
    for rule in load_rules().exclude:
        assert counted.get(rule.reason, 0) == by_id.get(rule.id, 0), rule.id
    # Every rule but the parameter-count one (each v2 model has its count) leaves rows out.
    assert {r.id for r in load_rules().exclude} - set(by_id) == {"params"}
    assert by_id[""] == len(reference.frame)


def test_rules_match_all_fields_and_unless_keeps_rows_in():
    rule = ExclusionRule("x", "why", {"format": re.compile("."), "bits": re.compile("^4$")},
                         {"format": re.compile("^GGUF Q4_0")})
    assert rule.applies({"format": "AQLM", "bits": "4"})
    assert not rule.applies({"format": "AQLM", "bits": "3"})
    assert not rule.applies({"format": "", "bits": "4"})
    assert not rule.applies({"format": "GGUF Q4_0", "bits": "4"})


def test_rules_are_data(monkeypatch):
    # A rules text without exclusions keeps every candidate with a value in each field.
    rules = load_rules('[lineage]\n"Llama-3.1" = "Llama-3.1"\n[[exclude]]\nid = "fmt"\nreason = "r"\n'
                       'match = { format = "." }\n')
    assert [r.id for r in rules.exclude] == ["fmt"] and rules.post_trained == {}
    assert rules.lineage == {"Llama-3.1": "Llama-3.1"}
    with pytest.raises(ValueError, match=r"exclude\.bad\.match"):
        load_rules('[[exclude]]\nid = "bad"\nreason = "r"\nmatch = { format = 3 }\n')


def test_llama_3_1_is_fitted_as_part_of_llama_3(reference):
    frame = reference.frame
    assert "Llama-3.1" not in set(frame["family"])
    assert set(frame.loc[frame["model"].str.startswith("Llama-3.1-"), "family"]) == {"Llama-3"}
    assert set(frame.loc[frame["model"] == "Llama-3.2-1B", "family"]) == {"Llama-3.2"}


def test_post_trained_marks_instruct_and_chat_models_only(reference):
    frame = reference.frame
    instruct = frame["model"].str.contains("(?i)instruct|chat")
    assert frame["post_trained"].dtype == pd.BooleanDtype()
    assert frame.loc[instruct, "post_trained"].all() and not frame.loc[~instruct, "post_trained"].any()
    assert set(frame.loc[instruct, "family"]) == {"Qwen2", "Qwen2.5", "Llama-2"}


def test_kept_aside_families_are_absent(reference):
    assert not reference.frame["family"].str.contains("(?i)^(qwen3|phi)").any()
    assert not reference.frame["model"].str.contains("(?i)qwen3|phi-").any()


def test_post_trained_is_validated_like_the_other_recipe_columns(tmp_path):
    base = {"family": "f", "params": 1e9, "tokens": 1e12, "bits": 4, "method": "RTN", "eval_set": "c4",
            "qid": 0.1}
    frame = validate(pd.DataFrame([{**base, "post_trained": v} for v in ("yes", "false", "", "unknown")]))
    assert frame["post_trained"].tolist() == [True, False, pd.NA, pd.NA]
    with pytest.raises(DataError, match=r"row 2, column 'post_trained': must be true, false or unknown"):
        validate(pd.DataFrame([{**base, "post_trained": "true"}, {**base, "post_trained": "instruct"}]))


def test_post_trained_is_usable_in_a_spec(reference):
    spec = ModelSpec.from_dict({"name": "pt", "law": "ouyang", "recipe": {"log_k": ["post_trained"]}})
    assert spec.recipe_shifts == ("d_log_k_post_trained_true", "d_log_k_post_trained_unknown")
    features = recipe_features(reference.frame)
    assert features["post_trained_true"].sum() == reference.frame["post_trained"].sum()
    assert features["post_trained_unknown"].sum() == 0
