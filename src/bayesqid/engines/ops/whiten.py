"""Whitening of the coefficients by their Gaussian conditional, as two fused PyTensor Ops.

For a law linear in its coefficients (``log QiD = X theta + e``), a hierarchical model's
coefficients given the scales have, under a Gaussian approximation of the likelihood with
per-row weights ``omega``, the conditional posterior ``Normal(A^-1 b, A^-1)`` with::

    A = w S + diag(lam),   b = lam m0 + w s,   S = X' Omega X,   s = X' Omega y

(``lam``: prior precisions from the effect scales, ``w = 1 / sigma^2``). Writing

    theta = A^-1 b + L^-T u,   A = L L'

maps ``u`` to ``theta`` one-to-one for every value of the scales, with log-Jacobian
``-1/2 log|A|``. NUTS then samples ``u`` and the scales, and the model adds the exact prior
and likelihood of ``theta``: the posterior is exactly the hierarchical model's, whatever the
likelihood (Student-t, censored) and whatever ``omega``. Only the geometry changes: where the
Gaussian approximation holds, ``u`` is close to a standard Normal *whatever the scales are*,
so the ridges of crossed effects (OLMo's intercept identified only jointly with its
quantizers' and evaluation sets') and the funnels between scales and offsets are gone.

Why hand-written Ops: PyTensor's generic Cholesky gradient costs several dense ``p x p``
products and about 1 ms per gradient at p = 93, and its graph took ~35 s to compile. Here the
forward pass is one Cholesky factor and one triangular inverse (LAPACK potrf + trtri); it
also returns ``M = L^-T`` and the conditional mean, from which the vector-Jacobian product
needs only O(p^2) work (:func:`whiten_grad_numpy`)::

    c = M' g,  a = M c                        (g: gradient of the target in theta)
    G_jj = -a_j mu_j - sum_{i>=j} M_ji u_i (P_ji + c_i M_ji / 2) - g_J/2 (A^-1)_jj
    P_ji = sum_{j<=l<i} c_l M_jl              (a prefix sum along row j of M)
    d lam_j = G_jj + a_j m0_j
    d w     = (-g'mu - u'c/2 - g_J p/2 - sum_j lam_j G_jj) / w + a's
    d u     = c

(``g_J``: gradient in the log-Jacobian; the ``d w`` form uses ``w S = A - diag(lam)`` so that
``S`` itself is never touched). Implemented for numpy (PyMC's sampler), numba (nutpie) and
JAX (numpyro); a test checks all of them against finite differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayesqid.engines.ops.marginal import factor_numpy, numba_factor, source_key


def whiten_numpy(lam: np.ndarray, w: float, u: np.ndarray, sxx: np.ndarray, sxy: np.ndarray,
                 m0: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """``theta = A^-1 b + L^-T u`` and its log-Jacobian ``-1/2 log|A|`` (numpy).

    Parameters
    ----------
    lam : ndarray (p,)
        Prior precisions of the coefficients.
    w : float
        Residual precision ``1 / sigma**2``.
    u : ndarray (p,)
        Whitened coordinates.
    sxx, sxy : ndarray (p, p), ndarray (p,)
        Weighted ``X' Omega X`` and ``X' Omega y`` of the rows in the fit.
    m0 : ndarray (p,)
        Prior means of the coefficients.

    Returns
    -------
    theta, log_jacobian, m, mu
        ``m = L^-T`` (upper triangular) and ``mu = A^-1 b``, which the gradient reuses.
    """
    p = lam.shape[0]
    a = w * sxx
    a[np.diag_indices(p)] += lam
    m, chol_diag = factor_numpy(a)
    v = m.T @ (lam * m0 + w * sxy)
    return m @ (v + u), float(-np.log(chol_diag).sum()), m, m @ v


def _vjp(xp: Any, m: Any, mu: Any, u: Any, lam: Any, w: Any, sxy: Any, m0: Any, g: Any,
         g_jac: Any) -> tuple[Any, Any, Any]:
    """The vector-Jacobian product's formulas; ``xp`` is numpy or jax.numpy."""
    p = lam.shape[0]
    c = m.T @ g
    a = m @ c
    mc = m * c
    prefix = xp.cumsum(mc, axis=1) - mc
    dphi = (m * u * (prefix + 0.5 * mc)).sum(axis=1)
    g_diag = -a * mu - dphi - 0.5 * g_jac * (m * m).sum(axis=1)
    d_w = (-(g @ mu) - 0.5 * (u @ c) - 0.5 * g_jac * p - lam @ g_diag) / w + a @ sxy
    return g_diag + a * m0, d_w, c


