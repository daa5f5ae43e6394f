"""Plotting helpers for notebooks: bands against N or D, with the data, on a given Matplotlib axis.

Each helper draws on ``ax`` (a new figure's axis when None), returns it, and changes no global
state (no rcParams, no ``plt.show``). Bands come from :func:`bayesqid.questions.predict.predict`
tables, so anything a notebook predicts can be drawn.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from bayesqid.constants import CI_PROB
from bayesqid.errors import BayesqidError
from bayesqid.questions.grid import grid
from bayesqid.questions.predict import predict
from bayesqid.sampling.run import Run

__all__ = ["plot_bands", "plot_data", "plot_qid"]

Axis = Literal["tokens", "params"]
Band = Literal["mean", "pred"]

_LABELS = {"tokens": "D, training tokens", "params": "N, non-embedding parameters"}
#: Smallest QiD drawn on a log axis: zero and negative measurements are real (below resolution).
FLOOR = 1e-3


def _axis(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=(5.5, 4.0), layout="constrained").subplots()


def _check_x(x: str) -> None:
    if x not in _LABELS:
        raise BayesqidError(f"x must be 'tokens' or 'params', got {x!r}")


def plot_bands(table: pd.DataFrame, *, x: Axis = "tokens", band: Band = "pred", by: str | None = "bits",
               ax: Axes | None = None, label: str | None = None, color: str | None = None,
               alpha: float = 0.25) -> Axes:
    """Draw the bands of a prediction table against N or D, one band per value of ``by``.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`bayesqid.predict` on a grid that varies ``x``.
    x : {"tokens", "params"}
        The horizontal axis (log scale).
    band : {"pred", "mean"}
        A new measurement's band (``pred_*``) or the law mean's (``mean_*``).
    by : str or None
        Column whose values get one band each (default ``bits``); None draws one band.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure's axis when omitted.
    label : str, optional
        Legend label prefix (default: ``"{by} = {value}"``).
    color : str, optional
        One colour for every band (default: Matplotlib's cycle).
    alpha : float
        Opacity of the filled interval.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``, with log-log axes and labels.
    """
    _check_x(x)
    if band not in ("pred", "mean"):
        raise BayesqidError(f"band must be 'pred' or 'mean', got {band!r}")
    missing = [c for c in (x, f"{band}_lower", f"{band}_median", f"{band}_upper") if c not in table]
    if missing:
        raise BayesqidError(f"table lacks {missing}: pass the output of bayesqid.predict")
    ax = _axis(ax)
    groups = table.groupby(by, sort=True) if by is not None else [(None, table)]
    for key, part in groups:
        part = part.sort_values(x)
        name = label if key is None else (f"{label}, {by} = {key}" if label else f"{by} = {key}")
        (line,) = ax.plot(part[x], part[f"{band}_median"], color=color, lw=1.6, label=name)
        ax.fill_between(part[x], part[f"{band}_lower"], part[f"{band}_upper"], color=line.get_color(),
                        alpha=alpha, lw=0)
    ax.set(xscale="log", yscale="log", xlabel=_LABELS[x],
           ylabel=f"QiD (nats), {'new measurement' if band == 'pred' else 'law mean'}, "
                  f"median and {CI_PROB:.0%} band")
    ax.grid(True, which="major", alpha=0.3)
    return ax


def plot_data(frame: pd.DataFrame, *, x: Axis = "tokens", by: str | None = "bits", ax: Axes | None = None,
              marker: str = "o", color: str | None = None, label: str | None = None) -> Axes:
    """Scatter measured QiD against N or D (values below :data:`FLOOR` drawn at it).

    Parameters
    ----------
    frame : pandas.DataFrame
        Canonical rows (``qid`` and ``x`` columns), e.g. ``dataset.frame`` or ``run.data()``.
    x : {"tokens", "params"}
        The horizontal axis.
    by : str or None
        Column whose values get one colour each (default ``bits``); None: one colour.
    ax : matplotlib.axes.Axes, optional
        Where to draw.
    marker, color, label : optional
        Matplotlib styling; ``label`` prefixes the legend entries.

    Returns
    -------
    matplotlib.axes.Axes
    """
    _check_x(x)
    ax = _axis(ax)
    groups = frame.groupby(by, sort=True) if by is not None else [(None, frame)]
    for key, part in groups:
        name = label if key is None else (f"{label}, {by} = {key}" if label else f"{by} = {key}")
        ax.scatter(part[x], part["qid"].clip(lower=FLOOR), marker=marker, s=20, color=color,
                   edgecolors="black", linewidths=0.4, zorder=3, label=name)
    ax.set(xscale="log", yscale="log", xlabel=_LABELS[x], ylabel="QiD (nats)")
    return ax


def plot_qid(run: Run, *, x: Axis = "tokens", family: str, params: float | Iterable[float],
             tokens: float | Iterable[float], bits: int | Iterable[int], method: str = "GPTQ",
             group_size: int | None = 128, eval_set: str = "wikitext2", band: Band = "pred",
             data: bool = True, ax: Axes | None = None, prob: float = CI_PROB) -> Axes:
    """Predict and draw one family's bands against N or D, with its measurements in that setting.

    ``x`` is the axis that varies: give several ``tokens`` (for ``x="tokens"``) or several
    ``params`` (for ``x="params"``) and a single value of the other.

    Parameters
    ----------
    run : Run
        A fitted or loaded run.
    x : {"tokens", "params"}
        The varying axis.
    family, params, tokens, bits, method, group_size, eval_set
        The grid (see :func:`bayesqid.grid`); a family the run has not seen is a new family.
    band : {"pred", "mean"}
        A new measurement's band or the law mean's.
    data : bool
        Also scatter the run's measurements of ``family`` in this quantizer and evaluation set
        (at the fixed value of the other axis).
    ax : matplotlib.axes.Axes, optional
        Where to draw.
    prob : float
        Interval mass.

    Returns
    -------
    matplotlib.axes.Axes
    """
    _check_x(x)
    fixed = "params" if x == "tokens" else "tokens"
    fixed_values = np.atleast_1d(np.asarray(params if fixed == "params" else tokens, dtype=float))
    if fixed_values.size != 1:
        raise BayesqidError(f"plot_qid: give one value of {fixed} when x = {x!r}")
    table = predict(run, grid(family=family, params=params, tokens=tokens, bits=bits, method=method,
                              group_size=group_size, eval_set=eval_set), prob=prob)
    cell = run.data().iloc[:0]
    if data:
        frame = run.data()
        gs = frame["group_size"].fillna(0).astype(int)
        cell = frame[(frame["family"] == family) & (frame["method"] == method)
                     & (gs == (group_size or 0)) & (frame["eval_set"] == eval_set)
                     & np.isclose(frame[fixed], fixed_values[0], rtol=1e-6)]
    ax = _axis(ax)
    # One colour per bit width, shared by its band and its measurements.
    for i, (b, part) in enumerate(table.groupby("bits", sort=True)):
        plot_bands(part, x=x, band=band, by=None, ax=ax, label=f"{b}-bit", color=f"C{i}")
        points = cell[cell["bits"] == b]
        if len(points):
            plot_data(points, x=x, by=None, ax=ax, color=f"C{i}", label=f"{b}-bit measured")
    ax.set_title(f"{family}: {method} {'per-channel' if group_size is None else f'g{group_size}'}, "
                 f"{eval_set}, {fixed} = {fixed_values[0]:.3g}")
    return ax
