"""The measurement table on disk: columns, atomic rewrites, and reading it back to resume.

The file is kept as text throughout: rows already on disk are carried over cell by cell and new
rows are formatted exactly as ``DataFrame.to_csv`` writes them, so rerunning a finished command
rewrites the same bytes. The ``unit`` column holds each row's resume key.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from bayesqid.errors import DataError
from bayesqid.outputs import write_csv

#: Columns of a measured row, in order: the canonical schema, then provenance and statistics.
ROW_COLUMNS: tuple[str, ...] = (
    "family", "model", "params", "tokens", "bits", "group_size", "method", "eval_set", "qid",
    "source", "fp16_loss", "quant_loss", "eval_tokens", "seq_len", "calib_set", "calib_tokens",
    "eval_sha256", "calib_sha256", "tokenizer", "dtype", "seed", "weights_sha256",
    "act_outlier_max", "act_outlier_mean", "weight_kurtosis_max", "weight_kurtosis_mean",
    "settings", "unit",
)  # fmt: skip
_TYPES = {
    "params": "float64", "tokens": "float64", "bits": "int64", "group_size": "Int64",
    "qid": "float64", "fp16_loss": "float64", "quant_loss": "float64", "eval_tokens": "int64",
    "seq_len": "int64", "calib_tokens": "int64", "seed": "int64", "act_outlier_max": "float64",
    "act_outlier_mean": "float64", "weight_kurtosis_max": "float64", "weight_kurtosis_mean": "float64",
}  # fmt: skip


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Refuse an output path that cannot be written, before any long computation.

    Raises
    ------
    DataError
        Naming the path (``--out``).
    """
    target = Path(path)
    if target.is_dir():
        raise DataError(f"{target}: is a directory; give a file name for --out")
    if target.exists() and not os.access(target, os.W_OK):
        raise DataError(f"{target}: cannot be written (--out is read-only)")
    existing = next((p for p in target.parents if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise DataError(f"{target}: cannot be written ({existing} is not a writable directory; --out)")
    return target


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame's cells exactly as ``to_csv`` writes them (all strings; missing = ``""``)."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)), dtype=str, keep_default_na=False)


def typed(text: pd.DataFrame) -> pd.DataFrame:
    """Parse a text frame of rows into the dtypes of a measurement table."""
    if text.empty:
        return pd.DataFrame({c: pd.Series(dtype=_TYPES.get(c, "str")) for c in ROW_COLUMNS})
    dtypes = {c: _TYPES.get(c, "str") for c in text.columns if c in ROW_COLUMNS}
    frame = pd.read_csv(io.StringIO(text.to_csv(index=False)), dtype=dtypes, keep_default_na=False,
                        na_values={c: [""] for c in _TYPES})
    return frame


def read_rows(path: Path) -> pd.DataFrame:
    """Rows already in an output file, as text; empty if the file does not exist.

    Raises
    ------
    DataError
        If the file exists but was not written by ``bayesqid measure``.
    """
    if not path.exists():
        return pd.DataFrame(columns=list(ROW_COLUMNS), dtype=str)
    try:
        text = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise DataError(
            f"{path}: cannot be read to resume ({type(err).__name__}); choose another --out") from None
    missing = [c for c in ("unit", "method", "qid") if c not in text.columns]
    if missing:
        raise DataError(f"{path}: exists but was not written by bayesqid measure (no {missing[0]!r} "
                        "column); choose another --out")
    return text


def merged(existing: pd.DataFrame, done: dict[str, pd.DataFrame], order: Sequence[str]) -> pd.DataFrame:
    """Rows to write: other units' rows as they were, then this plan's finished units in order.

    Parameters
    ----------
    existing : pandas.DataFrame
        Text rows read from the file.
    done : dict of str to pandas.DataFrame
        Text rows of finished units of this plan, by unit key.
    order : sequence of str
        The plan's unit keys in plan order.
    """
    others = existing[~existing["unit"].isin(set(order))]
    parts = [others] + [done[key] for key in order if key in done]
    frame = pd.concat([p for p in parts if not p.empty] or [existing.iloc[:0]], ignore_index=True)
    columns = list(dict.fromkeys([*ROW_COLUMNS, *(c for p in parts for c in p.columns)]))
    return frame.reindex(columns=columns).fillna("")


def write_rows(frame: pd.DataFrame, path: Path) -> None:
    """Write text rows atomically (a crash leaves the previous file)."""
    write_csv(frame, path)


def units_in(existing: pd.DataFrame, keys: Iterable[str]) -> dict[str, pd.DataFrame]:
    """Text rows already on disk for each of ``keys`` that has any."""
    found = {}
    for key in keys:
        rows = existing[existing["unit"] == key]
        if not rows.empty:
            found[key] = rows.reset_index(drop=True)
    return found
