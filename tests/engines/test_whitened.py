"""The whitened engine: the whitening map and the fused row likelihood (numpy, numba and JAX
against each other, closed forms and finite differences), the model's density, engine
choice, compile-once refits, and agreement with the uncollapsed model on Student-t data."""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import replace

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import bayesqid as bq
from bayesqid.data.design import build_design
from bayesqid.engines.direct import DirectEngine, build_model
from bayesqid.engines.linear import linear_system
from bayesqid.engines.ops.rowlogp import row_logp, row_logp_numpy
from bayesqid.engines.ops.whiten import whiten, whiten_batch, whiten_grad_numpy, whiten_numpy
from bayesqid.engines.registry import make_engine
from bayesqid.engines.whitened import (
    INTERNAL,
    WHITE,
    WHITE_LEVELS,
    WHITE_SIGMA,
    WhitenedEngine,
    build_whitened_model,
    white_data,
    whitenable,
)
from bayesqid.lang.likelihood import NUMPY, pointwise_logp
from bayesqid.lang.spec import Likelihood
from bayesqid.sampling.refit import Refitter
from helpers import four_family_law_data

MODES = ["FAST_RUN", "NUMBA"] + (["JAX"] if importlib.util.find_spec("jax") else [])
LIKELIHOODS = [Likelihood("student_t", 4), Likelihood("student_t", 2), Likelihood("normal", 4)]


def _system(seed: int = 0, p: int = 8, n: int = 30):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    return {"lam": rng.uniform(0.4, 2.5, p), "w": 1.7, "u": rng.normal(size=p),
            "sxx": x.T @ x, "sxy": x.T @ rng.normal(size=n), "m0": rng.normal(size=p)}, rng


def _objective(problem, g, g_jac):
    """A scalar of the map's outputs, so its gradient exercises both output gradients."""
    def f(lam, w, u):
        theta, jac, _, _ = whiten_numpy(lam, w, u, problem["sxx"].copy(), problem["sxy"], problem["m0"])
        return g @ theta + g_jac * jac
    return f


def test_whitening_map_is_the_conditional_affine_map():
    problem, _ = _system()
    lam, w, u = problem["lam"], problem["w"], problem["u"]
    theta, jac, _, mu = whiten_numpy(lam, w, u, problem["sxx"].copy(), problem["sxy"], problem["m0"])
    a = w * problem["sxx"] + np.diag(lam)
    b = lam * problem["m0"] + w * problem["sxy"]
    chol = np.linalg.cholesky(a)
    assert np.allclose(mu, np.linalg.solve(a, b))
    assert np.allclose(theta, mu + np.linalg.solve(chol.T, u))
    assert jac == pytest.approx(-0.5 * np.linalg.slogdet(a)[1])
    # The batched version (used on posterior draws) is the same map.
    batch = whiten_batch(np.stack([lam, lam]), np.array([w, w]), np.stack([u, -u]), problem["sxx"],
                         problem["sxy"], problem["m0"])
    assert np.allclose(batch[0], theta) and np.allclose(batch[1], 2 * mu - theta)


def test_whitening_gradient_matches_finite_differences():
    problem, rng = _system(seed=3)
    g, g_jac = rng.normal(size=8), 0.7
    f = _objective(problem, g, g_jac)
    lam, w, u = problem["lam"], problem["w"], problem["u"]
    _, _, m, mu = whiten_numpy(lam, w, u, problem["sxx"].copy(), problem["sxy"], problem["m0"])
    d_lam, d_w, d_u = whiten_grad_numpy(m, mu, u, lam, w, problem["sxy"], problem["m0"], g, g_jac)
    eps, eye = 1e-6, np.eye(8)
    fd_lam = [(f(lam + eps * e, w, u) - f(lam - eps * e, w, u)) / (2 * eps) for e in eye]
    fd_u = [(f(lam, w, u + eps * e) - f(lam, w, u - eps * e)) / (2 * eps) for e in eye]
    assert np.allclose(d_lam, fd_lam, atol=1e-7)
    assert np.allclose(d_u, fd_u, atol=1e-7)
    assert d_w == pytest.approx((f(lam, w + eps, u) - f(lam, w - eps, u)) / (2 * eps), abs=1e-7)


