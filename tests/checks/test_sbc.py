"""Simulation-based calibration: simulator, ranks, uniformity tests, resume, CLI, report.

The pass/fail controls (real NUTS fits of many replicates on a Dask LocalCluster) are slow:
run with ``--run-slow`` or ``BAYESQID_RUN_SLOW=1``.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesqid as bq
from bayesqid.checks import sbc, simulate
from bayesqid.cli import main
from bayesqid.data.design import build_design
from bayesqid.lang.likelihood import draw_residuals
from bayesqid.errors import BayesqidError
from bayesqid.report.attached import sbc_section
from bayesqid.report.builder import build_report
from helpers import one_line

#: Sampler settings of the real replicates here: a fit of the tiny design takes seconds.
TINY_SAMPLER = bq.SamplerConfig(chains=2, draws=200, tune=300, cores=1)
SYNC = "synchronous"


@pytest.fixture(scope="module")
def tiny(reference) -> bq.Dataset:
    return simulate.tiny_design(reference)


# --- simulator ---------------------------------------------------------------------------------


def test_tiny_design_is_a_subsample(reference, tiny):
    frame = tiny.frame
    assert 20 <= len(frame) <= 60
    assert frame["family"].nunique() == 3
    merged = frame.merge(reference.frame, on=list(frame.columns), how="left", indicator=True)
    assert (merged["_merge"] == "both").all()


def test_truth_is_named_like_the_fitted_variables(mock_run, default_spec, tiny):
    design = build_design(tiny.frame)
    truth = simulate.draw_truth(default_spec, design, np.random.default_rng(0))
    post = mock_run.idata.posterior
    assert set(truth) <= set(post.data_vars)
    for name, value in truth.items():
        if name.startswith("z_"):
            group = name.split("_")[1] if not name.startswith("z_eval_set") else "eval_set"
            assert np.shape(value) == (len(design.levels[group]),)
        else:
            assert np.ndim(value) == 0
    assert truth["sigma"] > 0 and all(truth[k] > 0 for k in truth if k.startswith("sd_"))


def test_simulation_is_seeded_and_shift_changes_only_the_data(default_spec, tiny):
    design = build_design(tiny.frame)

    def once(shift=None):
        rng = np.random.default_rng(5)
        truth = simulate.draw_truth(default_spec, design, rng)
        return truth, simulate.simulate_qid(default_spec, design, truth, rng, shift)

    (t1, q1), (_, q2), (t3, q3) = once(), once(), once({"gamma": 2.0})
    assert np.array_equal(q1, q2) and (q1 > 0).all()
    assert t1["gamma"] == t3["gamma"]  # the recorded truth is the prior draw ...
    log_bits = design.x["log_bits"]
    # ... while the data follow gamma + 2: log QiD moves by -2 log(P/4), exactly, row by row.
    assert np.allclose(np.log(q3) - np.log(q1), -2.0 * log_bits)


def test_thinned_ranks_and_rank_draws():
    draws = np.arange(1000.0)
    assert sbc.thinned_rank(draws, -1.0, 50) == 0
    assert sbc.thinned_rank(draws, 1e9, 50) == 50
    assert sbc.thinned_rank(draws, 500.0, 11) == 5
    assert sbc.rank_draws([350.0, 80.4, 900.0]) == 80
    assert sbc.rank_draws([3.0]) == sbc.MIN_RANK_DRAWS
    assert sbc.rank_draws([5000.0], n_samples=400) == sbc.MAX_RANK_DRAWS
    assert sbc.rank_draws([5000.0], max_draws=1000, n_samples=400) == 400


# --- uniformity and verdict --------------------------------------------------------------------


def _ranks(u_by_quantity: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"replicate": np.arange(len(u)), "quantity": q, "u": u})
                      for q, u in u_by_quantity.items()], ignore_index=True)


def test_uniformity_accepts_uniform_and_flags_piled_up_ranks():
    rng = np.random.default_rng(1)
    tests = sbc.uniformity(_ranks({"a": rng.uniform(size=100), "b": rng.uniform(size=100) ** 3}))
    assert list(tests["quantity"]) == ["a", "b"]
    assert tests["bins"].tolist() == [20, 20]
    assert not tests.loc[0, "flagged"] and tests.loc[1, "flagged"]
    assert tests.loc[1, "ks_p"] < 1e-6 and tests.loc[1, "chi2_p"] < 1e-6
    assert tests["threshold"].iloc[0] == pytest.approx(sbc.ALPHA / 4)
    line = sbc.verdict(tests, 100)
    assert line.startswith("SBC verdict: FAIL: ranks of b ") and "\n" not in line


def test_false_alarm_rate_of_the_verdict_is_below_alpha():
    """Exactly uniform ranks of 7 quantities: the verdict fails in at most ~ALPHA of replications."""
    rng = np.random.default_rng(2)
    fails = sum(bool(sbc.uniformity(_ranks({f"q{j}": rng.uniform(size=30) for j in range(7)}))["flagged"]
                     .any()) for _ in range(200))
    assert fails <= 2 * sbc.ALPHA * 200


# --- one real replicate ------------------------------------------------------------------------


@pytest.mark.nuts
def test_one_real_replicate(default_spec, tiny):
    frame = sbc.sbc_replicate(default_spec, tiny, TINY_SAMPLER, index=0, root_seed=11)
    design = build_design(tiny.frame)
    assert list(frame["quantity"]) == sbc.quantity_names(default_spec, design)
    assert len(frame) == 7 and frame["replicate"].eq(0).all()
    n = frame["n_draws"].iloc[0]
    assert sbc.MIN_RANK_DRAWS <= n <= sbc.MAX_RANK_DRAWS
    assert frame["rank"].between(0, n).all()
    assert frame["u"].between(0, 1).all()
    assert np.isfinite(frame[["truth", "post_mean", "post_sd", "ess_bulk"]].to_numpy()).all()


# --- resume ------------------------------------------------------------------------------------


class _Interrupting:
    """Stands in for ``sbc_replicate``: quick synthetic ranks, Ctrl-C at one replicate."""

    def __init__(self, stop_at: int | None) -> None:
        self.stop_at = stop_at
        self.calls: list[int] = []

    def __call__(self, *, index: int, root_seed: int, **_kw) -> pd.DataFrame:
        if index == self.stop_at:
            raise KeyboardInterrupt
        self.calls.append(index)
        u = np.random.default_rng([root_seed, index]).uniform(size=2)
        return pd.DataFrame({"replicate": index, "quantity": ["a", "b"], "u": u, "gate_passed": True,
                             "seconds": 0.1})


def test_interrupted_sbc_resumes_without_redoing_replicates(tmp_path, monkeypatch, default_spec, tiny):
    out = tmp_path / "sbc"
    first = _Interrupting(stop_at=3)
    monkeypatch.setattr(sbc, "sbc_replicate", first)
    with pytest.raises(KeyboardInterrupt):
        sbc.run_sbc(default_spec, tiny, TINY_SAMPLER, replicates=6, seed=3, out=out, scheduler=SYNC)
    assert first.calls == [0, 1, 2]
    stored = sorted(p.name for p in (out / sbc.STORE_DIR).iterdir())
    assert stored == [f"rep-{i:05d}.parquet" for i in range(3)]

    second = _Interrupting(stop_at=None)
    monkeypatch.setattr(sbc, "sbc_replicate", second)
    result = sbc.run_sbc(default_spec, tiny, TINY_SAMPLER, replicates=6, seed=3, out=out, scheduler=SYNC)
    assert second.calls == [3, 4, 5]
    assert result.summary["resumed"] == 3 and result.ranks["replicate"].nunique() == 6
    for name in (sbc.RANKS_FILE, sbc.TESTS_FILE, sbc.SUMMARY_FILE, sbc.ECDF_FILE):
        assert (out / name).is_file()
    again = sbc.load_sbc(out)
    assert again.verdict == result.verdict and len(again.ranks) == 12
    # Ranks resumed from the store equal those an uninterrupted run would have recorded.
    fresh = sbc.run_sbc(default_spec, tiny, TINY_SAMPLER, replicates=6, seed=3, out=tmp_path / "fresh",
                        scheduler=SYNC)
    pd.testing.assert_frame_equal(fresh.ranks, result.ranks)


def test_directory_of_other_settings_is_refused(tmp_path, monkeypatch, default_spec, tiny):
    monkeypatch.setattr(sbc, "sbc_replicate", _Interrupting(stop_at=None))
    sbc.run_sbc(default_spec, tiny, TINY_SAMPLER, replicates=2, seed=3, out=tmp_path, scheduler=SYNC)
    with pytest.raises(BayesqidError, match="other settings \\(root_seed\\)"):
        sbc.run_sbc(default_spec, tiny, TINY_SAMPLER, replicates=2, seed=4, out=tmp_path, scheduler=SYNC)
    settings = json.loads((tmp_path / sbc.SETTINGS_FILE).read_text())
    assert settings["root_seed"] == 3 and "seed" not in settings["sampler"]


# --- CLI and report ----------------------------------------------------------------------------


def test_cli_bad_inputs_are_one_line_exit_2(tmp_path, capsys):
    assert main(["sbc", "--spec", "no-such-spec", "--out", str(tmp_path / "s")]) == 2
    assert "unknown spec" in one_line(capsys.readouterr().err)
    with pytest.raises(SystemExit) as exc:
        main(["sbc", "--replicates", "0"])
    assert exc.value.code == 2
    assert "positive integer" in one_line(capsys.readouterr().err)
    assert main(["report", str(tmp_path / "missing.nc"), "--out", str(tmp_path / "r.html"),
                 "--sbc", str(tmp_path)]) == 2
    one_line(capsys.readouterr().err)


def test_cli_report_with_sbc_dir_that_is_not_one(tmp_path, mock_run, capsys):
    path = mock_run.save(tmp_path / "m.nc")
    assert main(["report", str(path), "--out", str(tmp_path / "r.html"), "--sbc", str(tmp_path)]) == 2
    assert "not a finished SBC directory" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "r.html").exists()


def test_report_shows_the_calibration(tmp_path, monkeypatch, default_spec, tiny, mock_run):
    monkeypatch.setattr(sbc, "sbc_replicate", _Interrupting(stop_at=None))
    result = sbc.run_sbc(default_spec, tiny, TINY_SAMPLER, replicates=10, seed=3, out=tmp_path,
                         scheduler=SYNC)
    section = sbc_section(sbc.load_sbc(tmp_path))
    assert section.id == "sbc" and result.verdict in section.body
    assert section.body.count("data:image/png;base64,") == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page = build_report([mock_run], extra=[section])
    assert 'id="sbc"' in page and page.index('id="sbc"') < page.index('id="data"')


# --- the controls (slow) -----------------------------------------------------------------------

#: Root seed of the controls. Not tuned: the first seed tried.
CONTROL_SEED = 20261122


@pytest.mark.slow
def test_sbc_passes_for_the_correct_model(reference, default_spec, tmp_path):
    """Prior, simulator and model agree: no quantity may be flagged (false-alarm rate <= 1%)."""
    result = sbc.run_sbc(default_spec, simulate.tiny_design(reference), TINY_SAMPLER, replicates=10,
                         seed=CONTROL_SEED, out=tmp_path, n_workers=2)
    assert result.summary["failed"] == 0
    assert result.passed, result.verdict + "\n" + result.tests.to_string()


@pytest.mark.slow
def test_sbc_fails_for_a_misspecified_simulator(default_spec, tiny, tmp_path):
    """Negative control: the simulator's bit exponent is the prior draw + 6 (three prior sds), the
    recorded truth the prior draw. The family and quantizer exponent effects absorb part of the
    shift (with +2, the posterior moved by ~1.3 on average and 12 replicates only just failed),
    but not most of it: the truth then sits below nearly every posterior draw of gamma.

    In-process, on the module's tiny design (the same rows as the passing control's): each
    replicate's seeds derive from the root seed and its index, so the ranks are those of a cluster
    run (the passing control covers the cluster), without two worker processes importing the
    sampling stack and compiling the model the module's one real replicate has compiled."""
    result = sbc.run_sbc(default_spec, tiny, TINY_SAMPLER, replicates=10,
                         seed=CONTROL_SEED, out=tmp_path, scheduler=SYNC, shift={"gamma": 6.0})
    assert not result.passed, result.verdict
    flagged = set(result.tests.loc[result.tests["flagged"], "quantity"])
    assert "gamma" in flagged, result.tests.to_string()
    assert result.verdict.startswith("SBC verdict: FAIL")


