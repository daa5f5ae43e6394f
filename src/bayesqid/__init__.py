"""bayesqid: hierarchical Bayesian scaling laws of quantization-induced degradation (QiD).

The public API, re-exported without side effects::

    import bayesqid as bq
    run = bq.fit(bq.load_spec("ouyang"), bq.load_dataset(None), bq.SamplerConfig.preset("ci"))
    bq.predict(run, bq.default_grid())
    bq.token_budget(run, qid_targets=[0.3], params=[7e9], bits=[3, 4])
    bq.compare(["ouyang", "kumar"], bq.load_reference(), cv=["loo", "logo"])
    bq.plot_qid(run, x="tokens", family="OLMo", params=1.2e9, tokens=[1e11, 1e12, 1e14], bits=[3, 4])

Modules live in wings that import only downwards (see ARCHITECTURE.md); this module re-exports
the names a notebook needs, so none needs a private import.
"""

from __future__ import annotations

from bayesqid.checks.compare import Comparison, compare, load_comparison
from bayesqid.checks.sbc import SBCResult, load_sbc, run_sbc
from bayesqid.checks.simulate import tiny_design
from bayesqid.checks.sensitivity import prior_sensitivity
from bayesqid.constants import CI_PROB, DEFAULT_SEED, package_version
from bayesqid.data.dataset import Dataset, load_grid, load_table, validate
from bayesqid.data.sources import join_datasets, load_dataset, load_reference
from bayesqid.engines.sampler import SAMPLERS, SamplerConfig
from bayesqid.errors import BayesqidError, ConvergenceWarning, DataError, RunError, SpecError
from bayesqid.lang.laws import LAWS, Law, PointLaw, get_law, ouyang_eq8
from bayesqid.lang.priors import Prior
from bayesqid.lang.spec import Effect, Likelihood, ModelSpec, available_specs, load_spec
from bayesqid.questions.grid import grid
from bayesqid.questions.inverse import token_budget
from bayesqid.questions.predict import default_grid, predict
from bayesqid.questions.training import TrainingLevel, load_measurements, training_level
from bayesqid.report.builder import build_report
from bayesqid.report.plots import plot_bands, plot_data, plot_qid
from bayesqid.sampling.diagnostics import Diagnostics, check_convergence
from bayesqid.sampling.fit import fit
from bayesqid.sampling.run import Run, load_run, save_run

__version__ = package_version()

__all__ = [
    "CI_PROB",
    "DEFAULT_SEED",
    "LAWS",
    "SAMPLERS",
    "BayesqidError",
    "Comparison",
    "ConvergenceWarning",
    "DataError",
    "Dataset",
    "Diagnostics",
    "Effect",
    "Law",
    "Likelihood",
    "ModelSpec",
    "PointLaw",
    "Prior",
    "Run",
    "RunError",
    "SBCResult",
    "SamplerConfig",
    "SpecError",
    "TrainingLevel",
    "__version__",
    "available_specs",
    "build_report",
    "check_convergence",
    "compare",
    "default_grid",
    "fit",
    "get_law",
    "grid",
    "join_datasets",
    "load_comparison",
    "load_dataset",
    "load_grid",
    "load_measurements",
    "load_reference",
    "load_run",
    "load_sbc",
    "load_spec",
    "load_table",
    "ouyang_eq8",
    "plot_bands",
    "plot_data",
    "plot_qid",
    "predict",
    "prior_sensitivity",
    "run_sbc",
    "save_run",
    "tiny_design",
    "token_budget",
    "training_level",
    "validate",
]
