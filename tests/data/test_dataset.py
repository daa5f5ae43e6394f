"""Tests of the data layer: schema validation, error messages, loaders, the reference data."""

from __future__ import annotations

import math
import re
import warnings
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesqid.data.dataset import (
    GRID_COLUMNS,
    SCHEMA_COLUMNS,
    Dataset,
    Exclusion,
    load_grid,
    load_table,
    quantizer_label,
    validate,
)
from bayesqid.data.reference import candidate_rows, load_rules
from bayesqid.data.sources import load_dataset, load_reference
from bayesqid.errors import DataError
from helpers import write_rows as write_csv

VALID = {
    "family": "OPT",
    "model": "OPT-125M",
    "params": "85056000",
    "tokens": "1.8e11",
    "bits": "4",
    "group_size": "128",
    "method": "GPTQ",
    "eval_set": "wikitext2",
    "qid": "0.118225",
    "source": "GPTQ Table 3",
}
FORMAT_REASON = (
    "not an integer grid (AQLM, QuIP#/QTIP codebooks, NF4/NFL tables, fp6/fp8, ternary, llama.cpp k-/i-quants)"
)


def rows_with(n=3, at=None, **bad):
    """`n` valid rows, the 1-based row `at` overridden with `bad` values."""
    rows = [dict(VALID, model=f"m{i}") for i in range(n)]
    if at is not None:
        rows[at - 1].update(bad)
    return rows


def read_reference_file(name):
    with (resources.files("bayesqid.data") / "reference_files" / name).open("rb") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def reference():
    return load_reference()


# --- the bundled reference -------------------------------------------------------------------


def test_reference_rows_and_families(reference):
    frame = reference.frame
    assert reference.path == "<bundled reference>"
    assert list(frame.columns) == list(SCHEMA_COLUMNS)
    assert len(frame) == 1293
    assert frame["family"].value_counts().to_dict() == {
        "OLMo": 368, "LLaMA-1": 263, "Llama-2": 257, "Llama-3": 154, "OPT": 82, "BLOOM": 41,
        "Qwen2.5": 39, "Spectra-FloatLM": 36, "Llama-3.2": 26, "Qwen2": 12, "TinyLlama": 7,
        "Falcon": 2, "Gemma-2": 2, "Pythia": 2, "Yi": 2,
    }  # fmt: skip
    assert frame["tokens"].max() == 1.8e13
    assert isinstance(frame.index, pd.RangeIndex)


def test_reference_dtypes(reference):
    dtypes = reference.frame.dtypes
    assert dtypes["params"] == np.float64 and dtypes["qid"] == np.float64
    assert dtypes["bits"] == np.int64
    assert dtypes["group_size"] == pd.Int64Dtype()
    for column in ("family", "model", "method", "eval_set", "source"):
        assert pd.api.types.is_string_dtype(dtypes[column]), column


def test_reference_uses_non_embedding_params(reference):
    frame = reference.frame
    assert set(frame.loc[frame["model"] == "OPT-125M", "params"]) == {85056000.0}
    olmo = frame[frame["model"] == "OLMo-1B step 20000"]
    assert set(olmo["params"]) == {1073741824.0}
    assert set(olmo["tokens"]) == {84e9}
    assert set(olmo["group_size"]) == {128}
    assert set(olmo["method"]) == {"RTN", "AWQ"}
    assert set(olmo["eval_set"]) == {"c4", "wikitext2"}


def test_reference_keeps_small_and_negative_qid_unchanged(reference):
    frame = reference.frame
    assert (frame["qid"] < 0).sum() == 6
    assert (frame["qid"] == 0).sum() == 15
    ptq = read_reference_file("ptq_results.csv")
    rules = load_rules()
    kept = ptq[[rules.first_exclusion(row) is None for row in candidate_rows()[: len(ptq)]]]
    published = frame[~frame["source"].str.startswith("OLMo checkpoint sweep")]
    np.testing.assert_array_equal(published["qid"], kept["qid_nats"].astype(float))
    np.testing.assert_array_equal(published["model"], kept["model"])


