"""The bad-input corpus (``tests/data/bad/``) against every command that reads data.

Each file is fed to each command that reads that kind of file (``data --data``, ``fit --data``,
``predict RUN --grid``, ``training-level RUN --measurements``): the command must exit 2 with
exactly one line on stderr naming the file and, where the rule is about a cell, its row and
column, and never a traceback; the Python loader must raise a :class:`DataError` with the same
message. ``tokens`` takes its values as arguments; those are checked here too.

Runs are needed only to reach the data checks, which come before any computation, so the
sampling-free mock run (saved once per module) stands in for a fitted run; ``fit`` is replaced
by a function that fails the test if it is ever reached, proving that bad data stop it before
sampling.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesqid.cli import EXIT_OK, EXIT_USAGE, GATE_COLUMN, main
from bayesqid.data.dataset import GRID_COLUMNS, RECIPE_COLUMNS, load_grid, load_table
from bayesqid.errors import DataError
from bayesqid.questions.grid import check_grid, grid
from bayesqid.questions.predict import BAND_COLUMNS, default_grid, predict
from bayesqid.questions.training import load_measurements
from helpers import one_line, write_rows

BAD = Path(__file__).parent / "data" / "bad"

fit_module = importlib.import_module("bayesqid.sampling.fit")

# Which commands read which files. "grid" is `predict RUN --grid`, "measurements" is
# `training-level RUN --measurements`; "data" and "fit" read canonical tables.
TABLE = ("data", "fit")
ANY = ("data", "fit", "grid", "measurements")  # the file is broken before any schema applies
GRID_TOO = ("data", "fit", "grid")  # a broken cell in a column a grid has too

#: file -> (fragments the one-line error must contain besides the path, commands it applies to)
CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # unreadable or not a CSV at all
    "empty.csv": (("empty file",), ANY),
    "binary_garbage.csv": (("binary data",), ANY),
    "not_utf8.csv": (("row 2", "column 'family'", "not UTF-8", "0xe9"), ANY),
    "unsupported_suffix.txt": (("unsupported file type '.txt'",), ANY),
    "wrong_delimiter_semicolon.csv": (("semicolon-delimited",), ANY),
    "wrong_delimiter_tab.csv": (("tab-delimited",), ANY),
    "short_row.csv": (("row 2", "9 field(s)", "header has 10"), ANY),
    "malformed_quoting.csv": (("row 2", "malformed CSV"),  ANY),
    # the header
    "header_only.csv": (("no data rows",), GRID_TOO),
    "missing_column_tokens.csv": (("missing column(s) 'tokens'", "expected columns"), GRID_TOO),
    "duplicate_column_names.csv": (("duplicated column name(s) 'params'",), GRID_TOO),
    # one bad cell
    "non_numeric_params.csv": (("row 2", "column 'params'", "not a number", "'85M'"), GRID_TOO),
    "overflow_float.csv": (("row 2", "column 'params'", "not a finite number", "'1e400'"), GRID_TOO),
    "negative_params.csv": (("row 4", "column 'params'", "must be > 0"), GRID_TOO),
    "zero_params.csv": (("row 1", "column 'params'", "must be > 0"), GRID_TOO),
    "inf_tokens.csv": (("row 2", "column 'tokens'", "not a finite number"), GRID_TOO),
    "zero_tokens.csv": (("row 3", "column 'tokens'", "must be > 0"), GRID_TOO),
    "negative_tokens.csv": (("row 2", "column 'tokens'", "must be > 0"), GRID_TOO),
    "bits_zero.csv": (("row 1", "column 'bits'", "1..16"), GRID_TOO),
    "bits_negative.csv": (("row 2", "column 'bits'", "1..16"), GRID_TOO),
    "bits_fractional.csv": (("row 3", "column 'bits'", "integer"), GRID_TOO),
    "bits_absurd.csv": (("row 4", "column 'bits'", "1..16", "'64'"), GRID_TOO),
    "bad_group_size.csv": (("row 1", "column 'group_size'", "positive integer"), GRID_TOO),
    "empty_family.csv": (("row 2", "column 'family'", "must not be empty"), GRID_TOO),
    "blank_eval_set.csv": (("row 3", "column 'eval_set'", "must not be empty"), GRID_TOO),
    "nan_qid.csv": (("row 3", "column 'qid'", "not a finite number", "'nan'"), TABLE),
    "missing_qid_value.csv": (("row 4", "column 'qid'", "missing value"), TABLE),
    "loss_overflow.csv": (("row 2", "column 'quant_loss'", "QiD is not finite"), TABLE),
    # measurements (training-level)
    "measurements_with_tokens.csv": (("must not have a 'tokens' column",), ("measurements",)),
    "measurements_two_models.csv": (("row 2", "column 'params'", "one model"), ("measurements",)),
    "measurements_missing_qid_column.csv": (("missing column(s) 'qid'",), ("measurements",)),
    "measurements_nan_qid.csv": (("row 3", "column 'qid'", "not a finite number"), ("measurements",)),
    "measurements_bits_absurd.csv": (("row 2", "column 'bits'", "1..16"), ("measurements",)),
    "measurements_zero_params.csv": (("row 1", "column 'params'", "must be > 0"), ("measurements",)),
    # prediction grids (predict --grid)
    "grid_missing_group_size.csv": (("missing column(s) 'group_size'",), ("grid",)),
    "grid_bits_fractional.csv": (("row 2", "column 'bits'", "integer"), ("grid",)),
    "grid_zero_tokens.csv": (("row 1", "column 'tokens'", "must be > 0"), ("grid",)),
    "grid_empty_method.csv": (("row 2", "column 'method'", "must not be empty"), ("grid",)),
    # recipe cells and column names of grids and measurements (class 1)
    "grid_lr_frac_out_of_range.csv": (("row 2", "column 'lr_frac'", "within 0..1", "'5.0'"), ("grid",)),
    "grid_lr_schedule_unknown.csv": (("row 1", "column 'lr_schedule'", "must be one of", "'warp'"),
                                     ("grid",)),
    "grid_annealed_perhaps.csv": (("row 3", "column 'annealed'", "true, false or unknown"), ("grid",)),
    "grid_output_column.csv": (("column 'mean_lower'", "name of an output column"), ("grid",)),
    "measurements_lr_schedule_unknown.csv": (("row 2", "column 'lr_schedule'", "'warp'"), ("measurements",)),
    "measurements_negative_weight_decay.csv": (("row 1", "column 'weight_decay'", ">= 0"), ("measurements",)),
}

#: Valid data whose duplicated row is kept with a warning (the package's decision).
DUPLICATES = "duplicate_rows.csv"

def _load_checked_grid(path: Path):
    """What `predict --grid` checks: the data-file cell rules, then no column named like an output."""
    return check_grid(load_grid(path), path=str(path), outputs=(*BAND_COLUMNS, GATE_COLUMN))


LOADERS = {"data": load_table, "fit": load_table, "grid": _load_checked_grid,
           "measurements": load_measurements}

PAIRS = [(name, command) for name, (_, commands) in sorted(CASES.items()) for command in commands]


@pytest.fixture(scope="module")
def run_path(mock_run, tmp_path_factory) -> str:
    """A saved run to point `predict`, `tokens` and `training-level` at."""
    return str(mock_run.save(tmp_path_factory.mktemp("bad-inputs") / "mock.nc"))


@pytest.fixture
def no_sampling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("fit() was reached: bad data must stop the command before sampling")

    monkeypatch.setattr(fit_module, "fit", refuse)


def argv(command: str, path: Path, run_path: str, out: Path) -> list[str]:
    return {
        "data": ["data", "--data", str(path)],
        "fit": ["fit", "--data", str(path), "--out", str(out)],
        "grid": ["predict", run_path, "--grid", str(path), "--out", str(out)],
        "measurements": ["training-level", run_path, "--measurements", str(path), "--out", str(out)],
    }[command]


# --- the corpus is complete and documented -------------------------------------------------------


def test_corpus_is_covered_and_documented():
    files = {p.name for p in BAD.iterdir() if p.name != "README.md"}
    assert files == set(CASES) | {DUPLICATES}, "every corpus file has a case here, and vice versa"
    assert len(files) >= 25
    readme = (BAD / "README.md").read_text(encoding="utf-8")
    missing = sorted(name for name in files if f"`{name}`" not in readme)
    assert not missing, f"not listed in tests/data/bad/README.md: {missing}"


# --- every command x every applicable file ------------------------------------------------------


@pytest.mark.parametrize(("name", "command"), PAIRS, ids=[f"{c}-{n}" for n, c in PAIRS])
def test_command_rejects_bad_file(name, command, run_path, tmp_path, capsys, no_sampling):
    path = BAD / name
    out = tmp_path / "out.csv" if command != "fit" else tmp_path / "run.nc"
    code = main(argv(command, path, run_path, out))
    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert captured.out == ""
    line = one_line(captured.err)
    head = {"grid": "predict", "measurements": "training-level"}.get(command, command)
    assert line.startswith(f"bayesqid {head}: error: {path}: ")
    fragments, _ = CASES[name]
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert list(tmp_path.iterdir()) == [], "no output (nor temporary file) after an error"
    # The Python API raises a DataError with exactly the message the CLI printed.
    with pytest.raises(DataError) as err:
        LOADERS[command](path)
    assert line == f"bayesqid {head}: error: {err.value}"


def test_duplicate_rows_are_kept_with_a_warning(capsys):
    path = BAD / DUPLICATES
    assert main(["data", "--data", str(path)]) == EXIT_OK
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{path}: 4 rows")
    line = one_line(captured.err)
    assert line == f"bayesqid data: warning: {path}: 1 duplicated row(s) kept (first: row 3)"
    with pytest.warns(UserWarning, match=r"1 duplicated row\(s\) kept \(first: row 3\)"):
        dataset = load_table(path)
    assert len(dataset.frame) == 4 and dataset.frame.duplicated().sum() == 1


@pytest.mark.parametrize("command", ["data", "fit", "grid", "measurements"])
@pytest.mark.parametrize("case", ["missing", "directory"])
def test_missing_path_and_directory(case, command, run_path, tmp_path, capsys, no_sampling):
    path = tmp_path / "nosuch.csv" if case == "missing" else tmp_path / "a-directory"
    if case == "directory":
        path.mkdir()
    out = tmp_path / "out" / "result"
    assert main(argv(command, path, run_path, out)) == EXIT_USAGE
    line = one_line(capsys.readouterr().err)
    assert f"{path}: " in line
    assert ("does not exist" if case == "missing" else "is a directory") in line
    assert not out.parent.exists()


def test_huge_file_reports_its_last_row(tmp_path, capsys):
    """A 150k-row (~10 MB) table with one bad cell in its last row: found, named, in seconds."""
    n = 150_000
    path = tmp_path / "huge.csv"
    row = "OPT,OPT-125M,85056000,1.8e11,4,128,GPTQ,wikitext2,{qid},ref\n"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("family,model,params,tokens,bits,group_size,method,eval_set,qid,source\n")
        handle.writelines(row.format(qid=f"0.{i:06d}") for i in range(n - 1))
        handle.write(row.format(qid="0.1").replace(",4,", ",99,"))
    start = time.perf_counter()
    assert main(["data", "--data", str(path)]) == EXIT_USAGE
    line = one_line(capsys.readouterr().err)
    assert f"{path}: row {n}, column 'bits'" in line
    assert time.perf_counter() - start < 20


def test_entry_point_process_has_no_traceback(tmp_path):
    """The installed console script, a real process: exit 2, one line, for a file and a grid."""
    exe = Path(sys.executable).with_name("bayesqid")
    for args in (["data", "--data", str(BAD / "not_utf8.csv")],
                 ["fit", "--data", str(BAD / "bits_absurd.csv"), "--out", str(tmp_path / "r.nc")]):
        proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == EXIT_USAGE, proc.stderr
        assert proc.stdout == ""
        one_line(proc.stderr)
    assert list(tmp_path.iterdir()) == []


# --- tokens: the values are arguments -----------------------------------------------------------


@pytest.mark.parametrize(("args", "fragments"), [
    (["--qid", "0"], ["QiD target", "> 0", "got 0"]),
    (["--qid", "-0.3"], ["QiD target", "> 0", "got -0.3"]),
    (["--qid", "nan"], ["QiD target", "finite", "got nan"]),
    (["--qid", "inf"], ["QiD target", "finite", "got inf"]),
    (["--qid", "lots"], ["QiD target", "must be a number", "got lots"]),
    (["--params", "0"], ["params", "> 0", "got 0"]),
    (["--params=-7e9"], ["params", "> 0", "got -7e9"]),
    (["--params", "1e400"], ["params", "finite", "got 1e400"]),
    (["--params", "7B"], ["params", "must be a number", "got 7B"]),
    (["--bits", "0"], ["bits", "1..16", "got 0"]),
    (["--bits", "-3"], ["bits", "1..16", "got -3"]),
    (["--bits", "2.5"], ["bits", "integer", "got 2.5"]),
    (["--bits", "64"], ["bits", "1..16", "got 64"]),
    (["--bits", "four"], ["bits", "integer", "got four"]),
    (["--token-range", "1e12", "1e9"], ["token range"]),
    (["--token-range", "0", "1e9"], ["token range"]),
])
def test_tokens_rejects_bad_values(args, fragments, run_path, tmp_path, capsys):
    out = tmp_path / "budget.csv"
    assert main(["tokens", run_path, *args, "--out", str(out)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    line = one_line(captured.err)
    assert line.startswith("bayesqid tokens: error: ")
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert not out.exists()


@pytest.mark.parametrize("args", [["--group-size", "0"], ["--group-size", "g128"], ["--interval", "2"],
                                  ["--token-range", "1e9"]])
def test_tokens_usage_errors(args, run_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tokens", run_path, *args])
    assert exc.value.code == EXIT_USAGE
    one_line(capsys.readouterr().err)


# --- class 1: recipe cells, output-named columns and family names, generated ---------------------

#: A bad value of every recipe column, as text a file could hold, and the rule it breaks.
_NOT_A_NUMBER = st.sampled_from(["abc", "1,5", "0x", "--1", "true"])
BAD_RECIPE = {
    "lr_frac": st.one_of(st.floats(1.0001, 1e300).map(repr), st.floats(-1e300, -1e-6).map(repr),
                         st.sampled_from(["inf", "-inf", "nan", "1e400"]), _NOT_A_NUMBER),
    "weight_decay": st.one_of(st.floats(-1e300, -1e-9).map(repr), st.sampled_from(["inf", "nan", "1e999"]),
                              _NOT_A_NUMBER),
    "lr_schedule": st.text(st.characters(codec="ascii", categories=["L"]), min_size=1, max_size=8).filter(
        lambda t: t.lower() not in ("cosine", "linear", "wsd", "constant", "unknown")),
    "train_precision": st.sampled_from(["fp64", "int8", "half", "bf32", "float16", "32"]),
    "annealed": st.sampled_from(["perhaps", "2", "yess", "-1", "0.5", "maybe not"]),
}
if "post_trained" in RECIPE_COLUMNS:
    BAD_RECIPE["post_trained"] = st.sampled_from(["instruct", "2", "sometimes", "0.5"])
BAD_RECIPE |= {
    "dropout": st.one_of(st.floats(1.0, 1e300).map(repr), st.floats(-1e300, -1e-9).map(repr),
                         st.sampled_from(["inf", "nan"]), _NOT_A_NUMBER),
    "grad_clip": st.one_of(st.floats(-1e300, -1e-9).map(repr), st.sampled_from(["inf", "nan", "off"]),
                           _NOT_A_NUMBER),
    "peak_lr": st.one_of(st.floats(-1e300, 0.0).map(repr), st.floats(10.001, 1e300).map(repr),
                         st.sampled_from(["inf", "nan"]), _NOT_A_NUMBER),
    "average_last": st.one_of(st.floats(0.01, 0.99).map(repr), st.integers(-1000, -1).map(str),
                              st.sampled_from(["inf", "nan", "2.5", "last"]), _NOT_A_NUMBER),
}
GOOD_RECIPE = {"lr_frac": "0.5", "weight_decay": "0.1", "lr_schedule": "wsd", "train_precision": "bf16",
               "annealed": "true", "post_trained": "false", "dropout": "0.1", "grad_clip": "1.0",
               "peak_lr": "3e-4", "average_last": "3"}
GRID_ROW = {"family": "new family", "params": "7e9", "tokens": "1e14", "bits": "3", "method": "GPTQ",
            "group_size": "128", "eval_set": "wikitext2"}
MEASUREMENT_ROW = {"family": "X", "params": "1e9", "bits": "3", "method": "GPTQ", "group_size": "128",
                   "eval_set": "wikitext2", "qid": "0.3"}


@st.composite
def bad_recipe_file(draw):
    """(kind, rows, 1-based bad row, bad column, bad value): one bad recipe cell among good ones."""
    kind = draw(st.sampled_from(["grid", "measurements"]))
    column = draw(st.sampled_from(sorted(BAD_RECIPE)))
    value = draw(BAD_RECIPE[column])
    others = draw(st.lists(st.sampled_from(sorted(BAD_RECIPE)), unique=True, max_size=3))
    n = draw(st.integers(1, 6))
    bad_row = draw(st.integers(1, n))
    base = GRID_ROW if kind == "grid" else MEASUREMENT_ROW
    rows = []
    for i in range(1, n + 1):
        row = dict(base) | {c: GOOD_RECIPE[c] for c in others}
        row["bits"] = str(2 + i % 7)
        if i == bad_row:
            row[column] = value
        else:
            row.setdefault(column, GOOD_RECIPE[column])
        rows.append(row)
    return kind, rows, bad_row, column, value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_recipe_file())
def test_bad_recipe_cells_in_grids_and_measurements(case, run_path, tmp_path_factory):
    """Any bad recipe cell of a grid or measurements file: exit 2, one line naming file, row and
    column, nothing written; the Python loader raises the same DataError."""
    kind, rows, bad_row, column, value = case
    work = tmp_path_factory.mktemp("recipe")
    path = write_rows(work / f"{kind}.csv", rows, list(dict.fromkeys(c for r in rows for c in r)))
    out = work / "out" / "result.csv"
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()) as stdout, contextlib.redirect_stderr(err):
        code = main(argv(kind, path, run_path, out))
    assert code == EXIT_USAGE and stdout.getvalue() == ""
    line = one_line(err.getvalue())
    head = {"grid": "predict", "measurements": "training-level"}[kind]
    assert line.startswith(f"bayesqid {head}: error: {path}: row {bad_row}, column '{column}': "), line
    assert not out.parent.exists()
    with pytest.raises(DataError) as raised:
        LOADERS[kind](path)
    assert line == f"bayesqid {head}: error: {raised.value}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(column=st.sampled_from(sorted(BAD_RECIPE)), data=st.data())
def test_python_grids_get_the_same_cell_rules(column, data, mock_run):
    """``grid(**columns)`` and ``predict`` on a hand-made frame refuse a bad recipe cell in one
    line naming the row and column, instead of a traceback from inside the model's design."""
    value = data.draw(BAD_RECIPE[column])
    frame = default_grid().assign(**{column: value})
    with pytest.raises(DataError) as raised:
        predict(mock_run, frame)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"<grid>: row 1, column '{column}': ")
    with pytest.raises(DataError):
        grid(family="x", params=1e9, tokens=1e12, bits=3, **{column: value})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(column=st.sampled_from([*BAND_COLUMNS, GATE_COLUMN]), position=st.integers(0, len(GRID_COLUMNS)))
