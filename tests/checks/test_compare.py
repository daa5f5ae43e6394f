"""Law-form comparison: PSIS-LOO, leave-one-family-out, forecast, scale-up, extrapolation, stacking;
the Dask fan-out.

The comparison runs on a small table simulated from Ouyang's law on rows of the reference design
(four families, 30 rows each), so the true form is known. One synchronous comparison is shared
by the module; the resume, CLI and Dask tests reuse or check against it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesqid as bq
import bayesqid.checks.compare as cmp
from bayesqid.checks import folds
from bayesqid.checks.fanout import Task, result_path, run_tasks
from bayesqid.cli import main
from bayesqid.data.design import build_design
from bayesqid.errors import BayesqidError
from bayesqid.lang.laws import get_law, published_ouyang
from fanout_tasks import slow_square, square

#: Families of the simulated table: two measured at several D (LLaMA-1, OLMo), two at one.
FAMILIES = ("LLaMA-1", "Llama-2", "OLMo", "OPT")
ROWS_PER_FAMILY = 30
#: Sampler settings of every fit here (the CLI test passes the same, so that it resumes).
CONFIG = bq.SamplerConfig.preset("ci", draws=150, tune=150, cores=1)
SEED = 11

TOML = """spec_version = 1
name = "{name}"
law = "{law}"
[likelihood]
kind = "student_t"
nu = 4
censor_below = 0.02
[effects.family]
params = ["{intercept}"]
"""


def simulate(seed: int = 3) -> pd.DataFrame:
    """QiD from Ouyang's published law with family intercept offsets, on reference rows."""
    ref = bq.load_reference().frame
    frame = pd.concat([ref[ref["family"] == f].sample(ROWS_PER_FAMILY, random_state=seed) for f in FAMILIES],
                      ignore_index=True)
    rng = np.random.default_rng(seed)
    design = build_design(frame)
    law = get_law("ouyang")
    truth = published_ouyang()
    theta = {p: np.full(len(frame), float(truth[p])) for p in law.param_names}
    theta["log_k"] = theta["log_k"] + rng.normal(0, 0.4, len(FAMILIES))[design.codes["family"]]
    qid = np.exp(law.log_mu(design.x, theta) + 0.25 * rng.standard_t(4, len(frame)))
    frame["qid"] = np.where(qid < 0.02, 0.0, qid)
    frame["source"] = "simulated"
    return frame


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """The simulated data as a CSV and two spec files (the true form first)."""
    root = tmp_path_factory.mktemp("compare-inputs")
    data_path = root / "sim.csv"
    simulate().to_csv(data_path, index=False)
    specs = []
    for name, law, intercept in (("true_ouyang", "ouyang", "log_k"), ("alt_kumar", "kumar", "log_c")):
        path = root / f"{name}.toml"
        path.write_text(TOML.format(name=name, law=law, intercept=intercept), encoding="utf-8")
        specs.append(str(path))
    return {"data": str(data_path), "dataset": bq.load_dataset(data_path), "specs": specs}


@pytest.fixture(scope="module")
def reference_result(inputs, tmp_path_factory):
    """One uninterrupted synchronous comparison (all three schemes), kept in its own store."""
    out = tmp_path_factory.mktemp("compare-ref")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = cmp.compare(inputs["specs"], inputs["dataset"], cv=cmp.CV_SCHEMES, out=out,
                             scheduler="synchronous", config=CONFIG, seed=SEED)
    result.write(out)
    return result, out


# --- the comparison ---------------------------------------------------------------------------------


def test_true_form_wins_loo_and_logo(reference_result, inputs):
    result, _ = reference_result
    table = result.table.set_index("spec")
    assert result.table["spec"].iloc[0] == "true_ouyang"  # best first by PSIS-LOO
    assert table.loc["alt_kumar", "elpd_diff_loo"] > 2 * table.loc["alt_kumar", "dse_loo"]
    assert table.loc["true_ouyang", "logo_elpd"] > table.loc["alt_kumar", "logo_elpd"]
    assert table.loc["alt_kumar", "logo_diff"] > 0 and table.loc["true_ouyang", "logo_diff"] == 0
    assert table["weight"].sum() == pytest.approx(1.0, abs=1e-12)
    assert table.loc["true_ouyang", "weight"] > 0.5
    verdicts = [line for line in result.summary().splitlines() if "prefers" in line]
    assert verdicts[0].startswith("PSIS-LOO (rows): prefers true_ouyang")
    assert verdicts[1].startswith("leave-one-family-out (new family): prefers true_ouyang")