def test_reference_exclusions_are_counted(reference):
    excluded = {e.reason: e.count for e in reference.excluded}
    reasons = {rule.id: rule.reason for rule in load_rules().exclude}
    assert excluded == {
        reasons["partial"]: 28, reasons["pipeline"]: 6, reasons["anomaly"]: 1,
        reasons["format"]: 141, reasons["group"]: 1, reasons["tokens"]: 28, reasons["loss"]: 16,
    }  # fmt: skip
    assert FORMAT_REASON == reasons["format"]
    olmo_rows = reference.frame["family"].eq("OLMo").sum()
    ptq_excluded = sum(excluded.values()) - excluded["missing loss in source"]
    assert len(reference.frame) - olmo_rows + ptq_excluded == 1130
    assert olmo_rows + excluded["missing loss in source"] == 2 * 4 * 48


def test_reference_is_deterministic_and_default(reference):
    again = load_dataset(None)
    assert again.sha256 == reference.sha256
    assert re.fullmatch(r"[0-9a-f]{64}", reference.sha256)
    assert all(isinstance(e, Exclusion) for e in again.excluded)


def test_summary_mentions_the_essentials(reference):
    text = reference.summary()
    for fragment in ("1293 rows", "families (15)", "OLMo: 368", "QiD < 0.02", "< 0: 6",
                     "excluded: 221 rows", FORMAT_REASON, "wikitext2", "GPTQ"):  # fmt: skip
        assert fragment in text, fragment


# --- user tables ------------------------------------------------------------------------------


def test_canonical_csv_round_trip(reference, tmp_path):
    path = tmp_path / "reference.csv"
    reference.frame.to_csv(path, index=False)
    loaded = load_table(path)
    pd.testing.assert_frame_equal(loaded.frame, reference.frame, check_exact=True)
    assert loaded.sha256 == reference.sha256
    assert loaded.excluded == ()
    assert loaded.path == str(path)


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_loading(reference, tmp_path, suffix):
    path = tmp_path / f"reference{suffix}"
    reference.frame.to_parquet(path)
    loaded = load_table(path)
    pd.testing.assert_frame_equal(loaded.frame, reference.frame, check_exact=True)
    assert loaded.sha256 == reference.sha256


def test_optional_columns_default_and_extras_ignored(tmp_path):
    rows = [{k: v for k, v in VALID.items() if k not in ("model", "source", "group_size")}]
    rows[0]["note"] = "ignored"
    frame = load_table(write_csv(tmp_path / "t.csv", rows)).frame
    assert list(frame.columns) == list(SCHEMA_COLUMNS)
    assert frame.loc[0, "model"] == "" and frame.loc[0, "source"] == ""
    assert frame.loc[0, "group_size"] is pd.NA
    assert frame.loc[0, "bits"] == 4 and frame.loc[0, "tokens"] == 1.8e11


def test_loss_columns_give_qid_in_nats(tmp_path):
    row = {k: v for k, v in VALID.items() if k != "qid"}
    rows = [dict(row, fp16_loss="2.5", quant_loss="2.75"), dict(row, fp16_loss="3", quant_loss="2.9")]
    frame = load_table(write_csv(tmp_path / "t.csv", rows)).frame
    np.testing.assert_allclose(frame["qid"], [0.25, -0.1])


def test_ppl_columns_give_log_ratio(tmp_path):
    row = {k: v for k, v in VALID.items() if k != "qid"}
    rows = [dict(row, fp16_ppl="27.65", quant_ppl="1.3e3")]
    frame = load_table(write_csv(tmp_path / "t.csv", rows)).frame
    assert frame.loc[0, "qid"] == pytest.approx(math.log(1300 / 27.65))


def test_qid_column_wins_over_losses(tmp_path):
    rows = [dict(VALID, fp16_loss="2.0", quant_loss="9.0", fp16_ppl="nonsense")]
    frame = load_table(write_csv(tmp_path / "t.csv", rows)).frame
    assert frame.loc[0, "qid"] == 0.118225


def test_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "t.csv"
    header, values = ",".join(VALID), ",".join(VALID.values())
    path.write_bytes(("\ufeff" + header + "\r\n" + values + "\r\n\r\n").encode("utf-8"))
    assert load_table(path).frame.loc[0, "family"] == "OPT"


# --- cell rules -------------------------------------------------------------------------------

