"""Tidy QiD data: the canonical schema, its validation, and readers of user tables and grids.

Only this module, :mod:`bayesqid.data.cells` and :mod:`bayesqid.data.reference` touch raw column
names; :mod:`bayesqid.data.sources` names and joins datasets. Every table
that reaches a model has exactly the columns of :data:`SCHEMA_COLUMNS`, validated by
:func:`validate`; anything that breaks a rule raises a one-line :class:`DataError` naming
the file, the 1-based data row, the column and the rule.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayesqid.constants import DEFAULT_CENSOR_BELOW
from bayesqid.data.cells import (
    UNKNOWN,
    Rule,
    parse_annealed,
    parse_average_last,
    parse_bits,
    parse_dropout,
    parse_grad_clip,
    parse_group_size,
    parse_lr_frac,
    parse_lr_schedule,
    parse_number,
    parse_optional_text,
    parse_peak_lr,
    parse_positive,
    parse_post_trained,
    parse_precision,
    parse_required_text,
    parse_weight_decay,
)
from bayesqid.errors import DataError

__all__ = [
    "GRID_COLUMNS", "RECIPE_COLUMNS", "SCHEMA_COLUMNS", "Dataset", "Exclusion", "load_grid",
    "load_table", "quantizer_label", "read_table", "validate", "validate_grid",
]  # fmt: skip

_DTYPES = {
    "family": "str", "model": "str", "params": "float64", "tokens": "float64",
    "bits": "int64", "group_size": "Int64", "method": "str", "eval_set": "str",
    "qid": "float64", "source": "str",
    # Recipe columns (optional; unknown when absent): how the measured checkpoint was trained.
    "lr_schedule": "str", "lr_frac": "float64", "annealed": "boolean", "train_precision": "str",
    "weight_decay": "float64", "post_trained": "boolean", "dropout": "float64", "grad_clip": "float64",
    "peak_lr": "float64", "average_last": "float64",
}  # fmt: skip
#: Recipe columns of the canonical schema, all optional (see :mod:`bayesqid.data.cells`).
RECIPE_COLUMNS: tuple[str, ...] = (
    "lr_schedule", "lr_frac", "annealed", "train_precision", "weight_decay", "post_trained", "dropout",
    "grad_clip", "peak_lr", "average_last",
)  # fmt: skip
#: Columns of a canonical QiD table, in order.
SCHEMA_COLUMNS: tuple[str, ...] = tuple(_DTYPES)
#: Columns a prediction grid must have (a grid has no QiD, model name or source).
GRID_COLUMNS: tuple[str, ...] = (
    "family", "params", "tokens", "bits", "method", "group_size", "eval_set",
)  # fmt: skip
_OPTIONAL = {"model": "", "source": "", "group_size": pd.NA, "lr_schedule": UNKNOWN, "lr_frac": np.nan,
             "annealed": pd.NA, "train_precision": UNKNOWN, "weight_decay": np.nan,
             "post_trained": pd.NA, "dropout": np.nan, "grad_clip": np.nan, "peak_lr": np.nan,
             "average_last": np.nan}
# Alternatives to a `qid` column, in order of preference: losses are already in nats.
QID_SOURCES = (("fp16_loss", "quant_loss"), ("fp16_ppl", "quant_ppl"))
_SUFFIXES = (".csv", ".parquet", ".pq")
_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
_EXPECTED = (
    f"{', '.join(SCHEMA_COLUMNS)} (model, group_size, source and the recipe columns optional; qid "
    "may be "
    "replaced by fp16_loss and quant_loss, or by fp16_ppl and quant_ppl)"
)


@dataclass(frozen=True)
class Exclusion:
    """Rows of a source table that cannot enter a law, and why.

    Parameters
    ----------
    reason : str
        Why the rows were left out.
    count : int
        How many canonical rows were left out for this reason.
    """

    reason: str
    count: int


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated QiD table with its provenance.

    Compared by identity (``eq=False``): a DataFrame field has no boolean equality; compare
    ``sha256`` to ask whether two datasets hold the same data.

    Parameters
    ----------
    frame : pandas.DataFrame
        Canonical table (:data:`SCHEMA_COLUMNS`), validated, with a fresh RangeIndex.
    path : str
        Where the data came from (``"<bundled reference>"`` for the reference data).
    excluded : tuple of Exclusion
        Source rows left out, counted by reason (empty for user tables, which are never
        filtered).
    sha256 : str
        SHA-256 hex digest of ``frame`` serialised as CSV; equal data give equal digests.
        Computed on construction, not passed: ``Dataset(frame, path, excluded)``.
    """

    frame: pd.DataFrame
    path: str
    excluded: tuple[Exclusion, ...]
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        """Derive ``sha256`` from ``frame``."""
        object.__setattr__(self, "sha256", _sha256(self.frame))

    def summary(self) -> str:
        """Describe the data in a few human-readable lines.

        Returns
        -------
        str
            Row count, families with row counts, N and D ranges, bit widths, methods,
            evaluation sets, small and negative QiD counts, and exclusions.
        """
        df = self.frame

        def counts(column: str) -> str:
            return ", ".join(f"{k}: {v}" for k, v in df[column].value_counts().sort_index().items())

        lines = [
            f"{self.path}: {len(df)} rows (sha256 {self.sha256[:12]})",
            f"families ({df['family'].nunique()}): {counts('family')}",
            f"N, non-embedding parameters: {df['params'].min():.3g} to {df['params'].max():.3g}",
            f"D, training tokens: {df['tokens'].min():.3g} to {df['tokens'].max():.3g}",
            f"bits: {counts('bits')}",
            f"methods ({df['method'].nunique()}): {counts('method')}",
            f"eval sets ({df['eval_set'].nunique()}): {counts('eval_set')}",
            f"QiD < {DEFAULT_CENSOR_BELOW} nats: {int((df['qid'] < DEFAULT_CENSOR_BELOW).sum())}"
            f" rows, of which < 0: {int((df['qid'] < 0).sum())}",
            f"excluded: {sum(e.count for e in self.excluded)} rows",
        ]
        lines += [f"  {e.count:5d}  {e.reason}" for e in self.excluded]
        return "\n".join(lines)