@pytest.mark.parametrize("mode", MODES)
def test_whitening_op_backends_agree(mode):
    problem, rng = _system(seed=5)
    g, g_jac = rng.normal(size=8), -0.4
    lam, w, u = pt.dvector("lam"), pt.dscalar("w"), pt.dvector("u")
    theta, jac = whiten(lam, w, u, problem["sxx"], problem["sxy"], problem["m0"])[:2]
    objective = (g * theta).sum() + g_jac * jac
    fn = pytensor.function([lam, w, u], [objective, *pytensor.grad(objective, [lam, w, u])], mode=mode)
    value, d_lam, d_w, d_u = fn(problem["lam"], problem["w"], problem["u"])
    f = _objective(problem, g, g_jac)
    assert value == pytest.approx(f(problem["lam"], problem["w"], problem["u"]), rel=1e-12)
    _, _, m, mu = whiten_numpy(problem["lam"], problem["w"], problem["u"], problem["sxx"].copy(),
                               problem["sxy"], problem["m0"])
    ref = whiten_grad_numpy(m, mu, problem["u"], problem["lam"], problem["w"], problem["sxy"],
                            problem["m0"], g, g_jac)
    assert np.allclose(d_lam, ref[0]) and d_w == pytest.approx(ref[1]) and np.allclose(d_u, ref[2])


def _rows(seed: int = 1, n: int = 120, p: int = 12, k: int = 4):
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(p, k, replace=False) for _ in range(n)])
    val = rng.normal(size=(n, k))
    y = 2.0 * rng.normal(size=n)
    censored = rng.random(n) < 0.3
    use = rng.random(n) < 0.85
    return {"theta": 0.3 * rng.normal(size=p), "sigma": 0.7, "y": y, "exact": (use & ~censored) * 1.0,
            "censored": (use & censored) * 1.0, "idx": idx, "val": val}, censored, use


#: One residual scale, or three with every row in one of three groups.
SCALES = {"one-sigma": (np.array([0.7]), None), "grouped-sigma": (np.array([0.7, 0.3, 1.6]), 3)}


def _groups(r, n_groups):
    n = len(r["y"])
    return None if n_groups is None else np.random.default_rng(7).integers(0, n_groups, n)


@pytest.mark.parametrize("scales", SCALES.values(), ids=SCALES.keys())
@pytest.mark.parametrize("lik", LIKELIHOODS, ids=lambda lik: f"{lik.kind}-{lik.nu}")
def test_row_likelihood_is_the_pointwise_likelihood_and_its_gradient(lik, scales):
    r, censored, use = _rows()
    sigma, n_groups = scales
    group = _groups(r, n_groups)
    row_sigma = sigma[np.zeros(len(r["y"]), int) if group is None else group]
    args = (r["y"], r["exact"], r["censored"], r["idx"], r["val"], lik, group)
    logp, d_theta, d_sigma = row_logp_numpy(r["theta"], sigma, *args)
    log_mu = (r["theta"][r["idx"]] * r["val"]).sum(axis=1)
    # Rows outside the fit (both masks 0) do not count.
    assert logp == pytest.approx(pointwise_logp(r["y"], censored, log_mu, row_sigma, lik, NUMPY)[use].sum())
    eps, eye = 1e-6, np.eye(len(r["theta"]))

    def f(theta, sigma):
        return row_logp_numpy(theta, sigma, *args)[0]

    theta = r["theta"]
    fd = [(f(theta + eps * e, sigma) - f(theta - eps * e, sigma)) / (2 * eps) for e in eye]
    assert np.allclose(d_theta, fd, atol=1e-6)
    fd_sigma = [(f(theta, sigma + eps * e) - f(theta, sigma - eps * e)) / (2 * eps) for e in np.eye(len(sigma))]
    assert d_sigma.shape == sigma.shape and np.allclose(d_sigma, fd_sigma, atol=1e-6)


