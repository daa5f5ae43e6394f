"""Broken runs and specs at the command line, the --strict gate, interruption and reproducibility.

Complements ``test_bad_inputs.py`` (bad data files), ``test_run.py`` (loading broken runs from
Python) and ``test_spec.py`` (broken specs from Python): here every command that uses a run or
a spec is driven through :func:`bayesqid.cli.main`, or as a real process where signals or
bitwise reproducibility are the point.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesqid as bq
from bayesqid.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from bayesqid.errors import RunError
from bayesqid.sampling.run import Run, load_run
from helpers import one_line

fit_module = importlib.import_module("bayesqid.sampling.fit")
sampler_module = importlib.import_module("bayesqid.engines.sampler")
EXE = Path(sys.executable).with_name("bayesqid")

MEASUREMENTS = "family,params,bits,method,group_size,eval_set,qid\nX,1e9,3,GPTQ,128,wikitext2,0.31\n" \
               "X,1e9,4,GPTQ,128,wikitext2,0.08\n"


@pytest.fixture(scope="module")
def saved(mock_run, tmp_path_factory) -> Path:
    return mock_run.save(tmp_path_factory.mktemp("robust") / "mock.nc")


@pytest.fixture(scope="module")
def measurements(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("robust-m") / "m.csv"
    path.write_text(MEASUREMENTS, encoding="utf-8")
    return path


def with_attr(saved: Path, target: Path, name: str, value: str) -> Path:
    idata = az.from_netcdf(saved, engine="h5netcdf")
    idata.attrs[name] = value
    idata.to_netcdf(str(target), engine="h5netcdf")
    return target


def run_commands(run: str, measurements: Path, out: Path) -> dict[str, list[str]]:
    """Every command that reads a run, with small, valid other arguments."""
    return {
        "predict": ["predict", run, "--out", str(out)],
        "tokens": ["tokens", run, "--qid", "0.3", "--params", "7e9", "--bits", "3", "--out", str(out)],
        "training-level": ["training-level", run, "--measurements", str(measurements), "--out", str(out)],
    }


# --- broken run files at the command line ------------------------------------------------------


def _broken_run(kind: str, saved: Path, tmp_path: Path, spec_json: str) -> tuple[Path, str]:
    path = tmp_path / f"{kind}.nc"
    if kind == "truncated":
        data = saved.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "not a readable NetCDF run"
    if kind == "corrupt":
        data = bytearray(saved.read_bytes())
        data[: 4096] = np.random.default_rng(8).bytes(4096)  # superblock and root group gone
        path.write_bytes(bytes(data))
        return path, "not a readable NetCDF run"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "not a readable NetCDF run"
    if kind == "foreign":
        xr.Dataset({"t": ("x", [1.0, 2.0])}, attrs={"title": "weather"}).to_netcdf(path, engine="h5netcdf")
        return path, "not a bayesqid run"
    if kind == "missing":
        return path, "does not exist"
    if kind == "directory":
        path.mkdir()
        return path, "directory"
    # class 3: the file opens, but its contents break the spec's contract
    if kind in ("nan-draws", "missing-variable"):
        idata = az.from_netcdf(saved, engine="h5netcdf")
        post = idata.posterior.load()
        if kind == "nan-draws":
            post["beta"] = post["beta"] * np.nan
        else:
            post = post.drop_vars("sigma")
        broken = az.InferenceData(posterior=post, **{g: getattr(idata, g) for g in idata.groups()
                                                     if g != "posterior"})
        broken.attrs.update(idata.attrs)
        broken.to_netcdf(str(path), engine="h5netcdf")
        return path, "non-finite draw" if kind == "nan-draws" else "lacks 1 variable(s) the spec needs: sigma"
    if kind == "corrupt-chunk":
        data = bytearray(saved.read_bytes())
        n = len(data)
        data[n // 3: 2 * n // 3] = np.random.default_rng(5).bytes(2 * n // 3 - n // 3)
        path.write_bytes(bytes(data))
        return path, ""
    version = {"spec-v0": 0, "spec-v2": 2}[kind]
    raw = json.loads(spec_json) | {"spec_version": version}
    path = with_attr(saved, path, "bayesqid_spec", json.dumps(raw))
    return path, f"spec_version {version} is not supported"


BROKEN = ["truncated", "corrupt", "empty", "foreign", "missing", "directory", "spec-v0", "spec-v2",
          "nan-draws", "missing-variable", "corrupt-chunk"]


@pytest.mark.parametrize("command", ["predict", "tokens", "training-level", "report"])
@pytest.mark.parametrize("kind", BROKEN)
def test_commands_refuse_broken_runs(kind, command, saved, measurements, default_spec, tmp_path, capsys):
    path, problem = _broken_run(kind, saved, tmp_path, default_spec.to_json())
    out = tmp_path / "out" / "result.csv"
    commands = run_commands(str(path), measurements, out)
    commands["report"] = ["report", str(saved), str(path), "--out", str(out.with_suffix(".html"))]
    assert main(commands[command]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    line = one_line(captured.err)
    assert line.startswith(f"bayesqid {command}: error: {path}: ")
    assert problem in line
    assert not out.parent.exists()


@pytest.mark.parametrize("version", [0, 2])
def test_run_of_another_spec_version_is_refused_with_its_version(version, saved, default_spec, tmp_path):
    raw = json.loads(default_spec.to_json()) | {"spec_version": version}
    path = with_attr(saved, tmp_path / "old.nc", "bayesqid_spec", json.dumps(raw))
    with pytest.raises(RunError) as err:
        load_run(path)
    message = str(err.value)
    assert "\n" not in message
    assert f"spec_version {version} is not supported" in message
    assert "reads version 1" in message


# --- broken specs at the command line ---------------------------------------------------------


@pytest.fixture
def no_sampling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("fit() was reached")

    monkeypatch.setattr(fit_module, "fit", refuse)


SPECS = {
    "unknown-law": ('name = "x"\nlaw = "ouyang2"\n',
                    ["unknown law 'ouyang2'", "'dn_ratio', 'kumar', 'ouyang'"]),
    "unknown-parameter": ('name = "x"\nlaw = "ouyang"\n[effects.family]\nparams = ["log_k", "delta"]\n',
                          ["no parameter 'delta'", "'log_k', 'alpha', 'beta', 'gamma'"]),
    "unknown-prior-parameter": ('name = "x"\nlaw = "ouyang"\n[priors.zeta]\ndist = "normal"\nmu = 0\n'
                                'sigma = 1\n',
                                ["no parameter 'zeta'", "'log_k', 'alpha'"]),
    "unknown-distribution": ('name = "x"\nlaw = "ouyang"\n[priors.alpha]\ndist = "cauchyish"\n',
                             ["unknown prior distribution 'cauchyish'", "'halfnormal'", "'normal'"]),
    "invalid-prior-argument": ('name = "x"\nlaw = "ouyang"\n[priors.alpha]\ndist = "normal"\nmu = 0\n'
                               'sigma = -1\n', ["priors.alpha", "'sigma' must be finite and positive"]),
    "wrong-prior-arguments": ('name = "x"\nlaw = "ouyang"\n[priors.alpha]\ndist = "normal"\nmu = 0\n'
                              'scale = 1\n', ["takes arguments ['mu', 'sigma']"]),
    "wrong-type": ('name = "x"\nlaw = "ouyang"\n[likelihood]\nnu = "four"\n',
                   ["'nu' must be int, got 'four'"]),
    "wrong-type-law": ('name = "x"\nlaw = 3\n', ["'law' must be str, got 3"]),
    "wrong-type-params": ('name = "x"\nlaw = "ouyang"\n[effects.family]\nparams = "log_k"\n',
                          ["'params' must be a list", "got 'log_k'", "['log_k', 'alpha', 'beta', 'gamma']"]),
    "unknown-likelihood": ('name = "x"\nlaw = "ouyang"\n[likelihood]\nkind = "cauchy"\n',
                           ["unknown likelihood 'cauchy'", "'student_t', 'normal'"]),
    "unknown-key": ('name = "x"\nlaw = "ouyang"\nlikelihod = {}\n',
                    ["unknown key(s) ['likelihod']", "valid:"]),
    "unknown-group": ('name = "x"\nlaw = "ouyang"\n[effects.model]\nparams = ["log_k"]\n',
                      ["unknown group 'model'", "'lineage', 'family', 'size', 'quantizer', 'eval_set'"]),
    "invalid-toml": ('name = "x\nlaw = "ouyang"\n', ["invalid TOML", "line 1"]),
    "future-version": ('spec_version = 2\nname = "x"\nlaw = "ouyang"\n', ["spec_version 2 is not supported"]),
    # numbers out of their range and shapes out of bounds (class 2)
    "censor-inf": ('name = "x"\nlaw = "ouyang"\n[likelihood]\ncensor_below = inf\n',
                   ["censor_below must be > 0 and finite", "got inf"]),
    "censor-nan": ('name = "x"\nlaw = "ouyang"\n[likelihood]\ncensor_below = nan\n', ["censor_below"]),
    "huge-integer-scale": ('name = "x"\nlaw = "ouyang"\n[priors.alpha]\ndist = "normal"\nmu = 0\n'
                           'sigma = 99999999999999999999999\n', ["'sigma' must be within"]),
    "zero-nu-offsets": ('name = "x"\nlaw = "ouyang"\n[effects.family]\nparams = ["log_k"]\nnu = 0\n',
                        ["effects.family.nu.log_k must be a positive number"]),
    "deep-nesting": ('name = "x"\nlaw = "ouyang"\ndescription = ' + "[" * 50_000 + "]" * 50_000 + "\n",
                     ["nested too deeply"]),
    "long-law-name": ('name = "x"\nlaw = "' + "o" * 5000 + '"\n', ["unknown law 'oooo", "known:"]),
}


@pytest.mark.parametrize("case", sorted(SPECS))
def test_fit_refuses_bad_spec_in_one_line(case, tmp_path, capsys, no_sampling):
    text, fragments = SPECS[case]
    spec = tmp_path / f"{case}.toml"
    spec.write_text(text, encoding="utf-8")
    out = tmp_path / "run.nc"
    assert main(["fit", "--spec", str(spec), "--out", str(out)]) == EXIT_USAGE
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"bayesqid fit: error: {spec}: ")
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert not out.exists()


def test_fit_refuses_missing_spec_file(tmp_path, capsys, no_sampling):
    code = main(["fit", "--spec", str(tmp_path / "nosuch.toml"), "--out", str(tmp_path / "r.nc")])
    assert code == EXIT_USAGE
    assert "spec file does not exist" in one_line(capsys.readouterr().err)


# --- a failed convergence gate: warned about by every command, exit 1 under --strict -----------


@pytest.fixture(scope="module")
def failing(mock_run, saved, tmp_path_factory) -> tuple[Run, str]:
    """The mock run with a gate that failed (divergences and R-hat), in memory and on disk."""
    diagnostics = replace(mock_run.diagnostics, divergences=17, max_rhat=1.31, worst_rhat="alpha")
    assert not diagnostics.passed
    path = with_attr(saved, tmp_path_factory.mktemp("failing") / "failing.nc", "diagnostics",
                     diagnostics.to_json())
    return Run(spec=mock_run.spec, idata=mock_run.idata, diagnostics=diagnostics), str(path)


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
@pytest.mark.parametrize("command", ["predict", "tokens", "training-level"])
def test_commands_report_a_failed_gate(command, strict, failing, measurements, tmp_path, capsys):
    _, path = failing
    out = tmp_path / "result.csv"
    argv = run_commands(path, measurements, out)[command] + (["--strict"] if strict else [])
    assert main(argv) == (EXIT_ERROR if strict else EXIT_OK)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    warning = [line for line in captured.err.splitlines() if "FAILED its convergence gate" in line]
    assert len(warning) == 1 and "17 divergent" in warning[0], captured.err
    assert out.exists(), "the results are still written; --strict only changes the exit status"


def test_commands_are_quiet_about_a_passing_gate(mock_run, saved, measurements, tmp_path, capsys):
    # The mock run's 2 x 100 prior draws are too few for the ESS rule: give it a passing gate.
    diagnostics = replace(mock_run.diagnostics, divergences=0, max_rhat=1.001, min_ess_bulk=1000.0,
                          min_ess_tail=1000.0, min_bfmi=1.0)
    assert diagnostics.passed
    path = with_attr(saved, tmp_path / "passing.nc", "diagnostics", diagnostics.to_json())
    for argv in run_commands(str(path), measurements, tmp_path / "r.csv").values():
        assert main([*argv, "--strict"]) == EXIT_OK
        assert "convergence gate" not in capsys.readouterr().err


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_fit_reports_a_failed_gate(strict, failing, monkeypatch, tmp_path, capsys):
    run, _ = failing
    monkeypatch.setattr(fit_module, "fit", lambda *args, **kwargs: run)
    out = tmp_path / "r.nc"
    code = main(["fit", "--out", str(out), *(["--strict"] if strict else [])])
    assert code == (EXIT_ERROR if strict else EXIT_OK)
    captured = capsys.readouterr()
    assert captured.out.startswith("convergence gate: FAILED")
    assert "17 divergent" in captured.out
    assert out.exists() and not load_run(out).diagnostics.passed


# --- interruption -------------------------------------------------------------------------------


def test_partial_trace_is_never_saved(mock_run, monkeypatch, tmp_path, capsys):
    """nutpie and PyMC return the draws made so far on Ctrl-C; fit must not save them as a run."""
    short = az.InferenceData(posterior=mock_run.idata.posterior.isel(draw=slice(0, 10)),
                             sample_stats=mock_run.idata.sample_stats.isel(draw=slice(0, 10)))
    monkeypatch.setitem(sampler_module.SAMPLERS, "nutpie", lambda model, cfg: short)
    out = tmp_path / "r.nc"
    # The direct engine samples through SAMPLERS; the check itself (sample_run) is engine-agnostic.
    code = main(["fit", "--out", str(out), "--draws", "50", "--tune", "50", "--chains", "2",
                 "--engine", "direct"])
    assert code == EXIT_INTERRUPTED
    line = one_line(capsys.readouterr().err.split("[bayesqid] sampling with", 1)[1].split("\n", 1)[1])
    assert line == "bayesqid fit: interrupted; no partial output was written"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.nuts
@pytest.mark.parametrize(("signum", "delay"), [(signal.SIGINT, 2.0), (signal.SIGTERM, 5.0)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_during_fit_leaves_nothing(signum, delay, tmp_path):
    out = tmp_path / "runs" / "r.nc"
    proc = subprocess.Popen(
        [str(EXE), "fit", "--draws", "50", "--tune", "50", "--chains", "2", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        # A shell that starts jobs in the background ignores SIGINT for them; undo that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    try:
        while "sampling with" not in seen:
            line = proc.stderr.readline()
            assert line, f"fit ended before sampling: {seen}"
            seen += line
        time.sleep(delay)  # compiling or sampling: neither may leave anything behind
        if proc.poll() is not None:
            pytest.skip("fit finished before the signal was sent")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = seen + err
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.rstrip().endswith("bayesqid fit: interrupted; no partial output was written")
    assert not out.exists()
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file() and p.name.endswith(".part")]
    assert leftovers == []


# --- reproducibility ----------------------------------------------------------------------------


@pytest.mark.nuts
def test_same_seed_gives_identical_draws_and_outputs(reference, tmp_path):
    """Two `bayesqid fit` processes, same seed: bitwise-equal draws and byte-equal predict CSVs."""
    frame = reference.frame
    families = frame["family"].value_counts().index[:3]
    subset = pd.concat([frame[frame["family"] == f].sample(20, random_state=1) for f in families])
    data = tmp_path / "small.csv"
    subset.to_csv(data, index=False)
    outputs = []
    for name in ("a", "b"):
        run = tmp_path / f"{name}.nc"
        proc = subprocess.run([str(EXE), "fit", "--data", str(data), "--out", str(run), "--seed", "11",
                               "--draws", "100", "--tune", "150", "--chains", "2"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == EXIT_OK, proc.stderr
        table = tmp_path / f"{name}.csv"
        assert main(["predict", str(run), "--out", str(table)]) == EXIT_OK
        outputs.append((load_run(run), table))
    (a, table_a), (b, table_b) = outputs
    assert a.data_sha256 == b.data_sha256 == bq.load_table(data).sha256
    assert set(a.idata.posterior.data_vars) == set(b.idata.posterior.data_vars)
    for name in a.idata.posterior.data_vars:
        np.testing.assert_array_equal(a.idata.posterior[name].values, b.idata.posterior[name].values,
                                      err_msg=name, strict=True)
    np.testing.assert_array_equal(a.idata.sample_stats["diverging"].values,
                                  b.idata.sample_stats["diverging"].values)
    assert table_a.read_bytes() == table_b.read_bytes()


# --- unwritable outputs (class 6 of the bad-input corpus) -------------------------------------


def _blocked_out(kind: str, tmp_path: Path, depth: int, name: str) -> Path:
    """An output path that cannot be written, of one ``kind``, ``depth`` folders below the blocker."""
    if kind == "under-a-file":
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        return blocker.joinpath(*[f"sub{i}" for i in range(depth)], name)
    if kind == "directory":
        target = tmp_path.joinpath(*[f"sub{i}" for i in range(depth)], name)
        target.mkdir(parents=True)
        (target / "keep.txt").write_text("x")  # a folder with contents is never replaced
        return target
    # "unwritable": os.access is True for root, so the folder's refusal is simulated where it is
    # asked (check_writable) and, separately, where it would bite (mkstemp: see the next test).
    folder = tmp_path / "read-only"
    folder.mkdir()
    return folder.joinpath(*[f"sub{i}" for i in range(depth)], name)


def _files(tmp_path: Path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


OUT_KINDS = ["under-a-file", "directory", "unwritable"]
OUT_COMMANDS = ["fit", "predict", "tokens", "training-level", "report", "sensitivity", "sbc", "compare"]
#: sbc and compare write into a folder: their --out is meant to be a directory.
OUT_CASES = [(c, k) for c in OUT_COMMANDS for k in OUT_KINDS
             if not (k == "directory" and c in ("sbc", "compare"))]


def _out_argv(command: str, saved: Path, measurements: Path, out: Path) -> list[str]:
    if command in run_commands(str(saved), measurements, out):
        return run_commands(str(saved), measurements, out)[command]
    return {"fit": ["fit", "--out", str(out)],
            "report": ["report", str(saved), "--out", str(out)],
            "sensitivity": ["sensitivity", str(saved), "--out", str(out)],
            "sbc": ["sbc", "--out", str(out)],
            "compare": ["compare", "ouyang", "kumar", "--out", str(out)]}[command]


@pytest.fixture
def no_long_work(monkeypatch):
    """Fail the test if a command starts its long computation before refusing its --out."""
    def refuse(*args, **kwargs):
        raise AssertionError("long work started before --out was checked")

    monkeypatch.setattr(fit_module, "fit", refuse)
    monkeypatch.setattr(importlib.import_module("bayesqid.checks.sbc"), "run_sbc", refuse)
    monkeypatch.setattr(importlib.import_module("bayesqid.checks.compare"), "compare", refuse)
    monkeypatch.setattr(importlib.import_module("bayesqid.checks.sensitivity"), "prior_sensitivity", refuse)


@pytest.mark.parametrize(("command", "kind"), OUT_CASES, ids=[f"{c}-{k}" for c, k in OUT_CASES])
def test_unwritable_out_is_one_line_naming_the_users_path(command, kind, saved, measurements, tmp_path,
                                                          capsys, monkeypatch, no_long_work):
    work = tmp_path / "work"
    work.mkdir()
    out = _blocked_out(kind, work, depth=1 + len(command) % 3, name="result.csv")
    if kind == "unwritable":
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == work / "read-only"
                            else real(p, mode, **kw))
    before = _files(work)
    assert main(_out_argv(command, saved, measurements, out)) == EXIT_USAGE
    # The mock run's failed gate is warned about on its own "[bayesqid]" line before the error.
    err = capsys.readouterr().err
    line = one_line("\n".join(x for x in err.splitlines() if not x.startswith("[bayesqid] ")))
    assert line.startswith(f"bayesqid {command}: error: ")
    assert str(out) in line or str(Path(out).parent) in line, line
    assert ".part" not in line and "Errno" not in line, line
    assert {"under-a-file": "is a file, not a folder", "directory": "is a directory",
            "unwritable": "not writable"}[kind] in line
    assert _files(work) == before, "nothing created, nothing left behind"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(OUT_KINDS), depth=st.integers(0, 4),
       name=st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12))
def test_write_atomic_refuses_any_blocked_path(kind, depth, name, tmp_path_factory, monkeypatch):
    from bayesqid.outputs import OutputError
    from bayesqid.outputs import write_atomic

    work = tmp_path_factory.mktemp("blocked")
    out = _blocked_out(kind, work, depth, name)
    if kind == "unwritable":
        # What os.access cannot see (a read-only mount): mkstemp itself is refused.
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(work / "read-only" / ".x.part"))

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    before = _files(work)
    with pytest.raises(OutputError) as err:
        write_atomic(out, lambda tmp: Path(tmp).write_text("data"))
    monkeypatch.undo()
    message = str(err.value)
    assert "\n" not in message and ".part" not in message and message.startswith(f"{out}: ")
    assert _files(work) == before, "no file, temporary file or new folder is left behind"


def test_a_failing_writer_names_the_users_path(tmp_path):
    from bayesqid.outputs import OutputError
    from bayesqid.outputs import write_atomic

    def full_disk(tmp: str) -> None:
        Path(tmp).write_text("partial")
        raise OSError(28, "No space left on device", tmp)

    with pytest.raises(OutputError) as err:
        write_atomic(tmp_path / "t.csv", full_disk)
    assert str(err.value) == f"{tmp_path / 't.csv'}: cannot be written (No space left on device)"
    assert list(tmp_path.iterdir()) == []


# --- count arguments ------------------------------------------------------------------------------

#: Every count option: (command with its other arguments, option, smallest valid value).
COUNTS = [
    (["fit"], "--draws", 1), (["fit"], "--tune", 1), (["fit"], "--chains", 1),
    (["sbc"], "--replicates", 1), (["sbc"], "--workers", 1),
    (["compare", "ouyang", "kumar"], "--workers", 1), (["compare", "ouyang", "kumar"], "--draws", 1),
    (["compare", "ouyang", "kumar"], "--tune", 1), (["compare", "ouyang", "kumar"], "--chains", 1),
    (["compare", "ouyang", "kumar"], "--retries", 0),
    (["fit"], "--seed", 0), (["sbc"], "--seed", 0), (["compare", "ouyang", "kumar"], "--seed", 0),
]


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(COUNTS),
       value=st.one_of(st.integers(-10**12, -1).map(str),
                       st.sampled_from(["-0.5", "1.5", "x", "", "1e3", "nan"])))
def test_count_options_refuse_bad_values(case, value):
    command, option, _ = case
    err = io.StringIO()
    with pytest.raises(SystemExit) as exc, contextlib.redirect_stderr(err):
        main([*command, f"{option}={value}"])
    assert exc.value.code == EXIT_USAGE
    line = one_line(err.getvalue())
    assert line.startswith(f"bayesqid {command[0]}: error: argument {option}")


@pytest.mark.parametrize("case", COUNTS, ids=[f"{c[0]}{o}" for c, o, _ in COUNTS])
def test_count_options_refuse_one_below_their_smallest(case, capsys):
    command, option, smallest = case
    with pytest.raises(SystemExit) as exc:
        main([*command, f"{option}={smallest - 1}"])
    assert exc.value.code == EXIT_USAGE
    one_line(capsys.readouterr().err)


def test_seed_above_the_largest_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--seed", str(2**32)])
    assert "0..4294967295" in one_line(capsys.readouterr().err)