def test_truth_and_simulation_with_student_t_offsets_and_a_scale_per_family(default_spec, tiny):
    """Student-t offsets draw their truths from the Student-t; a residual scale per family draws its sd and z and
    simulates each family's rows with its own scale (Normal offsets and one scale: the same
    numbers from the generator as before)."""
    from dataclasses import replace

    design = build_design(tiny.frame)
    spec = replace(default_spec, likelihood=replace(default_spec.likelihood, sigma_by="family"),
                   effects=tuple(replace(e, nu={"beta": 3}) if e.group == "family" else e
                                 for e in default_spec.effects))
    truth = simulate.draw_truth(spec, design, np.random.default_rng(2))
    assert truth["sd_family_log_sigma"] > 0 and truth["z_family_log_sigma"].shape == (3,)
    base = simulate.draw_truth(default_spec, design, np.random.default_rng(2))
    assert "sd_family_log_sigma" not in base
    np.testing.assert_array_equal(base["z_family_alpha"], truth["z_family_alpha"])  # Normal: unchanged
    # beta's offsets come from draw_z's Student-t (its distribution is tested in test_draws).
    assert not np.array_equal(base["z_family_beta"], truth["z_family_beta"])
    # Zero residuals but for one family: the simulation's spread is that family's scale alone.
    truth |= {"z_family_log_sigma": np.array([3.0, 0.0, 0.0]), "sd_family_log_sigma": 1.0}
    log_q = np.log(simulate.simulate_qid(spec, design, truth, np.random.default_rng(0)))
    mu = simulate.truth_log_mu(spec, design, truth, np.random.default_rng(0))  # draws nothing: no new levels
    eps = draw_residuals(spec.likelihood, np.random.default_rng(0), (design.n_rows,))
    scale = truth["sigma"] * np.exp(np.where(design.codes["family"] == 0, 3.0, 0.0))
    np.testing.assert_allclose(log_q, mu + scale * eps, rtol=1e-9)
