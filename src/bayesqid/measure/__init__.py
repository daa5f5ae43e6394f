"""Measuring checkpoints: QiD of local causal LMs under RTN, GPTQ and W8A8 (optional extra: torch).

Importing this package is light: torch, transformers and safetensors are imported only when a
measurement runs, and their absence is reported then as one line naming the extra::

    from bayesqid.measure import measure        # QiD of checkpoint directories -> rows
    from bayesqid.measure import measure_model  # the same for one model already in memory

The training lab (:mod:`bayesqid.lab`) sits above this wing and measures its checkpoints here.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module that defines it (imported on first access).
_LAZY = {
    "measure": "bayesqid.measure.qid",
    "measure_model": "bayesqid.measure.qid",
    "LabDependencyError": "bayesqid.measure.deps",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bayesqid.measure' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
