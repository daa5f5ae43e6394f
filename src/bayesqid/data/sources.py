"""Where datasets come from: a file, a bundled dataset by name, or the union of several.

``load_dataset(["reference", "mine.csv"])`` (the CLI's repeated ``--data``) validates every part
and joins them as one dataset, refusing a measurement that two parts give different values.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from bayesqid.data.dataset import Dataset, Exclusion, load_table, read_table, validate
from bayesqid.data.reference import REFERENCE_PATH, reference_rows
from bayesqid.errors import DataError

__all__ = ["BUNDLED", "KEY_COLUMNS", "LAB_DATASETS", "join_datasets", "load_dataset", "load_lab",
           "load_lab_default", "load_reference"]


#: Bundled lab sweeps (``bayesqid lab run CONFIG``), each a folder ``data/lab/<name>/`` with its
#: ``qid.csv`` and ``manifest.json``.
LAB_DATASETS: tuple[str, ...] = ("lab-default", "lab-long", "lab-recipes")
#: Names of bundled datasets accepted wherever a data path is (``--data reference``).
BUNDLED: tuple[str, ...] = ("reference", *LAB_DATASETS)
#: Columns that name one measurement; two rows agreeing on them must agree on everything else.
KEY_COLUMNS: tuple[str, ...] = ("family", "model", "params", "tokens", "bits", "group_size", "method",
                                "eval_set")

DataSource = str | os.PathLike[str]


def load_dataset(path: DataSource | Sequence[DataSource] | None = None) -> Dataset:
    """Load one table, a bundled dataset, or the union of several, validated as one dataset.

    Parameters
    ----------
    path : str, os.PathLike, sequence of them, or None
        ``None`` or ``"reference"``: the bundled reference data; ``"lab-default"``,
        ``"lab-long"``, ``"lab-recipes"``: the bundled lab sweeps (:func:`load_lab`);
        anything else: a CSV or Parquet file (:func:`load_table`). A sequence loads
        each and joins them (:func:`join_datasets`), e.g. ``["reference", "mine.csv"]``.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        A bad file, or a measurement given twice with different values (see
        :func:`join_datasets`).
    """
    if path is None:
        return load_reference()
    if isinstance(path, str | os.PathLike):
        name = os.fspath(path)
        if name == "reference":
            return load_reference()
        if name in LAB_DATASETS:
            return load_lab(name)
        return load_table(path)
    sources = list(path)
    if not sources:
        raise DataError("no data given")
    parts = [load_dataset(p) for p in sources]
    return parts[0] if len(parts) == 1 else join_datasets(parts)


def join_datasets(parts: Sequence[Dataset]) -> Dataset:
    """The union of several datasets, validated as one.

    Rows are concatenated in order and never altered. Exact duplicates across parts are kept
    with a warning (as within one table); two rows that name the same measurement
    (:data:`KEY_COLUMNS`) with different QiD or recipe are an error naming both.

    Raises
    ------
    DataError
        ``"B: row r conflicts with A: row s (...)"``: the same measurement with other values.
    """
    frames, origin = [], []
    for part in parts:
        frames.append(part.frame)
        origin += [(part.path, i + 1) for i in range(len(part.frame))]
    frame = pd.concat(frames, ignore_index=True)
    source_of = np.array([o[0] for o in origin], dtype=object)
    for rows in frame.groupby(list(KEY_COLUMNS), dropna=False, sort=False).indices.values():
        if len(rows) < 2 or len(set(source_of[rows])) < 2:
            continue  # repeats within one table are that table's business
        block = frame.iloc[rows].drop(columns=["source"])
        first = block.iloc[0]
        for i, idx in enumerate(rows[1:], start=1):
            row = block.iloc[i]
            differs = [c for c in block.columns
                       if not (pd.isna(first[c]) and pd.isna(row[c])) and first[c] != row[c]]
            if differs and source_of[idx] != source_of[rows[0]]:
                c = differs[0]
                a_path, a_row = origin[rows[0]]
                b_path, b_row = origin[idx]
                raise DataError(f"{b_path}: row {b_row} conflicts with {a_path}: row {a_row} (same "
                                f"measurement, column {c!r}: {_plain(row[c])!r} vs {_plain(first[c])!r})")
    duplicated = frame.duplicated()
    if duplicated.any():
        warnings.warn(f"{int(duplicated.sum())} duplicated row(s) across the joined data kept",
                      UserWarning, stacklevel=2)
    path = " + ".join(p.path for p in parts)
    return Dataset(frame, path, tuple(e for p in parts for e in p.excluded))


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds (for messages)."""
    return value.item() if isinstance(value, np.generic) else value


def load_lab(name: str) -> Dataset:
    """Load a bundled lab sweep (:data:`LAB_DATASETS`): controlled training runs, measured.

    ``lab-default`` is ``bayesqid lab run default`` (three sizes, cosine / WSD with cooldowns /
    constant); ``lab-long`` is ``bayesqid lab run long`` (the two smallest sizes to 2,000-7,000
    tokens per parameter, cosine and WSD with cooldowns); ``lab-recipes`` is ``bayesqid lab run
    recipes`` (one size, one factor of the recipe changed at a time, two seeds each).

    Raises
    ------
    DataError
        An unknown name, or a sweep this installation does not hold.
    """
    if name not in LAB_DATASETS:
        raise DataError(f"unknown bundled lab sweep {name!r}; bundled: {', '.join(LAB_DATASETS)}")
    path = resources.files("bayesqid.data") / "lab" / name / "qid.csv"
    if not path.is_file():
        raise DataError(f"{name}: the bundled lab sweep is not in this installation")
    frame, _ = read_table(Path(str(path)))
    return Dataset(validate(frame, path=name), name, ())


def load_lab_default() -> Dataset:
    """Load the bundled ``lab-default`` sweep (:func:`load_lab`)."""
    return load_lab("lab-default")


def load_reference() -> Dataset:
    """Load the bundled reference measurements (published PTQ tables and OLMo checkpoints).

    See :mod:`bayesqid.reference_data` for how the source files are flattened.

    Returns
    -------
    Dataset
        With ``path == "<bundled reference>"`` and the left-out rows, by reason, in
        ``excluded``.
    """
    raw, excluded = reference_rows()
    frame = validate(raw, path=REFERENCE_PATH)
    return Dataset(frame, REFERENCE_PATH, tuple(Exclusion(*item) for item in excluded.items()))
