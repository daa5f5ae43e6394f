"""Cartesian prediction grids: every combination of sizes, token counts and bit widths.

A grid is the question side of a prediction: which family, quantizer and evaluation set, at
which N, D and bits. Extra keyword columns (recipe columns such as ``annealed``) are carried
through to :func:`bayesqid.questions.predict.predict`. Every grid, built here or read from a
file, is checked by the cell rules of data files (:func:`check_grid`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from bayesqid.constants import BITS_RANGE
from bayesqid.data.dataset import GRID_COLUMNS, validate_grid
from bayesqid.errors import BayesqidError, DataError

__all__ = ["check_grid", "grid"]


def check_grid(frame: pd.DataFrame, *, path: str = "<grid>", outputs: Iterable[str] = ()) -> pd.DataFrame:
    """Check a prediction grid: the data-file cell rules, and no column named like an output.

    Parameters
    ----------
    frame : pandas.DataFrame
        The grid: :data:`bayesqid.data.dataset.GRID_COLUMNS`, optional recipe columns (checked
        like those of a data file), any other columns (carried through untouched).
    path : str
        Name used in error messages (the grid's file).
    outputs : iterable of str
        Columns the caller will add to the grid's rows (``predict``'s bands): a grid column of
        the same name would be silently overwritten, so it is refused.

    Returns
    -------
    pandas.DataFrame
        The grid with a fresh RangeIndex and its checked columns in canonical dtypes.

    Raises
    ------
    DataError
        One line naming ``path`` and, for a broken cell, its 1-based row and column.
    """
    outputs = tuple(outputs)
    clash = [c for c in frame.columns if c in outputs]
    if clash:
        raise DataError(f"{path}: column {clash[0]!r} has the name of an output column "
                        f"({', '.join(outputs)}); rename or drop it")
    return validate_grid(frame, path=path)


def _values(name: str, value: float | Iterable[float]) -> list[float]:
    out = [float(v) for v in np.atleast_1d(np.asarray(value, dtype=float)).ravel()]
    if not out:
        raise BayesqidError(f"grid: {name} is empty")
    bad = [v for v in out if not (np.isfinite(v) and v > 0)]
    if bad:
        raise BayesqidError(f"grid: {name} must be positive and finite (got {bad[0]!r})")
    return out


def grid(*, family: str | Iterable[str], params: float | Iterable[float], tokens: float | Iterable[float],
         bits: int | Iterable[int], method: str = "GPTQ", group_size: int | None = 128,
         eval_set: str = "wikitext2", **columns: Any) -> pd.DataFrame:
    """Every combination of ``family`` x ``bits`` x ``params`` x ``tokens`` as a prediction grid.

    Parameters
    ----------
    family : str or iterable of str
        Family label(s). A label the run has not seen is predicted as a new family (its effects
        drawn from the population).
    params, tokens : float or iterable of float
        Non-embedding parameter counts N and training-token counts D (raw counts).
    bits : int or iterable of int
        Weight bit widths.
    method : str
        Quantization method, as in the data (``"GPTQ"``, ``"RTN"``, ``"AWQ"``...).
    group_size : int or None
        Quantization group size; ``None`` for per-channel scales.
    eval_set : str
        Evaluation set label (``"wikitext2"``, ``"c4"``...).
    **columns
        Constant extra columns (recipe columns such as ``annealed=True``), carried through.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`bayesqid.data.dataset.GRID_COLUMNS` plus ``columns``, one row per
        combination, ordered by family, bits, params, tokens.

    Raises
    ------
    BayesqidError
        An empty or non-positive axis, or bits outside 1..16; a :class:`DataError` for a label
        or recipe value that breaks a data-file rule (an empty method, ``annealed="perhaps"``).

    Examples
    --------
    >>> import bayesqid as bq
    >>> g = bq.grid(family="new family", params=[7e9, 70e9], tokens=1e14, bits=[3, 4])
    >>> len(g), list(g.columns[:4])
    (4, ['family', 'params', 'tokens', 'bits'])
    """
    families = [family] if isinstance(family, str) else [str(f) for f in family]
    if not families:
        raise BayesqidError("grid: family is empty")
    lo, hi = BITS_RANGE
    try:
        raw_bits = [float(b) for b in np.atleast_1d(bits)]
    except (TypeError, ValueError):
        raise BayesqidError(f"grid: bits must be integers in {lo}..{hi} (got {bits!r})") from None
    # 2.5 bits is refused, not truncated to 2.
    if not raw_bits or any(not (b.is_integer() and lo <= b <= hi) for b in raw_bits):
        raise BayesqidError(f"grid: bits must be integers in {lo}..{hi} (got {raw_bits!r})")
    bit_list = [int(b) for b in raw_bits]
    n_values, d_values = _values("params", params), _values("tokens", tokens)
    rows = [{"family": f, "params": n, "tokens": d, "bits": b, "method": method,
             "group_size": group_size, "eval_set": eval_set}
            for f, b, n, d in itertools.product(families, bit_list, n_values, d_values)]
    out = pd.DataFrame(rows, columns=list(GRID_COLUMNS))
    out["group_size"] = out["group_size"].astype("Int64")
    for name, value in columns.items():
        out[name] = value
    return check_grid(out)