CELL_ERRORS = [
    ("params", "abc", "not a number"),
    ("params", "", "missing value"),
    ("params", "nan", "not a finite number"),
    ("params", "0", "must be > 0"),
    ("params", "-5", "must be > 0"),
    ("tokens", "inf", "not a finite number"),
    ("tokens", "0", "must be > 0"),
    ("tokens", "1,5e11", "not a number"),
    ("qid", "1e400", "not a finite number"),
    ("qid", "", "missing value"),
    ("qid", "small", "not a number"),
    ("bits", "4.5", "must be an integer"),
    ("bits", "0", "within 1..16"),
    ("bits", "17", "within 1..16"),
    ("bits", "", "missing value"),
    ("group_size", "0", "positive integer"),
    ("group_size", "-128", "positive integer"),
    ("group_size", "64.5", "positive integer"),
    ("group_size", "g128", "not a number"),
    ("family", "", "must not be empty"),
    ("method", "  ", "must not be empty"),
    ("eval_set", "", "must not be empty"),
]


@pytest.mark.parametrize(("column", "value", "rule"), CELL_ERRORS)
def test_cell_rule_errors(tmp_path, column, value, rule):
    path = write_csv(tmp_path / "bad.csv", rows_with(4, at=3, **{column: value}))
    with pytest.raises(DataError) as info:
        load_table(path)
    message = str(info.value)
    assert message.startswith(f"{path}: row 3, column '{column}': ")
    assert rule in message and message.endswith(f"(got {value!r})")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [("fp16_ppl", "0", "must be > 0"), ("quant_ppl", "-1", "must be > 0"),
     ("fp16_loss", "x", "not a number"), ("quant_loss", "", "missing value")],
)  # fmt: skip
def test_loss_and_ppl_cell_errors(tmp_path, column, value, rule):
    kind = column.split("_")[1]
    base = {k: v for k, v in VALID.items() if k != "qid"} | {f"fp16_{kind}": "3", f"quant_{kind}": "4"}
    rows = [dict(base), dict(base, **{column: value})]
    with pytest.raises(DataError, match=rf"bad\.csv: row 2, column '{column}': {rule}"):
        load_table(write_csv(tmp_path / "bad.csv", rows))


def test_first_bad_cell_in_row_then_column_order(tmp_path):
    rows = rows_with(4)
    rows[3]["family"] = ""
    rows[1]["qid"] = "x"
    rows[1]["bits"] = "99"
    with pytest.raises(DataError, match=r"row 2, column 'bits'"):
        load_table(write_csv(tmp_path / "t.csv", rows))


def test_exact_message_format(tmp_path):
    path = write_csv(tmp_path / "t.csv", rows_with(2, at=2, params="abc"))
    with pytest.raises(DataError) as info:
        load_table(path)
    assert str(info.value) == f"{path}: row 2, column 'params': not a number (got 'abc')"


# --- file-level errors ------------------------------------------------------------------------

