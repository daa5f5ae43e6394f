"""Figures of the uncertainty report, returned as embeddable PNG data URIs.

Every function draws one matplotlib figure on the Agg canvas (no global backend switch, no
rcParams changed at import) and hands it to :func:`to_data_uri`, which encodes it as
``data:image/png;base64,...`` and closes it, so building a report leaks no figures.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from bayesqid.constants import CI_PROB
from bayesqid.lang.laws import OUYANG, covariates, published_ouyang

#: Markers of bit widths in data figures.
BIT_MARKERS = {2: "v", 3: "s", 4: "o", 5: "^", 6: "D", 8: "P"}
#: Colours of bit widths in band figures.
BIT_COLORS = {2: "#d62728", 3: "#1f77b4", 4: "#2ca02c", 5: "#9467bd", 6: "#8c564b", 8: "#7f7f7f"}
DPI = 90


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (pyplot's global state is never touched)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_data_uri(fig: Figure) -> str:
    """Encode ``fig`` as a base64 PNG data URI and release it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    fig.clear()
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _marker(bits: int) -> str:
    return BIT_MARKERS.get(int(bits), "x")


def _color(bits: int) -> str:
    return BIT_COLORS.get(int(bits), "black")


def _tidy_log(ax: Axes) -> None:
    """Label only the decades of log axes: minor labels collide on short ranges."""
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":
            axis.set_minor_formatter(NullFormatter())


def _panels(fig: Figure, n: int, ncols: int) -> list[Axes]:
    nrows = int(np.ceil(n / ncols))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


def law_image(latex: str) -> str:
    """The law rendered with matplotlib mathtext."""
    fig = new_figure(6.0, 0.9)
    fig.text(0.5, 0.5, f"${latex}$", ha="center", va="center", fontsize=20)
    return to_data_uri(fig)


def coverage(frame: pd.DataFrame) -> str:
    """Training tokens D vs parameters N of the fitted rows, by family (colour) and bits (marker)."""
    fig = new_figure(9.0, 5.5)
    ax = fig.subplots()
    families = sorted(frame["family"].unique())
    cmap = [f"C{i % 10}" for i in range(len(families))]
    for fam, col in zip(families, cmap, strict=True):
        sub = frame[frame["family"] == fam]
        for bits, part in sub.groupby("bits"):
            ax.scatter(part["params"], part["tokens"], s=36, marker=_marker(int(bits)), facecolors="none",
                       edgecolors=col, linewidths=1.2)
        ax.scatter([], [], color=col, label=f"{fam} ({len(sub)} rows)")
    for bits in sorted(frame["bits"].unique()):
        ax.scatter([], [], marker=_marker(int(bits)), facecolors="none", edgecolors="black",
                   label=f"{bits}-bit")
    ax.set(xscale="log", yscale="log", xlabel="N, non-embedding parameters",
           ylabel="D, training tokens", title="Data coverage: every fitted (N, D), by family and bit width")
    ax.grid(True, which="major", alpha=0.3)
    _tidy_log(ax)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    return to_data_uri(fig)


def forest(family_draws: dict[str, pd.DataFrame], population: dict[str, np.ndarray],
           prob: float = CI_PROB) -> str:
    """Family coefficients (median and interval) beside the population coefficient.

    ``family_draws[param]`` has one column of posterior draws per family; ``population[param]``
    the draws of the population value.
    """
    params = list(family_draws)
    n_families = len(next(iter(family_draws.values())).columns)
    fig = new_figure(min(3.4 * len(params), 14.0), 0.45 * n_families + 1.8)
    axes = _panels(fig, len(params), len(params))
    q = [(1 - prob) / 2, 0.5, (1 + prob) / 2]
    for ax, p in zip(axes, params, strict=True):
        draws = family_draws[p]
        names = list(draws.columns)
        lo, med, hi = np.quantile(draws.to_numpy(), q, axis=0)
        y = np.arange(len(names))[::-1]
        ax.errorbar(med, y, xerr=[med - lo, hi - med], fmt="o", color="C0", capsize=3, label="family")
        plo, pmed, phi = np.quantile(population[p], q)
        ax.axvspan(plo, phi, color="0.5", alpha=0.25, label="population")
        ax.axvline(pmed, color="0.3", lw=1)
        ax.set_yticks(y, names if ax is axes[0] else [""] * len(names))
        ax.set(title=p, xlabel=f"{p} (law units)")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(f"Family coefficients, median and {prob:.0%} interval; grey: population {prob:.0%} interval")
    return to_data_uri(fig)


