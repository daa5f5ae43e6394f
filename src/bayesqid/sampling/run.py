"""A fitted run: spec + InferenceData + convergence gate, saved to and loaded from one NetCDF.

Saving is atomic (a temporary file in the target directory, then ``os.replace``), so an
interrupted save never leaves a half-written run behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bayesqid.constants import GROUPS, LINEAGE, SIZE
from bayesqid.errors import RunError, SpecError
from bayesqid.lang.effects import sd_name, z_name
from bayesqid.lang.spec import ModelSpec
from bayesqid.outputs import write_atomic
from bayesqid.sampling.diagnostics import Diagnostics

if TYPE_CHECKING:
    import arviz as az
    import pandas as pd

#: attrs every bayesqid run carries.
REQUIRED_ATTRS = ("bayesqid_spec", "data_sha256", "seed", "versions", "diagnostics", "levels")


@dataclass(frozen=True)
class Run:
    """The result of :func:`bayesqid.fit.fit`.

    Attributes
    ----------
    spec : ModelSpec
        The fitted model.
    idata : arviz.InferenceData
        posterior, sample_stats, log_likelihood, observed_data, constant_data; provenance in
        ``attrs`` (spec JSON, data hash, seed, sampler settings, package versions).
    diagnostics : Diagnostics
        The convergence gate.
    """

    spec: ModelSpec
    idata: az.InferenceData
    diagnostics: Diagnostics

    @property
    def levels(self) -> dict[str, tuple[str, ...]]:
        """Fitted levels of every grouping factor."""
        raw = json.loads(self.idata.attrs["levels"])
        return {g: tuple(raw.get(g, ())) for g in GROUPS}

    @property
    def seed(self) -> int:
        """Root seed of the fit."""
        return int(self.idata.attrs["seed"])

    @property
    def data_sha256(self) -> str:
        """Hash of the fitted dataset."""
        return str(self.idata.attrs["data_sha256"])

    def data(self) -> pd.DataFrame:
        """The fitted rows as a canonical frame."""
        cd = self.idata.constant_data
        import pandas as pd  # here: loading a run (and refusing a bad one) needs no pandas

        frame = pd.DataFrame({name: cd[name].to_numpy() for name in cd.data_vars})
        frame["group_size"] = frame["group_size"].astype("Int64").where(frame["group_size"] > 0)
        for col in ("annealed", "post_trained"):  # stored as text: true, false or unknown
            if col in frame:
                frame[col] = pd.array([{"true": True, "false": False}.get(str(v), pd.NA)
                                       for v in frame[col]], dtype="boolean")
        return frame

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the run to ``path`` (NetCDF) atomically and return the path."""
        return save_run(self, path)


def save_run(run: Run, path: str | os.PathLike[str]) -> Path:
    """Write ``run`` to ``path`` atomically: temporary file in the same directory, then rename."""
    return write_atomic(path, lambda tmp: run.idata.to_netcdf(tmp, engine="h5netcdf"))


#: Columns of the fitted rows every run keeps (``constant_data``), read by :meth:`Run.data`.
FITTED_COLUMNS = ("family", "model", "params", "tokens", "bits", "group_size", "method", "eval_set", "qid",
                  "source")


def posterior_contract(spec: ModelSpec) -> dict[str, tuple[str, ...]]:
    """Posterior variables every run of ``spec`` carries, with their dims after (chain, draw).

    These are what predictions, budgets, training levels and reports read
    (:mod:`bayesqid.sampling.draws`): law coefficients, recipe shifts, the residual scale, and
    per group effect scales ``sd_*`` and standardised effects ``z_*`` (one per level).
    """
    out: dict[str, tuple[str, ...]] = dict.fromkeys((*spec.law_obj.param_names, *spec.recipe_shifts,
                                                     "sigma"), ())
    pairs = [(e.group, p) for e in spec.effects for p in e.params]
    if spec.likelihood.sigma_by is not None:
        pairs.append((spec.likelihood.sigma_by, "log_sigma"))
    for group, param in pairs:
        out[sd_name(group, param)] = ()
        out[z_name(group, param)] = (group,)
    return out


