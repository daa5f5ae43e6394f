"""Real NUTS fits: the session's shared small fit of the default spec, the convergence gate, and
bitwise reproducibility from the seed (on a tiny subset, to keep it cheap)."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesqid as bq
from bayesqid.constants import DEFAULT_SEED, GROUPS, OBS
from bayesqid.data.dataset import Dataset
from bayesqid.engines.sampler import SAMPLERS, SamplerConfig
from bayesqid.errors import BayesqidError, ConvergenceWarning
from bayesqid.lang.effects import effect_pairs, sd_name, z_name
from bayesqid.questions.predict import default_grid, predict
from bayesqid.sampling.diagnostics import MAX_RHAT, MIN_ESS, Diagnostics, check_convergence

pytestmark = pytest.mark.nuts


# --- the shared ci fit -----------------------------------------------------------------------


def test_ci_run_structure(ci_run, reference, default_spec):
    idata = ci_run.idata
    assert {"posterior", "sample_stats", "observed_data", "constant_data"} <= set(idata.groups())
    post = idata.posterior
    assert (post.sizes["chain"], post.sizes["draw"]) == (2, 300)
    expected = set(default_spec.law_obj.param_names) | {"sigma"}
    for g, p in effect_pairs(default_spec):
        expected |= {sd_name(g, p), z_name(g, p)}
    assert expected <= set(post.data_vars)
    assert idata.attrs["engine"] == "whitened"
    # nutpie also stores the unconstrained values of transformed variables; nothing else
    extra = set(post.data_vars) - expected
    assert all(v.endswith("_log__") and v.removesuffix("_log__") in expected for v in extra), extra
    for g, p in effect_pairs(default_spec):
        assert post[z_name(g, p)].dims == ("chain", "draw", g)
        assert list(post[g].to_numpy()) == list(ci_run.levels[g])
    assert ci_run.spec == default_spec
    assert ci_run.data_sha256 == reference.sha256
    assert ci_run.seed == DEFAULT_SEED
    sampler = json.loads(ci_run.idata.attrs["sampler"])
    assert sampler == asdict(SamplerConfig.preset("ci"))
    assert float(ci_run.idata.attrs["sampling_seconds"]) > 0
    assert np.isfinite(post["sigma"]).all() and (post["sigma"] > 0).all()
    assert int(idata.sample_stats["diverging"].size) == 600


def test_ci_run_log_likelihood_values(ci_run, reference):
    """Pointwise log-likelihood is computed on the draws (nutpie does not store it)."""
    ll = ci_run.idata.log_likelihood["log_qid"]
    assert ll.dims == ("chain", "draw", OBS)
    assert ll.shape == (2, 300, len(reference.frame))
    assert np.isfinite(ll.to_numpy()).all()


def test_ci_run_log_likelihood_is_a_group(ci_run):
    assert "log_likelihood" in ci_run.idata.groups()


def test_saved_ci_run_keeps_log_likelihood(ci_run_path):
    loaded = bq.load_run(ci_run_path)
    assert "log_likelihood" in loaded.idata.groups()
    assert np.isfinite(az.loo(loaded.idata).elpd_loo)


def test_gate_is_reported(ci_fit):
    run, caught = ci_fit
    diag = run.diagnostics
    assert isinstance(diag, Diagnostics)
    assert diag == check_convergence(run.idata)
    assert diag == Diagnostics.from_json(run.idata.attrs["diagnostics"])
    assert diag.draws == 600
    text = diag.format()
    lines = text.splitlines()
    assert lines[0] == ("convergence gate: PASSED" if diag.passed else "convergence gate: FAILED")
    assert f"divergences {diag.divergences} of 600 draws" in text
    assert "R-hat" in text and "ESS" in text and "BFMI" in text
    for problem in diag.problems:
        assert f"problem: {problem}" in text
    if diag.passed:
        assert not caught
    else:
        assert len(caught) == 1, "a failed gate warns exactly once"
        assert all(p in str(caught[0].message) for p in diag.problems)


def test_loaded_ci_run_predicts_the_same(ci_run, ci_run_path):
    grid = pd.concat([default_grid(), default_grid(family="OPT", eval_set="c4")], ignore_index=True)
    loaded = bq.load_run(ci_run_path)
    a, b = predict(ci_run, grid), predict(loaded, grid)
    cols = ["mean_lower", "mean_median", "mean_upper", "pred_lower", "pred_median", "pred_upper"]
    np.testing.assert_allclose(b[cols].to_numpy(float), a[cols].to_numpy(float), rtol=1e-12)
    assert loaded.diagnostics == ci_run.diagnostics


def test_ci_run_bands_are_sane(ci_run):
    """On a real posterior: a new family is less certain than OLMo (368 rows), and a new
    measurement is less certain than the law's mean."""
    new = predict(ci_run, default_grid())
    olmo = predict(ci_run, default_grid(family="OLMo"))
    width = lambda t, b: np.log(t[f"{b}_upper"] / t[f"{b}_lower"])  # noqa: E731
    assert (width(new, "mean") > width(olmo, "mean")).all()
    assert (width(olmo, "pred") > width(olmo, "mean")).all()
    # QiD falls with bits for the new family's median (the data say so firmly)
    for n in new["params"].unique():
        med = new.loc[new["params"] == n].sort_values("bits")["mean_median"].to_numpy()
        assert (np.diff(med) < 0).all()


