"""Observation model for log QiD: heavy-tailed, left-censored at the measurement resolution.

One formula, two array back ends: :data:`NUMPY` (pointwise log-likelihood on posterior
draws, predictive draws) and :data:`TENSOR` (the PyMC model). Keeping both on the same
code path is what lets ``log_likelihood`` be computed on the draws after nutpie (which
drops it) without a second implementation.

Why closed forms: PyMC's Student-t log-CDF goes through the regularised incomplete beta
function, whose gradient series made censored fits several times slower. For nu = 2 and
nu = 4 the CDF is algebraic; it is written here in a form that stays accurate deep in the
lower tail (no ``1/2 - 1/2 + tiny`` cancellation).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import lgamma, log, pi
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pymc.distributions.dist_math import normal_lcdf
from scipy.special import log_ndtr

from bayesqid.lang.spec import Likelihood


@dataclass(frozen=True)
class Ops:
    """The few array functions the likelihood needs, for one back end."""

    where: Any
    log: Any
    log1p: Any
    sqrt: Any
    log_ndtr: Any


NUMPY = Ops(np.where, np.log, np.log1p, np.sqrt, log_ndtr)
TENSOR = Ops(pt.switch, pt.log, pt.log1p, pt.sqrt, lambda t: normal_lcdf(0.0, 1.0, t))


def student_t_const(nu: int) -> float:
    return lgamma((nu + 1) / 2) - lgamma(nu / 2) - 0.5 * log(nu * pi)


def _lower_tail(t: Any, nu: int, ops: Ops) -> Any:
    """P(T < -|t|) for Student-t with nu in {2, 4}, free of cancellation."""
    # where() rather than abs(): abs has a zero (sub)gradient at t = 0.
    a = ops.where(t < 0, -t, t)
    r = ops.sqrt(nu + t * t)
    if nu == 2:
        return 1.0 / (r * (r + a))
    # nu = 4: P = (1 - s)^2 (2 + s) / 4 with s = |t| / r and 1 - s = 4 / (r (r + |t|)).
    one_minus_s = 4.0 / (r * (r + a))
    return 0.25 * one_minus_s * one_minus_s * (3.0 - one_minus_s)


def std_logpdf(t: Any, lik: Likelihood, ops: Ops) -> Any:
    """Log density of the standardised residual ``t``."""
    if lik.kind == "normal":
        return -0.5 * t * t - 0.5 * log(2 * pi)
    return student_t_const(lik.nu) - 0.5 * (lik.nu + 1) * ops.log1p(t * t / lik.nu)


def std_logcdf(t: Any, lik: Likelihood, ops: Ops) -> Any:
    """Log CDF of the standardised residual ``t``."""
    if lik.kind == "normal":
        return ops.log_ndtr(t)
    tail = _lower_tail(t, lik.nu, ops)
    return ops.where(t < 0, ops.log(tail), ops.log1p(-tail))


def observe(qid: np.ndarray, lik: Likelihood) -> tuple[np.ndarray, np.ndarray]:
    """Map measured QiD to (log value, censored flag); censored rows carry log(resolution)."""
    qid = np.asarray(qid, dtype=float)
    censored = qid < lik.censor_below
    y = np.log(np.where(censored, lik.censor_below, qid))
    return y, censored


def pointwise_logp(y: Any, censored: Any, log_mu: Any, sigma: Any, lik: Likelihood, ops: Ops) -> Any:
    """Pointwise log-likelihood of observed log QiD given the law's log-mean and the scale.

    Censored rows contribute ``log P(log QiD < log censor_below)``; others the density.
    """
    t = (y - log_mu) / sigma
    dens = std_logpdf(t, lik, ops) - ops.log(sigma)
    return ops.where(censored, std_logcdf(t, lik, ops), dens)


def draw_residuals(lik: Likelihood, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standardised residual draws for posterior predictive simulation."""
    if lik.kind == "normal":
        return rng.standard_normal(shape)
    return rng.standard_t(lik.nu, size=shape)
