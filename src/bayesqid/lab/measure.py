"""The name ``bayesqid.lab.measure`` kept for code written before the measure wing existed.

``measure`` and ``measure_model`` live in :mod:`bayesqid.measure.qid`; import them from
:mod:`bayesqid.measure`.
"""

from __future__ import annotations

from bayesqid.measure.qid import measure, measure_model

__all__ = ["measure", "measure_model"]
