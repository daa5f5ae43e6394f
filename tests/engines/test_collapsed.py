"""The collapsed engine: marginal likelihood, its three back ends, the sparse design, exact
coefficient draws, and agreement with the uncollapsed model."""

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
from bayesqid.engines.collapsed import (
    CENSORED_XTY,
    CollapsedEngine,
    collapsible,
    draw_coefficients,
    slot_count,
    sufficient_stats,
)
from bayesqid.engines.direct import DirectEngine
from bayesqid.engines.linear import gram, linear_system
from bayesqid.engines.ops.marginal import marginal_logp, marginal_numpy
from bayesqid.engines.registry import make_engine
from bayesqid.lang.effects import compose
from bayesqid.sampling.refit import Refitter
from helpers import four_family_law_data


def _problem(seed: int = 0, p: int = 9, n: int = 40, m: int = 6, k: int = 3):
    """A random marginal-likelihood problem with censored slots (two of them unused)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = rng.normal(size=n)
    cidx = np.stack([rng.choice(p, size=k, replace=False) for _ in range(m)])
    cval = rng.normal(size=(m, k))
    cmask = np.ones(m)
    cmask[[2, 5]] = 0.0
    xc = np.zeros((m, p))
    for i in range(m):
        xc[i, cidx[i]] = cval[i]
    used = cmask == 1
    sxx = x.T @ x + xc[used].T @ xc[used]
    data = {"sxx": sxx, "sxy": x.T @ y, "syy": float(y @ y), "n": float(n), "m0": rng.normal(size=p),
            "cidx": cidx, "cval": cval, "cmask": cmask}
    point = {"lam": rng.uniform(0.3, 3.0, p), "w": 1.3, "yc": rng.normal(size=m)}
    return x, y, xc, data, point


def _dense_logp(x, y, xc, data, lam, w, yc):
    """log N(y_all | X m0, X diag(1/lam) X' + I/w) by brute force."""
    used = data["cmask"] == 1
    xa = np.vstack([x, xc[used]])
    ya = np.concatenate([y, yc[used]])
    cov = xa @ np.diag(1 / lam) @ xa.T + np.eye(len(ya)) / w
    r = ya - xa @ data["m0"]
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (len(ya) * np.log(2 * np.pi) + logdet + r @ np.linalg.solve(cov, r))


def _call(data, lam, w, yc):
    return marginal_numpy(lam, w, yc, data["sxx"], data["sxy"], data["syy"], data["n"], data["m0"],
                          data["cidx"], data["cval"], data["cmask"])


def test_marginal_matches_dense_gaussian_and_finite_differences():
    x, y, xc, data, pt_ = _problem()
    lam, w, yc = pt_["lam"], pt_["w"], pt_["yc"]
    logp, d_lam, d_w, d_yc = _call(data, lam, w, yc)
    assert logp == pytest.approx(_dense_logp(x, y, xc, data, lam, w, yc), rel=1e-10)
    eps = 1e-6

    def fd(f, v):
        out = np.empty_like(v)
        for j in range(len(v)):
            e = np.zeros_like(v)
            e[j] = eps
            out[j] = (f(v + e) - f(v - e)) / (2 * eps)
        return out

    np.testing.assert_allclose(d_lam, fd(lambda v: _dense_logp(x, y, xc, data, v, w, yc), lam), atol=1e-6)
    np.testing.assert_allclose(d_yc, fd(lambda v: _dense_logp(x, y, xc, data, lam, w, v), yc), atol=1e-6)
    fd_w = (_dense_logp(x, y, xc, data, lam, w + eps, yc)
            - _dense_logp(x, y, xc, data, lam, w - eps, yc)) / (2 * eps)
    assert d_w == pytest.approx(fd_w, abs=1e-5)
    # Unused slots do not touch the likelihood.
    assert d_yc[[2, 5]].tolist() == [0.0, 0.0]


MODES = ["FAST_RUN", "NUMBA"] + (["JAX"] if importlib.util.find_spec("jax") else [])


@pytest.mark.parametrize("mode", MODES)
def test_op_backends_agree_with_numpy(mode):
    _, _, _, data, point = _problem(seed=1)
    lam, w, yc = pt.dvector("lam"), pt.dscalar("w"), pt.dvector("yc")
    out = marginal_logp(lam, w, yc, data["sxx"], data["sxy"], data["syy"], data["n"], data["m0"],
                        data["cidx"], data["cval"], data["cmask"])[0]
    fn = pytensor.function([lam, w, yc], [out, *pytensor.grad(out, [lam, w, yc])], mode=mode)
    got = fn(point["lam"], point["w"], point["yc"])
    want = _call(data, point["lam"], point["w"], point["yc"])
    for g, e in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), e, rtol=1e-9, atol=1e-10)