def whiten_grad_numpy(m: np.ndarray, mu: np.ndarray, u: np.ndarray, lam: np.ndarray, w: float,
                      sxy: np.ndarray, m0: np.ndarray, g: np.ndarray,
                      g_jac: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Vector-Jacobian product of :func:`whiten_numpy`: ``(d_lam, d_w, d_u)`` for upstream
    gradients ``g`` (in theta) and ``g_jac`` (in the log-Jacobian). O(p^2)."""
    d_lam, d_w, d_u = _vjp(np, m, mu, u, lam, w, sxy, m0, g, g_jac)
    return d_lam, float(d_w), d_u


def whiten_batch(lam: np.ndarray, w: np.ndarray, u: np.ndarray, sxx: np.ndarray, sxy: np.ndarray,
                 m0: np.ndarray, chunk: int = 256) -> np.ndarray:
    """``theta = A^-1 b + L^-T u`` for many draws at once (draws in the first axis of ``lam``,
    ``w``, ``u`` and, optionally, ``sxy``); batched LAPACK in chunks to bound memory."""
    s, p = lam.shape
    sxy = np.broadcast_to(sxy, (s, p))
    theta = np.empty((s, p))
    for lo in range(0, s, chunk):
        hi = min(s, lo + chunk)
        a = w[lo:hi, None, None] * sxx[None]
        a[:, np.arange(p), np.arange(p)] += lam[lo:hi]
        b = lam[lo:hi] * m0 + w[lo:hi, None] * sxy[lo:hi]
        chol = np.linalg.cholesky(a)
        mu = np.linalg.solve(a, b[..., None])[..., 0]
        theta[lo:hi] = mu + np.linalg.solve(np.swapaxes(chol, 1, 2), u[lo:hi, :, None])[..., 0]
    return theta


class WhitenGrad(Op):
    """``(m, mu, u, lam, w, sxy, m0, g, g_jac) -> (d_lam, d_w, d_u)``."""

    __props__ = ()

    def make_node(self, m, mu, u, lam, w, sxy, m0, g, g_jac) -> Apply:
        inputs = [pt.as_tensor_variable(v) for v in (m, mu, u, lam, w, sxy, m0, g, g_jac)]
        p = inputs[3].type.shape
        return Apply(self, inputs, [pt.tensor(dtype="float64", shape=p), pt.dscalar(),
                                    pt.tensor(dtype="float64", shape=p)])

    def perform(self, node: Apply, inputs: list[Any], output_storage: list[list[Any]]) -> None:
        m, mu, u, lam, w, sxy, m0, g, g_jac = inputs
        d_lam, d_w, d_u = whiten_grad_numpy(m, mu, u, lam, float(w), sxy, m0, g, float(g_jac))
        output_storage[0][0] = d_lam
        output_storage[1][0] = np.asarray(d_w)
        output_storage[2][0] = d_u


whiten_grad = WhitenGrad()


class Whiten(Op):
    """``(lam, w, u, sxx, sxy, m0) -> (theta, log_jacobian, m, mu)``.

    ``m`` and ``mu`` are by-products for the gradient; only ``theta`` and the log-Jacobian
    are differentiable outputs. The data inputs (``sxx``, ``sxy``, ``m0``) are ordinary
    tensors, usually shared variables, so a compiled model can swap them between fits.
    """

    __props__ = ()

    def make_node(self, lam, w, u, sxx, sxy, m0) -> Apply:
        inputs = [pt.as_tensor_variable(v) for v in (lam, w, u, sxx, sxy, m0)]
        # Static shapes where the inputs know them: downstream elementwise code then needs no
        # run-time shape checks (whose error formatting alone took seconds to compile).
        (p,) = inputs[0].type.shape
        vec = pt.tensor(dtype="float64", shape=(p,))
        return Apply(self, inputs, [vec, pt.dscalar(), pt.tensor(dtype="float64", shape=(p, p)), vec.type()])

    def perform(self, node: Apply, inputs: list[Any], output_storage: list[list[Any]]) -> None:
        lam, w, u, sxx, sxy, m0 = inputs
        theta, jac, m, mu = whiten_numpy(lam, float(w), u, sxx, sxy, m0)
        output_storage[0][0] = theta
        output_storage[1][0] = np.asarray(jac)
        output_storage[2][0] = m
        output_storage[3][0] = mu

    def L_op(self, inputs, outputs, output_grads):
        lam, w, u, _sxx, sxy, m0 = inputs
        _, _, m, mu = outputs
        g, g_jac = output_grads[0], output_grads[1]
        if isinstance(g.type, DisconnectedType):
            g = pt.zeros_like(u)
        if isinstance(g_jac.type, DisconnectedType):
            g_jac = pt.as_tensor_variable(0.0)
        d_lam, d_w, d_u = whiten_grad(m, mu, u, lam, w, sxy, m0, g, g_jac)
        return [d_lam, d_w, d_u, disconnected_type(), disconnected_type(), disconnected_type()]

    def connection_pattern(self, node: Apply) -> list[list[bool]]:
        live = [True, True, False, False]
        return [live] * 3 + [[False] * 4 for _ in node.inputs[3:]]


whiten = Whiten()


def _register_numba() -> None:
    """nutpie compiles the model with numba: give both Ops numba implementations."""
    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

    factor = numba_factor()

    @register_funcify_default_op_cache_key(Whiten)
    def _funcify_whiten(op, node=None, **kwargs):
        @numba_njit(fastmath=False)
        def forward(lam, w_arr, u, sxx, sxy, m0):
            w = w_arr.item()
            p = lam.shape[0]
            a = w * sxx
            for j in range(p):
                a[j, j] += lam[j]
            b = lam * m0 + w * sxy
            half_logdet = factor(a)
            if np.isnan(half_logdet):
                raise np.linalg.LinAlgError("whitening: precision matrix is not positive definite")
            jac = -half_logdet
            m = np.zeros((p, p))
            v = np.zeros(p)
            for i in range(p):
                for j in range(i, p):
                    m[i, j] = a[i, j]
                    v[j] += a[i, j] * b[i]
            theta = np.zeros(p)
            mu = np.zeros(p)
            for i in range(p):
                acc_t = 0.0
                acc_m = 0.0
                for j in range(i, p):
                    acc_t += m[i, j] * (v[j] + u[j])
                    acc_m += m[i, j] * v[j]
                theta[i] = acc_t
                mu[i] = acc_m
            return theta, np.asarray(jac), m, mu

        return forward, source_key(numba_factor, _funcify_whiten)

    @register_funcify_default_op_cache_key(WhitenGrad)
    def _funcify_grad(op, node=None, **kwargs):
        @numba_njit(fastmath=False)
        def backward(m, mu, u, lam, w_arr, sxy, m0, g, g_jac_arr):
            w = w_arr.item()
            g_jac = g_jac_arr.item()
            p = lam.shape[0]
            c = np.zeros(p)
            for i in range(p):
                for j in range(i, p):
                    c[j] += m[i, j] * g[i]
            d_lam = np.zeros(p)
            sum_lam_g = 0.0
            a_s = 0.0
            for j in range(p):
                a_j = 0.0
                prefix = 0.0
                dphi = 0.0
                sq = 0.0
                for i in range(j, p):
                    mji = m[j, i]
                    a_j += mji * c[i]
                    dphi += mji * u[i] * (prefix + 0.5 * c[i] * mji)
                    prefix += c[i] * mji
                    sq += mji * mji
                g_jj = -a_j * mu[j] - dphi - 0.5 * g_jac * sq
                d_lam[j] = g_jj + a_j * m0[j]
                sum_lam_g += lam[j] * g_jj
                a_s += a_j * sxy[j]
            d_w = (-(g * mu).sum() - 0.5 * (u * c).sum() - 0.5 * g_jac * p - sum_lam_g) / w + a_s
            return d_lam, np.asarray(d_w), c

        return backward, source_key(_funcify_grad)


def _register_jax() -> None:
    """numpyro runs the model through JAX: give both Ops JAX implementations."""
    try:
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:  # JAX is an optional extra
        return

    @jax_funcify.register(Whiten)
    def _funcify_whiten(op, **kwargs):
        import jax.numpy as jnp
        from jax.scipy.linalg import solve_triangular as jsolve

        def forward(lam, w, u, sxx, sxy, m0):
            p = lam.shape[0]
            chol = jnp.linalg.cholesky(w * sxx + jnp.diag(lam))
            m = jsolve(chol, jnp.eye(p), lower=True).T
            v = m.T @ (lam * m0 + w * sxy)
            return m @ (v + u), -jnp.log(jnp.diag(chol)).sum(), m, m @ v

        return forward

    @jax_funcify.register(WhitenGrad)
    def _funcify_grad(op, **kwargs):
        import jax.numpy as jnp

        def backward(m, mu, u, lam, w, sxy, m0, g, g_jac):
            return _vjp(jnp, m, mu, u, lam, w, sxy, m0, g, g_jac)

        return backward


_register_numba()
_register_jax()
