"""The training lab: train small language models under declared recipes and measure them.

Optional extra: ``pip install 'bayesqid[lab]'``. Importing this package is light: torch,
transformers and safetensors are imported only when a lab function runs, and their absence is
reported then as one line naming the extra::

    from bayesqid.lab.sweep import run_lab          # train a sweep of recipes, measure it -> qid.csv
    from bayesqid.measure import measure            # QiD of checkpoints -> rows (the measure wing)

``bayesqid.lab.measure`` stays a module (the old home of ``measure``, kept for existing code), so
the package re-exports only names that do not shadow a submodule; they load on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module that defines it (imported on first access).
_LAZY = {
    "measure_model": "bayesqid.measure.qid",
    "LabDependencyError": "bayesqid.measure.deps",
    "run_lab": "bayesqid.lab.sweep",  # train + measure a sweep (bayesqid lab run)
    "lab_dataset_path": "bayesqid.lab.sweep",
    "load_lab_dataset": "bayesqid.lab.sweep",
    "load_config": "bayesqid.lab.config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bayesqid.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