HEADER = ",".join(VALID)
ROW = ",".join(VALID.values())


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.csv", b"", "empty file"),
        ("blank.csv", b"\n\n", "empty file"),
        ("header.csv", f"{HEADER}\n".encode(), "no data rows"),
        ("semi.csv", f"{HEADER}\n{ROW}\n".replace(",", ";").encode(), "semicolon-delimited"),
        ("tab.csv", f"{HEADER}\n{ROW}\n".replace(",", "\t").encode(), "tab-delimited"),
        ("missing.csv", f"{HEADER.replace(',qid', '')}\n{ROW.replace(',0.118225', '')}\n".encode(),
         "missing column(s) 'qid'"),
        ("dup.csv", f"{HEADER},bits\n{ROW},4\n".encode(), "duplicated column name(s) 'bits'"),
        ("short.csv", f"{HEADER}\n{ROW}\n{ROW}\nOPT,x,1\n".encode(), "row 3: 3 field(s)"),
        ("long.csv", f"{HEADER}\n{ROW},extra\n".encode(), "row 1: 11 field(s)"),
        ("latin1.csv", f"{HEADER}\n{ROW}\n".replace("OPT", "Ópt").encode("latin-1"), "not UTF-8"),
        ("garbage.csv", bytes(range(256)) * 4, "binary data"),
        ("data.txt", f"{HEADER}\n{ROW}\n".encode(), "unsupported file type '.txt'"),
        ("data", f"{HEADER}\n{ROW}\n".encode(), "unsupported file type '(none)'"),
        ("broken.parquet", b"PAR1 this is not parquet", "unreadable"),
    ],
)  # fmt: skip
def test_file_level_errors(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_table(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


def test_missing_column_lists_expected(tmp_path):
    rows = [{k: v for k, v in VALID.items() if k not in ("bits", "qid")}]
    with pytest.raises(DataError) as info:
        load_table(write_csv(tmp_path / "t.csv", rows))
    message = str(info.value)
    assert "missing column(s) 'bits', 'qid'" in message
    assert "expected columns: family, model, params" in message and "fp16_ppl" in message
    assert "found: 'family', 'model', 'params'" in message


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        load_table(tmp_path)
    with pytest.raises(DataError, match=r"nope\.csv: does not exist"):
        load_dataset(tmp_path / "nope.csv")


# --- in-memory frames -------------------------------------------------------------------------


def typed_frame():
    return pd.DataFrame(
        {
            "family": ["OPT", "OPT"],
            "model": ["a", None],
            "params": [8.5e7, 3.0e8],
            "tokens": [1.8e11, 1.8e11],
            "bits": [4, 3],
            "group_size": [np.nan, 128.0],
            "method": ["RTN", "GPTQ"],
            "eval_set": ["c4", "c4"],
            "qid": [-0.01, 0.0],
        },
        index=[10, 20],
    )


def test_validate_does_not_mutate_input():
    frame = typed_frame()
    before = frame.copy(deep=True)
    out = validate(frame)
    pd.testing.assert_frame_equal(frame, before, check_exact=True)
    assert out is not frame
    assert list(out.index) == [0, 1]
    assert out["group_size"].tolist() == [pd.NA, 128]
    assert out["model"].tolist() == ["a", ""] and out["source"].tolist() == ["", ""]
    assert out["qid"].tolist() == [-0.01, 0.0]


def test_validate_reports_positional_rows():
    frame = typed_frame()
    frame.loc[20, "tokens"] = np.inf
    with pytest.raises(DataError, match=r"^<frame>: row 2, column 'tokens': not a finite number"):
        validate(frame)
    frame.loc[20, "tokens"] = 1e12
    frame.loc[20, "method"] = None
    with pytest.raises(DataError, match=r"^x\.parquet: row 2, column 'method': missing value"):
        validate(frame, path="x.parquet")


def test_validate_rejects_duplicate_columns_and_empty_frames():
    frame = typed_frame()
    with pytest.raises(DataError, match="duplicated column name"):
        validate(pd.concat([frame, frame[["bits"]]], axis=1))
    with pytest.raises(DataError, match="no data rows"):
        validate(frame.iloc[:0])


def test_duplicate_rows_warn_but_are_kept(tmp_path):
    rows = rows_with(3)
    rows.append(dict(rows[1]))
    with pytest.warns(UserWarning, match=r"1 duplicated row\(s\) kept \(first: row 4\)"):
        dataset = load_table(write_csv(tmp_path / "t.csv", rows))
    assert len(dataset.frame) == 4


def test_unique_rows_do_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_table(write_csv(tmp_path / "t.csv", rows_with(3)))


# --- grids and quantizer labels ---------------------------------------------------------------


def grid_rows(**override):
    row = {c: VALID[c] for c in GRID_COLUMNS} | {"label": "keep me"}
    return [row, dict(row, group_size="", **override)]


def test_load_grid_normalises_and_keeps_extras(tmp_path):
    grid = load_grid(write_csv(tmp_path / "grid.csv", grid_rows()))
    assert list(grid.columns) == [*GRID_COLUMNS, "label"]
    assert grid["group_size"].tolist() == [128, pd.NA]
    assert grid["bits"].dtype == np.int64 and grid["params"].dtype == np.float64
    assert grid["label"].tolist() == ["keep me", "keep me"]


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [("family", "", "must not be empty"), ("method", "", "must not be empty"),
     ("eval_set", "", "must not be empty"), ("bits", "2.5", "integer"), ("tokens", "-1", "> 0")],
)  # fmt: skip
def test_load_grid_rules(tmp_path, column, value, rule):
    with pytest.raises(DataError, match=rf"grid\.csv: row 2, column '{column}': .*{re.escape(rule)}"):
        load_grid(write_csv(tmp_path / "grid.csv", grid_rows(**{column: value})))


def test_load_grid_requires_group_size_column(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "group_size"} for r in grid_rows()]
    with pytest.raises(DataError, match="missing column\\(s\\) 'group_size'"):
        load_grid(write_csv(tmp_path / "grid.csv", rows))