def test_grid_column_named_like_an_output_is_refused(column, position, run_path, tmp_path_factory):
    columns = list(GRID_COLUMNS)
    columns.insert(position, column)
    work = tmp_path_factory.mktemp("outcol")
    path = write_rows(work / "grid.csv", [GRID_ROW | {column: "0.1"}], columns)
    out = work / "bands.csv"
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(["predict", run_path, "--grid", str(path), "--out", str(out)]) == EXIT_USAGE
    line = one_line(err.getvalue())
    assert line.startswith(f"bayesqid predict: error: {path}: column '{column}' has the name of an output")
    assert not out.exists()


#: Names no fitted family has: typos of fitted names and arbitrary text.
_UNFITTED = st.one_of(st.sampled_from(["opt", "OPT ", "llama-2", "Llama2", "BLOOMZ", "olmo", "Pythia-x"]),
                      st.text(st.characters(codec="ascii", categories=["L", "N", "P", "Zs"]), min_size=1,
                              max_size=20).filter(lambda t: t.strip() and not t.startswith("-")))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_UNFITTED, command=st.sampled_from(["tokens", "training-level"]))
def test_unknown_family_is_refused_unless_new_family_is_asked(name, command, run_path, mock_run,
                                                              tmp_path_factory):
    if name in mock_run.levels["family"]:
        return
    work = tmp_path_factory.mktemp("family")
    measurements = write_rows(work / "m.csv",
                              [MEASUREMENT_ROW, MEASUREMENT_ROW | {"bits": "4", "qid": "0.1"}])
    out = work / "out.csv"
    base = {"tokens": ["tokens", run_path, "--qid", "0.3", "--params", "7e9", "--bits", "3"],
            "training-level": ["training-level", run_path, "--measurements", str(measurements)]}[command]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()) as stdout, contextlib.redirect_stderr(err):
        code = main([*base, f"--family={name}", "--out", str(out)])
    assert code == EXIT_USAGE and stdout.getvalue() == ""
    line = one_line(err.getvalue())
    assert line.startswith(f"bayesqid {command}: error: family {name!r} is not a fitted family"), line
    assert "--new-family" in line and "'OPT'" in line  # the fitted families are listed
    assert not out.exists()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main([*base, f"--family={name}", "--new-family", "--out", str(out)]) == EXIT_OK
    assert out.exists()


