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
    for g in {e.group for e in mock_run.spec.effects}:  # the groups the spec varies by
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


# --- class 3 of the bad-input corpus: a run's contents against its spec -------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bayesqid.sampling.diagnostics import check_convergence  # noqa: E402
from bayesqid.sampling.run import posterior_contract  # noqa: E402

CORRUPTIONS = ["drop", "nan", "inf", "rename-dim", "drop-level", "extra-dim", "text"]


def corrupted(idata: az.InferenceData, name: str, kind: str, where: float) -> az.InferenceData:
    """A copy of ``idata`` whose posterior variable ``name`` breaks the contract one ``kind`` of way."""
    post = idata.posterior.copy()
    da = post[name]
    if kind == "drop":
        post = post.drop_vars(name)
    elif kind in ("nan", "inf"):
        values = da.to_numpy().copy()
        flat = values.reshape(-1)
        flat[int(where * (flat.size - 1))] = np.nan if kind == "nan" else -np.inf
        post[name] = da.copy(data=values)
    elif kind == "rename-dim":
        post[name] = xr.DataArray(da.to_numpy(), dims=("chain", "draw", *[f"{d}_x" for d in da.dims[2:]]))
        if da.ndim == 2:
            post[name] = da.expand_dims(other=1, axis=2)
    elif kind == "drop-level":
        if da.ndim == 2:
            post[name] = da.isel(draw=0, drop=True)
        else:
            post = post.isel({da.dims[2]: slice(0, -1)})
    elif kind == "extra-dim":
        post[name] = da.expand_dims(extra=2, axis=-1)
    else:
        post[name] = da.astype(str)
    others = {g: getattr(idata, g) for g in idata.groups() if g != "posterior"}
    out = az.InferenceData(posterior=post, **others)
    out.attrs.update(idata.attrs)
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), kind=st.sampled_from(CORRUPTIONS), where=st.floats(0, 1))
def test_any_contract_break_is_one_line_naming_the_file(data, kind, where, mock_run, tmp_path_factory):
    """Drop, NaN, inf, renamed dims, lost levels, extra dims or text draws in any variable the
    spec needs: loading refuses in one line naming the file and the variable."""
    name = data.draw(st.sampled_from(sorted(posterior_contract(mock_run.spec))))
    path = tmp_path_factory.mktemp("contract") / "broken.nc"
    corrupted(mock_run.idata, name, kind, where).to_netcdf(str(path), engine="h5netcdf")
    with pytest.raises(RunError) as err:
        load_run(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: not a usable run of its spec")
    assert name in message or kind == "drop-level"  # a lost level shows on every z_* of its group


def test_contract_lists_what_predictions_read(mock_run):
    contract = posterior_contract(mock_run.spec)
    assert {"sigma", "log_k", "alpha", "z_family_log_k", "sd_family_log_k"} <= set(contract)
    assert contract["z_family_log_k"] == ("family",) and contract["sigma"] == ()
    assert not any(name.startswith("u_") for name in contract)  # the sampler's internals are not read


@pytest.mark.parametrize("levels", ['{"family": ["a"]}', "[1, 2]",
                                    '{"family": [1], "quantizer": [], "eval_set": []}', "[" * 5000 + "]" * 5000])
def test_corrupt_levels_are_run_errors(saved, tmp_path, levels):
    path = with_attr(saved, tmp_path, "levels", levels)
    with pytest.raises(RunError) as err:
        load_run(path)
    assert_one_line(err, path.name, "corrupt run attributes")


def test_corrupt_chunk_names_the_file(saved, tmp_path):
    """Bytes overwritten in the middle of the file (compressed chunks of the draws): the error is
    this file's, raised on loading, not a stray HDF5 error later."""
    data = bytearray(saved.read_bytes())
    n = len(data)
    data[n // 3: 2 * n // 3] = np.random.default_rng(3).bytes(2 * n // 3 - n // 3)
    path = tmp_path / "chunk.nc"
    path.write_bytes(bytes(data))
    with pytest.raises(RunError) as err:
        load_run(path)
    assert_one_line(err, str(path))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.floats(0.0, 0.98), length=st.integers(1, 4096), seed=st.integers(0, 2**16))
def test_random_byte_damage_is_a_run_error_or_a_usable_run(start, length, seed, saved, tmp_path_factory):
    """Any damage anywhere: either the run still keeps its contract, or one RunError line names the file."""
    data = bytearray(saved.read_bytes())
    at = int(start * len(data))
    data[at: at + length] = np.random.default_rng(seed).bytes(len(data[at: at + length]))
    path = tmp_path_factory.mktemp("damage") / "damaged.nc"
    path.write_bytes(bytes(data))
    try:
        run = load_run(path)
    except RunError as err:
        assert "\n" not in str(err) and str(err).startswith(f"{path}: ")
    else:
        for name in posterior_contract(run.spec):
            assert np.isfinite(run.idata.posterior[name].to_numpy()).all()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_gate_fails_on_non_finite_draws(mock_run, value):
    post = mock_run.idata.posterior.copy(deep=True)
    post["alpha"][0, 3] = value
    post["z_family_log_k"][1, 0, 2] = value
    idata = az.InferenceData(posterior=post, sample_stats=mock_run.idata.sample_stats)
    gate = check_convergence(idata)
    assert not gate.passed and gate.nonfinite == 2
    assert any("2 non-finite" in p for p in gate.problems)
    assert Diagnostics.from_json(gate.to_json()) == gate


def test_gates_stored_before_the_non_finite_count_still_load(mock_run):
    raw = json.loads(mock_run.diagnostics.to_json())
    del raw["nonfinite"], raw["worst_nonfinite"]
    assert Diagnostics.from_json(json.dumps(raw)).nonfinite == 0


@pytest.mark.parametrize("case", ["no-group", "no-qid", "no-family", "ragged"])
def test_fitted_rows_are_checked(case, mock_run, tmp_path):
    idata = mock_run.idata
    data = idata.constant_data
    if case == "no-qid":
        data = data.drop_vars("qid")
    elif case == "no-family":
        data = data.drop_vars("family")
    elif case == "ragged":
        data = data.assign(qid=xr.DataArray(data["qid"].to_numpy()[:5], dims="other"))
    groups = {g: getattr(idata, g) for g in idata.groups() if g != "constant_data"}
    if case != "no-group":
        groups["constant_data"] = data
    broken = az.InferenceData(**groups)
    broken.attrs.update(idata.attrs)
    path = tmp_path / "rows.nc"
    broken.to_netcdf(str(path), engine="h5netcdf")
    with pytest.raises(RunError) as err:
        load_run(path)
    assert_one_line(err, str(path), "fitted rows (constant_data)")
