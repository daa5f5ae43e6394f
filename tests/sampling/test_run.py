"""Saved runs: NetCDF round trip, contents, checked loading and atomic saving (mock run: no NUTS)."""

from __future__ import annotations

import json
import os
import stat

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesqid.constants import GROUPS, OBS
from bayesqid.data.dataset import SCHEMA_COLUMNS
from bayesqid.errors import RunError
from bayesqid.lang.spec import ModelSpec
from bayesqid.questions.predict import BAND_COLUMNS, default_grid, predict
from bayesqid.sampling.diagnostics import Diagnostics
from bayesqid.sampling.run import REQUIRED_ATTRS, Run, load_run, save_run

BANDS = list(BAND_COLUMNS[:6])


@pytest.fixture(scope="module")
def saved(mock_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "mock.nc"
    returned = mock_run.save(path)
    assert returned == path
    return path


@pytest.fixture(scope="module")
def loaded(saved):
    return load_run(saved)


def grid_for(run) -> pd.DataFrame:
    known = default_grid(family="OPT", params=(1.2e9,), bits=(3, 4), eval_set="c4")
    return pd.concat([default_grid(), known], ignore_index=True)


def assert_one_line(err: pytest.ExceptionInfo, *fragments: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


# --- round trip ------------------------------------------------------------------------------


def test_loaded_run_predicts_the_same(mock_run, loaded):
    grid = grid_for(mock_run)
    before, after = predict(mock_run, grid), predict(loaded, grid)
    assert list(before["new_levels"]) == list(after["new_levels"])
    np.testing.assert_allclose(after[BANDS].to_numpy(float), before[BANDS].to_numpy(float), rtol=1e-12)


def test_loaded_run_predicts_bitwise_the_same(mock_run, loaded):
    grid = grid_for(mock_run)
    pd.testing.assert_frame_equal(predict(mock_run, grid), predict(loaded, grid), check_exact=True)


def test_resaved_run_is_bitwise_stable(loaded, tmp_path):
    again = load_run(loaded.save(tmp_path / "again.nc"))
    grid = grid_for(loaded)
    pd.testing.assert_frame_equal(predict(loaded, grid), predict(again, grid), check_exact=True)
    assert again.spec == loaded.spec


def test_posterior_round_trips(mock_run, loaded):
    for name, da in mock_run.idata.posterior.data_vars.items():
        np.testing.assert_array_equal(loaded.idata.posterior[name].to_numpy(), da.to_numpy(), err_msg=name)
        assert loaded.idata.posterior[name].dims == da.dims
    for g in GROUPS:
        assert list(loaded.idata.posterior[g].to_numpy()) == list(mock_run.levels[g])


def test_run_contents(mock_run, loaded, reference):
    for run in (mock_run, loaded):
        idata = run.idata
        groups = {"posterior", "log_likelihood", "sample_stats", "observed_data", "constant_data"}
        assert groups <= set(idata.groups())
        ll = idata.log_likelihood["log_qid"]
        post = idata.posterior
        assert ll.dims == ("chain", "draw", OBS)
        assert ll.shape == (post.sizes["chain"], post.sizes["draw"], len(reference.frame))
        assert np.isfinite(ll.to_numpy()).all()
        observed = idata.observed_data["qid"].to_numpy()
        np.testing.assert_array_equal(observed, reference.frame["qid"].to_numpy())
        assert idata.observed_data["qid"].dims == (OBS,)
        assert set(REQUIRED_ATTRS) <= set(idata.attrs)
        assert idata.attrs["created_by"] == "bayesqid"


def test_provenance_attrs(mock_run, loaded, reference, default_spec):
    for run in (mock_run, loaded):
        attrs = run.idata.attrs
        assert ModelSpec.from_json(str(attrs["bayesqid_spec"])).to_json() == default_spec.to_json()
        assert attrs["data_sha256"] == reference.sha256 == run.data_sha256
        assert run.seed == mock_run.seed and isinstance(run.seed, int)
        versions = json.loads(str(attrs["versions"]))
        assert {"bayesqid", "pymc", "pytensor", "arviz", "numpy", "python"} <= set(versions)
        assert Diagnostics.from_json(str(attrs["diagnostics"])) == run.diagnostics
        sampler = json.loads(str(attrs["sampler"]))
        assert sampler["seed"] == run.seed
        assert run.levels == {g: tuple(json.loads(str(attrs["levels"]))[g]) for g in GROUPS}


def test_loaded_diagnostics_and_spec_equal(mock_run, loaded):
    assert loaded.diagnostics == mock_run.diagnostics
    assert loaded.diagnostics.format() == mock_run.diagnostics.format()
    assert loaded.spec.to_json() == mock_run.spec.to_json()
    assert loaded.levels == mock_run.levels


def test_data_round_trips_the_canonical_frame(mock_run, loaded, reference):
    for run in (mock_run, loaded):
        frame = run.data()
        assert set(frame.columns) == set(SCHEMA_COLUMNS)
        pd.testing.assert_frame_equal(frame[list(SCHEMA_COLUMNS)], reference.frame)
        # per-channel rows keep their missing group size
        assert frame["group_size"].isna().sum() == reference.frame["group_size"].isna().sum() > 0


def test_run_is_frozen(mock_run):
    with pytest.raises(AttributeError):
        mock_run.spec = None  # type: ignore[misc]


# --- loading errors: one line, RunError ----------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(RunError) as err:
        load_run(tmp_path / "nosuch.nc")
    assert_one_line(err, "nosuch.nc", "does not exist")


def test_directory(tmp_path):
    with pytest.raises(RunError) as err:
        load_run(tmp_path)
    assert_one_line(err, str(tmp_path), "directory")


def test_truncated_file(saved, tmp_path):
    data = saved.read_bytes()
    path = tmp_path / "truncated.nc"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError) as err:
        load_run(path)
    assert_one_line(err, "truncated.nc", "not a readable NetCDF run")


@pytest.mark.parametrize("content", [b"", b"CDF\x01", "garbage"], ids=["empty", "netcdf3-magic", "random"])
def test_garbage(tmp_path, content):
    path = tmp_path / "garbage.nc"
    path.write_bytes(np.random.default_rng(0).bytes(4096) if content == "garbage" else content)
    with pytest.raises(RunError) as err:
        load_run(path)
    assert_one_line(err, "garbage.nc")


def test_foreign_netcdf(tmp_path):
    path = tmp_path / "foreign.nc"
    xr.Dataset({"a": ("x", [1.0, 2.0])}, attrs={"title": "not ours"}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(RunError) as err:
        load_run(path)
    assert_one_line(err, "foreign.nc", "not a bayesqid run")


def test_foreign_inference_data(tmp_path):
    path = tmp_path / "arviz.nc"
    az.from_dict(posterior={"mu": np.zeros((2, 10))}).to_netcdf(str(path), engine="h5netcdf")
    with pytest.raises(RunError) as err:
        load_run(path)
    assert_one_line(err, "arviz.nc", "not a bayesqid run", "bayesqid_spec")


def test_run_without_posterior(mock_run, tmp_path):
    idata = az.InferenceData(observed_data=mock_run.idata.observed_data)
    idata.attrs.update(mock_run.idata.attrs)
    path = tmp_path / "noposterior.nc"
    idata.to_netcdf(str(path), engine="h5netcdf")
    with pytest.raises(RunError) as err:
        load_run(path)
    assert_one_line(err, "not a bayesqid run", "posterior")


def with_attr(saved, tmp_path, name, value):
    idata = az.from_netcdf(saved, engine="h5netcdf")
    idata.attrs[name] = value
    path = tmp_path / f"bad_{name}.nc"
    idata.to_netcdf(str(path), engine="h5netcdf")
    return path


def test_stored_spec_of_another_version(saved, tmp_path, default_spec):
    raw = default_spec.to_dict() | {"spec_version": 99}
    path = with_attr(saved, tmp_path, "bayesqid_spec", json.dumps(raw))
    with pytest.raises(RunError) as err:
        load_run(path)
    assert_one_line(err, "cannot use the stored spec", "spec_version 99")


def test_stored_spec_with_unknown_law(saved, tmp_path, default_spec):
    path = with_attr(saved, tmp_path, "bayesqid_spec", json.dumps(default_spec.to_dict() | {"law": "gone"}))
    with pytest.raises(RunError) as err:
        load_run(path)
    assert_one_line(err, "cannot use the stored spec", "unknown law 'gone'")


@pytest.mark.parametrize(("name", "value"), [("bayesqid_spec", "not json"), ("diagnostics", "{}"),
                                             ("diagnostics", "[1")])
def test_corrupt_attrs_are_run_errors(saved, tmp_path, name, value):
    path = with_attr(saved, tmp_path, name, value)
    with pytest.raises(RunError) as err:
        load_run(path)
    assert_one_line(err, path.name)


# --- atomic saving ---------------------------------------------------------------------------


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part") or p.name.startswith("."))


def test_save_leaves_no_temporary_files(mock_run, tmp_path):
    target = tmp_path / "sub" / "dir" / "run.nc"
    save_run(mock_run, target)
    assert target.exists()
    assert leftovers(target.parent) == []
    assert os.listdir(target.parent) == ["run.nc"]


def _failing_to_netcdf(self, filename, *args, **kwargs):
    with open(filename, "wb") as handle:
        handle.write(b"\x89HDF\r\n\x1a\n partial")
    raise OSError("disk full (simulated)")


def test_failed_save_creates_nothing(mock_run, tmp_path, monkeypatch):
    monkeypatch.setattr(az.InferenceData, "to_netcdf", _failing_to_netcdf)
    target = tmp_path / "run.nc"
    with pytest.raises(OSError, match="simulated"):
        mock_run.save(target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_previous_file(mock_run, saved, tmp_path, monkeypatch):
    target = tmp_path / "run.nc"
    target.write_bytes(saved.read_bytes())
    before = target.read_bytes()
    monkeypatch.setattr(az.InferenceData, "to_netcdf", _failing_to_netcdf)
    with pytest.raises(OSError):
        mock_run.save(target)
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    assert isinstance(load_run(target), Run)


def test_interrupted_save_cleans_up(mock_run, tmp_path, monkeypatch):
    def interrupted(self, filename, *args, **kwargs):
        open(filename, "wb").close()
        raise KeyboardInterrupt

    monkeypatch.setattr(az.InferenceData, "to_netcdf", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mock_run.save(tmp_path / "run.nc")
    assert list(tmp_path.iterdir()) == []


def test_saved_file_has_normal_permissions(mock_run, tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = mock_run.save(tmp_path / "run.nc")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
