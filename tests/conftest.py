"""Shared fixtures: the reference data, one real NUTS fit per session, and a sampling-free mock run.

Slow tests (parameter recovery) are skipped unless ``--run-slow`` is given or the environment
sets ``BAYESQID_RUN_SLOW=1``.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import asdict

import arviz as az
import numpy as np
import pymc as pm
import pytest
import xarray as xr

import bayesqid as bq
from bayesqid.constants import GROUPS, OBS
from bayesqid.data.design import build_design
from bayesqid.engines.direct import build_model
from bayesqid.errors import ConvergenceWarning
from bayesqid.sampling.diagnostics import check_convergence
from bayesqid.sampling.draws import log_likelihood
from bayesqid.sampling.fit import constant_data, package_versions
from bayesqid.sampling.run import Run

#: Seed of the mock run's prior draws and of the session's NUTS fit.
MOCK_SEED = 20241122


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="run tests marked slow (also: BAYESQID_RUN_SLOW=1)")


def pytest_configure(config: pytest.Config) -> None:
    # Environmental, not ours: pip-installed PyTensor without a BLAS to link.
    config.addinivalue_line("filterwarnings", "ignore:PyTensor could not link to a BLAS:UserWarning")
    if config.pluginmanager.hasplugin("xdist"):
        # `make test` runs two worker processes: tests sharing a costly fixture go to one worker,
        # the longest first (parallel.py).
        from parallel import WorkerGroups

        config.pluginmanager.register(WorkerGroups(config), "bayesqid-worker-groups")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow") or os.environ.get("BAYESQID_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: give --run-slow or set BAYESQID_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def reference() -> bq.Dataset:
    """The bundled reference dataset (validated)."""
    return bq.load_reference()


@pytest.fixture(scope="session")
def default_spec() -> bq.ModelSpec:
    """The default spec."""
    return bq.load_spec()


@pytest.fixture(scope="session")
def sharp_spec() -> bq.ModelSpec:
    """The previous default, ``ouyang_sharp``: family offsets without lineage or size offsets, for
    tests of how one group's offsets compose that other groups' draws would blur."""
    return bq.load_spec("ouyang_sharp")


# --- the one real NUTS fit of the session -------------------------------------------------------


@pytest.fixture(scope="session")
def ci_fit(reference, default_spec):
    """One small real fit of the default spec on the reference data, with the warnings it raised.

    The "ci" preset (nutpie, 2 chains, 400 tune, 300 draws) is too short to pass the gate, so
    the ConvergenceWarning is recorded here, not shown; tests inspect it.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = bq.fit(default_spec, reference, bq.SamplerConfig.preset("ci"))
    return run, [w for w in caught if issubclass(w.category, ConvergenceWarning)]


@pytest.fixture(scope="session")
def ci_run(ci_fit) -> Run:
    """The session's real run (shared: tests must not mutate it)."""
    return ci_fit[0]


@pytest.fixture
def session_fit(monkeypatch, ci_fit, default_spec, reference):
    """``bq.fit`` that answers the session's own fit (same spec, data, settings) from ``ci_fit``.

    A fit is seeded, so the same arguments give the same draws: code under test that fits the
    default spec on the reference data with the "ci" preset (the README's snippet) gets a copy of
    the session's run instead of sampling it again (~1-2 minutes on 2 cores). Any other call
    samples as usual.
    """
    real = bq.fit

    def fit(spec, dataset, config=None, **kwargs):
        same = (not kwargs and spec == default_spec and dataset.sha256 == reference.sha256
                and config == bq.SamplerConfig.preset("ci"))
        if not same:
            return real(spec, dataset, config, **kwargs)
        run = ci_fit[0]
        return Run(spec=run.spec, idata=run.idata.copy(), diagnostics=run.diagnostics)

    monkeypatch.setattr(bq, "fit", fit)
    return fit


