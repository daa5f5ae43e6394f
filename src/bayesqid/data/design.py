"""From a canonical frame to model arrays: covariates, group codes and level names.

This is the only place where canonical column names meet model-scale quantities; both the
fit (observed data) and prediction (grids) go through it, so a level is coded identically in
both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayesqid.constants import EVAL_SET, FAMILY, GROUPS, QUANTIZER
from bayesqid.data.dataset import quantizer_label
from bayesqid.lang.laws import covariates

#: Code given to a level that the fitted model has never seen.
NEW_LEVEL = -1


@dataclass(frozen=True)
class Design:
    """Model-ready arrays for a set of rows.

    Attributes
    ----------
    x : dict of str to ndarray
        Model-scale covariates (see :func:`bayesqid.laws.covariates`).
    codes : dict of str to ndarray
        Integer level codes per grouping factor; :data:`NEW_LEVEL` marks unseen levels.
    levels : dict of str to tuple of str
        Level names per grouping factor, in code order.
    labels : dict of str to ndarray
        The raw level label of every row per grouping factor.
    """

    x: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    levels: dict[str, tuple[str, ...]]
    labels: dict[str, np.ndarray]

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return len(next(iter(self.x.values())))


def group_labels(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Level label of every row for each grouping factor (quantizer = method + group size)."""
    quant = [quantizer_label(m, g) for m, g in zip(frame["method"], frame["group_size"], strict=True)]
    return {
        FAMILY: frame["family"].astype(str).to_numpy(),
        QUANTIZER: np.asarray(quant, dtype=object).astype(str),
        EVAL_SET: frame["eval_set"].astype(str).to_numpy(),
    }


def build_design(frame: pd.DataFrame, levels: Mapping[str, tuple[str, ...]] | None = None) -> Design:
    """Code ``frame`` for the model.

    Parameters
    ----------
    frame : DataFrame
        Canonical rows (observed data or a prediction grid).
    levels : mapping, optional
        Known levels per group (from a fitted run). Without it, levels are the sorted unique
        labels of ``frame`` (the fitting case).

    Returns
    -------
    Design
    """
    labels = group_labels(frame)
    if levels is None:
        levels = {g: tuple(sorted(set(labels[g]))) for g in GROUPS}
    codes = {}
    for g in GROUPS:
        index = {name: i for i, name in enumerate(levels[g])}
        codes[g] = np.array([index.get(v, NEW_LEVEL) for v in labels[g]], dtype=np.int64)
    x = covariates(frame["params"].to_numpy(float), frame["tokens"].to_numpy(float),
                   frame["bits"].to_numpy(float))
    return Design(x=x, codes=codes, levels={g: tuple(levels[g]) for g in GROUPS}, labels=labels)