@pytest.mark.parametrize("scales", SCALES.values(), ids=SCALES.keys())
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lik", LIKELIHOODS, ids=lambda lik: f"{lik.kind}-{lik.nu}")
def test_row_likelihood_backends_agree(lik, mode, scales):
    r, _, _ = _rows(seed=2)
    sigma0, n_groups = scales
    group = _groups(r, n_groups)
    theta = pt.dvector("theta")
    sigma = pt.dscalar("sigma") if group is None else pt.dvector("sigma")
    out = row_logp(lik, theta, sigma, r["y"], r["exact"], r["censored"], r["idx"], r["val"], group)
    fn = pytensor.function([theta, sigma], [out, *pytensor.grad(out, [theta, sigma])], mode=mode)
    value, d_theta, d_sigma = fn(r["theta"], sigma0[0] if group is None else sigma0)
    ref = row_logp_numpy(r["theta"], sigma0, r["y"], r["exact"], r["censored"], r["idx"], r["val"], lik, group)
    assert value == pytest.approx(ref[0], rel=1e-12)
    assert np.allclose(d_theta, ref[1], rtol=1e-10, atol=1e-12)
    assert np.allclose(np.atleast_1d(d_sigma), ref[2], rtol=1e-10, atol=1e-12)


def test_row_likelihood_is_finite_deep_in_the_censored_tail():
    for lik in LIKELIHOODS:
        out = row_logp_numpy(np.zeros(1), 0.01, np.array([-5.0]), np.zeros(1), np.ones(1),
                             np.zeros((1, 1), np.int64), np.ones((1, 1)), lik)
        assert np.isfinite(out[0]) and np.all(np.isfinite(out[1])) and np.isfinite(out[2])
        r = pt.dvector("theta")
        fn = pytensor.function([r], row_logp(lik, r, 0.01, np.array([-5.0]), np.zeros(1), np.ones(1),
                                             np.zeros((1, 1), np.int64), np.ones((1, 1))), mode="NUMBA")
        assert float(fn(np.zeros(1))) == pytest.approx(out[0], rel=1e-9)


@pytest.mark.parametrize("recipe, centre, nu, by", [({}, {}, {}, None),
                                                    ({"beta": ("annealed",), "log_k": ("annealed", "lr_frac")}, {}, {}, None),
                                                    ({}, {"params": 7e9, "tokens": 3e11, "bits": 3}, {}, None),
                                                    ({}, {"params": 7e9}, {"beta": 3, "log_k": 1.5}, None),
                                                    ({}, {"params": 7e9}, {}, "family")],
                         ids=["plain", "recipe-shifts", "family-centre", "student-t-family", "scale-per-family"])
