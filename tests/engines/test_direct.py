"""The hierarchical PyMC model: variables, dims and coords, informed levels, and exact centring."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import scipy.stats as st

from bayesqid.constants import EVAL_SET, FAMILY, GROUPS, QUANTIZER
from bayesqid.data.design import NEW_LEVEL, build_design, group_labels
from bayesqid.engines.direct import build_model, informed_levels
from bayesqid.lang.effects import OBSERVED, compose, effect_pairs, sd_name, z_name
from bayesqid.lang.spec import Effect, ModelSpec, load_spec

# Logps are evaluated once per model: FAST_COMPILE skips the C compilation (seconds per graph).
FAST = {"mode": "FAST_COMPILE"}


@pytest.fixture(scope="module")
def ref_design(reference):
    return build_design(reference.frame)


@pytest.fixture(scope="module")
def ref_model(reference, default_spec, ref_design):
    return build_model(default_spec, ref_design, reference.frame["qid"].to_numpy(float))


def small_frame(reference, n_per_family=12, families=("OPT", "LLaMA-1", "OLMo"), seed=0) -> pd.DataFrame:
    """A few rows of each of three families (OLMo brings a spread in D), deterministic."""
    rng = np.random.default_rng(seed)
    frame = reference.frame
    idx = np.concatenate([rng.choice(np.flatnonzero(frame["family"] == f), n_per_family, replace=False)
                          for f in families])
    return frame.iloc[np.sort(idx)].reset_index(drop=True)


# --- structure -------------------------------------------------------------------------------


def test_free_variables_dims_and_coords(ref_model, ref_design, default_spec, reference):
    law = default_spec.law_obj
    expected = set(law.param_names) | {"sigma"}
    for group, param in effect_pairs(default_spec):
        expected |= {sd_name(group, param), f"u_{z_name(group, param)}"}
    free = {v.name for v in ref_model.free_RVs}
    assert free == expected
    dims = ref_model.named_vars_to_dims
    for group, param in effect_pairs(default_spec):
        assert dims[f"u_{z_name(group, param)}"] == (group,)
        assert dims[z_name(group, param)] == (group,)
        assert sd_name(group, param) not in dims
    for name in [*law.param_names, "sigma"]:
        assert name not in dims
    assert {v.name for v in ref_model.deterministics} == {z_name(g, p) for g, p in effect_pairs(default_spec)}
    assert OBSERVED in {v.name for v in ref_model.potentials}
    # coords are the sorted level labels of the data
    labels = group_labels(reference.frame)
    for g in GROUPS:
        assert list(ref_model.coords[g]) == sorted(set(labels[g]))
        assert tuple(ref_model.coords[g]) == ref_design.levels[g]
    assert "OLMo" in ref_model.coords[FAMILY]
    assert len(ref_model.coords[FAMILY]) == reference.frame["family"].nunique()
    assert "GPTQ g128" in ref_model.coords[QUANTIZER] and "RTN per-channel" in ref_model.coords[QUANTIZER]
    assert "wikitext2" in ref_model.coords[EVAL_SET] and "c4" in ref_model.coords[EVAL_SET]


def test_design_codes_match_levels(ref_design, reference):
    labels = group_labels(reference.frame)
    for g in GROUPS:
        codes = ref_design.codes[g]
        assert (codes != NEW_LEVEL).all()
        np.testing.assert_array_equal(np.asarray(ref_design.levels[g])[codes], labels[g])
    assert ref_design.n_rows == len(reference.frame)


def test_design_marks_unseen_levels(ref_design, reference):
    grid = reference.frame.head(3).copy()
    grid.loc[0, "family"] = "Brand-new"
    grid.loc[1, "method"] = "NewQuant"
    grid.loc[2, "eval_set"] = "newset"
    design = build_design(grid, ref_design.levels)
    assert design.codes[FAMILY][0] == NEW_LEVEL and design.codes[FAMILY][1] != NEW_LEVEL
    assert design.codes[QUANTIZER][1] == NEW_LEVEL
    assert design.codes[EVAL_SET][2] == NEW_LEVEL
    assert design.levels == ref_design.levels


def test_logps_finite_at_initial_point(ref_model):
    logps = ref_model.point_logps(round_vals=12, **FAST)
    assert set(logps) >= {v.name for v in ref_model.free_RVs} | {OBSERVED}
    assert all(np.isfinite(v) for v in logps.values()), logps


def test_logp_finite_at_random_prior_points(reference, default_spec):
    frame = small_frame(reference)
    model = build_model(default_spec, build_design(frame), frame["qid"].to_numpy(float))
    rng = np.random.default_rng(1)
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
        assert np.isfinite(total_logp(model, point))


# --- informed levels -------------------------------------------------------------------------


def test_only_olmo_informs_the_family_d_slope(default_spec, ref_design):
    mask = informed_levels(default_spec, ref_design, FAMILY, "beta")
    informed = [lv for lv, m in zip(ref_design.levels[FAMILY], mask, strict=True) if m]
    assert informed == ["OLMo"]


def test_informed_intercepts_need_rows(default_spec, ref_design):
    counts = pd.Series(ref_design.codes[FAMILY]).value_counts()
    mask = informed_levels(default_spec, ref_design, FAMILY, "log_k")
    for i, lv in enumerate(ref_design.levels[FAMILY]):
        assert mask[i] == (counts.get(i, 0) >= 10), lv
    # Falcon and Pythia have two rows each in the reference data
    assert not mask[ref_design.levels[FAMILY].index("Falcon")]
    assert not mask[ref_design.levels[FAMILY].index("Pythia")]


# --- compose -----------------------------------------------------------------------------------


def test_compose_adds_every_groups_offsets(default_spec):
    values = {"log_k": 1.0, "alpha": 0.2, "beta": 0.5, "gamma": 4.0}
    offsets = {("family", "log_k"): np.array([0.1, 0.2]), ("quantizer", "log_k"): np.array([1.0, 2.0]),
               ("family", "gamma"): np.array([-1.0, 1.0])}
    out = compose(load_spec("ouyang"), values, offsets)  # no centre: offsets simply add up
    np.testing.assert_allclose(out["log_k"], [2.1, 3.2])
    np.testing.assert_allclose(out["gamma"], [3.0, 5.0])
    assert out["alpha"] == 0.2 and out["beta"] == 0.5
    # The default's family slopes pivot at 3 bits: the family's bit-slope offset also moves the
    # intercept by -offset * feature(centre), feature = -log(3 / 4).
    shift = default_spec.centre_shift("family", "gamma")
    assert shift == pytest.approx(-np.log(0.75))
    centred = compose(default_spec, values, offsets)
    np.testing.assert_allclose(centred["log_k"], np.array([2.1, 3.2]) - np.array([-1.0, 1.0]) * shift)
    np.testing.assert_allclose(centred["gamma"], [3.0, 5.0])


# --- centring: the change of variables is exact ---------------------------------------------
#
# Every parametrization samples one ``u`` per level and maps it to the standardised effect ``z``
# (the Deterministic ``z_*``; offset = sd * z) by an affine map, z = a + b u, that depends on
# the other variables only. The contract is that the implied density of (everything else, z)
# is the same hierarchical model in all parametrizations, i.e. that
#     log p_kind(u) - sum(log |b|)
# is the same for "centered", "non_centered" and "auto" at the same offsets. Non-centred
# levels have b = 1 (z = u), centred ones b = 1/sd, so for all-centred vs all-non-centred this
# is log p_c = log p_nc - sum(log sd) per level. The test reads a and b off the model itself,
# so it does not depend on how a centred level is anchored.


def with_parametrization(spec: ModelSpec, kind) -> ModelSpec:
    effects = tuple(dataclasses.replace(e, parametrization=kind) for e in spec.effects)
    return dataclasses.replace(spec, effects=effects)


def total_logp(model: pm.Model, point: dict) -> float:
    return float(sum(model.point_logps(point, round_vals=14, **FAST).values()))


def z_affine(model: pm.Model, group: str, param: str, point: dict) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with z = a + b u for every level, at the other values of ``point``."""
    u_name = f"u_{z_name(group, param)}"
    # replace_rvs_by_values: without it the graph of z would draw sd afresh instead of reading it
    (z,) = model.replace_rvs_by_values([model[z_name(group, param)]])
    fn = model.compile_fn(z, inputs=model.value_vars, on_unused_input="ignore", **FAST)
    n = len(point[u_name])
    a = fn({**point, u_name: np.zeros(n)})
    b = fn({**point, u_name: np.ones(n)}) - a
    return a, b


