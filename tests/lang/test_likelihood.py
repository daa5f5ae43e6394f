"""The observation model: closed-form Student-t log-CDFs, censoring, and numpy/PyTensor agreement."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.stats as st

from bayesqid.lang.likelihood import (
    NUMPY,
    TENSOR,
    draw_residuals,
    observe,
    pointwise_logp,
    std_logcdf,
    std_logpdf,
)
from bayesqid.lang.spec import Likelihood

STUDENT = [Likelihood(kind="student_t", nu=2), Likelihood(kind="student_t", nu=4)]
ALL = [*STUDENT, Likelihood(kind="normal")]
ids = lambda lik: f"{lik.kind}{lik.nu if lik.kind == 'student_t' else ''}"  # noqa: E731


def t_grid() -> np.ndarray:
    """Standardised residuals over [-1e3, 1e3]: dense near 0, log-spaced into both tails."""
    tails = np.logspace(-8, 3, 300)
    return np.unique(np.concatenate([-tails, np.linspace(-20, 20, 401), [0.0], tails]))


def scipy_logcdf(t: np.ndarray, lik: Likelihood) -> np.ndarray:
    """Reference log-CDF. Above 0 it is log1p(-sf): the upper tail's complement, without rounding
    the CDF to 1 first (which would leave only ~1e-16 absolute accuracy on a value of ~-1e-12)."""
    if lik.kind == "normal":
        return st.norm.logcdf(t)
    return np.where(t <= 0, st.t.logcdf(t, lik.nu), np.log1p(-st.t.sf(t, lik.nu)))


def scipy_logpdf(t: np.ndarray, lik: Likelihood) -> np.ndarray:
    return st.norm.logpdf(t) if lik.kind == "normal" else st.t.logpdf(t, lik.nu)


def tensor_fn(fn):
    """Compile ``fn(t_tensor)`` into a numpy function of a float vector."""
    t = pt.dvector("t")
    return pytensor.function([t], fn(t))


@pytest.mark.parametrize("lik", ALL, ids=ids)
def test_logcdf_matches_scipy(lik):
    t = t_grid()
    got = std_logcdf(t, lik, NUMPY)
    np.testing.assert_allclose(got, scipy_logcdf(t, lik), rtol=1e-9, atol=0)


@pytest.mark.parametrize("lik", ALL, ids=ids)
def test_logpdf_matches_scipy(lik):
    t = t_grid()
    np.testing.assert_allclose(std_logpdf(t, lik, NUMPY), scipy_logpdf(t, lik), rtol=1e-9, atol=0)


@pytest.mark.parametrize("lik", STUDENT, ids=ids)
def test_deep_lower_tail_has_no_cancellation(lik):
    """At t = -1e3 the CDF is ~5e-7 (nu = 2) or ~1e-12 (nu = 4): a naive 1/2 + 1/2 * (...) form
    loses most or all digits there. The closed form must keep full relative accuracy."""
    t = np.array([-1e3, -1e4, -1e5, -1e6])
    got = std_logcdf(t, lik, NUMPY)
    ref = st.t.logcdf(t, lik.nu)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    # Asymptotics: P(T < t) ~ c |t|^-nu, so the log-CDF falls by nu * log(10) per decade.
    np.testing.assert_allclose(np.diff(got), -lik.nu * np.log(10), rtol=1e-4)
    # The naive form, 1/2 + (odd polynomial in s = t / sqrt(nu + t^2)), really does lose the tail
    # at these points, so the assertions above are not vacuous.
    s_ = t / np.sqrt(lik.nu + t * t)
    naive = 0.5 + (s_ / 2 if lik.nu == 2 else s_ * (3 - s_**2) / 4)
    with np.errstate(divide="ignore"):
        naive_rel = np.abs(np.log(naive) - ref) / np.abs(ref)
    assert (naive_rel > 1e-9).any()


@pytest.mark.parametrize("lik", STUDENT, ids=ids)
def test_cdf_is_a_cdf(lik):
    t = t_grid()
    logcdf = std_logcdf(t, lik, NUMPY)
    assert np.isfinite(logcdf).all() and (logcdf <= 0).all()
    assert (np.diff(logcdf) >= 0).all(), "log-CDF must be non-decreasing"
    assert std_logcdf(np.array([0.0]), lik, NUMPY)[0] == pytest.approx(np.log(0.5), rel=1e-15)
    # symmetry: F(t) + F(-t) = 1
    pos = t[t > 0]
    total = np.exp(std_logcdf(pos, lik, NUMPY)) + np.exp(std_logcdf(-pos, lik, NUMPY))
    np.testing.assert_allclose(total, 1.0, rtol=1e-14)


@pytest.mark.parametrize("lik", ALL, ids=ids)
def test_numpy_and_tensor_back_ends_agree(lik):
    """Student-t: the same closed form on both back ends, so agreement to rounding.

    Normal: the back ends differ by construction (scipy's log_ndtr vs PyMC's normal_lcdf, whose
    erfc-based form is accurate to only ~1e-6 relative); the tolerance says so.
    """
    t = t_grid()
    cdf = tensor_fn(lambda x: std_logcdf(x, lik, TENSOR))(t)
    pdf = tensor_fn(lambda x: std_logpdf(x, lik, TENSOR))(t)
    rtol, atol = (1e-12, 1e-300) if lik.kind == "student_t" else (1e-6, 1e-9)
    np.testing.assert_allclose(cdf, std_logcdf(t, lik, NUMPY), rtol=rtol, atol=atol)
    np.testing.assert_allclose(pdf, std_logpdf(t, lik, NUMPY), rtol=1e-12)


@pytest.mark.parametrize("lik", ALL, ids=ids)
def test_tensor_logcdf_gradient_is_hazard(lik):
    """d/dt log F(t) = f(t) / F(t): finite everywhere on the grid (NUTS needs it in the tails).

    t = 0 itself is tested separately below."""
    t = t_grid()
    t = t[t != 0]
    grad = logcdf_grad(lik)(t)
    expected = np.exp(scipy_logpdf(t, lik) - scipy_logcdf(t, lik))
    assert np.isfinite(grad).all()
    rtol = 1e-8 if lik.kind == "student_t" else 1e-4  # PyMC's normal_lcdf: see above
    np.testing.assert_allclose(grad, expected, rtol=rtol, atol=1e-300)


def logcdf_grad(lik):
    x = pt.dvector("t")
    return pytensor.function([x], pytensor.grad(std_logcdf(x, lik, TENSOR).sum(), x))


@pytest.mark.parametrize("lik", STUDENT, ids=ids)
def test_tensor_logcdf_gradient_at_zero(lik):
    grad = logcdf_grad(lik)(np.array([0.0]))
    assert grad[0] == pytest.approx(2 * np.exp(scipy_logpdf(np.array([0.0]), lik))[0], rel=1e-12)


@pytest.mark.parametrize("lik", ALL, ids=ids)
def test_pointwise_logp_is_censored_location_scale(lik):
    rng = np.random.default_rng(11)
    n = 200
    log_mu = rng.normal(-2, 2, n)
    sigma = 0.4
    qid = np.exp(log_mu + sigma * rng.standard_t(4, n))
    qid[:20] = rng.uniform(-0.05, lik.censor_below, 20)  # unresolved, zero and negative
    y, censored = observe(qid, lik)
    got = pointwise_logp(y, censored, log_mu, sigma, lik, NUMPY)
    dist = st.norm(log_mu, sigma) if lik.kind == "normal" else st.t(lik.nu, log_mu, sigma)
    expected = np.where(censored, dist.logcdf(np.log(lik.censor_below)), dist.logpdf(np.log(np.abs(qid))))
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    # and the tensor version agrees
    ys, cs, ms = pt.dvector("y"), pt.bvector("c"), pt.dvector("m")
    fn = pytensor.function([ys, cs, ms], pointwise_logp(ys, cs, ms, sigma, lik, TENSOR))
    rtol = 1e-12 if lik.kind == "student_t" else 1e-6  # PyMC's normal_lcdf: see above
    np.testing.assert_allclose(fn(y, censored.astype(np.int8), log_mu), got, rtol=rtol)


def test_observe_censors_below_resolution():
    lik = Likelihood(censor_below=0.02)
    qid = np.array([-0.5, -1e-9, 0.0, 0.005, 0.0199999, 0.02, 0.021, 1.0, 12.0])
    y, censored = observe(qid, lik)
    np.testing.assert_array_equal(censored, [True] * 5 + [False] * 4)
    np.testing.assert_allclose(y[censored], np.log(0.02))
    np.testing.assert_allclose(y[~censored], np.log(qid[~censored]))
    assert np.isfinite(y).all()


def test_observe_uses_the_likelihoods_resolution():
    y, censored = observe([0.04, 0.06], Likelihood(censor_below=0.05))
    assert censored.tolist() == [True, False]
    assert y[0] == pytest.approx(np.log(0.05))
    y, censored = observe([0.04], Likelihood(censor_below=0.01))
    assert not censored[0] and y[0] == pytest.approx(np.log(0.04))


def test_observe_accepts_lists_and_does_not_modify_input():
    qid = np.array([0.0, 0.5])
    before = qid.copy()
    observe(qid, Likelihood())
    np.testing.assert_array_equal(qid, before)
    y, censored = observe([0.0, 0.5], Likelihood())
    assert censored.dtype == bool and y.shape == (2,)


@pytest.mark.parametrize("lik", ALL, ids=ids)
def test_draw_residuals(lik):
    a = draw_residuals(lik, np.random.default_rng(5), (4000, 3))
    b = draw_residuals(lik, np.random.default_rng(5), (4000, 3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4000, 3)
    dist = st.norm() if lik.kind == "normal" else st.t(lik.nu)
    assert st.kstest(a.ravel(), dist.cdf).pvalue > 1e-3