def test_whitened_density_equals_the_uncollapsed_density_plus_the_jacobian(reference, recipe, centre, nu, by):
    """Same posterior, other coordinates: at matching points the two models' log densities
    differ exactly by the map's log-Jacobian (plus the direct model's fixed N(0,1) constants).
    With recipe shifts too (population coefficients of both models), with family slopes
    pivoting at a centre (the linear system's centred columns vs the direct model's compose),
    with Student-t family offsets (both models' scale mixtures, per-level variances lam), and
    with a residual scale per family (the whitened model's centred level scales vs the direct
    model's non-centred ones)."""
    spec = bq.load_spec("ouyang")  # no centre of its own: "plain" is the uncentred hierarchy
    spec = replace(spec, recipe=recipe, likelihood=replace(spec.likelihood, sigma_by=by),
                   effects=tuple(replace(e, centre=centre, nu=nu) if e.group == "family" else e
                                 for e in spec.effects))
    design = build_design(reference.frame)
    qid = reference.frame["qid"].to_numpy(float)
    system = linear_system(spec, design)
    group = None if by is None else design.codes[by]
    n_levels = 1 if by is None else len(design.levels[by])
    data = white_data(spec, system, qid, None, group, n_levels)
    white = build_whitened_model(spec, system, design.levels, data, group)
    point = white.initial_point()
    rng = np.random.default_rng(0)
    point[WHITE] = rng.normal(size=system.n_cols)
    for name in point:
        if name.startswith(("sd_", "lam_", "sigma")):
            point[name] = point[name] + rng.normal(0, 0.2, np.shape(point[name]))

    def mix(b):  # per-level variance multipliers of Student-t offsets (1 for Normal ones)
        return np.exp(point.get(f"lam_{b.group}_{b.param}_log__", np.zeros(b.size)))

    assert sum(name.startswith("lam_") for name in point) == len(nu)
    lam = np.concatenate([system.pop_precision]
                         + [np.exp(point[f"sd_{b.group}_{b.param}_log__"]) ** -2 / mix(b)
                            for b in system.effect_blocks])
    if by is None:
        log_sigma = data.sigma_loc + data.sigma_scale * point[WHITE_SIGMA]
        w = np.exp(log_sigma) ** -2
        # log sigma = loc + scale * s: the whitened density has the extra log(scale) of that map.
        scale_jac = np.log(data.sigma_scale)
    else:
        assert WHITE_SIGMA not in point
        log_sigma = point["sigma_log__"]
        w = np.exp(-2.0 * data.sigma_loc)  # the map's pooled stand-in scale
        log_levels = data.level_loc + data.level_scale * point[WHITE_LEVELS]
        sd_s = np.exp(point[f"sd_{by}_log_sigma_log__"])
        # log sigma_g = loc_g + scale_g s_g = log sigma + sd z_g: ds_g / dz_g = sd / scale_g.
        scale_jac = np.sum(np.log(data.level_scale) - np.log(sd_s))
    theta, jac, _, _ = whiten_numpy(lam, w, point[WHITE], data.sxx.copy(), data.sxy, system.m0)
    non_centred = tuple(replace(e, parametrization=dict.fromkeys(e.params, "non_centered"))
                        for e in spec.effects)
    direct = build_model(replace(spec, effects=non_centred), design, qid)
    dpoint = {k: v for k, v in point.items() if k not in INTERNAL} | {"sigma_log__": log_sigma}
    if by is not None:
        dpoint[f"z_{by}_log_sigma"] = (log_levels - log_sigma) / sd_s
    for b in system.blocks:
        values = theta[b.start:b.start + b.size]
        if b.group is None:
            dpoint[b.param] = values[0]
        else:
            scale = np.exp(point[f"sd_{b.group}_{b.param}_log__"]) * np.sqrt(mix(b))
            dpoint[f"u_z_{b.group}_{b.param}"] = values / scale
    # The direct model is written in standardised effects u = offset / (sd sqrt(lam)): its
    # density in the offsets has the extra -sum log(sd sqrt(lam)) of that change of variables,
    # already in the whitened one.
    log_sd = sum(b.size * point[f"sd_{b.group}_{b.param}_log__"] + 0.5 * np.log(mix(b)).sum()
                 for b in system.effect_blocks)
    lp_white = white.compile_logp()(point)
    lp_direct = direct.compile_logp()(dpoint)
    assert lp_white == pytest.approx(lp_direct - log_sd + jac + scale_jac, rel=1e-9)


def test_engine_choice(reference):
    design = build_design(reference.frame)
    qid = reference.frame["qid"].to_numpy(float)
    for name in ("ouyang", "ouyang_normal", "kumar", "dn_ratio", "ouyang_nopool"):
        assert isinstance(make_engine(bq.load_spec(name), design, qid), WhitenedEngine), name
    assert isinstance(make_engine(bq.load_spec(), design, qid, "direct"), DirectEngine)
    with pytest.raises(ValueError, match="unknown engine"):
        make_engine(bq.load_spec(), design, qid, "fastest")
    with pytest.raises(bq.BayesqidError, match="unknown engine"):
        bq.SamplerConfig(engine="fastest")


def test_nonlinear_laws_are_not_whitened():
    from bayesqid.lang.laws import LAWS

    for law in LAWS.values():
        spec = replace(bq.load_spec(), law=law.name, effects=())
        assert (whitenable(spec) is None) == law.is_linear


