"""The lab's optional dependencies (torch, transformers, safetensors) and the error for their absence.

The Bayesian core never imports torch; the lab imports it only inside functions that need it,
after :func:`require_lab` has turned a missing package into one line that names the extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from bayesqid.errors import BayesqidError

#: Packages the lab imports, in the order they are checked.
LAB_PACKAGES: tuple[str, ...] = ("torch", "transformers", "safetensors")


class LabDependencyError(BayesqidError, ImportError):
    """The lab's optional extra (``pip install 'bayesqid[lab]'``) is not installed."""


def require_lab(what: str = "bayesqid measure") -> ModuleType:
    """Import the lab's packages or raise one line naming the missing one and the extra.

    Parameters
    ----------
    what : str, optional
        The feature that needs the packages, used in the message.

    Returns
    -------
    module
        The imported ``torch`` module.

    Raises
    ------
    LabDependencyError
        If any of :data:`LAB_PACKAGES` cannot be imported.
    """
    modules = {}
    for name in LAB_PACKAGES:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as err:
            raise LabDependencyError(
                f"{what} needs {', '.join(LAB_PACKAGES)} ({name} is missing: {err}); "
                "install them with: pip install 'bayesqid[lab]'"
            ) from None
    return modules["torch"]
