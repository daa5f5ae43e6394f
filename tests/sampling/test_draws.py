"""The cell-wise fast path of ``row_log_mu`` for linear laws equals the generic per-row path."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesqid.data.design import build_design
from bayesqid.sampling.draws import n_samples, row_log_mu, row_theta


def test_linear_fast_path_matches_generic_path(mock_run, reference):
    grid = reference.frame.sample(400, replace=True, random_state=2).reset_index(drop=True)
    grid.loc[::7, "family"] = "new A"
    grid.loc[::11, "family"] = "new B"
    grid.loc[::5, "method"] = "unseen method"
    design = build_design(grid, mock_run.levels)
    assert mock_run.spec.law_obj.is_linear
    fast = row_log_mu(mock_run.idata, mock_run.spec, design, seed=3)
    theta = row_theta(mock_run.idata, mock_run.spec, design, seed=3)
    generic = np.asarray(mock_run.spec.law_obj.log_mu(design.x, theta)) * np.ones(
        (n_samples(mock_run.idata), design.n_rows))
    np.testing.assert_allclose(fast, generic, rtol=1e-12, atol=1e-12)


def test_recipe_shifts_enter_both_paths_and_unknown_recipe_is_its_own_level(reference, default_spec):
    """Recipe shifts: the fast path equals the generic one, a grid without recipe columns is an
    unknown recipe (it gets the unknown level's shift), and an annealed row gets the annealed one."""
    from dataclasses import replace

    from conftest import make_mock_run

    spec = replace(default_spec, recipe={"beta": ("annealed",), "log_k": ("annealed",)})
    run = make_mock_run(reference, spec, draws=40)
    assert {"d_beta_annealed_true", "d_log_k_annealed_unknown"} <= set(run.idata.posterior.data_vars)
    grid = reference.frame.sample(60, random_state=4).reset_index(drop=True)
    design = build_design(grid, run.levels)
    fast = row_log_mu(run.idata, spec, design, seed=1)
    theta = row_theta(run.idata, spec, design, seed=1)
    generic = np.asarray(spec.law_obj.log_mu(design.x, theta)) * np.ones((n_samples(run.idata), 60))
    np.testing.assert_allclose(fast, generic, rtol=1e-12, atol=1e-12)
    bare = grid.drop(columns=["annealed", "lr_schedule", "lr_frac", "train_precision", "weight_decay"])
    row = bare.iloc[[0]].assign(family="new family")
    unknown = row_log_mu(run.idata, spec, build_design(row, run.levels), seed=1)[:, 0]
    annealed = row_log_mu(run.idata, spec, build_design(row.assign(annealed=True), run.levels), seed=1)[:, 0]
    post = run.idata.posterior
    x = build_design(row, run.levels).x["log_d"][0]

    def shift(level):
        return (post[f"d_log_k_annealed_{level}"] + post[f"d_beta_annealed_{level}"] * x).values.ravel()

    np.testing.assert_allclose(annealed - unknown, shift("true") - shift("unknown"), rtol=1e-9, atol=1e-12)


def test_centred_family_slopes_pivot_at_the_centre_in_both_paths(reference, sharp_spec):
    """With a family centre, the fast path equals the generic one, and at the centre's
    covariates two families differ by their intercept offsets alone (their slope offsets
    vanish there); away from it the slope offsets count."""
    from dataclasses import replace

    from conftest import make_mock_run

    centre = {"params": 7e9, "tokens": 3e11, "bits": 3}
    spec = replace(sharp_spec, effects=tuple(replace(e, centre=centre) if e.group == "family" else e
                                            for e in sharp_spec.effects))
    run = make_mock_run(reference, spec, draws=40)
    grid = reference.frame.sample(80, random_state=5).reset_index(drop=True)
    grid.loc[::9, "family"] = "new family"
    design = build_design(grid, run.levels)
    fast = row_log_mu(run.idata, spec, design, seed=2)
    theta = row_theta(run.idata, spec, design, seed=2)
    generic = np.asarray(spec.law_obj.log_mu(design.x, theta)) * np.ones((n_samples(run.idata), 80))
    np.testing.assert_allclose(fast, generic, rtol=1e-12, atol=1e-12)

    post = run.idata.posterior
    fam = list(run.levels["family"])
    a, b = fam[0], fam[1]
    row = reference.frame.iloc[[0, 0]].reset_index(drop=True).assign(family=[a, b], params=7e9, tokens=3e11,
                                                                       bits=3)
    mu = row_log_mu(run.idata, spec, build_design(row, run.levels), seed=2)

    def offset(level, p):
        return (post[f"sd_family_{p}"] * post[f"z_family_{p}"].sel(family=level)).values.ravel()

    np.testing.assert_allclose(mu[:, 0] - mu[:, 1], offset(a, "log_k") - offset(b, "log_k"), atol=1e-10)
    away = row.assign(params=7e10)
    mu_away = row_log_mu(run.idata, spec, build_design(away, run.levels), seed=2)
    slope = -(offset(a, "alpha") - offset(b, "alpha")) * np.log(10.0)
    np.testing.assert_allclose(mu_away[:, 0] - mu_away[:, 1], offset(a, "log_k") - offset(b, "log_k") + slope,
                               atol=1e-10)


def test_new_levels_of_student_t_offsets_draw_from_the_student_t(reference, sharp_spec):
    """A new family's standardised offsets follow the spec's prior: Student-t(nu) where the
    spec says so, standard Normal elsewhere, and the Normal draws do not change when another
    coefficient turns Student-t."""
    from dataclasses import replace

    from scipy import stats

    from bayesqid.sampling.draws import _new_level_z

    z_t = _new_level_z("new family", "family", "beta", 5, 20000, 3.0)
    z_n = _new_level_z("new family", "family", "beta", 5, 20000)
    assert stats.kstest(z_t, stats.t(3).cdf).pvalue > 1e-3
    assert stats.kstest(z_t, stats.norm.cdf).pvalue < 1e-6
    assert stats.kstest(z_n, stats.norm.cdf).pvalue > 1e-3

    from conftest import make_mock_run

    effects = tuple(replace(e, nu={"beta": 3}) if e.group == "family" else e for e in sharp_spec.effects)
    spec_t = replace(sharp_spec, effects=effects)
    run = make_mock_run(reference, sharp_spec, draws=500)
    row = reference.frame.iloc[[0]].assign(family="new family", tokens=1e14)
    design = build_design(row, run.levels)
    theta_n = row_theta(run.idata, sharp_spec, design, seed=2)
    theta_t = row_theta(run.idata, spec_t, design, seed=2)
    np.testing.assert_array_equal(theta_n["alpha"], theta_t["alpha"])  # Normal offsets unchanged
    sd = run.idata.posterior["sd_family_beta"].values.ravel()
    z = (np.ravel(theta_t["beta"]) - run.idata.posterior["beta"].values.ravel()) / sd
    np.testing.assert_allclose(z, _new_level_z("new family", "family", "beta", 2, len(sd), 3.0), rtol=1e-9)
    fast = row_log_mu(run.idata, spec_t, design, seed=2)
    generic = np.asarray(spec_t.law_obj.log_mu(design.x, theta_t)) * np.ones((n_samples(run.idata), 1))
    np.testing.assert_allclose(fast, generic, rtol=1e-12, atol=1e-12)


def test_residual_scales_per_family_in_draws_and_predictions(reference, default_spec):
    """With ``likelihood.sigma_by = "family"`` a known family's rows get sigma * exp(sd * z[family]),
    every row of one new family one scale per draw drawn from the population (stable per
    label), another new family another; predict() puts exactly these scales in its
    new-measurement bands. With one scale, every row shares sigma."""
    from dataclasses import replace

    import bayesqid as bq
    from conftest import make_mock_run
    from scipy import stats

    from bayesqid.lang.likelihood import draw_residuals
    from bayesqid.sampling.draws import _new_level_z, flat, row_sigma

    spec = replace(default_spec, likelihood=replace(default_spec.likelihood, sigma_by="family"))
    run = make_mock_run(reference, spec, draws=400)
    base = reference.frame[reference.frame["family"].isin(["OPT", "OLMo"])].groupby("family").head(1)
    grid = pd.concat([base, base.assign(family="new A"), base.iloc[[0]].assign(family="new B")],
                     ignore_index=True)
    design = build_design(grid, run.levels)
    sig = row_sigma(run.idata, spec, design, seed=4)
    sigma, sd = flat(run.idata, "sigma"), flat(run.idata, "sd_family_log_sigma")
    z = run.idata.posterior["z_family_log_sigma"].stack(s=("chain", "draw")).transpose("s", ...)
    for i, fam in enumerate(grid["family"][:2]):
        np.testing.assert_allclose(sig[:, i], sigma * np.exp(sd * z.sel(family=fam).values), rtol=1e-12)
    np.testing.assert_array_equal(sig[:, 2], sig[:, 3])  # one new family: one scale per draw
    z_new = np.log(sig[:, 2] / sigma) / sd
    np.testing.assert_allclose(z_new, _new_level_z("new A", "family", "log_sigma", 4, len(sd)), rtol=1e-9)
    assert stats.kstest(z_new, stats.norm.cdf).pvalue > 1e-3
    assert not np.allclose(sig[:, 4], sig[:, 2])  # another new family: its own scale
    table = bq.predict(run, grid, seed=4)
    noise = draw_residuals(spec.likelihood, np.random.default_rng([4, 1]), (len(sigma),))
    draws = row_log_mu(run.idata, spec, design, seed=4) + noise[:, None] * sig
    np.testing.assert_allclose(np.log(table["pred_upper"]), np.quantile(draws, 0.95, axis=0), rtol=1e-9)
    one = row_sigma(run.idata, default_spec, design, seed=4)
    assert one.shape == (len(sigma), 1) and np.array_equal(one[:, 0], sigma)
