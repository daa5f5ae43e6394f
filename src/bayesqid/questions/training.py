"""How trained is a model? The posterior of its effective training tokens D from measured QiD.

The model is treated as a NEW family: its family effects are unknown and drawn from the fitted
population. On a grid of log D, the likelihood of all measurements jointly (they share one
family effect per draw) is averaged over posterior draws and several family-effect draws per
posterior draw, multiplied by a log-uniform prior and normalised:

    p(D | y) ∝ p(D) · mean over draws s and effect draws k of  prod_i p(y_i | D, theta_s, u_sk)

This propagates the population posterior (not a point estimate) and is exact up to Monte
Carlo and grid error; :attr:`TrainingLevel.ess` says how many draws carry the answer.

A model of a fitted family at a size the fit has not seen (a held-out checkpoint, a new size),
or of a new family under a spec whose family effects are intercepts only, has unseen offsets
on the intercept alone, shared by all its rows: a Normal number per posterior
draw, integrated by Gauss-Hermite quadrature instead of ``effect_draws`` Monte Carlo copies. With
a hundred rows the joint likelihood is so peaked in that offset that a few random copies leave
the answer resting on one or two of them; the quadrature integrates it for every draw.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from bayesqid.constants import CI_PROB, TOKENS_SCALE
from bayesqid.data.dataset import QID_SOURCES, read_table, validate
from bayesqid.data.design import NEW_LEVEL, Design, build_design
from bayesqid.errors import DataError
from bayesqid.lang.effects import compose, sd_name
from bayesqid.lang.likelihood import NUMPY, observe, pointwise_logp
from bayesqid.questions.inverse import check_family, check_prob, check_range, new_levels
from bayesqid.questions.predict import NEW_FAMILY
from bayesqid.questions.shares import SHARE_COLUMNS, variance_shares
from bayesqid.sampling.draws import flat, n_samples, row_offsets, row_sigma, row_theta
from bayesqid.sampling.run import Run

#: Columns of a measurements table (``group_size``, ``model`` and ``source`` optional).
MEASUREMENT_COLUMNS = ("family", "params", "bits", "method", "group_size", "eval_set", "qid")

#: Default prior over D: log-uniform from 1B to 1 quadrillion tokens.
DEFAULT_PRIOR: tuple[float, float] = (1e9, 1e15)

#: Grid points over log D: 301 over the default six decades is 0.02 decades apart. A new
#: family's intercept alone spreads the posterior over about a decade, so this is ample; raise it
#: for posteriors narrower than ~0.1 decade (a run with tiny family scales and residuals).
DEFAULT_GRID_SIZE = 301

#: Family-effect draws per posterior draw: reduces the Monte Carlo noise of the average.
DEFAULT_EFFECT_DRAWS = 8

#: Gauss-Hermite nodes over a shared unseen intercept offset (module doc): exact for a
#: polynomial of degree 47 times the Normal, ample for a likelihood a few offset-sds wide.
QUADRATURE_NODES = 24

#: Thresholds reported as P(D > threshold).
THRESHOLDS: tuple[float, ...] = (1e12, 1e13, 1e14)

#: Below this effective number of draws the grid posterior is warned about as noisy.
MIN_ESS = 50

# Measurement-grid cells per chunk of the likelihood cube: bounds memory at draws x CHUNK doubles.
CHUNK = 2000

_EXPECTED = (f"{', '.join(MEASUREMENT_COLUMNS)} (model, group_size and source optional; qid may be "
             "replaced by fp16_loss and quant_loss, or by fp16_ppl and quant_ppl)")


@dataclass(frozen=True, eq=False)
class TrainingLevel:
    """Posterior of one model's effective training tokens (from :func:`training_level`).

    Attributes
    ----------
    summary : DataFrame
        One row: ``family, params, n_measurements, tokens_lower, tokens_median, tokens_upper,
        p_gt_1e12, p_gt_1e13, p_gt_1e14, prior_min, prior_max, ess, as_family, new_levels``
        (``as_family``: the fitted family whose effects were used, or ``new``), the ``share_*``
        of the predictive variance of the measurements' log QiD at the median D and
        ``limited_by``, the largest of them (:mod:`bayesqid.questions.shares`).
    grid : DataFrame
        The grid posterior: ``tokens``, ``log10_tokens``, ``density`` (per unit log10 D) and
        ``mass`` (probability of each grid point's trapezoid cell; sums to 1).
    prob : float
        Mass of the central interval in ``summary``.
    prior : (float, float)
        Range of the log-uniform prior over D.
    ess : float
        Effective number of (posterior, effect) draws carrying the answer (Kish, from each
        draw's prior-averaged likelihood); small values mean Monte Carlo noise.
    """

    summary: pd.DataFrame
    grid: pd.DataFrame
    prob: float
    prior: tuple[float, float]
    ess: float


def validate_measurements(frame: pd.DataFrame, *, path: str = "<measurements>") -> pd.DataFrame:
    """Check a measurements table and return it canonical (schema columns without ``tokens``).

    Rows must describe one model: a single ``family`` and a single ``params`` value. A table
    without a ``family`` column may name the model in ``model`` instead; it is then the family.

    Raises
    ------
    DataError
        Naming the file (``path``), the 1-based row and the column, as :func:`bayesqid.data.validate`.
    """
    if "family" not in frame.columns and "model" in frame.columns:
        # One model's measurements may name it in `model` alone: it is then its own family.
        frame = frame.assign(family=frame["model"])
    columns = set(frame.columns)
    if "tokens" in columns:
        raise DataError(f"{path}: measurements must not have a 'tokens' column: the training tokens "
                        "are what is inferred")
    has_qid = "qid" in columns or any(set(pair) <= columns for pair in QID_SOURCES)
    missing = [c for c in MEASUREMENT_COLUMNS if c not in columns and c not in ("group_size", "qid")]
    missing += [] if has_qid else ["qid"]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; expected columns: "
                        f"{_EXPECTED}; found: {', '.join(map(repr, frame.columns)) or 'none'}")
    # The canonical validator wants tokens; a valid placeholder appended last never wins the
    # "first bad cell" race, so errors still name the measurement's own row and column.
    canon = validate(frame.assign(tokens=TOKENS_SCALE), path=path).drop(columns="tokens")
    for col in ("params", "family"):
        values = canon[col].to_numpy()
        other = np.flatnonzero(values != values[0])
        if other.size:
            r = int(other[0])
            raise DataError(f"{path}: row {r + 1}, column '{col}': all measurements must be of one model "
                            f"(got {values[r]}, but row 1 has {values[0]})")
    return canon


def load_measurements(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Load and check a measurements CSV or Parquet (see :func:`validate_measurements`)."""
    frame, shown = read_table(path)
    return validate_measurements(frame, path=shown)


def _effect_copies(design: Design, k: int) -> Design:
    """``k`` copies of the measurement rows (copy-major) whose unseen levels carry distinct labels.

    New-level effects are keyed by label and seed (:func:`bayesqid.posterior.row_theta`), so
    tagging the unseen labels of copy ``j > 0`` gives it independent effects of every unseen level
    (family, size, quantizer, evaluation set) per posterior draw from ONE call, while all
    measurements within a copy still share them; fitted levels keep their fitted effects in every
    copy. Copy 0 keeps the plain labels, i.e. ``predict``'s new-level draws.
    """
    copies = []
    for j in range(k):
        tag = f"\x1fdraw {j}" if j else ""  # a control character: never part of a fitted label
        labels = {g: np.where(design.codes[g] == NEW_LEVEL,
                              np.asarray([f"{v}{tag}" for v in design.labels[g]], dtype=object),
                              design.labels[g]).astype(str)
                  for g in design.labels}
        copies.append(Design(x=design.x, codes=design.codes, levels=design.levels, labels=labels,
                             recipe=design.recipe))
    return Design(x={key: np.concatenate([c.x[key] for c in copies]) for key in design.x},
                  codes={g: np.concatenate([c.codes[g] for c in copies]) for g in design.codes},
                  levels=design.levels,
                  labels={g: np.concatenate([c.labels[g] for c in copies]) for g in design.labels},
                  recipe={key: np.concatenate([c.recipe[key] for c in copies]) for key in design.recipe})


def _shared_intercept_offsets(run: Run, design: Design) -> list[tuple[str, str]] | None:
    """The unseen (group, intercept) offsets that every row shares, when they are the only unseen
    effects (quadrature applies, module doc); None when any other unseen effect needs copies."""
    law = run.spec.law_obj
    keys = []
    for eff in run.spec.effects:
        new = design.codes[eff.group] == NEW_LEVEL
        if not new.any():
            continue
        one_level = new.all() and len(set(design.labels[eff.group])) == 1
        if not (one_level and law.intercept is not None and set(eff.params) == {law.intercept}
                and eff.nu_of(law.intercept) is None):
            return None
        keys.append((eff.group, law.intercept))
    return keys or None


def _joint_log_like(run: Run, design: Design, theta: dict[str, np.ndarray], sigma: np.ndarray,
                    y: np.ndarray, censored: np.ndarray, log_d: np.ndarray, *,
                    cols: slice, shift: np.ndarray | None = None) -> np.ndarray:
    """Joint log-likelihood of the measurements at columns ``cols`` of ``design``, per (draw, D),
    with ``shift`` (per draw) added to every log-mean."""
    n_meas = cols.stop - cols.start
    per = max(1, CHUNK // len(log_d))  # measurements per chunk: memory ~ draws x CHUNK doubles
    ll = np.zeros((n_samples(run.idata), len(log_d)))
    for start in range(0, n_meas, per):
        m = slice(start, min(n_meas, start + per))
        c = slice(cols.start + m.start, cols.start + m.stop)
        x = {key: v[c, None] for key, v in design.x.items()} | {"log_d": log_d}
        log_mu = run.spec.law_obj.log_mu(x, {p: v[:, c, None] for p, v in theta.items()})
        if shift is not None:
            log_mu = log_mu + shift[:, None, None]
        scale = (sigma if sigma.shape[1] == 1 else sigma[:, c])[:, :, None]
        lp = pointwise_logp(y[m, None], censored[m, None], log_mu, scale, run.spec.likelihood, NUMPY)
        ll += lp.sum(axis=1)
    return ll


def training_level(run: Run, measurements: pd.DataFrame, *, family: str | None = None,
                   new_family: bool = False, prior: Sequence[float] = DEFAULT_PRIOR,
                   grid_size: int = DEFAULT_GRID_SIZE, effect_draws: int = DEFAULT_EFFECT_DRAWS,
                   prob: float = CI_PROB, seed: int | None = None) -> TrainingLevel:
    """Posterior of the effective training tokens D of one model from its measured QiD.

    Parameters
    ----------
    run : Run
        A fitted (or loaded) run: the population of families.
    measurements : DataFrame
        Columns :data:`MEASUREMENT_COLUMNS` (as :func:`load_measurements` returns, or raw); all
        rows of one model. Its family is treated as new whatever its name: the question is how
        trained an unseen model is, so its recipe effects come from the population. Known
        quantizers and evaluation sets use their fitted effects; unknown ones are drawn too.
    family : str, optional
        A family the run has fitted: the model is then read as a member of it, with that
        family's own effects (a new checkpoint of a family whose other models were fitted,
        say). Default: a new family, effects drawn from the population.
    new_family : bool
        ``family`` is only the label of a new family (the model's effects are drawn from the
        population); without it, a name the run has not fitted is refused
        (:func:`bayesqid.questions.inverse.check_family`).
    prior : (float, float)
        Range of the log-uniform prior over D (default 1e9 to 1e15 tokens).
    grid_size : int
        Points of the log-D grid.
    effect_draws : int
        New-level effect draws per posterior draw.
    prob : float
        Mass of the central interval.
    seed : int, optional
        Seed of the new-level effect draws (default: the run's seed; the first of the
        ``effect_draws`` copies then uses exactly ``predict``'s new-family effects; unused where
        the unseen offsets are integrated by quadrature).

    Returns
    -------
    TrainingLevel
    """
    frame = validate_measurements(measurements)
    prob = check_prob(prob)
    d_lo, d_hi = check_range(prior, "prior range")
    if int(grid_size) < 11:
        raise DataError(f"grid_size must be at least 11, got {grid_size!r}")
    if int(effect_draws) < 1:
        raise DataError(f"effect_draws must be at least 1, got {effect_draws!r}")
    seed = run.seed if seed is None else int(seed)
    log10_d = np.linspace(np.log10(d_lo), np.log10(d_hi), int(grid_size))
    n_grid, n_meas = len(log10_d), len(frame)
    check_family(run, family, new_family=new_family)
    if new_family:
        family = None  # the name was only a label: the model is read as a new family
    if family is not None:
        label = family
    else:
        label = NEW_FAMILY
        while label in run.levels["family"]:  # never borrow a fitted family's effects
            label += "*"
    # The measurements' coefficients do not depend on D: draw them once, for all effect copies,
    # on the measurement rows, then evaluate the law on the (draw, measurement, grid D) cube.
    rows = frame.assign(family=label, tokens=TOKENS_SCALE)
    design = build_design(rows, run.levels)
    n_draws = n_samples(run.idata)
    log_d = np.log(10.0**log10_d / TOKENS_SCALE)
    y, censored = observe(frame["qid"].to_numpy(float), run.spec.likelihood)
    log_like = np.full(n_grid, -np.inf)
    draw_weight = []
    quadrature = _shared_intercept_offsets(run, design)
    if quadrature:
        # The unseen offsets at zero; their sum is Normal(0, sum of their sds^2) per draw.
        values, offsets = row_offsets(run.idata, run.spec, design, seed=seed)
        for key in quadrature:
            offsets[key] = np.zeros_like(offsets[key])
        theta = {p: np.broadcast_to(v, (n_draws, n_meas))
                 for p, v in compose(run.spec, values, offsets).items()}
        scale_u = np.sqrt(sum(flat(run.idata, sd_name(g, p)) ** 2 for g, p in quadrature))
        nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)
        log_w = np.log(weights) - 0.5 * np.log(2 * np.pi)  # weights of the standard Normal
        sigma = row_sigma(run.idata, run.spec, design, seed=seed)
        ll = logsumexp([lw + _joint_log_like(run, design, theta, sigma, y, censored, log_d,
                                             cols=slice(0, n_meas), shift=scale_u * node)
                        for node, lw in zip(nodes, log_w, strict=True)], axis=0)
        log_like = logsumexp(ll, axis=0)
        draw_weight.append(logsumexp(ll, axis=1))
    else:
        # A known family with known quantizers and evaluation sets has nothing to draw.
        nothing_new = all((design.codes[g] != NEW_LEVEL).all() for g in design.codes)
        n_copies = 1 if family is not None and nothing_new else int(effect_draws)
        copies = _effect_copies(design, n_copies)
        theta = {p: np.broadcast_to(v, (n_draws, n_copies * n_meas))
                 for p, v in row_theta(run.idata, run.spec, copies, seed=seed).items()}
        # Residual scales per (draw, copy row), or one column when every row shares one scale.
        sigma = row_sigma(run.idata, run.spec, copies, seed=seed)
        for j in range(n_copies):
            ll = _joint_log_like(run, copies, theta, sigma, y, censored, log_d,
                                 cols=slice(j * n_meas, (j + 1) * n_meas))
            log_like = np.logaddexp(log_like, logsumexp(ll, axis=0))
            draw_weight.append(logsumexp(ll, axis=1))
    # Uniform prior on the log grid: the posterior is the normalised averaged likelihood.
    w = np.concatenate(draw_weight)
    w = np.exp(w - logsumexp(w))
    ess = float(1.0 / np.sum(w**2))
    density, mass, cdf = _normalise(log_like, log10_d)
    q = [(1 - prob) / 2, 0.5, (1 + prob) / 2]
    lower, median, upper = 10.0 ** np.interp(q, cdf, log10_d)
    if ess < MIN_ESS:
        warnings.warn(f"training level rests on ~{ess:.0f} effective draws: Monte Carlo noise is large; "
                      "raise effect_draws or use a run with more draws", UserWarning, stacklevel=2)
    summary = pd.DataFrame([{
        "family": frame["family"].iloc[0], "params": float(frame["params"].iloc[0]),
        "n_measurements": n_meas, "tokens_lower": lower, "tokens_median": median, "tokens_upper": upper,
        **{_exceeds(t): 1.0 - float(np.interp(np.log10(t), log10_d, cdf, left=0.0, right=1.0))
           for t in THRESHOLDS},
        "prior_min": d_lo, "prior_max": d_hi, "ess": ess,
        "as_family": family if family is not None else "new",
        "new_levels": ";".join(sorted({pair for cell in new_levels(run, design)
                                       for pair in cell.split(";") if pair})),
        **_limiting_shares(run, rows.assign(tokens=median), seed=seed, prob=prob),
    }])
    grid = pd.DataFrame({"tokens": 10.0**log10_d, "log10_tokens": log10_d, "density": density, "mass": mass})
    return TrainingLevel(summary=summary, grid=grid, prob=prob, prior=(d_lo, d_hi), ess=ess)


#: What would narrow a training-level answer, by the share that limits it.
_REMEDY = {
    "share_family": "the family's spread: measured relatives (--family with a fitted family) would "
                    "narrow it",
    "share_size": "the spread of sizes within a family: measurements of this very model (its "
                  "family and N) would narrow it",
    "share_coefficients": "the population law itself: more families in the fit would narrow it",
    "share_quantizer": "the quantizer's effect: measurements with a quantizer the fit knows well would "
                       "narrow it",
    "share_eval_set": "the evaluation set's effect: measurements on a well-known evaluation set would "
                      "narrow it",
    "share_noise": "measurement noise: more measurements (other bit widths, quantizers, sets) would "
                   "narrow it",
}


def _limiting_shares(run: Run, rows: pd.DataFrame, *, seed: int, prob: float) -> dict[str, object]:
    """Shares of the predictive variance of the measurements' log QiD at the median D (mean over
    the measurements) and the largest of them (:mod:`bayesqid.questions.shares`)."""
    shares = variance_shares(run, build_design(rows, run.levels), seed=seed, prob=prob).mean()
    return {**{c: float(shares[c]) for c in SHARE_COLUMNS}, "limited_by": str(shares.idxmax())}


def _exceeds(threshold: float) -> str:
    """Summary column of P(D > threshold): ``p_gt_1e12`` for 1e12."""
    return f"p_gt_{threshold:.0e}".replace("+", "")


def _normalise(log_post: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Density (trapezoid-normalised in ``x``), cell masses summing to 1, and the CDF at ``x``."""
    if not np.isfinite(log_post).any():
        raise DataError("the measurements have zero likelihood at every D of the prior range")
    dens = np.exp(log_post - np.max(log_post))
    dx = np.diff(x)
    cells = 0.5 * (dens[1:] + dens[:-1]) * dx
    total = cells.sum()
    cdf = np.concatenate([[0.0], np.cumsum(cells)]) / total
    weights = np.zeros_like(x)
    weights[1:] += 0.5 * dx
    weights[:-1] += 0.5 * dx
    return dens / total, dens * weights / total, cdf


def format_training_level(level: TrainingLevel) -> str:
    """Readable summary: median and interval in trillions of tokens, exceedance probabilities."""
    r = level.summary.iloc[0]
    lo, hi = level.prior
    lines = [
        f"model: {r['family']}, {r['params']:.3g} parameters, {int(r['n_measurements'])} measurement(s); "
        + ("treated as a new family" if r.get("as_family", "new") == "new"
           else f"read as a member of the fitted family {r['as_family']}"),
        f"prior: log-uniform over {lo:.3g} to {hi:.3g} tokens",
        f"effective training tokens D: median {r['tokens_median'] / 1e12:.4g}T "
        f"[{level.prob:.0%} interval {r['tokens_lower'] / 1e12:.4g}T, {r['tokens_upper'] / 1e12:.4g}T]",
        "  ".join(f"P(D > {t:.0e}) = {r[_exceeds(t)]:.3f}" for t in THRESHOLDS),
        f"effective draws: {r['ess']:.0f}",
    ]
    if r["new_levels"]:
        lines.append(f"drawn from the population: {r['new_levels']}")
    if "limited_by" in r:
        limit = r["limited_by"]
        parts = ", ".join(f"{c.removeprefix('share_').replace('_', ' ')} {r[c]:.0%}" for c in SHARE_COLUMNS)
        lines.append(f"limited by {_REMEDY[limit]} ({r[limit]:.0%} of the predictive variance of log QiD "
                     f"at the median D; {parts})")
    return "\n".join(lines)