def point_at_offsets(model, spec, shared, offsets, sds):
    """The model's value point whose offsets (sd * z) are ``offsets``; returns it and sum log|b|."""
    point = dict(shared)
    for g, p in offsets:
        point[f"u_{z_name(g, p)}"] = np.zeros(len(offsets[g, p]))
    log_jac = 0.0
    affine = {}
    for (g, p), off in offsets.items():
        a, b = z_affine(model, g, p, point)
        point[f"u_{z_name(g, p)}"] = (off / sds[sd_name(g, p)] - a) / b
        affine[g, p] = (a, b)
        log_jac += np.log(np.abs(b)).sum()
    return point, log_jac, affine


@pytest.fixture(scope="module")
def centring_case(reference, default_spec):
    """Three models on the same small data differing only in parametrization, and one set of
    values: population coefficients, scales, sigma and the offset of every level."""
    frame = small_frame(reference)
    design = build_design(frame)
    qid = frame["qid"].to_numpy(float)
    models = {kind: build_model(with_parametrization(default_spec, kind), design, qid)
              for kind in ("centered", "non_centered", "auto")}
    rng = np.random.default_rng(42)
    base = models["non_centered"].initial_point()
    shared = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in base.items() if not k.startswith("u_")}
    assert all(f"{sd_name(g, p)}_log__" in shared for g, p in effect_pairs(default_spec))
    sds = {k.removesuffix("_log__"): float(np.exp(v)) for k, v in shared.items() if k.startswith("sd_")}
    offsets = {(g, p): rng.normal(0, 0.5, len(design.levels[g])) for g, p in effect_pairs(default_spec)}
    points = {kind: point_at_offsets(m, default_spec, shared, offsets, sds) for kind, m in models.items()}
    return default_spec, design, models, points, sds