@pytest.fixture(scope="session")
def ci_run_path(ci_run, tmp_path_factory) -> str:
    """``ci_run`` saved to NetCDF once per session."""
    path = tmp_path_factory.mktemp("runs") / "ci.nc"
    ci_run.save(path)
    return str(path)


# --- a run without sampling ------------------------------------------------------------------


def _as_posterior(prior: xr.Dataset, chains: int) -> xr.Dataset:
    """Relabel one chain of prior draws as ``chains`` chains of posterior draws."""
    one = prior.isel(chain=0, drop=True)
    per_chain = one.sizes["draw"] // chains
    parts = [one.isel(draw=slice(c * per_chain, (c + 1) * per_chain)).assign_coords(draw=np.arange(per_chain))
             for c in range(chains)]
    post = xr.concat(parts, dim="chain").assign_coords(chain=np.arange(chains))
    return post.transpose("chain", "draw", ...)


def make_mock_run(dataset: bq.Dataset, spec: bq.ModelSpec, *, chains: int = 2, draws: int = 100,
                  seed: int = MOCK_SEED) -> Run:
    """A :class:`Run` assembled like :func:`bayesqid.fit.fit` does, from prior draws (no NUTS).

    The likelihood is a Potential and is ignored by prior sampling (PyMC warns about it; the
    warning is expected and silenced here). The draws are therefore prior draws: the run has
    the right structure, names, dims and attrs, but its "posterior" is not informed by data.
    """
    rng = np.random.default_rng(seed)
    frame = dataset.frame
    design = build_design(frame)
    qid = frame["qid"].to_numpy(float)
    model = build_model(spec, design, qid)
    names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Potentials.*")
        prior = pm.sample_prior_predictive(draws=chains * draws, model=model, var_names=names,
                                           random_seed=rng)
    posterior = _as_posterior(prior.prior, chains)
    coords = {"chain": posterior.chain, "draw": posterior.draw}
    sample_stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros((chains, draws), dtype=bool)),
         "energy": (("chain", "draw"), rng.standard_normal((chains, draws)))},
        coords=coords,
    )
    idata = az.InferenceData(
        posterior=posterior,
        sample_stats=sample_stats,
        observed_data=xr.Dataset({"qid": ((OBS,), qid)}),
        constant_data=constant_data(frame),
    )
    # add_groups, not attribute assignment: an InferenceData attribute set by assignment is not a
    # group, is not listed by groups() and is not saved (see test_fit.py / the fit.py bug).
    idata.add_groups(log_likelihood=log_likelihood(idata, spec, design, qid).rename({"obs": OBS}))
    diagnostics = check_convergence(idata)
    config = bq.SamplerConfig(draws=draws, tune=0, chains=chains, seed=seed)
    idata.attrs.update({
        "bayesqid_spec": spec.to_json(),
        "data_sha256": dataset.sha256,
        "data_path": dataset.path,
        "seed": seed,
        "sampler": json.dumps(asdict(config)),
        "versions": json.dumps(package_versions()),
        "diagnostics": diagnostics.to_json(),
        "sampling_seconds": 0.0,
        "command": " ".join(sys.argv),
        "levels": json.dumps({g: [str(v) for v in design.levels[g]] for g in GROUPS}),
        "created_by": "bayesqid",
    })
    return Run(spec=spec, idata=idata, diagnostics=diagnostics)


@pytest.fixture(scope="session")
def mock_run(reference, default_spec) -> Run:
    """A run of the default spec on the reference data built from prior draws (2 x 100), in ~2 s.

    Shared by the session: tests must not mutate it (copy ``run.idata`` first).
    """
    return make_mock_run(reference, default_spec)


@pytest.fixture(scope="session")
def sharp_mock_run(reference, sharp_spec) -> Run:
    """A mock run (as :func:`mock_run`) of ``ouyang_sharp``, a spec without lineage or size offsets:
    what a run saved before those groups existed was fitted with."""
    return make_mock_run(reference, sharp_spec)