# --- the gate on fabricated draws ------------------------------------------------------------


def fabricated(rng, *, shift=0.0, divergent=0, chains=4, draws=1000) -> az.InferenceData:
    """iid draws (a perfect sampler), optionally with chain 0 shifted and some divergences."""
    a = rng.standard_normal((chains, draws))
    a[0] += shift
    b = rng.standard_normal((chains, draws, 3))
    diverging = np.zeros((chains, draws), bool)
    diverging.flat[:divergent] = True
    return az.InferenceData(
        posterior=xr.Dataset({"a": (("chain", "draw"), a), "b": (("chain", "draw", "level"), b),
                              "z_hidden": (("chain", "draw"), np.zeros((chains, draws)))}),
        sample_stats=xr.Dataset({"diverging": (("chain", "draw"), diverging),
                                 "energy": (("chain", "draw"), rng.standard_normal((chains, draws)))}),
    )


def test_gate_passes_on_ideal_draws():
    diag = check_convergence(fabricated(np.random.default_rng(0)))
    assert diag.passed, diag.problems
    assert diag.divergences == 0 and diag.draws == 4000
    assert diag.max_rhat < MAX_RHAT and diag.min_ess_bulk > MIN_ESS


def test_gate_flags_divergences_and_rhat():
    diag = check_convergence(fabricated(np.random.default_rng(1), shift=3.0, divergent=7))
    assert not diag.passed
    assert diag.divergences == 7
    assert diag.max_rhat > 1.1 and diag.worst_rhat == "a"
    problems = " | ".join(diag.problems)
    assert "7 divergent transitions" in problems
    assert "R-hat" in problems and "(a)" in problems
    assert diag.format().startswith("convergence gate: FAILED")
    assert "problem: 7 divergent transitions" in diag.format()


def test_gate_flags_low_ess_and_bfmi():
    rng = np.random.default_rng(2)
    idata = fabricated(rng, draws=100)
    walk = np.cumsum(rng.standard_normal((4, 100)), axis=1)  # energy that barely moves: low BFMI
    idata.sample_stats["energy"] = (("chain", "draw"), walk)
    sticky = np.repeat(rng.standard_normal((4, 10)), 10, axis=1)  # 10 distinct values per chain
    idata.posterior["a"] = (("chain", "draw"), sticky)
    diag = check_convergence(idata)
    problems = " | ".join(diag.problems)
    assert "ESS" in problems and "BFMI" in problems


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # R-hat of constant chains
def test_gate_ignores_sampler_coordinates_by_default():
    """u_* (internal coordinates) and *_log__ (nutpie's transformed copies) are not what users read;
    their z_* and untransformed counterparts are checked instead."""
    idata = fabricated(np.random.default_rng(3))
    stuck = np.repeat([[0.0], [5.0], [0.0], [5.0]], 1000, axis=1)
    idata.posterior["u_hidden"] = (("chain", "draw"), stuck)
    idata.posterior["sd_hidden_log__"] = (("chain", "draw"), stuck)
    assert check_convergence(idata).passed
    assert not check_convergence(idata, var_names=["a", "u_hidden"]).passed
    idata.posterior["z_effect"] = (("chain", "draw"), stuck)
    assert not check_convergence(idata).passed


