"""Start-up: ``import bayesqid`` and the command line's fast paths load no sampling stack, the
public API is unchanged by its lazy loading, and a kill in a command's first seconds exits 130.

Timings themselves are measured by ``benchmarks/bench_startup.py``; here the cause of a slow
start (PyMC, PyTensor or ArviZ imported too early) is checked directly, which does not depend on
how loaded the machine is.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import bayesqid as bq

HEAVY = ("pymc", "pytensor", "arviz", "numba", "jax", "torch", "matplotlib", "dask")


def heavy_modules_after(code: str) -> list[str]:
    """The heavy libraries imported by a fresh interpreter that runs ``code``."""
    probe = (f"import sys\n{code}\nimport json\n"
             f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli_probe(*argv: str) -> str:
    """Code that runs ``bayesqid ARGV`` in-process and swallows its exit (output to /dev/null)."""
    return ("import contextlib, os\nfrom bayesqid.cli import main\n"
            "with open(os.devnull, 'w') as null, contextlib.redirect_stdout(null), "
            "contextlib.redirect_stderr(null):\n"
            f"    try:\n        main({list(argv)!r})\n    except SystemExit:\n        pass\n")


def test_import_bayesqid_loads_no_sampling_stack():
    assert heavy_modules_after("import bayesqid") == []


def test_a_public_name_loads_only_what_it_needs():
    # A spec and its priors are read without PyMC: a bad spec is a one-line error at once.
    assert heavy_modules_after("import bayesqid as bq; bq.load_spec(); bq.SamplerConfig.preset('ci')") == []
    assert "pymc" in heavy_modules_after("import bayesqid as bq; bq.fit")


@pytest.mark.parametrize("argv", [
    ("--help",),
    ("fit", "--help"),
    ("lab", "check", "smoke"),
    ("fit", "--draws", "0"),
    ("fit", "--spec", "no-such-spec"),
    ("predict", "no-such-run.nc"),
], ids=lambda a: " ".join(a))
def test_fast_command_lines_load_no_sampling_stack(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert heavy_modules_after(cli_probe(*argv)) == []


def test_public_api_is_unchanged_by_lazy_loading():
    names = set(bq.__all__) - {"__version__"}
    assert set(bq._EXPORTS) == names
    assert names <= set(dir(bq))
    for name in sorted(names):
        value = getattr(bq, name)
        # Each name is the object its defining module holds, not a copy or a proxy.
        assert value is getattr(sys.modules[bq._EXPORTS[name]], name), name
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        bq.no_such_name  # noqa: B018


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.0])
def test_sigterm_in_the_first_seconds_exits_130(tmp_path, delay):
    # In its first seconds a fit is still importing PyMC and reading its data: before the handler
    # was installed ahead of those imports, a kill there ended the process with 143 and a
    # traceback; one landing in an extension module's import could end it by SIGINT (-2).
    out = tmp_path / "run.nc"
    proc = subprocess.Popen([sys.executable, "-m", "bayesqid.cli", "fit", "--out", str(out), "--draws", "10",
                             "--tune", "10", "--chains", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    time.sleep(delay)
    assert proc.poll() is None, "the fit ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    # Progress lines ("[bayesqid] ...") may come first; the error is the one last line.
    assert err.strip().splitlines()[-1] == "bayesqid fit: interrupted; no partial output was written", err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_sigterm_before_the_command_is_parsed_exits_130():
    # The handler goes in before the parser is built; the message names the command from argv.
    code = ("import os, signal, sys\nimport bayesqid.cli as cli\n"
            "real = cli.build_parser\n"
            "def killed(*a, **k):\n    os.kill(os.getpid(), signal.SIGTERM)\n    return real(*a, **k)\n"
            "cli.build_parser = killed\nsys.exit(cli.main(['data']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "bayesqid data: interrupted; no partial output was written"
