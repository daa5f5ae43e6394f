"""Repeated fits: one compiled model with swapped data against rebuilding per fit.

Leave-one-family-out folds of the default spec (whitened engine) on the reference data,
fitted (a) naively, ``bayesqid.fit`` per fold (model built and compiled every time), and
(b) through one ``Refitter`` (compiled once; each fold swaps its data containers in).
Both in this one process, with the same sampler settings and seeds.

Usage: python benchmarks/bench_reuse.py [--folds 8]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import bayesqid as bq
from bayesqid.sampling.refit import Refitter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=8)
    parser.add_argument("--spec", default="ouyang")
    args = parser.parse_args()
    spec = bq.load_spec(args.spec)
    data = bq.load_reference()
    cfg = bq.SamplerConfig(draws=500, tune=500, chains=2)
    families = data.frame["family"].to_numpy()
    folds = sorted(set(families))[: args.folds]
    warnings.simplefilter("ignore")
    naive = []
    for i, fam in enumerate(folds):
        start = time.perf_counter()
        rows = families != fam
        subset = bq.Dataset(data.frame[rows].reset_index(drop=True), data.path, data.excluded)
        bq.fit(spec, subset, bq.SamplerConfig(draws=500, tune=500, chains=2, seed=i))
        naive.append(time.perf_counter() - start)
    start = time.perf_counter()
    refitter = Refitter(spec, data, cfg)
    setup = time.perf_counter() - start
    reused = []
    for i, fam in enumerate(folds):
        start = time.perf_counter()
        refitter.fit(seed=i, rows=families != fam)
        reused.append(time.perf_counter() - start)
    print(f"{len(folds)} folds of {args.spec}, 2 chains x (500 + 500)")
    print(f"naive rebuild per fit: total {sum(naive):.1f} s, per fit {np.mean(naive):.1f} s "
          f"(first {naive[0]:.1f} s)")
    print(f"one compiled model   : total {setup + sum(reused):.1f} s, per fit {np.mean(reused):.1f} s "
          f"(first, with compile, {reused[0]:.1f} s; later fits {np.mean(reused[1:]):.1f} s)")


if __name__ == "__main__":
    main()
