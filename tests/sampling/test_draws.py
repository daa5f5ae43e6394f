"""The cell-wise fast path of ``row_log_mu`` for linear laws equals the generic per-row path."""

from __future__ import annotations

import numpy as np

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


def test_centred_family_slopes_pivot_at_the_centre_in_both_paths(reference, default_spec):
    """With a family centre, the fast path equals the generic one, and at the centre's
    covariates two families differ by their intercept offsets alone (their slope offsets
    vanish there); away from it the slope offsets count."""
    from dataclasses import replace

    from conftest import make_mock_run

    centre = {"params": 7e9, "tokens": 3e11, "bits": 3}
    spec = replace(default_spec, effects=tuple(replace(e, centre=centre) if e.group == "family" else e
                                              for e in default_spec.effects))
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
