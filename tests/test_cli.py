"""The command line: `bayesqid data | fit | predict`, exit codes and one-line errors."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import bayesqid as bq
from bayesqid.cli import EXIT_OK, EXIT_USAGE, main
from bayesqid.data.dataset import GRID_COLUMNS
from bayesqid.data.design import size_label
from bayesqid.questions.predict import BAND_COLUMNS, default_grid
from bayesqid.sampling.run import load_run
from helpers import one_line, write_rows

# `bayesqid.fit` the attribute is the function (re-exported by the package); the module:
fit_module = importlib.import_module("bayesqid.sampling.fit")

VALID = {
    "family": "OPT", "model": "OPT-125M", "params": "85056000", "tokens": "1.8e11", "bits": "4",
    "group_size": "128", "method": "GPTQ", "eval_set": "wikitext2", "qid": "0.118225", "source": "test",
}  # fmt: skip


def valid_rows(n: int = 4) -> list[dict]:
    return [dict(VALID, model=f"m{i}", qid=str(0.1 + 0.01 * i)) for i in range(n)]


# Each bad table: (rows, columns or None, expected fragments: row and column where they apply).
def _bad(at: int, **cells) -> list[dict]:
    rows = valid_rows()
    rows[at - 1].update(cells)
    return rows


BAD_TABLES = {
    "missing-column": (valid_rows(), [c for c in VALID if c != "tokens"], ["missing column", "'tokens'"]),
    "non-numeric-params": (_bad(2, params="85M"), None, ["row 2", "column 'params'", "not a number"]),
    "negative-tokens": (_bad(3, tokens="-1e11"), None, ["row 3", "column 'tokens'", "> 0"]),
    "zero-bits": (_bad(1, bits="0"), None, ["row 1", "column 'bits'", "1..16"]),
    "fractional-bits": (_bad(4, bits="2.5"), None, ["row 4", "column 'bits'", "integer"]),
    "empty-family": (_bad(2, family=""), None, ["row 2", "column 'family'", "empty"]),
    "nan-qid": (_bad(3, qid="nan"), None, ["row 3", "column 'qid'", "finite"]),
    "missing-qid": (_bad(1, qid=""), None, ["row 1", "column 'qid'", "missing"]),
}


@pytest.fixture(params=sorted(BAD_TABLES))
def bad_csv(request, tmp_path):
    rows, columns, fragments = BAD_TABLES[request.param]
    return write_rows(tmp_path / f"{request.param}.csv", rows, columns), fragments


# --- data --------------------------------------------------------------------------------------


def test_data_summarises_reference(capsys):
    assert main(["data"]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out.startswith("<bundled reference>: 1293 rows")
    assert "families (15)" in out and "OLMo: 368" in out and "excluded: 221 rows" in out
    assert "part of the network quantized only" in out and "pipeline failed" in out
    assert err == ""


def test_data_summarises_a_user_table(tmp_path, capsys):
    path = write_rows(tmp_path / "ok.csv", valid_rows())
    assert main(["data", "--data", str(path)]) == EXIT_OK
    out, _ = capsys.readouterr()
    assert out.startswith(f"{path}: 4 rows")


def test_data_accepts_zero_and_negative_qid(tmp_path, capsys):
    rows = valid_rows()
    rows[0]["qid"], rows[1]["qid"], rows[2]["qid"] = "0", "-0.004", "0.01"
    path = write_rows(tmp_path / "small.csv", rows)
    assert main(["data", "--data", str(path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert "QiD < 0.02 nats: 3 rows, of which < 0: 1" in out
    assert err == ""


def test_data_rejects_bad_tables(bad_csv, capsys):
    path, fragments = bad_csv
    assert main(["data", "--data", str(path)]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    line = one_line(err)
    assert line.startswith("bayesqid data: error: ")
    for fragment in [str(path), *fragments]:
        assert fragment in line, f"{fragment!r} not in {line!r}"


@pytest.mark.parametrize("case", ["missing", "directory", "binary", "wrong-suffix", "not-utf8"])
def test_data_rejects_unreadable_files(case, tmp_path, capsys):
    path = {
        "missing": tmp_path / "nosuch.csv",
        "directory": tmp_path,
        "binary": tmp_path / "binary.csv",
        "wrong-suffix": tmp_path / "table.xlsx",
        "not-utf8": tmp_path / "latin1.csv",
    }[case]
    if case == "binary":
        path.write_bytes(b"family,params\x00\x01\x02")
    elif case == "wrong-suffix":
        path.write_text("x", encoding="utf-8")
    elif case == "not-utf8":
        path.write_bytes("family\ncaf\u00e9\n".encode("latin-1"))
    assert main(["data", "--data", str(path)]) == EXIT_USAGE
    line = one_line(capsys.readouterr().err)
    assert str(path) in line


def test_installed_entry_point_exit_code(tmp_path):
    """The real console script: exit status 2 and one line on stderr, no traceback."""
    rows, columns, _ = BAD_TABLES["fractional-bits"]
    path = write_rows(tmp_path / "bad.csv", rows, columns)
    exe = Path(sys.executable).with_name("bayesqid")
    assert exe.exists(), f"console script not installed next to {sys.executable}"
    proc = subprocess.run([str(exe), "data", "--data", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    line = one_line(proc.stderr)
    assert "row 4" in line and "column 'bits'" in line


# --- fit -----------------------------------------------------------------------------------------


@pytest.fixture
def no_sampling(monkeypatch):
    """Fail loudly if a command reaches the sampler."""
    def refuse(*args, **kwargs):
        raise AssertionError("fit() was called")

    monkeypatch.setattr(fit_module, "fit", refuse)


def test_fit_with_bad_data_exits_before_sampling(bad_csv, tmp_path, capsys, no_sampling):
    path, fragments = bad_csv
    out_run = tmp_path / "run.nc"
    assert main(["fit", "--data", str(path), "--out", str(out_run)]) == EXIT_USAGE
    line = one_line(capsys.readouterr().err)
    assert line.startswith("bayesqid fit: error: ")
    assert all(f in line for f in [str(path), *fragments])
    assert not out_run.exists()


def test_fit_with_unknown_spec(tmp_path, capsys, no_sampling):
    assert main(["fit", "--spec", "nosuch", "--out", str(tmp_path / "r.nc")]) == EXIT_USAGE
    line = one_line(capsys.readouterr().err)
    assert "unknown spec 'nosuch'" in line and "ouyang" in line


def test_fit_with_invalid_spec_file(tmp_path, capsys, no_sampling):
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "bad"\nlaw = "ouyang"\n[likelihood]\nnu = "four"\n', encoding="utf-8")
    assert main(["fit", "--spec", str(spec), "--out", str(tmp_path / "r.nc")]) == EXIT_USAGE
    line = one_line(capsys.readouterr().err)
    assert str(spec) in line and "'nu' must be int" in line


@pytest.mark.parametrize("args", [["--draws", "0"], ["--chains", "two"], ["--sampler", "stan"],
                                  ["--tune", "-5"]])
def test_fit_usage_errors(args, capsys, no_sampling):
    with pytest.raises(SystemExit) as exc:
        main(["fit", *args])
    assert exc.value.code == EXIT_USAGE
    one_line(capsys.readouterr().err)


@pytest.fixture
def fake_fit(monkeypatch, mock_run):
    """Replace sampling by the mock run; record what the command asked for."""
    calls = []

    def fake(spec, dataset, config, *, log=None):
        calls.append({"spec": spec, "dataset": dataset, "config": config})
        log("sampling (fake)")
        return mock_run

    monkeypatch.setattr(fit_module, "fit", fake)
    return calls


def test_fit_command_saves_prints_and_passes_settings(fake_fit, mock_run, tmp_path, capsys):
    out_run = tmp_path / "runs" / "r.nc"
    code = main(["fit", "--out", str(out_run), "--draws", "50", "--tune", "60", "--chains", "3",
                 "--seed", "7", "--sampler", "pymc"])
    assert code == EXIT_OK
    (call,) = fake_fit
    cfg = call["config"]
    assert (cfg.sampler, cfg.draws, cfg.tune, cfg.chains, cfg.seed) == ("pymc", 50, 60, 3, 7)
    assert 1 <= cfg.cores <= 3
    assert call["spec"].name == "ouyang_lineage" and call["dataset"].path == "<bundled reference>"
    out, err = capsys.readouterr()
    assert out.startswith("convergence gate: ")
    assert f"run saved to {out_run}" in out
    assert len(table_rows(out)) == 12
    assert "[bayesqid] sampling (fake)" in err
    assert load_run(out_run).spec.to_json() == call["spec"].to_json()


def test_fit_strict_exit_code_follows_the_gate(fake_fit, mock_run, tmp_path, capsys):
    code = main(["fit", "--out", str(tmp_path / "r.nc"), "--strict"])
    assert code == (EXIT_OK if mock_run.diagnostics.passed else 1)
    capsys.readouterr()


# --- predict -----------------------------------------------------------------------------------


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if "new family" in line and "QiD in nats" not in line]


@pytest.mark.nuts
def test_predict_prints_the_default_table(ci_run_path, capsys):
    code = main(["predict", ci_run_path])
    out, err = capsys.readouterr()
    assert code == EXIT_OK
    rows = table_rows(out)
    assert len(rows) == 12
    assert "QiD in nats, median [90% interval]" in out
    assert [int(r.split()[1]) for r in rows] == [2, 3, 4] * 4
    assert "Traceback" not in err


@pytest.mark.nuts
def test_predict_grid_to_csv(ci_run_path, tmp_path, capsys):
    # OPT-1.3B at its own N: a fitted size, so those rows draw no offset.
    grid = pd.concat([default_grid(), default_grid(family="OPT", params=(1208602624.0,), eval_set="c4")],
                     ignore_index=True)
    grid["note"] = [f"row{i}" for i in range(len(grid))]
    grid_path = tmp_path / "grid.csv"
    grid.to_csv(grid_path, index=False)
    out_path = tmp_path / "out" / "bands.csv"
    assert main(["predict", ci_run_path, "--grid", str(grid_path), "--out", str(out_path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == "", "with --grid and --out the table goes to the file only"
    assert f"wrote {len(grid)} rows to {out_path}" in err
    table = pd.read_csv(out_path, keep_default_na=False)
    assert list(table.columns) == [*GRID_COLUMNS, "note", *BAND_COLUMNS, "convergence_gate"]
    gate = bq.load_run(ci_run_path).diagnostics
    expected = "passed" if gate.passed else "FAILED: " + "; ".join(gate.problems)
    assert (table["convergence_gate"] == expected).all()
    assert len(table) == len(grid)
    assert list(table["note"]) == list(grid["note"])
    # The default varies by lineage and size: a new family draws all three offsets.
    new_family = [f"lineage=new family;family=new family;size={size_label('new family', n)}"
                  for n in table["params"][:12]]
    assert list(table["new_levels"][:12]) == new_family
    assert (table["new_levels"][12:] == "").all()
    for band in ("mean", "pred"):
        assert (table[f"{band}_lower"] <= table[f"{band}_median"]).all()
        assert (table[f"{band}_median"] <= table[f"{band}_upper"]).all()
    assert [p.name for p in out_path.parent.iterdir()] == ["bands.csv"]


@pytest.mark.nuts
def test_predict_interval_option(ci_run_path, tmp_path, capsys):
    grid_path = tmp_path / "grid.csv"
    default_grid().to_csv(grid_path, index=False)
    paths = {}
    for interval in ("0.5", "0.9"):
        paths[interval] = tmp_path / f"{interval}.csv"
        assert main(["predict", ci_run_path, "--grid", str(grid_path), "--interval", interval,
                     "--out", str(paths[interval])]) == EXIT_OK
    narrow, wide = pd.read_csv(paths["0.5"]), pd.read_csv(paths["0.9"])
    assert (narrow["mean_upper"] - narrow["mean_lower"] < wide["mean_upper"] - wide["mean_lower"]).all()
    capsys.readouterr()


@pytest.mark.nuts
def test_predict_strict_follows_the_gate(ci_run, ci_run_path, capsys):
    code = main(["predict", ci_run_path, "--strict"])
    assert code == (EXIT_OK if ci_run.diagnostics.passed else 1)
    err = capsys.readouterr().err
    assert ("FAILED its convergence gate" in err) == (not ci_run.diagnostics.passed)


@pytest.mark.parametrize("content", [b"not a netcdf file at all", b""], ids=["garbage", "empty"])
def test_predict_on_garbage(content, tmp_path, capsys):
    path = tmp_path / "garbage.nc"
    path.write_bytes(content)
    assert main(["predict", str(path)]) == EXIT_USAGE
    line = one_line(capsys.readouterr().err)
    assert line.startswith("bayesqid predict: error: ") and str(path) in line


def test_predict_on_missing_run(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nosuch.nc")]) == EXIT_USAGE
    assert "does not exist" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("interval", ["1.5", "0", "1", "-0.2", "wide"])
def test_predict_invalid_interval(interval, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(tmp_path / "run.nc"), "--interval", interval])
    assert exc.value.code == EXIT_USAGE
    line = one_line(capsys.readouterr().err)
    assert "--interval" in line and "(0, 1)" in line


def test_predict_bad_grid(mock_run, tmp_path, capsys):
    run_path = mock_run.save(tmp_path / "mock.nc")
    grid = default_grid().astype({"bits": object})
    grid.loc[5, "bits"] = 2.5
    grid_path = tmp_path / "grid.csv"
    grid.to_csv(grid_path, index=False)
    assert main(["predict", str(run_path), "--grid", str(grid_path)]) == EXIT_USAGE
    line = one_line(capsys.readouterr().err)
    assert str(grid_path) in line and "row 6" in line and "column 'bits'" in line


def test_predict_on_mock_run(mock_run, tmp_path, capsys):
    run_path = mock_run.save(tmp_path / "mock.nc")
    assert main(["predict", str(run_path)]) == EXIT_OK
    assert len(table_rows(capsys.readouterr().out)) == 12


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == EXIT_USAGE
    one_line(capsys.readouterr().err)