def check_contents(idata: az.InferenceData, spec: ModelSpec, levels: dict[str, list[str]]) -> str | None:
    """The first way ``idata`` breaks ``spec``'s posterior contract, or None if it keeps it.

    Every variable of :func:`posterior_contract` must be present with dims
    ``(chain, draw, *group)``, one entry per fitted level of its group (labelled as the run's
    levels), at least one draw, and only finite values; the fitted rows (``constant_data``)
    must hold :data:`FITTED_COLUMNS` as one table.
    """
    post = idata.posterior
    if post.sizes.get("chain", 0) < 1 or post.sizes.get("draw", 0) < 1:
        return "the posterior has no draws"
    contract = posterior_contract(spec)
    missing = [name for name in contract if name not in post.data_vars]
    if missing:
        return f"the posterior lacks {len(missing)} variable(s) the spec needs: {', '.join(missing[:5])}"
    for name, dims in contract.items():
        da = post[name]
        if da.dims != ("chain", "draw", *dims):
            return f"posterior variable {name!r} has dims {da.dims}, expected {('chain', 'draw', *dims)}"
        for group in dims:
            if da.sizes[group] != len(levels[group]) or (
                    group in da.coords and [str(v) for v in da[group].to_numpy()] != levels[group]):
                return (f"posterior variable {name!r} has {da.sizes[group]} {group} level(s) that do not "
                        f"match the run's {len(levels[group])} fitted levels")
        values = da.to_numpy()
        if not np.issubdtype(values.dtype, np.number):
            return f"posterior variable {name!r} is not numeric ({values.dtype})"
        bad = values.size - int(np.count_nonzero(np.isfinite(values)))
        if bad:
            return f"posterior variable {name!r} has {bad} non-finite draw value(s) (NaN or inf)"
    # The fitted rows: what Run.data() and the report read back.
    data = getattr(idata, "constant_data", None)
    missing = [c for c in FITTED_COLUMNS if data is None or c not in data.data_vars]
    if missing:
        return f"the fitted rows (constant_data) lack {', '.join(missing)}"
    if len({data[c].dims for c in FITTED_COLUMNS}) != 1 or data[FITTED_COLUMNS[0]].ndim != 1:
        return "the fitted rows (constant_data) are not one table of equal-length columns"
    return None


def _levels(raw: object) -> dict[str, list[str]]:
    """The stored fitted levels, checked: a list of text labels for every group."""
    # Runs saved before the size and lineage groups existed carry no levels of them: their specs
    # cannot vary by them.
    raw = {SIZE: [], LINEAGE: [], **raw} if isinstance(raw, dict) else raw
    if not (isinstance(raw, dict) and all(
            isinstance(raw.get(g), list) and all(isinstance(v, str) for v in raw[g]) for g in GROUPS)):
        raise TypeError("levels")
    return {g: raw[g] for g in GROUPS}


#: The first bytes of every HDF5 file (hence of every NetCDF-4 run file).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a run written by :func:`save_run`.

    Raises
    ------
    RunError
        Missing, unreadable, truncated, corrupt or foreign file (a corrupt chunk included), a
        spec this version cannot read, or a posterior that breaks the spec's contract
        (:func:`check_contents`: missing variables, wrong dims or level counts, NaN or inf).
    """
    p = Path(path)
    if not p.exists():
        raise RunError(f"{p}: run file does not exist")
    if p.is_dir():
        raise RunError(f"{p}: is a directory, expected a run file (.nc)")
    # A file that is not HDF5 at all is refused before ArviZ is imported (seconds), so that the
    # commonest mistake (the wrong file) is a one-line error at once.
    try:
        with p.open("rb") as head:
            signature = head.read(len(_HDF5_SIGNATURE))
    except OSError as err:
        raise RunError(f"{p}: not a readable NetCDF run ({err.__class__.__name__}: {err.strerror})") from None
    if signature != _HDF5_SIGNATURE:
        raise RunError(f"{p}: not a readable NetCDF run (not an HDF5 file)")
    import arviz as az

    try:
        idata = az.from_netcdf(p, engine="h5netcdf")
        # ArviZ opens groups lazily: read every value now, so that a corrupt chunk is this
        # file's error here and not a stray h5py error in the middle of a command.
        for group in idata.groups():
            getattr(idata, group).load()
    except Exception as err:  # h5py/netCDF raise many types for corrupt files
        raise RunError(f"{p}: not a readable NetCDF run ({err.__class__.__name__}: "
                       f"{str(err).splitlines()[0] if str(err) else 'unreadable'})") from None
    missing = [a for a in REQUIRED_ATTRS if a not in idata.attrs]
    if missing or "posterior" not in idata.groups():
        raise RunError(f"{p}: not a bayesqid run (missing {missing or ['posterior']})")
    try:
        spec = ModelSpec.from_json(str(idata.attrs["bayesqid_spec"]))
    except SpecError as err:
        raise RunError(f"{p}: cannot use the stored spec: {err}") from None
    except (ValueError, TypeError, KeyError) as err:
        raise RunError(f"{p}: corrupt stored spec ({err.__class__.__name__})") from None
    try:
        diagnostics = Diagnostics.from_json(str(idata.attrs["diagnostics"]))
        levels = _levels(json.loads(str(idata.attrs["levels"])))
        int(idata.attrs["seed"])
    except (ValueError, TypeError, KeyError, RecursionError) as err:
        raise RunError(f"{p}: corrupt run attributes ({err.__class__.__name__})") from None
    problem = check_contents(idata, spec, levels)
    if problem:
        raise RunError(f"{p}: not a usable run of its spec {spec.name!r}: {problem}")
    return Run(spec=spec, idata=idata, diagnostics=diagnostics)