@pytest.mark.parametrize("command", ["tokens", "training-level"])
def test_typo_of_a_family_suggests_it_and_new_family_refuses_a_fitted_name(command, run_path, tmp_path,
                                                                          capsys):
    measurements = write_rows(tmp_path / "m.csv", [MEASUREMENT_ROW])
    base = {"tokens": ["tokens", run_path, "--qid", "0.3", "--params", "7e9", "--bits", "3"],
            "training-level": ["training-level", run_path, "--measurements", str(measurements)]}[command]
    assert main([*base, "--family", "opt"]) == EXIT_USAGE
    assert "(did you mean 'OPT'?)" in one_line(capsys.readouterr().err)
    assert main([*base, "--family", "OPT", "--new-family"]) == EXIT_USAGE
    assert "'OPT' is a fitted family of this run, not a new one" in one_line(capsys.readouterr().err)
    assert main([*base, "--family", "OPT"]) == EXIT_OK


def test_new_family_labels_the_rows_of_tokens(mock_run):
    from bayesqid.questions.inverse import token_budget

    table = token_budget(mock_run, qid_targets=[0.3], params=[7e9], bits=[3], family="my model",
                         new_family=True)
    assert list(table["family"]) == ["my model"] and "family=my model" in table["new_levels"][0]
    assert math.isfinite(table["tokens_median"][0]) or table["frac_never"][0] > 0