def test_tables_are_tidy_and_complete(reference_result, inputs):
    result, out = reference_result
    assert {"elpd_loo", "se_loo", "p_loo", "pareto_k_good", "pareto_k_bad", "pareto_k_very_bad",
            "elpd_waic", "weight", "logo_elpd", "logo_coverage", "extrap_elpd", "extrap_coverage",
            "failed_folds"} <= set(result.table.columns)
    assert len(result.logo) == 2 * len(FAMILIES) and (result.logo["status"] == "ok").all()
    assert result.logo.groupby("spec")["n_rows"].sum().eq(len(inputs["dataset"].frame)).all()
    assert result.logo["coverage"].between(0, 1).all()
    # The extrapolation split holds out only larger D: every held-out family's rows come from the
    # top of its own D range, or it was held out whole (then it is new to the fit).
    assert len(result.extrapolation) and (result.extrapolation["status"] == "ok").all()
    stacked = result.stacked_100t
    assert set(stacked["model"]) == {"true_ouyang", "alt_kumar", "stacked"}
    assert (stacked["pred_lower"] <= stacked["pred_median"]).all()
    for name in ("compare.csv", "logo.csv", "extrapolation.csv", "stacked_100t.csv", "summary.txt"):
        assert (out / name).is_file()
    assert (out / "runs" / "true_ouyang.nc").is_file()


def test_forecast_and_scaleup_splits_are_scored_and_written(reference_result, inputs):
    result, out = reference_result
    table = result.table.set_index("spec")
    for prefix in ("forecast", "scaleup"):
        for col in ("elpd", "diff", "dse", "coverage", "coverage50", "coverage80", "coverage90", "width",
                    "interval_score", "crps"):
            assert np.isfinite(table[f"{prefix}_{col}"]).all(), f"{prefix}_{col}"
    held = folds.forecast_families(inputs["dataset"])
    assert set(result.forecast["family"]) == set(held) and len(held) == 2
    assert (result.forecast["status"] == "ok").all() and len(result.forecast) == 2 * len(held)
    assert set(result.scaleup["family"]) == set(folds.scaleup_masks(inputs["dataset"]))
    assert (result.scaleup["status"] == "ok").all()
    assert len(pd.read_csv(out / "forecast.csv")) == len(result.forecast)
    assert len(pd.read_csv(out / "scaleup.csv")) == len(result.scaleup)
    text = result.summary()
    assert "forecast (families trained longer than any in the fit, as new families): prefers" in text
    assert "scale-up (a family's largest size from its smaller ones): prefers" in text


def test_forecast_holds_out_the_most_trained_families(inputs):
    data = inputs["dataset"]
    largest = data.frame.groupby("family")["tokens"].max().sort_values(ascending=False)
    assert folds.forecast_families(data) == tuple(largest.index[:2])  # 4 families: at least two
    train = folds.forecast_mask(data)
    assert set(data.frame.loc[~train, "family"]) == set(largest.index[:2])
    assert data.frame.loc[train, "tokens"].max() <= largest.iloc[2]
    assert folds.forecast_families(data, 0.5) == tuple(largest.index[:2])
    assert folds.forecast_families(data, 0.9) == tuple(largest.index[:3])  # one family is kept
    with pytest.raises(BayesqidError, match="forecast share"):
        folds.forecast_families(data, 1.0)


def test_forecast_on_the_reference_holds_out_the_heavily_trained_families(reference):
    held = folds.forecast_families(reference)
    assert set(held) == {"Qwen2.5", "Llama-3", "Qwen2", "Llama-3.2"}
    kept = reference.frame[folds.forecast_mask(reference)]
    assert kept["tokens"].max() <= 8e12 < reference.frame["tokens"].max()


