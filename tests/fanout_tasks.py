"""Tasks of the fan-out tests (``checks/test_compare.py``), in a module of their own.

A Dask worker process that runs one of these imports this module by name; were they defined in the
test module, every worker (and the killed client process) would import it, and with it PyMC, JAX
and ArviZ: about 5 s of CPU per process, for tasks that need only pandas.
"""

from __future__ import annotations

import time

import pandas as pd


def square(x: int, fail: bool = False) -> pd.DataFrame:
    """A task: one row, or an error."""
    if fail:
        raise ValueError("bad input\non two lines")
    return pd.DataFrame({"x": [x], "y": [x * x]})


def slow_square(x: int) -> pd.DataFrame:
    """A task that takes a while, so that a run can be killed between tasks."""
    time.sleep(0.5)
    return pd.DataFrame({"x": [x], "y": [x * x]})
