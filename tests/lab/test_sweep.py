"""A tiny lab sweep end to end: rows that validate, checkpoints, manifest, kill and resume."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

import bayesqid as bq
from bayesqid.errors import BayesqidError, DataError, SpecError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from bayesqid.lab import sweep  # noqa: E402  (after the skips: it needs the lab's packages to run)

#: Smaller than the shipped smoke config: one 1-layer model, a cosine run (with the mean of its
#: last 2 checkpoints) and a WSD run with one cooldown branch, 32k tokens each, RTN at 3 and 4
#: bits on 1k evaluation tokens.
TINY = """
name = "tiny"
[sizes.tiny]
layers = 1
d_model = 16
heads = 2
ffn = 32
[train]
tokens = 32768
batch = 8
seq_len = 32
seeds = [5]
checkpoints = [8192, 16384]
[corpus]
train_bytes = 200000
[recipe_defaults]
peak_lr = 5e-3
warmup_tokens = 2048
dropout = 0.1
[recipes.cosine]
schedule = "cosine"
average_last = 2
[recipes.wsd]
schedule = "wsd"
cooldown_from = [8192]
[measure]
bits = [3, 4]
methods = ["rtn"]
group_size = 16
eval_tokens = 1024
calib_tokens = 512
"""
RECIPE_VALUES = {"lr_schedule": {"cosine", "linear", "wsd", "constant", "unknown"},
                 "train_precision": {"fp32", "bf16", "fp16", "fp8", "unknown"}}


def _run(config, out, progress=None):
    return sweep.run_lab(config, out, scheduler="synchronous", threads=1, progress=progress)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, config_path):
    """One uninterrupted sweep: (its directory, its qid.csv text)."""
    out = tmp_path_factory.mktemp("sweep")
    _run(config_path, out)
    return out, (out / "qid.csv").read_text()


def test_rows_validate_and_carry_the_recipe(finished) -> None:
    out, _ = finished
    rows = pd.read_csv(out / "qid.csv")
    canonical = bq.validate(rows, path="qid.csv")
    # 2 bit widths x (cosine 3 + 1 average, wsd 3 + 1 branch)
    assert len(canonical) == len(rows) == 2 * (3 + 1 + 3 + 1)
    assert set(rows["family"]) == {"cosine", "wsd"} and set(rows["model"]) == {"tiny"}
    assert set(rows["lr_schedule"]) <= RECIPE_VALUES["lr_schedule"]
    assert set(rows["train_precision"]) <= RECIPE_VALUES["train_precision"]
    assert rows["lr_frac"].between(0, 1).all() and (rows["weight_decay"] >= 0).all()
    assert set(rows["seed"]) == {5} and set(rows["dropout"]) == {0.1}
    averaged = rows[rows["average_last"] == 2]
    assert len(averaged) == 2 and set(averaged["family"]) == {"cosine"} and set(averaged["tokens"]) == {32768}
    assert set(rows["average_last"]) == {0, 2}
    assert {"dropout", "grad_clip", "peak_lr", "average_last", "train_epochs"} <= set(rows.columns)
    # 200,000 training bytes: the final checkpoint has read them 32768 / 200000 times on average
    assert rows.loc[rows["tokens"] == 32768, "train_epochs"].eq(round(32768 / 200_000, 6)).all()
    rows = rows[rows["average_last"] == 0]
    by = rows.drop_duplicates(["family", "tokens", "cooldown_from"]).set_index(["family", "tokens"])
    end = by.loc[("cosine", 32768)]
    assert end["annealed"] and end["lr_frac"] == pytest.approx(0.1)
    assert not by.loc[("cosine", 16384), "annealed"]
    assert by.loc[("wsd", 16384), "lr_frac"] == 1.0 and not by.loc[("wsd", 16384), "annealed"]
    branch = by.loc[("wsd", 10240)]  # the cooldown branch from 8192 tokens ends annealed at 8192 / 0.8
    assert branch["annealed"] and branch["cooldown_from"] == 8192 and branch["lr_frac"] == pytest.approx(0.1)
    assert rows["params"].gt(0).all() and rows["source"].str.startswith("bayesqid lab tiny: tiny/").all()


def test_checkpoints_and_manifest(finished) -> None:
    out, _ = finished
    run = out / "checkpoints" / "tiny" / "wsd" / "seed5"
    names = sorted(p.name for p in run.iterdir())
    assert names == ["cooldown-t000000008192-t000000010240", "main-t000000008192", "main-t000000016384",
                     "main-t000000032768"]
    for name in names:
        assert (run / name / "model.safetensors").is_file() and (run / name / "config.json").is_file()
        assert not (run / name / "state").exists()  # resume state is dropped once nothing needs it
    assert not [p for p in out.rglob("*") if p.suffix in {".bin", ".pt", ".pkl", ".pickle"}]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["device"] == "cpu" and manifest["seeds"] == [5]
    assert len(manifest["corpus"]["train"]["sha256"]) == 64 and manifest["versions"]["torch"]
    assert manifest["config"]["recipes"][1]["cooldown_from"] == [8192]
    assert manifest["epochs_per_run"] == {"cosine": round(32768 / 200_000, 6),
                                          "wsd": round(34816 / 200_000, 6)}
    cosine = out / "checkpoints" / "tiny" / "cosine" / "seed5"
    mean = cosine / "average-last2-t000000032768"
    assert json.loads((mean / "bayesqid.json").read_text())["averaged"] == ["main-t000000016384",
                                                                           "main-t000000032768"]
    from safetensors.torch import load_file

    parts = [load_file(cosine / n / "model.safetensors")
             for n in ("main-t000000016384", "main-t000000032768")]
    averaged = load_file(mean / "model.safetensors")
    for key, value in averaged.items():
        torch.testing.assert_close(value, (parts[0][key] + parts[1][key]) / 2)


def test_killed_sweep_resumes_to_the_same_rows(tmp_path, config_path, finished) -> None:
    _, expected = finished
    out = tmp_path / "killed"
    seen = []

    def kill_at_wsd_second_checkpoint(line: str) -> None:
        seen.append(line)
        if line.startswith("[tiny/wsd/seed5] checkpoint main-t000000016384"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(config_path, out, kill_at_wsd_second_checkpoint)
    assert not (out / "qid.csv").exists()
    assert (out / "tasks" / "tiny--cosine--seed5.parquet").is_file()  # the finished run is stored
    lines = []
    _run(config_path, out, lines.append)
    assert any("resuming: 1 of 2 tasks" in line for line in lines)
    assert any(line == "[tiny/wsd/seed5] resuming at 16,384 tokens" for line in lines)
    assert (out / "qid.csv").read_text() == expected  # deterministic: same rows as never interrupted
    again = []
    _run(config_path, out, again.append)  # a finished sweep only reloads its rows
    assert any("resuming: 2 of 2 tasks" in line for line in again)
    assert (out / "qid.csv").read_text() == expected


def test_out_holding_another_sweep_is_refused(tmp_path, finished) -> None:
    out, _ = finished
    other = tmp_path / "other.toml"
    other.write_text(TINY.replace("seeds = [5]", "seeds = [6]"))
    with pytest.raises(SpecError, match="holds a lab sweep with another config"):
        _run(other, out)


def test_unwritable_out_is_one_line(tmp_path, config_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError) as info:
        _run(config_path, blocker / "out")
    assert str(info.value).startswith(f"{blocker / 'out'}: cannot be written") and "\n" not in str(info.value)


def test_bundled_lab_dataset(tmp_path, monkeypatch, finished) -> None:
    with pytest.raises(DataError, match="no bundled lab dataset 'nope'"):
        sweep.lab_dataset_path("nope")
    out, _ = finished
    (tmp_path / "lab-x").mkdir()
    (tmp_path / "lab-x" / "qid.csv").write_text((out / "qid.csv").read_text())
    monkeypatch.setattr(sweep, "DATA_DIR", tmp_path)
    assert sweep.lab_dataset_path("lab-x") == tmp_path / "lab-x" / "qid.csv"
    frame = sweep.load_lab_dataset("lab-x")
    assert "lr_frac" in frame.columns and len(bq.validate(frame)) == len(frame)


def test_command_line(tmp_path, capsys, config_path) -> None:
    from bayesqid.lab.command import add_lab_parser, run_lab

    parser = argparse.ArgumentParser()
    add_lab_parser(parser.add_subparsers(dest="command"))
    assert run_lab(parser.parse_args(["lab", "check", str(config_path)])) == 0
    assert "cooldown branches 8,192->10,240" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace('schedule = "wsd"', 'schedule = "foo"'))
    with pytest.raises(SpecError, match=r"bad.toml: recipes.wsd.schedule: unknown schedule 'foo'"):
        run_lab(parser.parse_args(["lab", "run", str(bad), "--out", str(tmp_path / "o")]))
    from bayesqid import cli

    if "lab" not in cli.COMMANDS and "lab" not in cli.build_parser().format_help():
        pytest.skip("bayesqid lab is not wired into cli.py yet")
    assert cli.main(["lab", "run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "recipes.wsd.schedule: unknown schedule 'foo'" in err
    assert isinstance(SpecError("x"), BayesqidError)