@pytest.mark.parametrize(
    ("method", "group_size", "label"),
    [("GPTQ", 128, "GPTQ g128"), ("RTN", None, "RTN per-channel"), ("AWQ", pd.NA, "AWQ per-channel"),
     ("RTN", np.nan, "RTN per-channel"), ("AWQ", np.int64(64), "AWQ g64"), ("GPTQ", 32.0, "GPTQ g32")],
)  # fmt: skip
def test_quantizer_label(method, group_size, label):
    assert quantizer_label(method, group_size) == label


def test_quantizer_label_rejects_bad_group_size():
    with pytest.raises(DataError, match="positive integer"):
        quantizer_label("GPTQ", 0)


def test_dataset_is_frozen(reference):
    with pytest.raises(AttributeError):
        reference.path = "elsewhere"  # type: ignore[misc]
    assert isinstance(reference, Dataset)


# --- property: valid frames validate and round-trip through CSV losslessly --------------------

# No NUL (binary marker) and no bare CR: pandas' to_csv leaves a field holding "\r" unquoted,
# so every CSV reader, pandas' included, sees a line break there.
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=12)
label = text.filter(lambda s: s.strip() != "")
positive = st.floats(min_value=0, exclude_min=True, allow_infinity=False)
valid_row = st.fixed_dictionaries(
    {
        "family": label,
        "model": text,
        "params": positive,
        "tokens": positive,
        "bits": st.integers(1, 16),
        "group_size": st.none() | st.integers(1, 2**20),
        "method": label,
        "eval_set": label,
        "qid": st.floats(allow_nan=False, allow_infinity=False),
        "source": text,
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(valid_row, min_size=1, max_size=6))
def test_valid_frames_round_trip_through_csv(tmp_path, rows):
    frame = pd.DataFrame(rows, columns=list(SCHEMA_COLUMNS))
    frame["group_size"] = frame["group_size"].astype("Int64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicates are legal here
        canonical = validate(frame)
        path = tmp_path / "round.csv"
        canonical.to_csv(path, index=False)
        loaded = load_table(path)
    pd.testing.assert_frame_equal(loaded.frame, canonical, check_exact=True)
    assert loaded.sha256 == Dataset(canonical, "x", ()).sha256
    assert canonical["qid"].tolist() == frame["qid"].tolist()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(valid_row, min_size=1, max_size=6))
def test_canonical_csv_is_a_fixed_point(tmp_path, rows):
    """CSV -> schema -> CSV: a canonical CSV written, loaded and written again is byte-identical."""
    frame = pd.DataFrame(rows, columns=list(SCHEMA_COLUMNS))
    frame["group_size"] = frame["group_size"].astype("Int64")
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicates are legal here
        validate(frame).to_csv(first, index=False)
        load_table(first).frame.to_csv(second, index=False)
    assert first.read_bytes() == second.read_bytes()


#: Values that break each numeric column's rule, with a fragment of the rule.
BAD_CELLS = {
    "params": st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e400", "7B", "", "0x10"]),
    "tokens": st.sampled_from(["0", "-3e11", "NaN", "infinity", "1e999", "1.8e11T", " "]),
    "bits": st.sampled_from(["0", "-4", "2.5", "17", "64", "1e3", "four", "nan", ""]),
    "group_size": st.sampled_from(["0", "-128", "12.5", "inf", "g128"]),
    "qid": st.sampled_from(["nan", "inf", "-inf", "1e400", "abc", ""]),
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(valid_row, min_size=1, max_size=5), data=st.data())
def test_any_bad_cell_is_named_by_row_and_column(tmp_path, rows, data):
    """Corrupt one numeric cell of a valid table: the error names exactly that row and column."""
    frame = pd.DataFrame(rows, columns=list(SCHEMA_COLUMNS))
    frame["group_size"] = frame["group_size"].astype("Int64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        canonical = validate(frame).astype(object)
    row = data.draw(st.integers(0, len(canonical) - 1), label="row")
    column = data.draw(st.sampled_from(sorted(BAD_CELLS)), label="column")
    canonical.loc[row, column] = data.draw(BAD_CELLS[column], label="value")
    path = tmp_path / "bad.csv"
    canonical.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(DataError) as err:
            load_table(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: row {row + 1}, column '{column}': "), message