def test_scaleup_holds_out_each_familys_largest_size_only(inputs, reference):
    for data in (inputs["dataset"], reference):
        frame = data.frame
        masks = folds.scaleup_masks(data)
        sizes = frame.groupby("family")["params"].nunique()
        assert set(masks) == set(sizes[sizes >= 3].index)
        for fam, train in masks.items():
            held = frame[~train]
            assert set(held["family"]) == {fam}
            assert set(held["params"]) == {frame.loc[frame["family"] == fam, "params"].max()}
            kept = frame.loc[train & (frame["family"] == fam).to_numpy(), "params"]
            assert (kept < held["params"].max()).all()


def test_extrapolation_mask_holds_out_larger_tokens(inputs):
    data = inputs["dataset"]
    train = folds.extrapolation_mask(data, 0.5)
    frame = data.frame.assign(train=train)
    for fam, rows in frame.groupby("family"):
        if rows["tokens"].nunique() > 1:
            assert rows.loc[rows["train"], "tokens"].max() < rows.loc[~rows["train"], "tokens"].min()
            assert rows["train"].any() and not rows["train"].all()
        else:
            assert rows["train"].nunique() == 1, fam
    with pytest.raises(BayesqidError, match="quantile"):
        folds.extrapolation_mask(data, 1.5)


def test_new_family_scoring_shares_one_effect_per_draw(reference_result, inputs):
    """Joint elpd of a family's rows differs from the sum of its rows' elpds (shared effect)."""
    result, _ = reference_result
    logo = result.logo
    assert not np.allclose(logo["elpd_joint"], logo["elpd_rows"])