def test_sparse_design_reproduces_the_law(reference):
    spec = replace(bq.load_spec(), likelihood=replace(bq.load_spec().likelihood, kind="normal"))
    design = build_design(reference.frame)
    system = linear_system(spec, design)
    rng = np.random.default_rng(3)
    theta = rng.normal(size=system.n_cols)
    values, offsets = {}, {}
    for b in system.blocks:
        if b.group is None:
            values[b.param] = theta[b.start]
        else:
            offsets[(b.group, b.param)] = theta[b.start:b.start + b.size][design.codes[b.group]]
    law_value = spec.law_obj.log_mu(design.x, compose(spec, values, offsets))
    sparse_value = (system.val * theta[system.idx]).sum(axis=1)
    np.testing.assert_allclose(sparse_value, law_value, rtol=1e-12)
    dense = np.zeros((design.n_rows, system.n_cols))
    np.add.at(dense, (np.repeat(np.arange(design.n_rows), system.idx.shape[1]), system.idx.ravel()),
              system.val.ravel())
    np.testing.assert_allclose(gram(system.idx, system.val, system.n_cols), dense.T @ dense, atol=1e-9)


def test_sufficient_stats_split_censored_rows(reference):
    spec = replace(bq.load_spec(), likelihood=replace(bq.load_spec().likelihood, kind="normal"))
    system = linear_system(spec, build_design(reference.frame))
    qid = reference.frame["qid"].to_numpy(float)
    stats = sufficient_stats(spec, system, qid)
    n_cens = int((qid < spec.likelihood.censor_below).sum())
    assert stats.slots == slot_count(n_cens) >= n_cens and stats.cmask.sum() == n_cens
    assert stats.n == len(qid) - n_cens
    rows = reference.frame["family"].to_numpy() != "OLMo"
    sub = sufficient_stats(spec, system, qid, rows, slots=stats.slots)
    assert sub.slots == stats.slots and sub.n + sub.cmask.sum() == rows.sum()
    with pytest.raises(ValueError, match="do not fit"):
        sufficient_stats(spec, system, qid, slots=n_cens - 1)


def test_coefficient_draws_follow_the_conditional_gaussian():
    """With the scales fixed, draws of theta have mean A^-1 b and covariance A^-1."""
    import xarray as xr

    spec = replace(bq.load_spec(), likelihood=replace(bq.load_spec().likelihood, kind="normal"))
    ref = bq.load_reference()
    frame = ref.frame[ref.frame["family"].isin(["OPT", "BLOOM"])].reset_index(drop=True)
    design = build_design(frame)
    system = linear_system(spec, design)
    stats = sufficient_stats(spec, system, frame["qid"].to_numpy(float))
    s = 4000
    yc = stats.log_resolution - 0.4 * 0.5 * stats.cmask
    xty = np.zeros(system.n_cols)
    np.add.at(xty, stats.cidx.ravel(), (stats.cval * (yc * stats.cmask)[:, None]).ravel())
    post = {"sigma": np.full((1, s), 0.4), CENSORED_XTY: np.tile(xty, (1, s, 1))}
    lam = np.empty(system.n_cols)
    lam[: len(system.pop_precision)] = system.pop_precision
    for b in system.effect_blocks:
        post[f"sd_{b.group}_{b.param}"] = np.full((1, s), 0.7)
        lam[b.start:b.start + b.size] = 0.7**-2
    posterior = xr.Dataset({k: (("chain", "draw", *([f"{k}_dim"] if v.ndim == 3 else [])), v)
                            for k, v in post.items()})
    draws = draw_coefficients(posterior, spec, system, stats, design.levels, np.random.default_rng(0))
    theta = np.column_stack([draws[b.param].to_numpy().ravel() if b.group is None
                             else (draws[f"z_{b.group}_{b.param}"].to_numpy().reshape(s, -1) * 0.7)
                             for b in system.blocks])
    w = 0.4**-2
    sxy = stats.sxy + xty
    a = np.diag(lam) + w * stats.sxx
    cov = np.linalg.inv(a)
    mean = cov @ (lam * system.m0 + w * sxy)
    sd = np.sqrt(np.diag(cov))
    z = (theta.mean(axis=0) - mean) / (sd / np.sqrt(s))
    assert np.abs(z).max() < 4.5
    np.testing.assert_allclose(theta.std(axis=0), sd, rtol=0.08)