def test_z_is_standardised_offset_in_every_parametrization(centring_case):
    spec, design, models, points, sds = centring_case
    for kind in models:
        point, _, affine = points[kind]
        for g, p in effect_pairs(spec):
            a, b = affine[g, p]
            u = point[f"u_{z_name(g, p)}"]
            centred = {"centered": np.ones(len(u), bool), "non_centered": np.zeros(len(u), bool),
                       "auto": informed_levels(spec, design, g, p)}[kind]
            np.testing.assert_allclose(b, np.where(centred, 1 / sds[sd_name(g, p)], 1.0), rtol=1e-12)
            if kind == "non_centered":
                np.testing.assert_allclose(a, 0.0, atol=1e-15)


def test_centred_and_non_centred_differ_by_the_log_jacobian(centring_case):
    spec, design, models, points, sds = centring_case
    lp_c = total_logp(models["centered"], points["centered"][0])
    lp_nc = total_logp(models["non_centered"], points["non_centered"][0])
    # log p_c(offset) = log p_nc(z = offset / sd) - log(sd), per level
    jacobian = sum(len(design.levels[g]) * np.log(sds[sd_name(g, p)]) for g, p in effect_pairs(spec))
    assert lp_c == pytest.approx(lp_nc - jacobian, rel=1e-10, abs=1e-8)


def test_auto_differs_by_the_log_jacobian_of_its_centred_levels(centring_case):
    spec, design, models, points, sds = centring_case
    masks = {(g, p): informed_levels(spec, design, g, p) for g, p in effect_pairs(spec)}
    assert any(m.any() for m in masks.values()) and not all(m.all() for m in masks.values()), \
        "the small design should mix centred and non-centred levels"
    lp_auto = total_logp(models["auto"], points["auto"][0])
    lp_nc = total_logp(models["non_centered"], points["non_centered"][0])
    jacobian = sum(masks[g, p].sum() * np.log(sds[sd_name(g, p)]) for g, p in masks)
    assert lp_auto == pytest.approx(lp_nc - jacobian, rel=1e-10, abs=1e-8)
    # the same statement in the generic form
    for kind in models:
        lp = total_logp(models[kind], points[kind][0]) - points[kind][1]
        assert lp == pytest.approx(lp_nc, rel=1e-10, abs=1e-8), kind


def test_non_centred_density_is_the_hierarchical_prior(centring_case):
    """Independent check of one parametrization: the effects' part of the density is
    Normal(0, 1) on z (= u), so the model's u-terms equal scipy's standard normal logpdf."""
    spec, _, models, points, _ = centring_case
    point = points["non_centered"][0]
    logps = models["non_centered"].point_logps(point, round_vals=14, **FAST)
    for g, p in effect_pairs(spec):
        u = point[f"u_{z_name(g, p)}"]
        assert logps[f"u_{z_name(g, p)}"] == pytest.approx(st.norm.logpdf(u).sum(), rel=1e-12)
    assert not any(name.startswith("centring_") for name in logps)


def test_per_coefficient_parametrization_map(reference, default_spec):
    """A map sets the parametrization per coefficient; unnamed coefficients stay "auto"."""
    frame = small_frame(reference)
    design = build_design(frame)
    spec = with_parametrization(default_spec, "auto")
    effects = tuple(dataclasses.replace(e, parametrization={"beta": "centered", "log_k": "non_centered"})
                    if e.group == FAMILY else e for e in spec.effects)
    spec = dataclasses.replace(spec, effects=effects)
    model = build_model(spec, design, frame["qid"].to_numpy(float))
    point = model.initial_point()
    sd = {p: float(np.exp(point[f"{sd_name(FAMILY, p)}_log__"])) for p in ("beta", "log_k", "alpha")}
    n = len(design.levels[FAMILY])
    _, b = z_affine(model, FAMILY, "beta", point)
    np.testing.assert_allclose(b, np.full(n, 1 / sd["beta"]))  # forced centred on every level
    _, b = z_affine(model, FAMILY, "log_k", point)
    np.testing.assert_allclose(b, np.ones(n))  # forced non-centred
    _, b = z_affine(model, FAMILY, "alpha", point)  # auto: the informed levels only
    informed = informed_levels(spec, design, FAMILY, "alpha")
    np.testing.assert_allclose(b, np.where(informed, 1 / sd["alpha"], 1.0))