def _sha256(frame: pd.DataFrame) -> str:
    text = frame.to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_RULES: dict[str, Callable[[Any], Any]] = {
    "family": parse_required_text, "model": parse_optional_text, "params": parse_positive,
    "tokens": parse_positive, "bits": parse_bits, "group_size": parse_group_size,
    "method": parse_required_text, "eval_set": parse_required_text, "qid": parse_number,
    "source": parse_optional_text,
    "fp16_loss": parse_number, "quant_loss": parse_number, "fp16_ppl": parse_positive,
    "quant_ppl": parse_positive,
    "lr_schedule": parse_lr_schedule, "lr_frac": parse_lr_frac, "annealed": parse_annealed,
    "train_precision": parse_precision, "weight_decay": parse_weight_decay,
    "post_trained": parse_post_trained, "dropout": parse_dropout, "grad_clip": parse_grad_clip,
    "peak_lr": parse_peak_lr, "average_last": parse_average_last,
}  # fmt: skip


# --- validation ------------------------------------------------------------------------------


def _parse_columns(frame: pd.DataFrame, columns: Iterable[str], path: str) -> dict[str, list]:
    """Parse each named column; raise for the first bad cell in row, then column, order."""
    position = {name: i for i, name in enumerate(frame.columns)}
    parsed: dict[str, list] = {}
    first_bad: list[tuple[int, int, str, str, Any]] = []
    for name in columns:
        rule, values = _RULES[name], []
        for row, value in enumerate(frame[name].tolist()):
            try:
                values.append(rule(value))
            except Rule as broken:
                first_bad.append((row, position[name], name, str(broken), value))
                break
        parsed[name] = values
    if first_bad:
        row, _, name, rule, value = min(first_bad, key=lambda bad: bad[:2])
        raise DataError(f"{path}: row {row + 1}, column '{name}': {rule} (got {value!r})")
    return parsed


def _check_columns(frame: pd.DataFrame, required: Iterable[str], path: str, expected: str) -> None:
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        raise DataError(f"{path}: duplicated column name(s) {', '.join(map(repr, duplicated))}")
    missing = ", ".join(repr(name) for name in required if name not in frame.columns)
    if missing:
        found = ", ".join(map(repr, frame.columns))
        raise DataError(f"{path}: missing column(s) {missing}; expected columns: {expected}; found: {found}")
    if frame.empty:
        raise DataError(f"{path}: no data rows")


def _typed(parsed: dict[str, list], columns: Iterable[str]) -> dict[str, pd.Series]:
    return {name: pd.Series(parsed[name], dtype=_DTYPES[name]) for name in columns}


