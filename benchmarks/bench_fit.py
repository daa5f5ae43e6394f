"""Fits vs the anchor (../shared/bench/naive_baseline.py), side by side in one run.

Every entry is timed as a whole process (interpreter start, imports, compilation and
sampling) on the same bundled reference data and compared on min bulk ESS per second, whole
process and sampling alone (the anchor's own timer starts after its imports and data loading).

Usage: python benchmarks/bench_fit.py [--fits SPEC:SAMPLER[:ENGINE] ...] [--anchors SAMPLER ...]
Default: the default spec (ouyang_lineage) with nutpie and with PyMC's sampler, the previous
defaults (ouyang_sharp, ouyang) with nutpie, and ouyang on the direct engine (the pre-whitening
baseline); the anchor with PyMC's sampler and with nutpie.
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


def bench_bayesqid(spec: str, sampler: str, engine: str) -> dict[str, float]:
    from bayesqid.sampling.run import load_run

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.nc"
        wall, _ = timed([sys.executable, "-m", "bayesqid.cli", "fit", "--spec", spec, "--sampler", sampler,
                         "--engine", engine, "--out", str(out)])
        run = load_run(out)
        d = run.diagnostics
        return {"wall_s": wall, "sampling_s": float(run.idata.attrs["sampling_seconds"]),
                "min_ess_bulk": d.min_ess_bulk, "max_rhat": d.max_rhat, "divergences": d.divergences}


def bench_anchor(sampler: str) -> dict[str, float]:
    wall, stdout = timed([sys.executable, str(ANCHOR), sampler])
    fields = dict(re.findall(r"(\w+)=([\w.]+)", stdout.strip().splitlines()[-1]))
    return {"wall_s": wall, "sampling_s": float(fields["wall_s"]),
            "min_ess_bulk": float(fields["min_ess_bulk"]),
            "max_rhat": float(fields["max_rhat"]), "divergences": float(fields["divergences"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", nargs="+", default=["ouyang_lineage:nutpie", "ouyang_lineage:pymc",
                                                      "ouyang_sharp:nutpie", "ouyang:nutpie",
                                                      "ouyang:nutpie:direct"])
    parser.add_argument("--anchors", nargs="+", default=["pymc", "nutpie"])
    args = parser.parse_args()
    rows = {}
    for anchor in args.anchors:
        rows[f"anchor ({anchor})"] = bench_anchor(anchor)
        print(f"done: anchor ({anchor})", file=sys.stderr, flush=True)
    for entry in args.fits:
        parts = entry.split(":")
        spec = parts[0]
        sampler = parts[1] if len(parts) > 1 else "nutpie"
        engine = parts[2] if len(parts) > 2 else "auto"
        label = spec if engine == "auto" else f"{spec}/{engine}"
        rows[f"{label} ({sampler})"] = bench_bayesqid(spec, sampler, engine)
        print(f"done: {entry}", file=sys.stderr, flush=True)
    print(f"{'run':<26} {'wall s':>7} {'sample s':>9} {'min ESS':>8} {'R-hat':>6} {'div':>5} "
          f"{'ESS/s':>7} {'ESS/s sampling':>15} {'x anchor(pymc)':>15} {'x anchor(same sampler)':>23}")
    base = {name.split("(")[1].rstrip(")"): r for name, r in rows.items() if name.startswith("anchor")}
    for r in rows.values():
        r["ess_per_s"] = r["min_ess_bulk"] / r["wall_s"]
        r["ess_per_s_sampling"] = r["min_ess_bulk"] / r["sampling_s"]
    for name, r in rows.items():
        sampler = name.split("(")[1].rstrip(")")
        vs_pymc = r["ess_per_s"] / base["pymc"]["ess_per_s"] if "pymc" in base else float("nan")
        same = base.get(sampler)
        vs_same = r["ess_per_s"] / same["ess_per_s"] if same else float("nan")
        print(f"{name:<26} {r['wall_s']:>7.1f} {r['sampling_s']:>9.1f} {r['min_ess_bulk']:>8.0f} "
              f"{r['max_rhat']:>6.3f} {r['divergences']:>5.0f} {r['ess_per_s']:>7.1f} "
              f"{r['ess_per_s_sampling']:>15.1f} {vs_pymc:>15.1f} {vs_same:>23.1f}")


if __name__ == "__main__":
    main()
