"""Fit time and peak memory against data size: the reference design replicated x1, x10, x100.

Each (spec, engine, factor) fit runs in its own process (imports and compilation included),
reporting wall time, sampling time and peak resident memory. Runs: the Student-t default
``ouyang`` on the whitened engine (the default: one fused pass over the rows per gradient),
``ouyang_normal`` on the collapsed engine (data enter as sufficient statistics) and ``ouyang``
on the direct engine (the pre-whitening baseline). Sampler settings are lighter than the
default fit (2 chains x 500 draws after 500 warm-up) so that the direct engine's x10 fit stays
within minutes.

Usage: python benchmarks/bench_scale.py [--factors 1 10 100] [--direct-factors 1 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time, warnings
start = time.perf_counter()
sys.path.insert(0, {bench!r})
import bayesqid as bq
from simulate import simulated_reference
data = simulated_reference({factor})
cfg = bq.SamplerConfig(draws=500, tune=500, chains=2, seed=1, engine={engine!r})
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    run = bq.fit(bq.load_spec({spec!r}), data, cfg)
d = run.diagnostics
print(json.dumps({{"rows": len(data.frame), "wall_s": time.perf_counter() - start,
                  "sampling_s": float(run.idata.attrs["sampling_seconds"]),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "min_ess_bulk": d.min_ess_bulk, "divergences": d.divergences,
                  "engine": run.idata.attrs["engine"]}}))
"""


def one(spec: str, engine: str, factor: int) -> dict:
    code = CHILD.format(bench=str(ROOT / "benchmarks"), factor=factor, spec=spec, engine=engine)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", nargs="+", type=int, default=[1, 10, 100])
    parser.add_argument("--direct-factors", nargs="+", type=int, default=[1, 10])
    args = parser.parse_args()
    plan = ([("ouyang", "whitened", f) for f in args.factors]
            + [("ouyang_normal", "collapsed", f) for f in args.factors]
            + [("ouyang", "direct", f) for f in args.direct_factors])
    print(f"{'spec':<14} {'engine':<10} {'rows':>7} {'wall s':>7} {'sample s':>9} {'peak MB':>8} "
          f"{'min ESS':>8} {'div':>4}")
    for spec, engine, factor in plan:
        r = one(spec, engine, factor)
        if "error" in r:
            print(f"{spec:<14} x{factor}: {r['error']}")
            continue
        print(f"{spec:<14} {r['engine']:<10} {r['rows']:>7} {r['wall_s']:>7.1f} {r['sampling_s']:>9.1f} "
              f"{r['peak_mb']:>8.0f} {r['min_ess_bulk']:>8.0f} {r['divergences']:>4}", flush=True)


if __name__ == "__main__":
    main()
