"""Inverse questions: how many tokens until QiD reaches a target, and how trained a model is.

Ouyang et al. answer both with one point law (``../shared/docs/science.md``, Table 1). Here
every answer is a posterior:

- :func:`token_budget` solves ``law-mean QiD(D) = target`` for D on every posterior draw, with
  the row's family, quantizer and evaluation-set effects drawn exactly as
  :func:`bayesqid.predict.predict` draws them (same :func:`bayesqid.posterior.row_theta`, same
  seed), so a budget and a prediction from one run never disagree about what a draw is;
- :func:`training_level` (in :mod:`bayesqid.training`) turns measured QiD of one model into a
  posterior over its effective training tokens.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayesqid.constants import BITS_RANGE, CI_PROB, FAMILY, GROUPS, TOKENS_SCALE
from bayesqid.data.design import NEW_LEVEL, Design, build_design
from bayesqid.errors import BayesqidError, DataError
from bayesqid.questions.predict import NEW_FAMILY, default_grid
from bayesqid.sampling.draws import row_theta
from bayesqid.sampling.run import Run

#: Columns of :func:`token_budget`'s table, in order.
BUDGET_COLUMNS = ("qid_target", "family", "params", "bits", "method", "group_size", "eval_set",
                  "tokens_lower", "tokens_median", "tokens_upper", "frac_never", "frac_below", "new_levels")

#: Default token range searched by :func:`token_budget`: 1B to 10 quadrillion tokens.
DEFAULT_TOKEN_RANGE: tuple[float, float] = (1e9, 1e16)

# Root finding for laws that are not affine in log D: a scan finds the first grid interval in
# which the law-mean crosses the target (so a non-monotone law gives its FIRST crossing, at the
# scan's resolution), then bisection narrows it. 128 intervals over the default 16 nats are
# 0.125 nats wide; 48 halvings take that far below double precision of log D.
SCAN_POINTS = 129
BISECT_STEPS = 48

# A law is treated as affine in log D when its value at interior points of the range departs
# from the chord through the end points by less than this (relative to its magnitude).
AFFINE_RTOL = 1e-9


# --- input checks (shared with bayesqid.training) ---------------------------------------------


def check_prob(prob: float) -> float:
    """Return ``prob`` if it is a central-interval mass in (0, 1); else :class:`BayesqidError`."""
    if not 0 < prob < 1:
        raise BayesqidError(f"interval must be between 0 and 1, got {prob!r}")
    return float(prob)


def check_range(bounds: Sequence[float], what: str) -> tuple[float, float]:
    """Return ``(low, high)`` as floats if ``0 < low < high < inf``; else :class:`DataError`."""
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be two numbers (low, high), got {bounds!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        raise DataError(f"{what} must satisfy 0 < low < high < inf, got ({low:g}, {high:g})")
    return low, high


def check_family(run: Run, family: str | None, *, new_family: bool = False) -> None:
    """Refuse a ``family`` the run has not fitted, unless a new family is asked for explicitly.

    A typo of a fitted family (``llama-2`` for ``Llama-2``) must not quietly become an answer
    about a new family, whose band is far wider; so an unknown name needs ``new_family``.

    Parameters
    ----------
    run : Run
        The fitted run.
    family : str or None
        The family asked about; None means a new family (nothing to check).
    new_family : bool
        The name is meant as a new family, drawn from the population.

    Raises
    ------
    DataError
        An empty name; an unknown name without ``new_family`` (the message lists the fitted
        families and the closest names); a fitted name with ``new_family``.
    """
    if family is None:
        return
    name = str(family)
    if not name.strip():
        raise DataError("family must not be empty")
    fitted = sorted(run.levels[FAMILY])
    if new_family and name in fitted:
        raise DataError(f"family {name!r} is a fitted family of this run, not a new one; drop the "
                        "new-family request to use its fitted effects")
    if not new_family and name not in fitted:
        close = [f for f in fitted if f.lower() == name.lower()]
        close += [f for f in difflib.get_close_matches(name, fitted, n=3, cutoff=0.6) if f not in close]
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise DataError(f"family {name!r} is not a fitted family of this run{hint}; fitted: {fitted}; "
                        "to ask about a new family of that name, add --new-family (new_family=True "
                        "in Python)")


def _as_list(values: Any) -> list[Any]:
    # A lone number or string is one value, not an iterable of characters.
    return [values] if isinstance(values, str | bytes) or np.isscalar(values) else list(values)


def _positive(values: Iterable[Any], what: str) -> list[float]:
    out = []
    for v in _as_list(values):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise DataError(f"{what} must be a number, got {v!s}") from None
        if not (np.isfinite(x) and x > 0):
            raise DataError(f"{what} must be a finite number > 0, got {v!s}")
        out.append(x)
    if not out:
        raise DataError(f"no {what} given")
    return out


def _bit_widths(values: Iterable[Any]) -> list[int]:
    low, high = BITS_RANGE
    out = []
    for v in _as_list(values):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise DataError(f"bits must be an integer, got {v!s}") from None
        if not (x.is_integer() and low <= x <= high):
            raise DataError(f"bits must be an integer within {low}..{high}, got {v!s}")
        out.append(int(x))
    if not out:
        raise DataError("no bits given")
    return out


def new_levels(run: Run, design: Design) -> list[str]:
    """Per row, the ``group=label`` pairs drawn from the population (as in ``predict``)."""
    varied = {e.group for e in run.spec.effects}
    return [";".join(f"{g}={design.labels[g][i]}" for g in GROUPS
                     if g in varied and design.codes[g][i] == NEW_LEVEL)
            for i in range(design.n_rows)]


# --- solving law-mean QiD(D) = target on draws ------------------------------------------------


def _is_affine(log_mu: Callable[[Any], np.ndarray], lo: float, hi: float) -> bool:
    """True when ``log_mu`` is affine in log D on [lo, hi] for every draw and row (checked at 5 points)."""
    points = np.linspace(lo, hi, 5)
    vals = [np.asarray(log_mu(p), dtype=float) for p in points]
    chord = [vals[0] + (vals[-1] - vals[0]) * (p - lo) / (hi - lo) for p in points]
    scale = 1.0 + max(float(np.nanmax(np.abs(v))) for v in vals)
    return all(np.allclose(v, c, rtol=0.0, atol=AFFINE_RTOL * scale)
               for v, c in zip(vals, chord, strict=True))


def first_crossing(log_mu: Callable[[Any], np.ndarray], log_target: float, lo: float, hi: float,
                   *, method: str = "auto") -> np.ndarray:
    """Smallest log D in [lo, hi] at which the law-mean reaches the target, per draw and row.

    Parameters
    ----------
    log_mu : callable
        ``log_mu(log_d)`` -> array (samples, rows) of log law-mean QiD; ``log_d`` (model-scale,
        ``log(D / 1e12)``) is a scalar or an array of that shape (per-draw covariates).
    log_target : float
        Log of the QiD target.
    lo, hi : float
        The searched range on the ``log_d`` scale.
    method : {"auto", "closed_form", "bisection"}
        ``"auto"`` uses the closed form when ``log_mu`` is affine in log D (every registered
        law) and bisection otherwise.

    Returns
    -------
    ndarray
        ``log_d`` of the first crossing; ``-inf`` where the target is already reached at
        ``lo`` ("below the range"), ``+inf`` where it is not reached by ``hi`` ("never").
    """
    if method == "auto":
        method = "closed_form" if _is_affine(log_mu, lo, hi) else "bisection"
    a0 = np.asarray(log_mu(lo), dtype=float)
    below = a0 >= log_target
    if method == "closed_form":
        a1 = np.asarray(log_mu(hi), dtype=float)
        # An affine function below the target at lo reaches it inside the range iff it is at or
        # above it at hi; then the slope is positive and the root lies in (lo, hi].
        reached = ~below & (a1 >= log_target)
        with np.errstate(divide="ignore", invalid="ignore"):
            root = lo + (log_target - a0) * (hi - lo) / (a1 - a0)
        root = np.where(reached, np.clip(root, lo, hi), np.inf)
    elif method == "bisection":
        grid = np.linspace(lo, hi, SCAN_POINTS)
        above = np.stack([np.asarray(log_mu(g), dtype=float) >= log_target for g in grid])
        reached = above.any(axis=0) & ~below
        first = np.argmax(above, axis=0)  # first scan point at or above the target
        a, b = grid[np.maximum(first - 1, 0)], grid[first]
        for _ in range(BISECT_STEPS):
            mid = 0.5 * (a + b)
            up = np.asarray(log_mu(mid), dtype=float) >= log_target
            a, b = np.where(up, a, mid), np.where(up, mid, b)
        root = np.where(reached, b, np.inf)
    else:
        raise BayesqidError(f"unknown root-finding method {method!r}")
    return np.where(below, -np.inf, root)


def quantiles_with_bounds(log_d: np.ndarray, q: Sequence[float], lo: float, hi: float) -> np.ndarray:
    """Quantiles over draws (axis 0) of log D where draws may be ``-inf`` (below) or ``+inf`` (never).

    Linear interpolation as in ``predict``; a quantile that falls among or next to out-of-range
    draws is returned as ``-inf`` / ``+inf`` rather than as a number the draws do not support.
    """
    # Large finite stand-ins keep numpy's interpolation defined (inf - inf is nan); any result
    # they pull outside [lo, hi] is mapped back to the infinity it stands for.
    big = 1e300
    finite = np.clip(log_d, -big, big)
    out = np.quantile(finite, q, axis=0)
    return np.where(out > hi, np.inf, np.where(out < lo, -np.inf, out))


def token_budget(run: Run, *, qid_targets: Iterable[float], params: Iterable[float], bits: Iterable[int],
                 method: str = "GPTQ", group_size: int | None = 128, eval_set: str = "wikitext2",
                 family: str | None = None, new_family: bool = False, prob: float = CI_PROB,
                 token_range: tuple[float, float] = DEFAULT_TOKEN_RANGE,
                 seed: int | None = None) -> pd.DataFrame:
    """Training tokens at which the law-mean QiD reaches each target: posterior bands.

    For every posterior draw the row's law coefficients (population value plus family,
    quantizer and evaluation-set effects; unseen levels drawn from the population exactly as
    :func:`bayesqid.predict.predict` draws them) give a curve ``QiD(D)``; the budget of that
    draw is the smallest D in ``token_range`` with ``QiD(D) >= target``. Registered laws are
    affine in log D and are solved in closed form; any other law by scan and bisection.

    Conventions for draws whose budget falls outside ``token_range`` (never dropped):

    - the target is not reached by ``token_range[1]`` (including non-increasing draws):
      counted in ``frac_never`` and treated as D = +inf;
    - the target is already reached at ``token_range[0]``: counted in ``frac_below`` and
      treated as D = 0.

    A band limit that falls among such draws is therefore ``inf`` ("beyond the range") or
    ``0`` ("before the range starts"): a true bound, never a clipped number.

    Parameters
    ----------
    run : Run
        A fitted (or loaded) run.
    qid_targets : iterable of float
        QiD targets in nats (> 0).
    params : iterable of float
        Non-embedding parameter counts (> 0).
    bits : iterable of int
        Weight bit widths within :data:`bayesqid.constants.BITS_RANGE`.
    method, group_size, eval_set : str, int or None, str
        Quantizer and evaluation set (default GPTQ g128 on WikiText-2, Ouyang et al.'s setting);
        ``group_size=None`` means per-channel scales.
    family : str, optional
        A fitted family, or None (default) for a new family drawn from the population.
    new_family : bool
        Read ``family`` as the label of a new family (drawn from the population); without it,
        a name the run has not fitted is refused (see :func:`check_family`).
    prob : float
        Mass of the central interval.
    token_range : (float, float)
        Searched training tokens (default 1e9 to 1e16).
    seed : int, optional
        Seed of new-level draws (default: the run's seed, as ``predict`` uses).

    Returns
    -------
    DataFrame
        One row per (target, params, bits), targets outermost, with :data:`BUDGET_COLUMNS`;
        token counts are raw (not trillions).
    """
    targets = _positive(qid_targets, "QiD target")
    sizes = _positive(params, "params")
    widths = _bit_widths(bits)
    prob = check_prob(prob)
    d_lo, d_hi = check_range(token_range, "token range")
    for name, value in (("method", method), ("eval_set", eval_set), ("family", family)):
        if value is not None and not str(value).strip():
            raise DataError(f"{name} must not be empty")
    check_family(run, family, new_family=new_family)
    seed = run.seed if seed is None else int(seed)
    cells = default_grid(tokens=TOKENS_SCALE, params=tuple(sizes), bits=tuple(widths),
                         family=NEW_FAMILY if family is None else str(family), method=method,
                         group_size=group_size, eval_set=eval_set)
    design = build_design(cells, run.levels)
    theta = row_theta(run.idata, run.spec, design, seed=seed)
    law = run.spec.law_obj

    def log_mu(log_d: Any) -> np.ndarray:
        return np.asarray(law.log_mu({**design.x, "log_d": log_d}, theta), dtype=float)

    lo, hi = np.log(d_lo / TOKENS_SCALE), np.log(d_hi / TOKENS_SCALE)
    q = [(1 - prob) / 2, 0.5, (1 + prob) / 2]
    levels = new_levels(run, design)
    parts = []
    for target in targets:
        root = first_crossing(log_mu, float(np.log(target)), lo, hi)
        root = root * np.ones((root.shape[0], design.n_rows))  # rows whose coefficients share draws
        bands = TOKENS_SCALE * np.exp(quantiles_with_bounds(root, q, lo, hi))
        part = cells.drop(columns="tokens").assign(qid_target=target)
        part["tokens_lower"], part["tokens_median"], part["tokens_upper"] = bands
        part["frac_never"] = np.isposinf(root).mean(axis=0)
        part["frac_below"] = np.isneginf(root).mean(axis=0)
        part["new_levels"] = levels
        parts.append(part)
    return pd.concat(parts, ignore_index=True)[list(BUDGET_COLUMNS)]


def _trillions(x: float, lo: float, hi: float) -> str:
    if np.isposinf(x):
        return f">{hi / 1e12:.3g}"
    if x == 0:
        return f"<{lo / 1e12:.3g}"
    return f"{x / 1e12:.4g}"


def format_budget_table(table: pd.DataFrame, token_range: tuple[float, float] = DEFAULT_TOKEN_RANGE) -> str:
    """Text table of :func:`token_budget`: tokens in trillions, median [interval], never/below %."""
    lo, hi = token_range
    lines = [f"{'QiD':>5} {'params':>9} {'bits':>4}  {'tokens (T), median [interval]':<36} "
             f"{'never':>6} {'below':>6}"]
    for r in table.itertuples(index=False):
        band = (f"{_trillions(r.tokens_median, lo, hi)} [{_trillions(r.tokens_lower, lo, hi)}, "
                f"{_trillions(r.tokens_upper, lo, hi)}]")
        lines.append(f"{r.qid_target:>5.3g} {r.params:>9.3g} {int(r.bits):>4d}  {band:<36} "
                     f"{r.frac_never:>6.1%} {r.frac_below:>6.1%}")
    return "\n".join(lines)
