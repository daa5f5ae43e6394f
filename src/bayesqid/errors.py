"""Exception and warning types raised by bayesqid.

Every error a user can trigger with bad input derives from :class:`BayesqidError` and carries
a one-line message; the CLI prints that line and exits with status 2.
"""

from __future__ import annotations


class BayesqidError(Exception):
    """Base class of all errors raised deliberately by bayesqid."""


class DataError(BayesqidError, ValueError):
    """A dataset is unreadable or breaks the canonical schema.

    The message names the file, the 1-based data row (the header is not counted), the
    column and the rule that was broken.
    """


class SpecError(BayesqidError, ValueError):
    """A model specification names something unknown or holds an invalid value."""


class RunError(BayesqidError, ValueError):
    """A saved run (NetCDF) is missing, corrupt, or was not written by bayesqid."""


class ConvergenceWarning(UserWarning):
    """The sampler's convergence gate failed (divergences, R-hat, ESS or BFMI)."""