def ppc(frame: pd.DataFrame, pred: np.ndarray, censor_below: float, prob: float = CI_PROB) -> str:
    """Observed QiD vs posterior predictive median and interval, one panel per family.

    ``pred`` holds replicated log QiD of shape (samples, rows of ``frame``). Censored rows
    (observed below ``censor_below``) are drawn at the threshold with a left-pointing marker.
    """
    families = sorted(frame["family"].unique())
    ncols = min(4, len(families))
    fig = new_figure(3.3 * ncols, 3.1 * int(np.ceil(len(families) / ncols)) + 0.6)
    axes = _panels(fig, len(families), ncols)
    q = [(1 - prob) / 2, 0.5, (1 + prob) / 2]
    lo, med, hi = np.exp(np.quantile(pred, q, axis=0))
    observed = frame["qid"].to_numpy(float)
    censored = observed < censor_below
    x = np.where(censored, censor_below, observed)
    for ax, fam in zip(axes, families, strict=True):
        rows = (frame["family"] == fam).to_numpy()
        for cens, marker, label in [(False, "o", "observed"), (True, "<", f"censored (< {censor_below:g})")]:
            r = rows & (censored == cens)
            if r.any():
                ax.errorbar(x[r], med[r], yerr=[med[r] - lo[r], hi[r] - med[r]], fmt=marker, ms=3.5,
                            elinewidth=0.6, alpha=0.7, color="C3" if cens else "C0", label=label)
        both = np.concatenate([x[rows], lo[rows], hi[rows]])
        lim = [max(both.min(), 1e-4) / 1.5, both.max() * 1.5]
        ax.plot(lim, lim, color="0.4", lw=0.8, ls="--")
        ax.set(xscale="log", yscale="log", xlim=lim, ylim=lim, title=f"{fam} ({int(rows.sum())} rows)",
               xlabel="observed QiD (nats)", ylabel="replicated QiD (nats)")
        ax.grid(True, alpha=0.3)
        _tidy_log(ax)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Posterior predictive check: replicated QiD, median and {prob:.0%} interval, "
                 "against the observation (dashed: equality)")
    return to_data_uri(fig)


def curves(panels: Sequence[dict]) -> str:
    """Fitted mean bands against data for each family, vs D (left) and vs N (right).

    Each entry of ``panels`` describes one family: ``family``, ``setting`` (text),
    ``vs_d`` and ``vs_n`` (band frames from :func:`bayesqid.predict.predict` with a ``bits``
    column), ``points_d`` and ``points_n`` (data rows), ``fixed_n`` and ``fixed_d``.
    """
    fig = new_figure(11.0, 2.9 * len(panels) + 0.5)
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for row, panel in zip(axes, panels, strict=True):
        for ax, key, xcol, xlabel, fixed in [
            (row[0], "d", "tokens", "D, training tokens", f"N = {panel['fixed_n']:.3g}"),
            (row[1], "n", "params", "N, non-embedding parameters", f"D = {panel['fixed_d']:.3g}"),
        ]:
            band, pts = panel[f"vs_{key}"], panel[f"points_{key}"]
            for bits, part in band.groupby("bits"):
                c = _color(int(bits))
                ax.fill_between(part[xcol], part["mean_lower"], part["mean_upper"], color=c, alpha=0.2)
                ax.plot(part[xcol], part["mean_median"], color=c, lw=1.3, label=f"{bits}-bit")
            for bits, part in pts.groupby("bits"):
                ax.scatter(part[xcol], part["qid"].clip(lower=1e-3), marker=_marker(int(bits)), s=22,
                           color=_color(int(bits)), edgecolors="black", linewidths=0.4, zorder=3)
            ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="QiD (nats)",
                   title=f"{panel['family']}: vs {'D' if key == 'd' else 'N'} at {fixed}")
            ax.grid(True, alpha=0.3)
            _tidy_log(ax)
        row[0].legend(fontsize=7, loc="best", title=panel["setting"], title_fontsize=7)
    fig.suptitle(f"Fitted law mean ({CI_PROB:.0%} band) against the data, per family (points: QiD "
                 "below 1e-3 nats drawn at 1e-3)")
    return to_data_uri(fig)


def extrapolation(bands: dict[str, pd.DataFrame], tokens: float) -> str:
    """QiD at ``tokens`` over N: one panel per bit width, one band per family, Eq. 8 dashed.

    ``bands[label]`` is a :func:`~bayesqid.predict.predict` frame over N with a ``bits`` column.
    """
    bits_all = sorted({int(b) for band in bands.values() for b in band["bits"].unique()})
    fig = new_figure(4.2 * len(bits_all), 4.4)
    axes = _panels(fig, len(bits_all), len(bits_all))
    pub = published_ouyang()
    for ax, bits in zip(axes, bits_all, strict=True):
        for i, (label, band) in enumerate(bands.items()):
            part = band[band["bits"] == bits]
            c = f"C{i}"
            ax.fill_between(part["params"], part["mean_lower"], part["mean_upper"], color=c, alpha=0.25)
            ax.plot(part["params"], part["mean_median"], color=c, lw=1.8, label=label)
        n = np.geomspace(min(b["params"].min() for b in bands.values()),
                         max(b["params"].max() for b in bands.values()), 30)
        ax.plot(n, np.exp(OUYANG.log_mu(covariates(n, tokens, bits), pub)), color="black", ls="--", lw=1.3,
                label="Ouyang et al. Eq. 8 (point law)")
        ax.set(xscale="log", yscale="log", xlabel="N, non-embedding parameters",
               ylabel=f"QiD at D = {tokens:.0e} tokens (nats)", title=f"{bits}-bit")
        ax.grid(True, which="major", alpha=0.3)
        _tidy_log(ax)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"QiD at {tokens / 1e12:.0f}T training tokens, GPTQ g128 on WikiText-2: law mean, median "
                 f"and {CI_PROB:.0%} band")
    return to_data_uri(fig)