def test_effect_on_a_coefficient_of_another_law(reference):
    spec = ModelSpec("k", "kumar", effects=(Effect(FAMILY, ("log_c", "lambda_p")),))
    frame = small_frame(reference)
    model = build_model(spec, build_design(frame), frame["qid"].to_numpy(float))
    assert {"sd_family_log_c", "sd_family_lambda_p", "u_z_family_lambda_p", "log_c"} <= \
        {v.name for v in model.free_RVs}
    assert np.isfinite(model.point_logps(round_vals=12, **FAST)[OBSERVED])


def test_repeated_design_points_share_one_mean_and_give_the_same_density(reference, monkeypatch):
    """Aggregating repeated design points changes the graph, not the density."""
    import bayesqid.engines.direct as model_mod
    from bayesqid.data.design import build_design as _build

    frame = reference.frame.iloc[np.tile(np.arange(120), 3)].reset_index(drop=True)
    frame = frame.assign(qid=frame["qid"] * np.exp(np.random.default_rng(0).normal(0, 0.1, len(frame))))
    design = _build(frame)
    from bayesqid.lang.spec import load_spec

    spec = load_spec()
    qid = frame["qid"].to_numpy(float)
    points, _, inverse = model_mod._design_points(design.x, design.codes)
    assert points <= 120 and inverse.shape == (len(frame),)
    aggregated = model_mod.build_model(spec, design, qid)
    monkeypatch.setattr(model_mod, "AGGREGATE_BELOW", 0.0)
    per_row = model_mod.build_model(spec, design, qid)
    point = aggregated.initial_point()
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in point.items()}
    assert aggregated.compile_logp()(point) == pytest.approx(per_row.compile_logp()(point), rel=1e-10)


def test_student_t_offsets_are_a_scale_mixture_with_the_student_t_prior(reference, default_spec):
    """With ``nu`` set, the prior of the standardised offsets z is Student-t(nu) (the
    InverseGamma(nu/2, nu/2) mixture of Normals), in both the centred and non-centred forms;
    unset coefficients keep Normal(0, 1) offsets."""
    frame = small_frame(reference)
    design = build_design(frame)
    for kind in ("non_centered", "centered"):
        effects = tuple(dataclasses.replace(e, nu={"beta": 3}, parametrization=kind) if e.group == FAMILY
                        else e for e in default_spec.effects)
        spec = dataclasses.replace(default_spec, effects=effects)
        model = build_model(spec, design, frame["qid"].to_numpy(float))
        assert f"lam_{FAMILY}_beta" in model.named_vars and f"lam_{FAMILY}_alpha" not in model.named_vars
        if kind == "centered":
            # The centring swap lives in a Potential, which prior sampling ignores: check the
            # density instead, at a point with a known lam (log p(offset) = Normal(0, sd sqrt(lam))).
            point = model.initial_point()
            point[f"lam_{FAMILY}_beta_log__"] = np.log(np.full(3, 4.0))
            logps = model.point_logps(point, round_vals=14, **FAST)
            u = point[f"u_{z_name(FAMILY, 'beta')}"]
            sd = np.exp(point[f"{sd_name(FAMILY, 'beta')}_log__"])
            expected = st.norm.logpdf(u, scale=sd * 2.0).sum()
            got = logps[f"u_{z_name(FAMILY, 'beta')}"] + logps[f"centring_{z_name(FAMILY, 'beta')}"]
            assert got == pytest.approx(expected, rel=1e-10)
            continue
        with model:
            prior = pm.sample_prior_predictive(draws=4000, var_names=[z_name(FAMILY, "beta"), z_name(FAMILY, "alpha")],
                                               random_seed=1)
        z_beta = prior.prior[z_name(FAMILY, "beta")].values.ravel()
        z_alpha = prior.prior[z_name(FAMILY, "alpha")].values.ravel()
        assert st.kstest(z_beta, st.t(3).cdf).pvalue > 1e-3
        assert st.kstest(z_beta, st.norm.cdf).pvalue < 1e-6
        assert st.kstest(z_alpha, st.norm.cdf).pvalue > 1e-3
