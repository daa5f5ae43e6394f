"""Named and joined datasets (`--data reference --data mine.csv`) and the recipe columns."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesqid as bq
from bayesqid.cli import main
from bayesqid.data.cells import LR_SCHEDULES, TRAIN_PRECISIONS
from bayesqid.data.dataset import RECIPE_COLUMNS, SCHEMA_COLUMNS
from bayesqid.data.reference import olmo_lr_frac
from bayesqid.data.sources import load_lab


@pytest.fixture(scope="module")
def reference():
    return bq.load_reference()


def mine(tmp_path, rows=None, name="mine.csv"):
    frame = pd.DataFrame(rows or [
        {"family": "my-family", "model": f"m{n:.0e}-{d:.0e}", "params": n, "tokens": d, "bits": b,
         "method": "GPTQ", "group_size": 128, "eval_set": "wikitext2", "qid": 0.01 * b * n / 1e8}
        for n in (1e8, 3e8, 1e9) for d in (1e11, 3e11) for b in (3, 4)])
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_reference_by_name_is_the_bundled_data(reference):
    assert bq.load_dataset("reference").sha256 == reference.sha256
    assert bq.load_dataset(["reference"]).sha256 == reference.sha256


def test_joined_data_keeps_every_row_in_order(reference, tmp_path):
    joined = bq.load_dataset(["reference", mine(tmp_path)])
    assert len(joined.frame) == len(reference.frame) + 12
    assert joined.frame["family"].iloc[-1] == "my-family"
    pd.testing.assert_frame_equal(joined.frame.iloc[: len(reference.frame)], reference.frame)
    assert joined.excluded == reference.excluded
    assert joined.path == f"<bundled reference> + {tmp_path / 'mine.csv'}"
    # The user's rows know nothing of their recipe: unknown, not made up.
    tail = joined.frame.iloc[-12:]
    assert (tail["lr_schedule"] == "unknown").all() and tail["annealed"].isna().all()


def test_conflicting_measurement_across_files_is_one_clear_error(reference, tmp_path):
    rows = reference.frame.head(1).assign(qid=9.0)
    path = tmp_path / "conflict.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(bq.DataError, match=r"conflict.csv: row 1 conflicts with <bundled reference>: "
                                           r"row 1 \(same measurement, column 'qid': 9.0 vs 0.298831\)"):
        bq.load_dataset(["reference", path])


def test_exact_duplicate_across_files_is_kept_with_a_warning(reference, tmp_path):
    path = tmp_path / "dup.csv"
    reference.frame.head(2).to_csv(path, index=False)
    with pytest.warns(UserWarning, match="duplicated row"):
        joined = bq.load_dataset(["reference", path])
    assert len(joined.frame) == len(reference.frame) + 2


def test_cli_data_joins_and_refuses_conflicts(tmp_path, capsys, reference):
    assert main(["data", "--data", "reference", "--data", str(mine(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert f"{len(reference.frame) + 12} rows" in out and "my-family: 12" in out
    bad = tmp_path / "bad.csv"
    reference.frame.head(1).assign(qid=1.5).to_csv(bad, index=False)
    assert main(["data", "--data", "reference", "--data", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.csv: row 1 conflicts with <bundled reference>: row 1" in err[0]


# --- recipe columns --------------------------------------------------------------------------


def test_schema_has_the_recipe_columns_last(reference):
    assert SCHEMA_COLUMNS[-len(RECIPE_COLUMNS):] == RECIPE_COLUMNS
    assert list(reference.frame.columns) == list(SCHEMA_COLUMNS)


def test_reference_recipes_are_curated_not_guessed(reference):
    f = reference.frame
    final = f[~f["source"].str.startswith("OLMo checkpoint sweep")]
    by_family = final.groupby("family")
    assert set(by_family.get_group("LLaMA-1")["annealed"]) == {True}
    assert set(by_family.get_group("Pythia")["lr_frac"]) == {0.1}
    assert set(by_family.get_group("OPT")["lr_frac"]) == {0.46}
    assert set(by_family.get_group("OPT")["train_precision"]) == {"fp16"}
    assert by_family.get_group("Falcon")["annealed"].isna().all()
    assert set(by_family.get_group("Falcon")["lr_schedule"]) == {"unknown"}
    assert set(f["lr_schedule"]) <= set(LR_SCHEDULES)
    assert set(f["train_precision"]) <= set(TRAIN_PRECISIONS)


def test_olmo_lr_frac_follows_its_schedules(reference):
    # Cosine to 10% over 739,328 steps (1B), linear to 10% over 452,112 steps, then flat (7B).
    assert olmo_lr_frac("OLMo-1B", 1000) == pytest.approx(0.5)
    assert olmo_lr_frac("OLMo-1B", 2000 + (739_328 - 2000) / 2) == pytest.approx(0.55)
    assert olmo_lr_frac("OLMo-1B", 739_328) == pytest.approx(0.1)
    assert olmo_lr_frac("OLMo-7B", 5000 + (452_112 - 5000) / 2) == pytest.approx(0.55, abs=1e-4)
    assert olmo_lr_frac("OLMo-7B", 550_000) == pytest.approx(0.1)
    olmo = reference.frame[reference.frame["family"] == "OLMo"]
    seven = olmo[olmo["model"].str.startswith("OLMo-7B")].sort_values("tokens")
    assert np.all(np.diff(seven["lr_frac"]) <= 0)
    assert seven["annealed"].tolist()[-1] and not seven["annealed"].tolist()[0]


@pytest.mark.parametrize(("column", "value", "rule"), [
    ("lr_schedule", "cyclic", "must be one of cosine, linear, wsd, constant, unknown"),
    ("lr_frac", "1.5", "must be within 0..1"),
    ("annealed", "maybe", "must be true, false or unknown"),
    ("train_precision", "int4", "must be one of fp32, bf16, fp16, fp8, unknown"),
    ("weight_decay", "-0.1", "must be >= 0"),
    ("dropout", "1.0", "must be within 0..1 (1 excluded)"),
    ("dropout", "-0.1", "must be within 0..1 (1 excluded)"),
    ("grad_clip", "-1", "must be >= 0 (0 or none: no clipping)"),
    ("grad_clip", "always", "not a number"),
    ("peak_lr", "0", "must be > 0 and at most 10"),
    ("peak_lr", "3e-3x", "not a number"),
    ("average_last", "2.5", "must be an integer >= 0 (0: not averaged)"),
    ("average_last", "-3", "must be an integer >= 0 (0: not averaged)"),
])
def test_bad_recipe_cells_name_file_row_and_column(tmp_path, column, value, rule):
    path = mine(tmp_path)
    frame = pd.read_csv(path, dtype=str)
    frame[column] = ""
    frame.loc[2, column] = value
    frame.to_csv(path, index=False)
    with pytest.raises(bq.DataError) as err:
        bq.load_dataset(path)
    assert str(err.value) == f"{path}: row 3, column '{column}': {rule} (got {value!r})"


def test_recipe_values_are_parsed_and_unknown_is_explicit(tmp_path):
    path = mine(tmp_path)
    frame = pd.read_csv(path, dtype=str)
    frame["lr_schedule"] = ["WSD", "", "unknown"] * 4
    frame["annealed"] = ["yes", "0", ""] * 4
    frame["lr_frac"] = ["0.1", "", "1"] * 4
    frame.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = bq.load_dataset(path).frame
    assert out["lr_schedule"].tolist()[:3] == ["wsd", "unknown", "unknown"]
    assert out["annealed"].tolist()[:2] == [True, False] and pd.isna(out["annealed"].iloc[2])
    assert out["lr_frac"].iloc[0] == 0.1 and np.isnan(out["lr_frac"].iloc[1])


def test_bundled_lab_sweep_loads_with_its_recipes_and_manifest():
    import json
    from importlib import resources

    lab = bq.load_dataset("lab-default")
    assert lab.path == "lab-default"
    f = lab.frame
    assert set(f["family"]) == {"cosine", "wsd", "constant"}
    assert set(f["lr_schedule"]) == {"cosine", "wsd", "constant"}
    # Tokens and annealing vary independently: annealed and not-annealed WSD checkpoints.
    wsd = f[f["family"] == "wsd"]
    assert wsd["annealed"].any() and (~wsd["annealed"].astype(bool)).any()
    assert set(f["bits"]) == {2, 3, 4, 8} and set(f["method"]) == {"RTN", "GPTQ"}
    manifest = resources.files("bayesqid.data") / "lab" / "lab-default" / "manifest.json"
    assert json.loads(manifest.read_text())["config"]["name"] == "default"


def test_bundled_long_sweep_reaches_thousands_of_tokens_per_parameter():
    import json
    from importlib import resources

    lab = bq.load_dataset("lab-long")
    assert lab.path == "lab-long"
    f = lab.frame
    assert set(f["family"]) == {"cosine", "wsd"} and set(f["lr_schedule"]) == {"cosine", "wsd"}
    # The axis the users ask about: the smallest size trained far past lab-default's ~170.
    assert (f["tokens"] / f["params"]).max() >= 2000
    wsd = f[f["family"] == "wsd"]
    assert wsd["annealed"].any() and (~wsd["annealed"].astype(bool)).any()
    path = resources.files("bayesqid.data") / "lab" / "lab-long" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["config"]["name"] == "long"
    assert manifest["epochs_per_run"] and all(e > 0 for e in manifest["epochs_per_run"].values())


def test_bundled_recipes_sweep_changes_one_factor_at_a_time_with_two_seeds():
    import json
    from importlib import resources

    lab = bq.load_dataset("lab-recipes")
    assert lab.path == "lab-recipes"
    f = lab.frame
    assert set(f["family"]) == {"base", "wd0", "wd001", "dropout", "noclip", "bf16", "fp16", "lr_high"}
    assert f["params"].nunique() == 1 and set(f["lr_schedule"]) == {"cosine"}
    # Every factor at each of its levels, each recipe from two seeds (the seed is in the source).
    assert set(f["weight_decay"]) == {0.0, 0.01, 0.1} and set(f["dropout"]) == {0.0, 0.1}
    assert set(f["grad_clip"]) == {0.0, 1.0} and set(f["train_precision"]) == {"fp32", "bf16", "fp16"}
    assert set(f["peak_lr"]) == {2e-3, 6e-3} and set(f["average_last"]) == {0.0, 3.0}
    seeds = f["source"].str.extract(r"/(seed\d+)/")[0]
    assert seeds.notna().all() and (seeds.groupby(f["family"]).nunique() == 2).all()
    by_bits = f.groupby("method")["bits"].unique().map(set)
    assert by_bits["RTN"] == by_bits["GPTQ"] == {3, 4} and by_bits["W8A8"] == {8}
    path = resources.files("bayesqid.data") / "lab" / "lab-recipes" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["config"]["name"] == "recipes" and manifest["status"] == "finished"


def test_unknown_bundled_lab_sweep_is_one_clear_error():
    with pytest.raises(bq.DataError, match="unknown bundled lab sweep 'lab-nope'"):
        load_lab("lab-nope")