def validate(frame: pd.DataFrame, *, path: str = "<frame>") -> pd.DataFrame:
    """Check a QiD table against every rule and return it in canonical form.

    Accepts the canonical columns (``model``, ``source`` and ``group_size`` optional, filled
    with ``""``, ``""`` and ``<NA>``), or instead of ``qid`` either ``fp16_loss`` and
    ``quant_loss`` (QiD = quant - fp16, nats) or ``fp16_ppl`` and ``quant_ppl``
    (QiD = ln(quant/fp16)). A ``qid`` column wins over both; losses win over perplexities.
    Extra columns are ignored. Zero and negative QiD are real "small" observations and are
    kept unchanged; no row is ever dropped or altered. Exact duplicate rows are kept, since
    two sources can print the same number, but raise a ``UserWarning`` because they are
    more often a copy-paste slip.

    Parameters
    ----------
    frame : pandas.DataFrame
        Table to check; values may be text (as read from CSV) or typed. Not modified.
    path : str, optional
        Name used in error messages.

    Returns
    -------
    pandas.DataFrame
        New frame with exactly :data:`SCHEMA_COLUMNS`, normalised dtypes and a RangeIndex.

    Raises
    ------
    DataError
        On the first broken rule, in row order then column order, as
        ``"{path}: row {r}, column '{col}': {rule} (got {value!r})"`` with ``r`` 1-based;
        or ``"{path}: {problem}"`` for missing or duplicated columns and empty tables.
    """
    # A qid column wins; else the first complete pair; else 'qid' is reported missing.
    columns = set(frame.columns)
    pairs = [pair for pair in QID_SOURCES if "qid" not in columns and set(pair) <= columns]
    qid_from = pairs[0] if pairs else ("qid",)
    required = [c for c in SCHEMA_COLUMNS if c not in _OPTIONAL and c != "qid"] + list(qid_from)
    _check_columns(frame, required, path, _EXPECTED)
    present = [c for c in SCHEMA_COLUMNS if c in frame.columns and c != "qid"]
    parsed = _parse_columns(frame, present + list(qid_from), path)
    if qid_from != ("qid",):
        base, quant = (np.asarray(parsed[c], dtype=float) for c in qid_from)
        with np.errstate(over="ignore"):
            qid = quant - base if qid_from == QID_SOURCES[0] else np.log(quant) - np.log(base)
        bad = np.flatnonzero(~np.isfinite(qid))  # only losses near 1e308 get here
        if bad.size:
            value = frame[qid_from[1]].iloc[bad[0]]
            raise DataError(
                f"{path}: row {bad[0] + 1}, column '{qid_from[1]}': QiD is not finite (got {value!r})"
            )
        parsed["qid"] = qid.tolist()
    for name, default in _OPTIONAL.items():
        parsed.setdefault(name, [default] * len(frame))
    out = pd.DataFrame(_typed(parsed, SCHEMA_COLUMNS))
    duplicated = out.duplicated()
    if duplicated.any():
        warnings.warn(
            f"{path}: {int(duplicated.sum())} duplicated row(s) kept "
            f"(first: row {int(np.flatnonzero(duplicated)[0]) + 1})",
            UserWarning,
            stacklevel=2,
        )
    return out


# --- files ------------------------------------------------------------------------------------


def _read_csv_text(text: str, path: str) -> pd.DataFrame:
    """Parse CSV text into a frame of strings, rejecting ragged rows and wrong delimiters."""
    records: list[list[str]] = []
    try:
        for record in csv.reader(io.StringIO(text, newline=""), strict=True):
            if record:
                records.append(record)
    except csv.Error as exc:
        # The failing record is the next one: data row len(records) once the header is read.
        where = f"row {len(records)}: " if records else "header: "
        raise DataError(f"{path}: {where}malformed CSV ({exc})") from None
    if not records:
        raise DataError(f"{path}: empty file")
    header, rows = records[0], records[1:]
    wrong = [name for d, name in _DELIMITERS.items() if len(header) == 1 and d in header[0]]
    if wrong:
        raise DataError(f"{path}: {wrong[0]}-delimited header; expected comma-separated CSV")
    for row, fields in enumerate(rows, start=1):
        if len(fields) != len(header):
            raise DataError(f"{path}: row {row}: {len(fields)} field(s), but the header has {len(header)}")
    return pd.DataFrame(rows, columns=header, dtype=object)


