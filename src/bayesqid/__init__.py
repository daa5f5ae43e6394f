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

The names load on first access (PEP 562): PyMC, ArviZ and PyTensor take seconds to import, and
``import bayesqid`` (hence every ``bayesqid`` command, ``--help`` included) should not pay for
them before it needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

from bayesqid.constants import package_version

#: Public name -> the module that defines it (imported on first access of the name).
_EXPORTS = {
    "CI_PROB": "bayesqid.constants",
    "DEFAULT_SEED": "bayesqid.constants",
    "LAWS": "bayesqid.lang.laws",
    "SAMPLERS": "bayesqid.engines.sampler",
    "BayesqidError": "bayesqid.errors",
    "Comparison": "bayesqid.checks.compare",
    "ConvergenceWarning": "bayesqid.errors",
    "DataError": "bayesqid.errors",
    "Dataset": "bayesqid.data.dataset",
    "Diagnostics": "bayesqid.sampling.diagnostics",
    "Effect": "bayesqid.lang.spec",
    "Law": "bayesqid.lang.laws",
    "Likelihood": "bayesqid.lang.spec",
    "ModelSpec": "bayesqid.lang.spec",
    "PointLaw": "bayesqid.lang.laws",
    "Prior": "bayesqid.lang.priors",
    "Run": "bayesqid.sampling.run",
    "RunError": "bayesqid.errors",
    "SBCResult": "bayesqid.checks.sbc",
    "SamplerConfig": "bayesqid.engines.sampler",
    "SpecError": "bayesqid.errors",
    "TrainingLevel": "bayesqid.questions.training",
    "available_specs": "bayesqid.lang.spec",
    "build_report": "bayesqid.report.builder",
    "check_training_levels": "bayesqid.checks.levels",
    "check_convergence": "bayesqid.sampling.diagnostics",
    "compare": "bayesqid.checks.compare",
    "default_grid": "bayesqid.questions.predict",
    "fit": "bayesqid.sampling.fit",
    "get_law": "bayesqid.lang.laws",
    "grid": "bayesqid.questions.grid",
    "join_datasets": "bayesqid.data.sources",
    "load_comparison": "bayesqid.checks.compare",
    "load_dataset": "bayesqid.data.sources",
    "load_grid": "bayesqid.data.dataset",
    "load_measurements": "bayesqid.questions.training",
    "load_reference": "bayesqid.data.sources",
    "load_run": "bayesqid.sampling.run",
    "load_sbc": "bayesqid.checks.sbc",
    "load_spec": "bayesqid.lang.spec",
    "load_table": "bayesqid.data.dataset",
    "ouyang_eq8": "bayesqid.lang.laws",
    "plot_bands": "bayesqid.report.plots",
    "plot_data": "bayesqid.report.plots",
    "plot_qid": "bayesqid.report.plots",
    "predict": "bayesqid.questions.predict",
    "prior_sensitivity": "bayesqid.checks.sensitivity",
    "run_sbc": "bayesqid.checks.sbc",
    "save_run": "bayesqid.sampling.run",
    "tiny_design": "bayesqid.checks.simulate",
    "token_budget": "bayesqid.questions.inverse",
    "training_level": "bayesqid.questions.training",
    "validate": "bayesqid.data.dataset",
}

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
    "check_training_levels",
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


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on its first access and keep the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bayesqid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses are plain attribute look-ups
    return value


def __dir__() -> list[str]:
    """The public names (loaded or not) and whatever this module already holds."""
    return sorted({*globals(), *_EXPORTS})
