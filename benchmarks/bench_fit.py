"""Default fit vs the anchor (../shared/bench/naive_baseline.py), side by side in one run.

Both are timed as whole processes (interpreter start, imports, compilation and sampling), on
the same bundled reference data, and compared on min bulk ESS per second.

Usage: python benchmarks/bench_fit.py [--anchor-sampler pymc] [--sampler nutpie] [--skip-anchor]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = ROOT.parent / "shared" / "bench" / "naive_baseline.py"


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def bench_bayesqid(sampler: str) -> dict[str, float]:
    from bayesqid.run import load_run

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.nc"
        wall, _ = timed([sys.executable, "-m", "bayesqid.cli", "fit", "--sampler", sampler, "--out", str(out)])
        run = load_run(out)
        d = run.diagnostics
        return {"wall_s": wall, "sampling_s": float(run.idata.attrs["sampling_seconds"]),
                "min_ess_bulk": d.min_ess_bulk, "max_rhat": d.max_rhat, "divergences": d.divergences}


def bench_anchor(sampler: str) -> dict[str, float]:
    wall, stdout = timed([sys.executable, str(ANCHOR), sampler])
    fields = dict(re.findall(r"(\w+)=([\w.]+)", stdout.strip().splitlines()[-1]))
    return {"wall_s": wall, "sampling_s": float(fields["wall_s"]), "min_ess_bulk": float(fields["min_ess_bulk"]),
            "max_rhat": float(fields["max_rhat"]), "divergences": float(fields["divergences"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", default="nutpie")
    parser.add_argument("--anchor-sampler", default="pymc")
    args = parser.parse_args()
    rows = {f"bayesqid fit ({args.sampler})": bench_bayesqid(args.sampler),
            f"anchor ({args.anchor_sampler})": bench_anchor(args.anchor_sampler)}
    print(f"{'run':<24} {'wall s':>7} {'sample s':>9} {'min ESS':>8} {'R-hat':>6} {'div':>5} {'ESS/s':>7}")
    for name, r in rows.items():
        r["ess_per_s"] = r["min_ess_bulk"] / r["wall_s"]
        print(f"{name:<24} {r['wall_s']:>7.1f} {r['sampling_s']:>9.1f} {r['min_ess_bulk']:>8.0f} "
              f"{r['max_rhat']:>6.3f} {r['divergences']:>5.0f} {r['ess_per_s']:>7.1f}")
    mine, anchor = rows.values()
    print(f"min-ESS/s ratio, whole process: {mine['ess_per_s'] / anchor['ess_per_s']:.1f}x")


if __name__ == "__main__":
    main()
