"""From a canonical frame to model arrays: covariates, group codes and level names.

This is the only place where canonical column names meet model-scale quantities; both the
fit (observed data) and prediction (grids) go through it, so a level is coded identically in
both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayesqid.constants import EVAL_SET, FAMILY, GROUPS, LINEAGE, QUANTIZER, SIZE
from bayesqid.data.cells import (
    UNKNOWN,
    parse_annealed,
    parse_average_last,
    parse_dropout,
    parse_grad_clip,
    parse_lr_frac,
    parse_lr_schedule,
    parse_peak_lr,
    parse_post_trained,
    parse_precision,
    parse_weight_decay,
)
from bayesqid.data.dataset import quantizer_label
from bayesqid.lang.laws import covariates
from bayesqid.lang.recipe import PEAK_LR_BASELINE, RECIPE_FEATURES

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
    recipe : dict of str to ndarray
        Encoded recipe covariates of every row (:data:`bayesqid.lang.recipe.RECIPE_FEATURES`);
        rows whose frame has no recipe columns are of unknown recipe.
    """

    x: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    levels: dict[str, tuple[str, ...]]
    labels: dict[str, np.ndarray]
    recipe: dict[str, np.ndarray] = field(default_factory=dict)

    def subset(self, rows: np.ndarray) -> Design:
        """The design of ``rows`` (a boolean mask or indices), same levels."""
        return Design(x={k: v[rows] for k, v in self.x.items()},
                      codes={k: v[rows] for k, v in self.codes.items()}, levels=self.levels,
                      labels={k: v[rows] for k, v in self.labels.items()},
                      recipe={k: v[rows] for k, v in self.recipe.items()})

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return len(next(iter(self.x.values())))


# A family name ends in its version: "Llama-3.2", "Qwen2.5", "LLaMA-1", "Gemma-2", "OPT-v2".
_VERSION = re.compile(r"[-_ ]?v?\d+(?:\.\d+)*$", re.IGNORECASE)


def lineage_label(family: str) -> str:
    """Level label of a family's lineage: its name without the trailing version, case-folded.

    ``"Llama-3.2"``, ``"Llama-2"`` and ``"LLaMA-1"`` are all ``"llama"``; ``"Qwen2.5"`` is
    ``"qwen"``; ``"TinyLlama"`` and ``"Spectra-FloatLM"`` are their own. A rule on the name rather
    than a list, so that a family the package has never seen (a user's next release) finds its
    relatives by the name the user gives it, and a name without a version is a lineage of one.
    """
    stem = _VERSION.sub("", family.strip())
    return (stem or family).casefold()


def size_label(family: str, params: float) -> str:
    """Level label of a model size within its family: ``"Llama-2 6.74e+09"``."""
    return f"{family} {float(params):.4g}"


def group_labels(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Level label of every row for each grouping factor (lineage from the family's name;
    quantizer = method + group size; size = family + N, so a grid row at a fitted family's
    fitted N reuses that network's offset and any other N draws a new one)."""
    quant = [quantizer_label(m, g) for m, g in zip(frame["method"], frame["group_size"], strict=True)]
    sizes = [size_label(f, n) for f, n in zip(frame["family"].astype(str), frame["params"], strict=True)]
    families = frame["family"].astype(str).to_numpy()
    return {
        LINEAGE: np.asarray([lineage_label(f) for f in families], dtype=object).astype(str),
        FAMILY: families,
        SIZE: np.asarray(sizes, dtype=object).astype(str),
        QUANTIZER: np.asarray(quant, dtype=object).astype(str),
        EVAL_SET: frame["eval_set"].astype(str).to_numpy(),
    }


def _column(frame: pd.DataFrame, name: str, parse: object) -> list:
    """Parsed recipe values of ``name`` (all unknown when the frame lacks the column)."""
    if name not in frame:
        return [parse(UNKNOWN)] * len(frame)  # type: ignore[operator]
    return [parse(v) for v in frame[name].tolist()]  # type: ignore[operator]


def recipe_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Encode the recipe columns of ``frame`` (see :mod:`bayesqid.lang.recipe` for baselines).

    Values were checked by validation (data) or are checked here (grids): an invalid value
    raises the cell rule's message.
    """
    annealed = _column(frame, "annealed", parse_annealed)
    frac = np.asarray(_column(frame, "lr_frac", parse_lr_frac), dtype=float)
    precision = np.asarray(_column(frame, "train_precision", parse_precision), dtype=object)
    schedule = np.asarray(_column(frame, "lr_schedule", parse_lr_schedule), dtype=object)
    decay = np.asarray(_column(frame, "weight_decay", parse_weight_decay), dtype=float)
    post = _column(frame, "post_trained", parse_post_trained)
    dropout = np.asarray(_column(frame, "dropout", parse_dropout), dtype=float)
    clip = np.asarray(_column(frame, "grad_clip", parse_grad_clip), dtype=float)
    peak = np.asarray(_column(frame, "peak_lr", parse_peak_lr), dtype=float)
    average = np.asarray(_column(frame, "average_last", parse_average_last), dtype=float)
    unknown_annealed = np.array([a is pd.NA for a in annealed])
    out = {
        "annealed_true": np.array([a is True for a in annealed], dtype=float),
        "annealed_unknown": unknown_annealed.astype(float),
        "lr_frac": np.nan_to_num(frac, nan=0.0),
        "lr_frac_unknown": np.isnan(frac).astype(float),
        "weight_decay": np.nan_to_num(decay, nan=0.0),
        "weight_decay_unknown": np.isnan(decay).astype(float),
        "post_trained_true": np.array([p is True for p in post], dtype=float),
        "post_trained_unknown": np.array([p is pd.NA for p in post], dtype=float),
        "dropout": np.nan_to_num(dropout, nan=0.0),
        "dropout_unknown": np.isnan(dropout).astype(float),
        "grad_clipped": (clip > 0).astype(float),  # NaN > 0 is False: unknown has its own column
        "grad_clip_unknown": np.isnan(clip).astype(float),
        "log10_peak_lr": np.nan_to_num(np.log10(peak / PEAK_LR_BASELINE), nan=0.0),
        "peak_lr_unknown": np.isnan(peak).astype(float),
        "averaged": (average >= 2).astype(float),  # one checkpoint "averaged" is that checkpoint
        "average_last_unknown": np.isnan(average).astype(float),
    }
    for level in ("fp32", "fp16", "fp8", UNKNOWN):
        out[f"precision_{level}"] = (precision == level).astype(float)
    for level in ("linear", "wsd", "constant", UNKNOWN):
        out[f"schedule_{level}"] = (schedule == level).astype(float)
    return {k: out[k] for k in RECIPE_FEATURES}


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
    return Design(x=x, codes=codes, levels={g: tuple(levels[g]) for g in GROUPS}, labels=labels,
                  recipe=recipe_features(frame))