def test_interrupted_comparison_resumes_to_the_same_tables(reference_result, inputs, tmp_path,
                                                          monkeypatch):
    result, out = reference_result
    shutil.copytree(out / "folds", tmp_path / "folds")
    logo_files = sorted((tmp_path / "folds").glob("logo-*.parquet"))[:3]
    for path in logo_files:  # as if the run had been killed before these folds finished
        path.unlink()
    real, calls = cmp.logo_fold_task, []

    def interrupted(**kwargs):
        calls.append(kwargs["family"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(**kwargs)

    monkeypatch.setattr(cmp, "logo_fold_task", interrupted)
    with warnings.catch_warnings(), pytest.raises(KeyboardInterrupt):
        warnings.simplefilter("ignore")
        cmp.compare(inputs["specs"], inputs["dataset"], cv=cmp.CV_SCHEMES, out=tmp_path,
                    scheduler="synchronous", config=CONFIG, seed=SEED)
    assert not list((tmp_path / "folds").glob("*.part"))  # no partial result files
    assert len(list((tmp_path / "folds").glob("logo-*.parquet"))) == 2 * len(FAMILIES) - 2
    monkeypatch.setattr(cmp, "logo_fold_task", real)
    logs: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = cmp.compare(inputs["specs"], inputs["dataset"], cv=cmp.CV_SCHEMES, out=tmp_path,
                            scheduler="synchronous", config=CONFIG, seed=SEED, log=logs.append)
    assert any("resuming" in line for line in logs)
    pd.testing.assert_frame_equal(again.table, result.table)
    pd.testing.assert_frame_equal(again.logo, result.logo)
    pd.testing.assert_frame_equal(again.stacked_100t, result.stacked_100t)


def test_failed_fold_is_named_not_hidden(reference_result, inputs, tmp_path, monkeypatch):
    _, out = reference_result
    shutil.copytree(out / "folds", tmp_path / "folds")
    victim = next((tmp_path / "folds").glob("logo-alt_kumar-OPT-*.parquet"))
    victim.unlink()

    def broken(**kwargs):
        raise RuntimeError("sampler crashed")

    monkeypatch.setattr(cmp, "logo_fold_task", broken)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cmp.compare(inputs["specs"], inputs["dataset"], cv=("loo", "logo"), out=tmp_path,
                          scheduler="synchronous", config=CONFIG, seed=SEED, retries=1)
    assert list(res.failed) == [victim.stem]
    row = res.logo[(res.logo["spec"] == "alt_kumar") & (res.logo["family"] == "OPT")]
    assert row["status"].iloc[0] == "failed: RuntimeError: sampler crashed"
    table = res.table.set_index("spec")
    assert table.loc["alt_kumar", "failed_folds"] == victim.stem
    assert table.loc["alt_kumar", "logo_families"] == len(FAMILIES) - 1  # compared on common families
    assert f"FAILED fold {victim.stem}" in res.summary()


# --- the command line ---------------------------------------------------------------------------------


def test_cli_compare_writes_the_tables(reference_result, inputs, tmp_path, capsys):
    result, out = reference_result
    shutil.copytree(out / "folds", tmp_path / "folds")  # settings match: everything resumes
    code = main(["compare", *inputs["specs"], "--data", inputs["data"], "--cv", "loo", "logo", "forecast",
                 "scale-up", "--out", str(tmp_path), "--scheduler", "synchronous", "--preset", "ci",
                 "--draws", "150", "--tune", "150", "--seed", str(SEED)])
    assert code == 0
    captured = capsys.readouterr()
    assert "leave-one-family-out (new family): prefers true_ouyang" in captured.out
    written = pd.read_csv(tmp_path / "compare.csv")
    assert list(written["spec"]) == list(result.table["spec"])
    assert written["weight"].sum() == pytest.approx(1.0)
    assert len(pd.read_csv(tmp_path / "logo.csv")) == 2 * len(FAMILIES)
    assert (tmp_path / "stacked_100t.csv").is_file()
    assert {"forecast_interval_score", "scaleup_coverage90"} <= set(written.columns)
    assert (tmp_path / "forecast.csv").is_file() and (tmp_path / "scaleup.csv").is_file()
    assert not (tmp_path / "extrapolation.csv").exists()


def test_report_shows_a_saved_comparison(reference_result, tmp_path, mock_run):
    _, out = reference_result
    run_path = tmp_path / "run.nc"
    mock_run.save(run_path)
    page = tmp_path / "report.html"
    assert main(["report", str(run_path), "--out", str(page), "--compare", str(out)]) == 0
    text = page.read_text(encoding="utf-8")
    assert 'id="compare"' in text and "prefers true_ouyang" in text
    assert "Forecast (families trained longer" in text and "Scale-up (each family" in text
    saved = cmp.load_comparison(out)
    assert len(saved.forecast) == len(reference_result[0].forecast) and saved.scaleup is not None
    with pytest.raises(BayesqidError, match="no finished comparison"):
        cmp.load_comparison(tmp_path)


def _one_line_error(capsys, argv: list[str], *fragments: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("bayesqid compare: error: ")
    for fragment in fragments:
        assert fragment in err, err


def test_cli_bad_spec_lists_are_one_line_errors(inputs, tmp_path, capsys, mock_run):
    out = str(tmp_path / "out")
    _one_line_error(capsys, ["compare", "ouyang", "--out", out], "at least two")
    bad = tmp_path / "bad.toml"
    bad.write_text(TOML.format(name="bad", law="hill", intercept="log_k"), encoding="utf-8")
    _one_line_error(capsys, ["compare", "ouyang", str(bad), "--out", out], "hill")
    run_path = tmp_path / "reference.nc"
    mock_run.save(run_path)  # fitted on the reference data, not on the simulated table
    _one_line_error(capsys, ["compare", str(run_path), inputs["specs"][0], "--data", inputs["data"],
                             "--out", out], "other data")
    _one_line_error(capsys, ["compare", "ouyang", "ouyang", "--out", out], "more than once")
    _one_line_error(capsys, ["compare", "ouyang", "kumar", "--cv", "kfold", "--out", out], "kfold")
    assert not (tmp_path / "out" / "compare.csv").exists()


def test_api_reuses_runs_on_the_same_data_only(inputs, mock_run, reference):
    with pytest.raises(bq.RunError, match="other data"):
        cmp.resolve_candidates([mock_run, bq.load_spec("kumar")], inputs["dataset"])
    reused = cmp.resolve_candidates([mock_run, "kumar"], reference)
    assert reused[0].run is mock_run and reused[0].name == mock_run.spec.name
    assert reused[1].run is None and reused[1].spec.law == "kumar"


# --- the fan-out layer (last: the in-process fits above run before any cluster starts) -----------


def test_fanout_synchronous_stores_resumes_and_names_failures(tmp_path):
    tasks = [Task(f"t{i}", square, {"x": i, "fail": i == 2}) for i in range(4)]
    first = run_tasks(tasks, tmp_path, scheduler="synchronous", retries=1)
    assert sorted(first.results) == ["t0", "t1", "t3"]
    assert first.failed == {"t2": "ValueError: bad input on two lines"}
    assert first.resumed == ()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t0.parquet", "t1.parquet", "t3.parquet"]
    second = run_tasks(tasks, tmp_path, scheduler="synchronous")
    assert second.resumed == ("t0", "t1", "t3")
    pd.testing.assert_frame_equal(second.results["t3"], first.results["t3"])
    with pytest.raises(BayesqidError, match="not unique"):
        run_tasks([tasks[0], tasks[0]], tmp_path, scheduler="synchronous")
    with pytest.raises(BayesqidError, match="filesystem-safe"):
        run_tasks([Task("a/b", square, {"x": 1})], tmp_path, scheduler="synchronous")


def test_fanout_local_cluster_runs_retries_and_keeps_going(tmp_path):
    tasks = [Task(f"t{i}", square, {"x": i, "fail": i == 1}) for i in range(3)]
    outcome = run_tasks(tasks, tmp_path, n_workers=2, retries=1)
    assert sorted(outcome.results) == ["t0", "t2"]
    assert "ValueError: bad input on two lines" in outcome.failed["t1"]
    assert int(outcome.results["t2"]["y"].iloc[0]) == 4
    assert result_path(tmp_path, "t2").is_file()




KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from bayesqid.checks.fanout import Task, run_tasks
from fanout_tasks import slow_square
tasks = [Task(f"t{{i}}", slow_square, {{"x": i}}) for i in range(8)]
run_tasks(tasks, Path({store!r}), n_workers=2)
"""


def test_killed_dask_run_resumes_to_the_same_results(tmp_path):
    """SIGKILL the client of a 2-worker cluster mid-run: the store keeps whole results only, and
    a second run finishes the rest and gives what an uninterrupted run gives."""
    store = tmp_path / "store"
    code = KILLED_RUN.format(tests=str(Path(__file__).parents[1]), store=str(store))
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(store.glob("*.parquet"))) < 2:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the client and its workers, as a killed job would go
    proc.wait()
    kept = sorted(p.stem for p in store.glob("*.parquet"))
    assert 2 <= len(kept) < 8
    for key in kept:  # whole files only: each result was renamed into place complete
        assert len(pd.read_parquet(store / f"{key}.parquet")) == 1
    tasks = [Task(f"t{i}", slow_square, {"x": i}) for i in range(8)]
    resumed = run_tasks(tasks, store, n_workers=2)
    assert set(kept) <= set(resumed.resumed) and not resumed.failed
    fresh = run_tasks(tasks, tmp_path / "fresh", scheduler="synchronous")
    for key, frame in fresh.results.items():
        pd.testing.assert_frame_equal(resumed.results[key], frame)


def test_dask_comparison_resumes_a_partial_store_to_the_same_tables(reference_result, inputs, tmp_path):
    """Two Dask worker processes finish a comparison whose store lost a full fit and two folds
    (fresh processes, so the scores are also reproducible across processes)."""
    result, out = reference_result
    shutil.copytree(out / "folds", tmp_path / "folds")
    lost = [next((tmp_path / "folds").glob("full-alt_kumar-*.parquet")),
            *sorted((tmp_path / "folds").glob("logo-true_ouyang-*.parquet"))[:2]]
    for path in lost:
        path.unlink()
    logs: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cmp.compare(inputs["specs"], inputs["dataset"], cv=cmp.CV_SCHEMES, out=tmp_path,
                          scheduler=None, n_workers=2, config=CONFIG, seed=SEED, log=logs.append)
    assert any("local Dask cluster: 2 worker" in line for line in logs)
    assert sum(line.startswith("finished") for line in logs) == len(lost)
    pd.testing.assert_frame_equal(res.table, result.table)
    pd.testing.assert_frame_equal(res.logo, result.logo)