def test_collapsible_says_why_not():
    spec = bq.load_spec()
    normal = replace(spec, likelihood=replace(spec.likelihood, kind="normal"))
    assert collapsible(normal) is None
    assert "not Normal" in collapsible(replace(spec, likelihood=replace(spec.likelihood, kind="student_t")))
    wide = replace(normal, priors={"alpha": bq.Prior("student_t", {"nu": 3.0, "mu": 0.0, "sigma": 1.0})})
    assert "prior of 'alpha'" in collapsible(wide)
    heavy = replace(normal, effects=tuple(replace(e, nu={"beta": 3}) if e.group == "family" else e
                                          for e in normal.effects))
    assert collapsible(heavy) == "effects.family has Student-t offsets (nu), not Normal ones"


def test_make_engine_builds_collapsed_only_when_allowed(reference):
    spec = bq.load_spec()
    design = build_design(reference.frame)
    qid = reference.frame["qid"].to_numpy(float)
    normal = replace(spec, likelihood=replace(spec.likelihood, kind="normal"))
    assert isinstance(make_engine(normal, design, qid, "collapsed"), CollapsedEngine)
    assert isinstance(make_engine(normal, design, qid, "direct"), DirectEngine)
    student = replace(spec, likelihood=replace(spec.likelihood, kind="student_t"))
    with pytest.raises(ValueError, match="cannot be collapsed"):
        make_engine(student, design, qid, "collapsed")


# --- real fits -------------------------------------------------------------------------------


def _simulated(reference, seed=11):
    """Normal-likelihood data from a known Ouyang law on four families of the reference design."""
    return four_family_law_data(reference, lambda rng, n: rng.normal(0, 0.3, n), seed)


def _normal_family_spec():
    base = bq.load_spec()
    return replace(base, name="normal", likelihood=replace(base.likelihood, kind="normal"),
                   effects=tuple(e for e in base.effects if e.group == "family"))


@pytest.mark.slow
def test_collapsed_and_direct_engines_sample_the_same_posterior(reference):
    data = _simulated(reference)
    spec = _normal_family_spec()
    cfg = bq.SamplerConfig(draws=400, tune=400, chains=2, seed=5, engine="collapsed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collapsed = bq.fit(spec, data, cfg)
        direct = bq.fit(spec, data, replace(cfg, engine="direct"))
    assert collapsed.idata.attrs["engine"] == "collapsed" and direct.idata.attrs["engine"] == "direct"
    assert int(collapsed.idata.sample_stats["diverging"].sum()) == 0
    for name in ("log_k", "alpha", "beta", "gamma", "sigma", "sd_family_gamma"):
        a = collapsed.idata.posterior[name].to_numpy().ravel()
        b = direct.idata.posterior[name].to_numpy().ravel()
        # Means agree within a few combined Monte Carlo errors (taking ESS >= 100 for each).
        assert abs(a.mean() - b.mean()) < 4 * np.hypot(a.std(), b.std()) / 10, name
        if not name.startswith("sd_"):
            # A scale informed by four families has a long right tail whose sd is itself too
            # noisy at 800 draws to compare; its mean is compared above.
            assert a.std() == pytest.approx(b.std(), rel=0.3), name
    for run in (collapsed, direct):
        assert set(run.idata.posterior.data_vars) >= {"log_k", "sd_family_beta", "z_family_beta"}


@pytest.mark.nuts
def test_refits_reuse_one_compiled_model(reference):
    data = _simulated(reference)
    refitter = Refitter(_normal_family_spec(), data,
                        bq.SamplerConfig(draws=100, tune=150, chains=2, engine="collapsed"))
    families = data.frame["family"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = [refitter.fit(seed=i, rows=families != f) for i, f in enumerate(["OPT", "BLOOM"])]
    assert len(refitter.engine._compiled) == 1
    assert [len(r.data()) for r in runs] == [int((families != f).sum()) for f in ["OPT", "BLOOM"]]
    # Every fit knows the template's levels; the left-out family is informed by its prior only.
    assert runs[0].levels["family"] == tuple(sorted(set(families)))
    z = runs[0].idata.posterior["z_family_log_k"].sel(family="OPT").to_numpy().ravel()
    assert abs(z.mean()) < 0.4 and 0.7 < z.std() < 1.3