def _student_data(reference, seed=3):
    """Student-t data from a known Ouyang law with family effects, ~17% censored."""
    return four_family_law_data(reference, lambda rng, n: 0.3 * rng.standard_t(4, n), seed)


def _family_spec():
    base = bq.load_spec("ouyang")  # nu = 4, as the simulated residuals
    return replace(base, name="student", effects=tuple(e for e in base.effects if e.group == "family"))


@pytest.mark.slow
def test_whitened_and_direct_engines_sample_the_same_posterior(reference):
    data = _student_data(reference)
    spec = _family_spec()
    cfg = bq.SamplerConfig(draws=500, tune=500, chains=2, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        white = bq.fit(spec, data, cfg)
        direct = bq.fit(spec, data, replace(cfg, engine="direct"))
    assert white.idata.attrs["engine"] == "whitened" and direct.idata.attrs["engine"] == "direct"
    assert int(white.idata.sample_stats["diverging"].sum()) == 0
    assert WHITE not in white.idata.posterior
    for name in ("log_k", "alpha", "beta", "gamma", "sigma", "sd_family_gamma"):
        a = white.idata.posterior[name].to_numpy().ravel()
        b = direct.idata.posterior[name].to_numpy().ravel()
        assert abs(a.mean() - b.mean()) < 4 * np.hypot(a.std(), b.std()) / 10, name
        if not name.startswith("sd_"):
            assert a.std() == pytest.approx(b.std(), rel=0.3), name
    z = white.idata.posterior["z_family_log_k"]
    assert z.dims == ("chain", "draw", "family") and list(z.family.values) == list(white.levels["family"])


@pytest.mark.nuts
def test_whitened_refits_reuse_one_compiled_model(reference):
    data = _student_data(reference)
    refitter = Refitter(_family_spec(), data, bq.SamplerConfig(draws=100, tune=150, chains=2))
    assert isinstance(refitter.engine, WhitenedEngine)
    families = data.frame["family"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = [refitter.fit(seed=i, rows=families != f) for i, f in enumerate(["OPT", "BLOOM"])]
    compiled = refitter.engine._compiled
    assert compiled is not None
    assert [len(r.data()) for r in runs] == [int((families != f).sum()) for f in ["OPT", "BLOOM"]]
    assert runs[0].levels["family"] == tuple(sorted(set(families)))
    # The left-out family is informed by its prior only.
    z = runs[0].idata.posterior["z_family_log_k"].sel(family="OPT").to_numpy().ravel()
    assert abs(z.mean()) < 0.4 and 0.7 < z.std() < 1.3
    # A third fit with new measurements reuses the same compiled model and reproduces its seed.
    again = refitter.fit(seed=0, rows=families != "OPT")
    assert refitter.engine._compiled is compiled
    alpha = runs[0].idata.posterior["alpha"].to_numpy()
    assert np.array_equal(again.idata.posterior["alpha"].to_numpy(), alpha)


def test_any_population_prior_can_be_whitened(reference):
    """The stand-in needs Gaussian moments only; the model keeps the prior's exact density."""
    base = bq.load_spec()
    spec = replace(base, priors={**base.priors,
                                 "alpha": bq.Prior("student_t", {"nu": 1.0, "mu": 0.3, "sigma": 0.2}),
                                 "gamma": bq.Prior("lognormal", {"mu": 1.5, "sigma": 0.5})})
    assert whitenable(spec) is None
    design = build_design(reference.frame)
    system = linear_system(spec, design)
    model = build_whitened_model(spec, system, design.levels,
                                 white_data(spec, system, reference.frame["qid"].to_numpy(float)))
    point = model.initial_point()
    point[WHITE] = np.zeros(system.n_cols)
    assert np.isfinite(model.compile_logp()(point))
    assert np.all(np.isfinite(system.m0)) and np.all(system.pop_precision > 0)


def test_stand_in_is_exact_for_normal_rows_and_places_censored_rows_below_resolution(reference):
    from bayesqid.engines.whitened import stand_in
    from bayesqid.lang.likelihood import observe

    design = build_design(reference.frame)
    qid = reference.frame["qid"].to_numpy(float)
    normal = bq.load_spec("ouyang_normal")
    system = linear_system(normal, design)
    y, censored = observe(qid, normal.likelihood)
    use = np.arange(len(y)) % 7 != 0
    weight, pseudo, _, _ = stand_in(normal, system, y, censored, use)
    exact = use & ~censored
    # Normal rows: the stand-in is the likelihood itself (then u's conditional is exactly N(0, I)).
    assert np.all(weight[exact] == 1.0) and np.array_equal(pseudo[exact], y[exact])
    assert np.all(weight[~use] == 0.0)
    cens = use & censored
    assert np.all(pseudo[cens] < y[cens]) and np.all((weight[cens] > 0) & (weight[cens] < 1))
    student = bq.load_spec()
    system_t = linear_system(student, design)
    weight_t, _, sigma_t, _ = stand_in(student, system_t, y, censored, use)
    # Student-t rows are down-weighted by their residual (IRLS): outliers count less.
    nu = student.likelihood.nu
    assert np.all(weight_t[exact] > 0) and np.all(weight_t[exact] <= (nu + 1) / nu)
    assert weight_t[exact].min() < 0.2
    # A scale per family: the pilot's level scales follow the families' residuals (OPT's RTN
    # cliffs above OLMo's checkpoints), their geometric mean is the pooled scale, and every row's
    # weight carries (sigma / sigma_level)^2.
    family = design.codes["family"]
    levels = list(design.levels["family"])
    _, _, sigma_f, level = stand_in(student, system_t, y, censored, use, family, len(levels))
    assert level[levels.index("OPT")] > 2 * level[levels.index("OLMo")]
    assert sigma_f == pytest.approx(np.exp(np.log(level).mean()))
    single, _, _, _ = stand_in(student, system_t, y, censored, use, np.zeros(len(y), np.int64), 1)
    np.testing.assert_array_equal(single, weight_t)  # one level: the one-scale stand-in, bit for bit


def test_log_sigma_is_centred_and_scaled_by_the_stand_in(reference):
    """The sampled coordinate of sigma is ~unit scale: centred at the pilot's log sigma (close to
    the truth on simulated data) with the width its Fisher information implies."""
    from bayesqid.engines.whitened import log_sigma_width

    data = _student_data(reference)
    spec = _family_spec()
    design = build_design(data.frame)
    system = linear_system(spec, design)
    white = white_data(spec, system, data.frame["qid"].to_numpy(float))
    n_exact = int(white.exact.sum())
    assert float(white.sigma_scale) == pytest.approx(1 / np.sqrt(1 + n_exact * 8 / 7))
    assert abs(float(white.sigma_loc) - np.log(0.3)) < 4 * float(white.sigma_scale)
    # No exact rows (all censored): sigma keeps a unit-width coordinate.
    assert log_sigma_width(spec, 0) == 1.0
    assert log_sigma_width(bq.load_spec("ouyang_normal"), 100) == pytest.approx(1 / np.sqrt(201))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("numpyro") is None, reason="needs bayesqid[numpyro]")
def test_numpyro_sampler_fits_the_whitened_model_through_jax(reference):
    """The JAX route (the GPU path's code) end to end: both fused Ops' JAX implementations, the
    numpyro bridge, and the coefficients back under their usual names."""
    data = _student_data(reference)
    cfg = bq.SamplerConfig(sampler="numpyro", draws=300, tune=300, chains=2, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = bq.fit(_family_spec(), data, cfg)
    assert run.idata.attrs["engine"] == "whitened"
    assert int(run.idata.sample_stats["diverging"].sum()) == 0
    post = run.idata.posterior
    assert WHITE not in post and WHITE_SIGMA not in post
    # The simulating law: beta 0.3, alpha 0.25, gamma 5, Student-t(4) residuals of scale 0.3.
    for name, truth in (("beta", 0.3), ("alpha", 0.25), ("gamma", 5.0), ("sigma", 0.3)):
        draws = post[name].to_numpy().ravel()
        assert abs(draws.mean() - truth) < 4 * draws.std(), name