def test_diagnostics_json_round_trip():
    diag = check_convergence(fabricated(np.random.default_rng(4), divergent=2))
    assert Diagnostics.from_json(diag.to_json()) == diag


# --- reproducibility -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_fits(reference, default_spec):
    """Three small fits on 60 rows of 3 families: two with one seed, one with another."""
    rng = np.random.default_rng(0)
    frame = reference.frame
    idx = np.concatenate([rng.choice(np.flatnonzero(frame["family"] == f), 20, replace=False)
                          for f in ("OPT", "LLaMA-1", "OLMo")])
    data = Dataset(frame.iloc[np.sort(idx)].reset_index(drop=True), "<tiny subset>", ())
    logs: list[str] = []
    runs = []
    for seed in (123, 123, 124):
        cfg = SamplerConfig(sampler="nutpie", chains=2, tune=200, draws=100, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            runs.append(bq.fit(default_spec, data, cfg, log=logs.append))
    return data, runs, logs


def test_same_seed_gives_bitwise_identical_draws(tiny_fits):
    _, (a, b, _), _ = tiny_fits
    assert set(a.idata.posterior.data_vars) == set(b.idata.posterior.data_vars)
    for name in a.idata.posterior.data_vars:
        np.testing.assert_array_equal(a.idata.posterior[name].to_numpy(), b.idata.posterior[name].to_numpy(),
                                      err_msg=name)
    np.testing.assert_array_equal(a.idata.log_likelihood["log_qid"].to_numpy(),
                                  b.idata.log_likelihood["log_qid"].to_numpy())
    assert a.diagnostics == b.diagnostics
    grid = default_grid()
    pd.testing.assert_frame_equal(predict(a, grid), predict(b, grid), check_exact=True)


def test_other_seed_gives_other_draws(tiny_fits):
    _, (a, _, c), _ = tiny_fits
    assert not np.array_equal(a.idata.posterior["sigma"].to_numpy(), c.idata.posterior["sigma"].to_numpy())


def test_tiny_fit_contents(tiny_fits):
    data, runs, logs = tiny_fits
    run = runs[0]
    assert run.levels["family"] == ("LLaMA-1", "OLMo", "OPT")
    assert run.data_sha256 == data.sha256 and run.idata.attrs["data_path"] == "<tiny subset>"
    ll = run.idata.log_likelihood["log_qid"]
    assert ll.shape == (2, 100, 60) and np.isfinite(ll.to_numpy()).all()
    pd.testing.assert_frame_equal(run.data()[list(data.frame.columns)], data.frame)
    assert any("building model" in m and "60 rows" in m for m in logs)
    assert any("sampling with nutpie" in m and "seed 123" in m for m in logs)
    assert all(isinstance(m, str) and "\n" not in m for m in logs)
    assert set(GROUPS) == set(run.levels)


# --- sampler settings ------------------------------------------------------------------------


def test_presets():
    assert SamplerConfig.preset("default") == SamplerConfig()
    ci = SamplerConfig.preset("ci")
    assert (ci.sampler, ci.chains, ci.tune, ci.draws) == ("nutpie", 2, 400, 300)
    assert SamplerConfig.preset("ci", seed=5).seed == 5
    assert set(SAMPLERS) == {"nutpie", "pymc", "numpyro"}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"sampler": "stan"}, "unknown sampler 'stan'"),
        ({"draws": 0}, "draws must be a positive integer"),
        ({"draws": 10.0}, "draws must be a positive integer"),
        ({"chains": "2"}, "chains must be a positive integer"),
        ({"tune": -1}, "tune must be a positive integer"),
        ({"cores": 0}, "cores must be a positive integer"),
        ({"target_accept": 1.0}, "target_accept must be in (0, 1)"),
        ({"target_accept": 0.0}, "target_accept must be in (0, 1)"),
    ],
)
def test_sampler_config_validation(kwargs, fragment):
    with pytest.raises(BayesqidError) as err:
        SamplerConfig(**kwargs)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_sampler_config_accepts_zero_tune_and_warns_on_one_chain():
    assert SamplerConfig(tune=0).tune == 0
    with pytest.warns(UserWarning, match="R-hat needs at least 2 chains"):
        SamplerConfig(chains=1)


def test_unknown_preset():
    with pytest.raises(BayesqidError, match=r"unknown sampler preset 'fast'; known: .*ci.*default"):
        SamplerConfig.preset("fast")
