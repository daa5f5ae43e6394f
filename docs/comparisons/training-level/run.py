"""Known-family training level, checked by hold-outs: the command behind this folder's tables.

    python docs/comparisons/training-level/run.py ouyang_sharp --out runs/levels-ouyang_sharp

Each hold-out refits the spec without one model (a family's rows at one N and one D) and infers
that model's D from its own rows as a member of its family (``training_level(..., family=F)``);
rerunning with the same ``--out`` resumes. Writes ``<out>/levels.csv`` (one row per hold-out)
and prints the summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bayesqid as bq
from bayesqid.checks.levels import summarise_levels
from bayesqid.outputs import write_atomic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="shipped spec name or .toml path")
    parser.add_argument("--out", required=True, help="store of finished hold-outs (resumable)")
    parser.add_argument("--per-family", type=int, default=2, help="hold-outs per family (default 2)")
    parser.add_argument("--seed", type=int, default=850)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args(argv)
    spec = bq.load_spec(args.spec)
    data = bq.load_reference()
    config = bq.SamplerConfig(draws=args.draws, tune=args.tune, chains=args.chains, cores=1)
    out = Path(args.out)
    table = bq.check_training_levels(spec, data, config=config, seed=args.seed, out=out / "holdouts",
                                     per_family=args.per_family, log_fn=lambda m: print(m, flush=True))
    write_atomic(out / "levels.csv", lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    print(summarise_levels(table).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
