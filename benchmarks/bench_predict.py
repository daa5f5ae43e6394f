"""Time to predict a 100,000-row grid from a default run (4 chains x 1000 draws).

The grid mixes known and new families, all quantizers of the reference data, and random
N, D (1e10 to 1e14 tokens) and bits. Usage: python benchmarks/bench_predict.py [--run RUN.nc]
(without --run the default spec is fitted first, not timed).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import bayesqid as bq


def grid(rows: int, seed: int = 0):
    ref = bq.load_reference().frame
    rng = np.random.default_rng(seed)
    g = ref.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    g["tokens"] = 10 ** rng.uniform(10, 14, rows)
    g["params"] = 10 ** rng.uniform(8.5, 11.7, rows)
    g["bits"] = rng.integers(2, 9, rows)
    g.loc[rng.random(rows) < 0.3, "family"] = "new family"
    return g


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    if args.run:
        run = bq.load_run(args.run)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = bq.fit(bq.load_spec(), bq.load_reference())
    g = grid(args.rows)
    start = time.perf_counter()
    table = bq.predict(run, g)
    seconds = time.perf_counter() - start
    draws = run.idata.posterior.sizes["chain"] * run.idata.posterior.sizes["draw"]
    print(f"predict: {len(table)} rows x {draws} draws in {seconds:.1f} s "
          f"({seconds / len(table) * 1e6:.0f} us per row)")


if __name__ == "__main__":
    main()
