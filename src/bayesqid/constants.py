"""Package-wide constants: interval convention, dimension names, scales and seeds.

Kept in one place so that upstream defaults (ArviZ's 0.94 HDI, say) never leak into results.
"""

from __future__ import annotations

#: Central credible-interval mass used everywhere unless a caller asks for another.
CI_PROB: float = 0.9

#: Name of the spec the main command fits (chosen by the forecast, scale-up and
#: leave-one-family-out scores of held-out rows; README: Laws and models).
DEFAULT_SPEC: str = "ouyang_lineage"

#: Default root seed: deterministic, derived from the package name.
DEFAULT_SEED: int = sum(map(ord, "bayesqid"))

# Dimension names. Never call a dimension ``method``: xarray reads it as a keyword
# in ``.sel`` and ArviZ's summary breaks (see the stack notes).
OBS = "obs"
#: A lineage of families: one developer's series of models (LLaMA-1, Llama-2, Llama-3 and
#: Llama-3.2 are one; :func:`bayesqid.data.design.lineage_label`), which share training code,
#: data pipelines and architecture habits that the families' own offsets would otherwise repeat.
LINEAGE = "lineage"
FAMILY = "family"
#: A model size within its family (family x N): the rows of one trained network, whatever
#: its checkpoint, quantizer or evaluation set, share its idiosyncrasies.
SIZE = "size"
QUANTIZER = "quantizer"
EVAL_SET = "eval_set"
GRID = "grid"

#: Grouping factors known to the hierarchy, in the order they are reported.
GROUPS: tuple[str, ...] = (LINEAGE, FAMILY, SIZE, QUANTIZER, EVAL_SET)

# Model-scale covariates are logs of raw quantities divided by typical values, so that
# intercepts describe a 1B-parameter model trained on 1T tokens quantized to 4 bits and
# posterior correlations between intercepts and slopes stay small.
PARAMS_SCALE: float = 1e9
TOKENS_SCALE: float = 1e12
BITS_SCALE: float = 4.0

#: Smallest and largest integer weight bit width accepted in data.
BITS_RANGE: tuple[int, int] = (1, 16)

#: Default QiD resolution in nats: measurements below it enter the likelihood as
#: left-censored ("smaller than this"). Perplexities printed to two decimals, or one
#: decimal at perplexity 5-30, resolve QiD only to about 0.01-0.02 nats, and the OLMo
#: checkpoint evaluations carry noise of a few hundredths.
DEFAULT_CENSOR_BELOW: float = 0.02

#: The default prediction table: new family, 1e14 training tokens.
DEFAULT_TABLE_TOKENS: float = 1e14
DEFAULT_TABLE_PARAMS: tuple[float, ...] = (1e9, 7e9, 7e10, 4.05e11)
DEFAULT_TABLE_BITS: tuple[int, ...] = (2, 3, 4)


def package_version() -> str:
    """The installed version of bayesqid (``0.0.0+unknown`` when run from a bare source tree)."""
    from importlib import metadata

    try:
        return metadata.version("bayesqid")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"
