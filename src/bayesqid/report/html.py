"""HTML pieces of the report: the ``Section`` record and small escaping and number helpers."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayesqid.constants import CI_PROB
from bayesqid.sampling.run import Run


@dataclass(frozen=True)
class Section:
    """One section of the page: ``<section id=...>`` with a title and an HTML body."""

    id: str
    title: str
    body: str


SectionBuilder = Callable[[Run], "Section | None"]
CrossRunBuilder = Callable[[Sequence[Run], Sequence[str]], "Section | None"]


# --- small HTML helpers ------------------------------------------------------------------------


def escape(text: object) -> str:
    return html.escape(str(text))


def table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, classes="tbl", escape=True, na_rep="")


def img(uri: str, alt: str) -> str:
    return f'<figure><img src="{uri}" alt="{escape(alt)}"></figure>'


def fmt(x: float, digits: int = 3) -> str:
    if not np.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}" if 1e-3 <= abs(x) < 1e5 or x == 0 else f"{x:.{digits - 1}e}"


def values(series: pd.Series, limit: int = 4) -> str:
    u = sorted(series.unique())
    if len(u) <= limit:
        return ", ".join(fmt(float(v)) for v in u)
    return f"{len(u)} values, {fmt(float(u[0]))} to {fmt(float(u[-1]))}"


def interval_label(prob: float = CI_PROB) -> tuple[str, str]:
    return f"{(1 - prob) / 2:.0%}", f"{(1 + prob) / 2:.0%}"


