"""Cartesian prediction grids: every combination of sizes, token counts and bit widths.

A grid is the question side of a prediction: which family, quantizer and evaluation set, at
which N, D and bits. Extra keyword columns (recipe columns such as ``annealed``) are carried
through to :func:`bayesqid.questions.predict.predict`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from bayesqid.constants import BITS_RANGE
from bayesqid.data.dataset import GRID_COLUMNS
from bayesqid.errors import BayesqidError

__all__ = ["grid"]


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
        An empty or non-positive axis, or bits outside 1..16.

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
    bit_list = [int(b) for b in np.atleast_1d(bits)]
    lo, hi = BITS_RANGE
    if not bit_list or any(not lo <= b <= hi for b in bit_list):
        raise BayesqidError(f"grid: bits must be integers in {lo}..{hi} (got {bit_list!r})")
    n_values, d_values = _values("params", params), _values("tokens", tokens)
    rows = [{"family": f, "params": n, "tokens": d, "bits": b, "method": method,
             "group_size": group_size, "eval_set": eval_set}
            for f, b, n, d in itertools.product(families, bit_list, n_values, d_values)]
    out = pd.DataFrame(rows, columns=list(GRID_COLUMNS))
    out["group_size"] = out["group_size"].astype("Int64")
    for name, value in columns.items():
        out[name] = value
    return out
