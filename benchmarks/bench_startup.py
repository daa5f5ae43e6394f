"""Start-up time of ``import bayesqid``, ``bayesqid --help``, ``lab check`` and one-line errors.

Each case is a fresh interpreter, timed from spawn to exit (wall clock), repeated; the median
is reported next to ``python -c pass`` on the same machine in the same run, so the interpreter's
own start is visible and the difference is what bayesqid adds. Targets (issue 25): every
command line below 0.5 s, ``import bayesqid`` below 1 s.

Usage: python benchmarks/bench_startup.py [--repeat 7] [--out startup.csv]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The installed entry point next to this interpreter (same venv), else ``python -m``.
SCRIPT = Path(sys.executable).with_name("bayesqid")

#: Seconds each kind of case must stay under.
TARGETS = {"python": None, "import": 1.0, "cli": 0.5}


def cases(scratch: Path) -> list[tuple[str, str, list[str]]]:
    """(kind, label, argv) of every timed case; the bad files are written to ``scratch``."""
    bad_run = scratch / "not-a-run.nc"
    bad_run.write_text("this is not a NetCDF file\n")
    bad_csv = ROOT / "tests" / "data" / "bad" / "bits_zero.csv"
    cli = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bayesqid.cli"]
    py = sys.executable
    return [
        ("python", "python -c pass", [py, "-c", "pass"]),
        ("import", "import bayesqid", [py, "-c", "import bayesqid"]),
        ("import", "import bayesqid; bayesqid.fit (loads PyMC)",
         [py, "-c", "import bayesqid; bayesqid.fit"]),
        ("cli", "bayesqid --help", [*cli, "--help"]),
        ("cli", "bayesqid fit --help", [*cli, "fit", "--help"]),
        ("cli", "bayesqid lab check smoke", [*cli, "lab", "check", "smoke"]),
        ("cli", "usage error: fit --draws 0", [*cli, "fit", "--draws", "0"]),
        ("cli", "bad spec: fit --spec nosuch",
         [*cli, "fit", "--spec", "nosuch", "--out", str(scratch / "x.nc")]),
        ("cli", "bad data: data --data bits_zero.csv", [*cli, "data", "--data", str(bad_csv)]),
        ("cli", "bad data: fit --data missing.csv", [*cli, "fit", "--data", str(scratch / "missing.csv"),
                                                     "--out", str(scratch / "x.nc")]),
        ("cli", "bad run: predict missing.nc", [*cli, "predict", str(scratch / "missing.nc")]),
        ("cli", "bad run: tokens not-a-run.nc", [*cli, "tokens", str(bad_run)]),
        ("cli", "bad run: report not-a-run.nc",
         [*cli, "report", str(bad_run), "--out", str(scratch / "r.html")]),
        ("cli", "bad config: lab check nosuch", [*cli, "lab", "check", "nosuch"]),
    ]


def time_once(argv: list[str]) -> tuple[float, int]:
    """Wall seconds from spawn to exit, and the exit status."""
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per case; the median is reported")
    parser.add_argument("--out", help="CSV to write the medians to")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, label, argv in cases(Path(tmp)):
            time_once(argv)  # warm the file cache and the bytecode; not counted
            times, codes = zip(*(time_once(argv) for _ in range(args.repeat)), strict=True)
            rows.append({"case": label, "kind": kind, "median_s": statistics.median(times),
                         "min_s": min(times), "max_s": max(times), "exit": codes[0]})
    base = rows[0]["median_s"]
    print(f"{'case':48s} {'median':>8s} {'min':>7s} {'max':>7s} {'- pass':>7s} exit  target")
    failed = []
    for r in rows:
        target = TARGETS[r["kind"]]
        ok = target is None or r["median_s"] < target or "loads PyMC" in r["case"]
        if not ok:
            failed.append(r["case"])
        timed = target is not None and "loads PyMC" not in r["case"]
        mark = f"< {target:g} s {'ok' if ok else 'MISSED'}" if timed else ""
        print(f"{r['case']:48s} {r['median_s']:7.3f}s {r['min_s']:6.3f}s {r['max_s']:6.3f}s "
              f"{r['median_s'] - base:6.3f}s {r['exit']:4d}  {mark}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.repeat} runs per case")
    if args.out:
        with open(args.out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if failed:
        print("missed targets: " + "; ".join(failed))


if __name__ == "__main__":
    main()
