"""bayesqid: hierarchical Bayesian scaling laws of quantization-induced degradation (QiD).

The public API, re-exported without side effects::

    import bayesqid as bq
    run = bq.fit(bq.load_spec("ouyang"), bq.load_dataset(None), bq.SamplerConfig.preset("ci"))
    bq.predict(run, bq.default_grid())
    bq.token_budget(run, qid_targets=[0.3], params=[7e9], bits=[3, 4])
"""

from __future__ import annotations

from importlib import metadata

from bayesqid.constants import CI_PROB, DEFAULT_SEED
from bayesqid.data import Dataset, load_dataset, load_grid, load_reference, load_table, validate
from bayesqid.diagnostics import Diagnostics, check_convergence
from bayesqid.errors import BayesqidError, ConvergenceWarning, DataError, RunError, SpecError
from bayesqid.fit import SAMPLERS, SamplerConfig, fit
from bayesqid.inverse import token_budget
from bayesqid.laws import LAWS, Law, get_law
from bayesqid.predict import default_grid, predict
from bayesqid.priors import Prior
from bayesqid.run import Run, load_run, save_run
from bayesqid.sbc import SBCResult, load_sbc, run_sbc, tiny_design
from bayesqid.sensitivity import prior_sensitivity
from bayesqid.spec import Effect, Likelihood, ModelSpec, available_specs, load_spec
from bayesqid.training import TrainingLevel, load_measurements, training_level

try:
    __version__ = metadata.version("bayesqid")
except metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "CI_PROB",
    "DEFAULT_SEED",
    "LAWS",
    "SAMPLERS",
    "BayesqidError",
    "ConvergenceWarning",
    "DataError",
    "Dataset",
    "Diagnostics",
    "Effect",
    "Law",
    "Likelihood",
    "ModelSpec",
    "Prior",
    "Run",
    "RunError",
    "SBCResult",
    "SamplerConfig",
    "SpecError",
    "TrainingLevel",
    "__version__",
    "available_specs",
    "check_convergence",
    "default_grid",
    "fit",
    "get_law",
    "load_dataset",
    "load_grid",
    "load_measurements",
    "load_reference",
    "load_run",
    "load_sbc",
    "load_spec",
    "load_table",
    "predict",
    "prior_sensitivity",
    "run_sbc",
    "save_run",
    "tiny_design",
    "token_budget",
    "training_level",
    "validate",
]
