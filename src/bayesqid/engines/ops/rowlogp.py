"""The observation model's log-likelihood over sparse design rows, as one fused PyTensor Op.

For a law linear in its coefficients each row's log-mean is ``x_i' theta`` with ``x_i`` sparse
(population columns and one level per effect: ``k`` non-zeros). :class:`RowLogp` computes::

    logp = sum_i exact_i (f(t_i) - log s_i) + censored_i F(t_i),   t_i = (y_i - x_i' theta) / s_i

(``f``, ``F``: log density and log CDF of the standardised residual, :mod:`bayesqid.likelihood`;
``s_i = sigma[group_i]``: one residual scale, or one per level of a grouping factor) and its
gradient in ``theta`` and ``sigma`` in one pass over the rows::

    d logp / d theta = -sum_i x_i g_i / s_i,   d logp / d sigma_j = -sum_{i: group_i = j} (g_i t_i + exact_i) / s_i

with ``g_i = f'(t_i)`` or ``F'(t_i) = exp(f(t_i) - F(t_i))``. Why fused: as a PyTensor graph
with per-row masks (one compiled model for every fit of a template, whatever rows are
censored) each row paid for both branches, and the graph's many elementwise kernels took
seconds to compile; one loop does only the row's own branch. Implemented for numpy (PyMC's
sampler), numba (nutpie) and JAX (numpyro) on the same formulas; a test checks them against
each other and finite differences.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayesqid.engines.ops.marginal import source_key
from bayesqid.lang.likelihood import NUMPY, Ops, std_logcdf, std_logpdf, student_t_const
from bayesqid.lang.spec import Likelihood


def _terms(t: Any, exact: Any, censored: Any, lik: Likelihood, ops: Ops, exp: Any) -> tuple[Any, Any]:
    """Per-row log-likelihood (without the ``-log sigma``) and its derivative in ``t``."""
    logpdf = std_logpdf(t, lik, ops)
    logcdf = std_logcdf(t, lik, ops)
    dpdf = -t if lik.kind == "normal" else -(lik.nu + 1.0) * t / (lik.nu + t * t)
    value = exact * logpdf + censored * logcdf
    return value, exact * dpdf + censored * exp(logpdf - logcdf)


def row_logp_numpy(theta: np.ndarray, sigma: np.ndarray, y: np.ndarray, exact: np.ndarray,
                   censored: np.ndarray, idx: np.ndarray, val: np.ndarray, lik: Likelihood,
                   group: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """``(logp, d_theta, d_sigma)`` for the rows; rows with both masks 0 do not count.

    ``sigma`` is one scale (a scalar or a length-1 array) or one per level of ``group`` (the
    level of every row); ``d_sigma`` has ``sigma``'s length.
    """
    sigma = np.atleast_1d(np.asarray(sigma, float))
    group = np.zeros(len(y), np.int64) if group is None else group
    s = sigma[group]
    t = (y - (theta[idx] * val).sum(axis=1)) / s
    value, g = _terms(t, exact, censored, lik, NUMPY, np.exp)
    logp = float(value.sum() - (exact * np.log(s)).sum())
    d_theta = np.bincount(idx.ravel(), (val * (-g / s)[:, None]).ravel(), minlength=len(theta))
    d_sigma = np.bincount(group, -(g * t + exact) / s, minlength=len(sigma))
    return logp, d_theta, d_sigma


class RowLogp(Op):
    """``(theta, sigma, y, exact, censored, idx, val, group) -> (logp, d_theta, d_sigma)``.

    ``sigma`` is a vector of residual scales and ``group`` the index into it of every row
    (all zeros for one scale). ``kind`` and ``nu`` are the likelihood's (Op properties, so
    compiled code is specific to them). Data inputs are ordinary tensors, usually shared
    variables swapped between fits.
    """

    __props__ = ("kind", "nu")

    def __init__(self, kind: str, nu: float) -> None:
        self.kind = kind
        self.nu = float(nu)

    @property
    def likelihood(self) -> Likelihood:
        """The (standardised) likelihood this Op computes."""
        return Likelihood(kind=self.kind, nu=int(self.nu) if self.kind == "student_t" else 4)

    def make_node(self, theta, sigma, y, exact, censored, idx, val, group) -> Apply:
        inputs = [pt.as_tensor_variable(v) for v in (theta, sigma, y, exact, censored, idx, val, group)]
        return Apply(self, inputs, [pt.dscalar(), inputs[0].type(), inputs[1].type()])

    def perform(self, node: Apply, inputs: list[Any], output_storage: list[list[Any]]) -> None:
        theta, sigma, y, exact, censored, idx, val, group = inputs
        logp, d_theta, d_sigma = row_logp_numpy(theta, sigma, y, exact, censored, idx, val,
                                                self.likelihood, group)
        output_storage[0][0] = np.asarray(logp)
        output_storage[1][0] = d_theta
        output_storage[2][0] = d_sigma

    def L_op(self, inputs, outputs, output_grads):
        g = output_grads[0]
        _, d_theta, d_sigma = outputs
        return [g * d_theta, g * d_sigma, *(disconnected_type() for _ in inputs[2:])]

    def connection_pattern(self, node: Apply) -> list[list[bool]]:
        first = [True, False, False]
        return [first] * 2 + [[False] * 3 for _ in node.inputs[2:]]


def row_logp(lik: Likelihood, theta: Any, sigma: Any, y: Any, exact: Any, censored: Any, idx: Any,
             val: Any, group: Any = None) -> Any:
    """The log-likelihood of ``lik`` over the rows, as a PyTensor scalar.

    ``sigma``: a scalar (one residual scale) or a vector indexed by ``group`` (per-row levels).
    """
    if group is None:
        sigma = pt.reshape(pt.as_tensor_variable(sigma), (1,))
        group = pt.zeros(pt.as_tensor_variable(y).shape[0], dtype="int64")
    return RowLogp(lik.kind, lik.nu if lik.kind == "student_t" else 0)(
        theta, sigma, y, exact, censored, idx, val, group)[0]


def _scalar_terms(kind: str, nu: float) -> Any:
    """A numba function ``(t, censored) -> (value, d value / dt)`` for one row."""
    from pytensor.link.numba.dispatch.basic import numba_njit

    is_normal = kind == "normal"
    half_log_2pi = 0.5 * math.log(2.0 * math.pi)
    const = student_t_const(int(nu)) if kind == "student_t" else 0.0
    sqrt_half = math.sqrt(0.5)

    @numba_njit(fastmath=False)
    def normal_logcdf(t):
        if t > -20.0:
            return math.log(0.5 * math.erfc(-t * sqrt_half))
        # Asymptotic series of Mills' ratio: erfc underflows far in the tail.
        t2 = t * t
        return (-0.5 * t2 - half_log_2pi - math.log(-t)
                + math.log1p(-1.0 / t2 + 3.0 / (t2 * t2) - 15.0 / (t2 * t2 * t2)))

    @numba_njit(fastmath=False)
    def student_lower_tail(t):
        a = -t if t < 0.0 else t
        r = math.sqrt(nu + t * t)
        if nu == 2.0:
            return 1.0 / (r * (r + a))
        one_minus_s = 4.0 / (r * (r + a))
        return 0.25 * one_minus_s * one_minus_s * (3.0 - one_minus_s)

    @numba_njit(fastmath=False)
    def terms(t, censored):
        if is_normal:
            logpdf = -0.5 * t * t - half_log_2pi
            if not censored:
                return logpdf, -t
            logcdf = normal_logcdf(t)
        else:
            logpdf = const - 0.5 * (nu + 1.0) * math.log1p(t * t / nu)
            if not censored:
                return logpdf, -(nu + 1.0) * t / (nu + t * t)
            tail = student_lower_tail(t)
            logcdf = math.log(tail) if t < 0.0 else math.log1p(-tail)
        return logcdf, math.exp(logpdf - logcdf)

    return terms


def _register_numba() -> None:
    """nutpie compiles the model with numba: give the Op a numba implementation."""
    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

    @register_funcify_default_op_cache_key(RowLogp)
    def _funcify(op, node=None, **kwargs):
        terms = _scalar_terms(op.kind, op.nu)

        @numba_njit(fastmath=False)
        def row_logp_numba(theta, sigma_vec, y, exact, censored, idx, val, group):
            n, k = idx.shape
            logp = 0.0
            d_theta = np.zeros(theta.shape[0])
            d_sigma = np.zeros(sigma_vec.shape[0])
            log_sigma = np.log(sigma_vec)
            for i in range(n):
                if exact[i] == 0.0 and censored[i] == 0.0:
                    continue
                sigma = sigma_vec[group[i]]
                mu = 0.0
                for j in range(k):
                    mu += theta[idx[i, j]] * val[i, j]
                t = (y[i] - mu) / sigma
                value, g = terms(t, censored[i] != 0.0)
                logp += value - exact[i] * log_sigma[group[i]]
                for j in range(k):
                    d_theta[idx[i, j]] -= val[i, j] * g / sigma
                d_sigma[group[i]] -= (g * t + exact[i]) / sigma
            return np.asarray(logp), d_theta, d_sigma

        return row_logp_numba, source_key(_scalar_terms, _funcify)


def _register_jax() -> None:
    """numpyro runs the model through JAX: give the Op a JAX implementation."""
    try:
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:  # JAX is an optional extra
        return

    @jax_funcify.register(RowLogp)
    def _funcify(op, **kwargs):
        import jax.numpy as jnp
        from jax.scipy.special import log_ndtr

        ops = Ops(jnp.where, jnp.log, jnp.log1p, jnp.sqrt, log_ndtr)
        lik = op.likelihood

        def row_logp_jax(theta, sigma_vec, y, exact, censored, idx, val, group):
            sigma = sigma_vec[group]
            t = (y - (theta[idx] * val).sum(axis=1)) / sigma
            value, g = _terms(t, exact, censored, lik, ops, jnp.exp)
            d_theta = jnp.zeros_like(theta).at[idx.ravel()].add((val * (-g / sigma)[:, None]).ravel())
            d_sigma = jnp.zeros_like(sigma_vec).at[group].add(-(g * t + exact) / sigma)
            return value.sum() - (exact * jnp.log(sigma)).sum(), d_theta, d_sigma

        return row_logp_jax


_register_numba()
_register_jax()