def read_table(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, str]:
    """Read a CSV (as strings) or Parquet file, turning every failure into a DataError."""
    shown, file = os.fspath(path), Path(path)
    if not file.exists():
        raise DataError(f"{shown}: does not exist")
    if file.is_dir():
        raise DataError(f"{shown}: is a directory, not a file")
    suffix = file.suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataError(f"{shown}: unsupported file type {suffix or '(none)'!r}; use .csv or .parquet")
    try:
        if suffix != ".csv":
            return pd.read_parquet(file), shown
        raw = file.read_bytes()
    except (OSError, ValueError) as exc:  # pyarrow's errors subclass these
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{shown}: unreadable ({first_line})") from None
    if b"\x00" in raw:
        raise DataError(f"{shown}: binary data, not CSV text (contains NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM that spreadsheet exports add
    except UnicodeDecodeError as exc:
        raise DataError(f"{shown}: {_locate_byte(raw, exc.start)}not UTF-8 text (invalid byte "
                        f"0x{raw[exc.start]:02x} at offset {exc.start})") from None
    return _read_csv_text(text, shown), shown


def _locate_byte(raw: bytes, offset: int) -> str:
    """``"row R, column 'C': "`` of the byte at ``offset`` in CSV bytes (best effort, no quoting)."""
    lines = raw[:offset].split(b"\n")
    row, fields = len(lines) - 1, lines[-1].count(b",")
    if row == 0:
        return "header: "
    header = raw.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r")
    names = header.split(",")
    column = f", column {names[fields]!r}" if fields < len(names) else ""
    return f"row {row}{column}: "


def load_table(path: str | os.PathLike[str]) -> Dataset:
    """Load a user QiD table from CSV or Parquet and validate it.

    CSV cells are read as text and parsed here, so that every problem is reported with its
    row and column. See :func:`validate` for the accepted columns and rules.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv``, ``.parquet`` or ``.pq`` file.

    Returns
    -------
    Dataset
        With no exclusions: user rows are never filtered.

    Raises
    ------
    DataError
        If the file is missing, unreadable, malformed, or breaks a rule.
    """
    frame, shown = read_table(path)
    return Dataset(validate(frame, path=shown), shown, ())


def load_grid(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Load a prediction grid: the rows at which a fitted law is evaluated.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv``, ``.parquet`` or ``.pq`` file with :data:`GRID_COLUMNS`; extra columns
        are kept, untouched, but ignored by bayesqid. Empty ``group_size`` means
        per-channel scales.

    Returns
    -------
    pandas.DataFrame
        The grid, in its column order, with :data:`GRID_COLUMNS` in canonical dtypes.

    Raises
    ------
    DataError
        As for :func:`load_table`; ``family``, ``method`` and ``eval_set`` must be non-empty.
    """
    frame, shown = read_table(path)
    return validate_grid(frame, path=shown)


def validate_grid(frame: pd.DataFrame, *, path: str = "<grid>") -> pd.DataFrame:
    """Check a prediction grid's cells by the rules of data files (see :func:`load_grid`).

    :data:`GRID_COLUMNS` are required; the recipe columns (:data:`RECIPE_COLUMNS`) are checked
    where present, since they reach the model too; other columns are kept untouched.

    Raises
    ------
    DataError
        As :func:`validate`: ``"{path}: row {r}, column '{col}': {rule} (got {value!r})"``.
    """
    _check_columns(frame, GRID_COLUMNS, path, ", ".join(GRID_COLUMNS))
    columns = [*GRID_COLUMNS, *(c for c in RECIPE_COLUMNS if c in frame.columns)]
    parsed = _parse_columns(frame, columns, path)
    return frame.reset_index(drop=True).assign(**_typed(parsed, columns))


def quantizer_label(method: str, group_size: Any) -> str:
    """Name a quantizer level: the method plus its scale granularity.

    Parameters
    ----------
    method : str
        Quantizer name, e.g. ``"GPTQ"``.
    group_size : int or None
        Group size; None, NaN or ``<NA>`` mean per-output-channel scales.

    Returns
    -------
    str

    Raises
    ------
    DataError
        If ``group_size`` is not missing and not a positive integer.

    Examples
    --------
    >>> quantizer_label("GPTQ", 128), quantizer_label("RTN", None)
    ('GPTQ g128', 'RTN per-channel')
    """
    try:
        size = parse_group_size(group_size)
    except Rule as broken:
        raise DataError(f"group_size: {broken} (got {group_size!r})") from None
    return f"{method} per-channel" if size is pd.NA else f"{method} g{size}"
