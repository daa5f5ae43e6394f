"""Scores of specs on one split, read from a comparison's fold store: the command behind this
folder's tables.

    python docs/comparisons/lineage/tables.py runs/screen23 forecast sized_lineage sharp_size ouyang_sharp

Reads every ``<store>/folds/<scheme>-<spec>-*.parquet`` that ``bayesqid compare`` wrote (a store
that is still filling, or was stopped, included), keeps the folds that every named spec has
finished, and prints per-family and overall coverage, interval score, CRPS and band width, so
that specs are compared on the same held-out rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def scores(store: Path, scheme: str, specs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-family and overall scores of ``specs`` on the folds of ``scheme`` they all finished."""
    parts = [t for f in sorted((store / "folds").glob(f"{scheme}-*.parquet"))
             if not (t := pd.read_parquet(f)).empty and "spec" in t and t["spec"].iloc[0] in specs]
    if not parts:
        raise SystemExit(f"{store}: no {scheme} folds of {specs}")
    table = pd.concat(parts).drop_duplicates(["spec", "fold", "row"], keep="last")
    common = set.intersection(*(set(table.loc[table["spec"] == s, "fold"]) for s in specs))
    table = table[table["fold"].isin(common)]
    agg = {"n": ("qid", "size"), "cov90": ("covered", "mean"), "IS": ("interval_score", "mean"),
           "width": ("width", "median")}
    by_family = table.groupby(["family", "spec"]).agg(**agg).unstack("spec")
    overall = table.groupby("spec").agg(folds=("fold", "nunique"), cov50=("covered50", "mean"),
                                        cov80=("covered80", "mean"), **agg, crps=("crps", "mean"))
    overall["band"] = np.exp(overall.pop("width"))
    return by_family, overall.loc[specs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="a comparison's --out folder")
    parser.add_argument("scheme", help="forecast, scaleup or logo")
    parser.add_argument("specs", nargs="+", help="spec names as the store records them")
    args = parser.parse_args(argv)
    by_family, overall = scores(args.store, args.scheme, args.specs)
    print(by_family.round(2).to_string())
    print(overall.round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
