"""Prior sensitivity by power-scaling: the log prior, the table, the CLI and the report section."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
from scipy import stats

from bayesqid.checks import sensitivity
from bayesqid.cli import main
from bayesqid.lang.effects import sd_name, z_name
from bayesqid.lang.priors import PRIOR_FAMILIES, Prior
from bayesqid.report.sections import sensitivity_section
from bayesqid.sampling.draws import flat
from helpers import one_line

ARGS = {"normal": {"mu": 1.0, "sigma": 2.0}, "student_t": {"nu": 3.0, "mu": 1.0, "sigma": 2.0},
        "halfnormal": {"sigma": 2.0}, "exponential": {"lam": 3.0}, "lognormal": {"mu": 0.5, "sigma": 0.7},
        "gamma": {"alpha": 2.0, "beta": 10.0}}


@pytest.mark.parametrize("dist", sorted(PRIOR_FAMILIES))
def test_scipy_prior_has_the_pymc_density(dist):
    prior = Prior(dist, ARGS[dist])
    x = np.array([0.05, 0.3, 1.2, 4.0])
    expected = pm.logp(prior.family.pymc.dist(**prior.args), x).eval()
    assert np.allclose(prior.to_scipy().logpdf(x), expected)


def test_log_prior_terms(mock_run):
    spec, idata = mock_run.spec, mock_run.idata
    lp = sensitivity.log_prior(mock_run)
    assert set(lp.dims) == {"chain", "draw"}
    names = set(spec.law_obj.param_names) | {"sigma"}
    names |= {f(e.group, p) for e in spec.effects for p in e.params for f in (sd_name, z_name)}
    assert set(lp.data_vars) == names
    gamma = spec.prior("gamma")
    assert np.allclose(lp["gamma"].to_numpy().ravel(),
                       stats.norm(gamma.args["mu"], gamma.args["sigma"]).logpdf(flat(idata, "gamma")))
    z = flat(idata, z_name("family", "beta"))
    assert np.allclose(lp[z_name("family", "beta")].to_numpy().ravel(), stats.norm.logpdf(z).sum(axis=1))


def test_sensitivity_groups_leave_the_run_untouched(mock_run):
    idata = sensitivity.with_sensitivity_groups(mock_run)
    assert "log_prior" in idata.groups() and "log_prior" not in mock_run.idata.groups()
    assert sensitivity.TABLE_VAR in idata.posterior and sensitivity.TABLE_VAR not in mock_run.idata.posterior
    assert idata.posterior[sensitivity.TABLE_VAR].sizes[sensitivity.TABLE_DIM] == 12


@pytest.mark.nuts
def test_prior_sensitivity_table(ci_run):
    table = sensitivity.prior_sensitivity(ci_run)
    assert list(table.columns) == ["quantity", "prior_sensitivity", "likelihood_sensitivity", "diagnosis"]
    spec = ci_run.spec
    n_scales = sum(len(e.params) for e in spec.effects)
    assert len(table) == len(spec.law_obj.param_names) + n_scales + 1 + 12
    assert table["quantity"].str.startswith("log_qid_1e14[N=").sum() == 12
    values = table[["prior_sensitivity", "likelihood_sensitivity"]].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all()
    # sigma is pinned by ~1000 residuals: its posterior follows the likelihood more than the prior.
    sigma = table.set_index("quantity").loc["sigma"]
    assert sigma["likelihood_sensitivity"] > max(sensitivity.THRESHOLD, 2 * sigma["prior_sensitivity"])
    for r in table.itertuples():
        assert r.diagnosis == sensitivity.diagnosis(r.prior_sensitivity, r.likelihood_sensitivity)


def test_diagnosis_convention():
    assert sensitivity.diagnosis(0.1, 0.1) == "possible prior-data conflict"
    assert sensitivity.diagnosis(0.1, 0.01) == "strong prior / weak likelihood"
    assert sensitivity.diagnosis(0.01, 0.1) == "-"
    assert sensitivity.diagnosis(0.01, 0.01) == "-"


def test_report_section(mock_run):
    section = sensitivity_section(mock_run)
    assert section is not None and section.id == "sensitivity"
    assert "log_qid_1e14[N=7e+09, P=3]" in section.body


def test_cli_writes_the_table_atomically(mock_run, tmp_path, capsys):
    run_path = mock_run.save(tmp_path / "m.nc")
    out = tmp_path / "sens.csv"
    assert main(["sensitivity", str(run_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "prior" in printed and "log_qid_1e14[N=4.05e+11, P=2]" in printed
    text = out.read_text()
    assert text.splitlines()[0] == ("quantity,prior_sensitivity,likelihood_sensitivity,diagnosis,"
                                    "convergence_gate")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_cli_bad_run_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.nc"
    bad.write_text("not a run")
    assert main(["sensitivity", str(bad)]) == 2
    assert "not a readable NetCDF run" in one_line(capsys.readouterr().err)
    assert main(["sensitivity", str(tmp_path / "missing.nc")]) == 2
    assert "does not exist" in one_line(capsys.readouterr().err)


def test_log_prior_of_student_t_offsets_and_scales_per_family(reference, default_spec):
    """Student-t offsets enter with their marginal Student-t prior on z; a residual scale per
    family adds its sd's prior and the z's Normal one."""
    from dataclasses import replace

    from conftest import make_mock_run

    spec = replace(default_spec, likelihood=replace(default_spec.likelihood, sigma_by="family"),
                   effects=tuple(replace(e, nu={"beta": 3}) if e.group == "family" else e
                                 for e in default_spec.effects))
    run = make_mock_run(reference, spec, draws=20)
    lp = sensitivity.log_prior(run)
    assert {"sd_family_log_sigma", "z_family_log_sigma"} <= set(lp.data_vars)
    z = run.idata.posterior["z_family_beta"].values
    np.testing.assert_allclose(lp["z_family_beta"].values, stats.t(3).logpdf(z).sum(axis=-1), rtol=1e-12)
    z_s = run.idata.posterior["z_family_log_sigma"].values
    np.testing.assert_allclose(lp["z_family_log_sigma"].values, stats.norm.logpdf(z_s).sum(axis=-1), rtol=1e-12)
