"""The bundled reference measurements, flattened into rows of the canonical QiD schema.

Reads ``bayesqid/reference/`` (see its README for the sources): published 16-bit vs
quantized perplexities (``ptq_results.csv``) and the OLMo checkpoint sweep
(``olmo_checkpoints.csv``), with non-embedding parameter counts and training tokens from
``families.csv``. Rows that cannot enter a law are counted by reason, never silently lost.
Validation and typing are left to :func:`bayesqid.data.load_reference`.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["REFERENCE_PATH", "reference_rows"]

#: ``Dataset.path`` of the reference data.
REFERENCE_PATH = "<bundled reference>"

# Ordered: a row is counted under the first reason that applies.
_REASONS = {
    "format": "non-integer bit format (AQLM, QuIP# lattice, llama.cpp k-quants)",
    "params": "unknown non-embedding parameter count",
    "tokens": "unknown training tokens",
    "loss": "missing loss in source",
}
_OLMO_SOURCE = "OLMo checkpoint sweep, reeceshuttle/deep-learning-proj results (commit 7867758)"
_OLMO_METHODS = {"naive": "RTN", "awq": "AWQ"}  # both at group size 128 (source README)
_OLMO_EVAL_SETS = (("c4", "c4_delta_vs_16"), ("wikitext2", "wikitext2_delta_vs_16"))


def _read(name: str) -> pd.DataFrame:
    # Text, not numbers: values such as '1.3e3' are parsed, and reported, by validate().
    with (resources.files("bayesqid") / "reference" / name).open("rb") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False, encoding="utf-8")


def _ptq_rows(ptq: pd.DataFrame, models: pd.DataFrame, excluded: dict[str, int]) -> list[dict]:
    rows = []
    for rec in ptq.to_dict("records"):
        model = models.loc[rec["model"]]
        params = model["params_nonembedding"]
        tokens = rec["train_tokens"] or model["training_tokens"]
        reason = "format" if rec["format"] else "params" if not params else "tokens" if not tokens else None
        if reason:
            excluded[reason] += 1
            continue
        rows.append(
            {
                "family": rec["family"],
                "model": rec["model"],
                "params": params,
                "tokens": tokens,
                "bits": rec["bits"],
                "group_size": rec["group_size"],
                "method": rec["method"],
                "eval_set": rec["eval_set"],
                "qid": rec["qid_nats"],
                "source": rec["source"],
            }
        )
    return rows


def _olmo_rows(olmo: pd.DataFrame, models: pd.DataFrame, excluded: dict[str, int]) -> list[dict]:
    rows = []
    for rec in olmo.to_dict("records"):
        if float(rec["w_bits"]) >= 16:  # the 16-bit baseline is the zero of every delta
            continue
        name = rec["model"].removeprefix("allenai/")
        model = models.loc[name]
        for eval_set, column in _OLMO_EVAL_SETS:
            if not rec[column]:
                excluded["loss"] += 1
                continue
            rows.append(
                {
                    "family": model["family"],
                    "model": f"{name} step {rec['step']}",
                    "params": model["params_nonembedding"],
                    "tokens": float(rec["tokens_B"]) * 1e9,
                    "bits": rec["w_bits"],
                    "group_size": 128,
                    "method": _OLMO_METHODS[rec["method"]],
                    "eval_set": eval_set,
                    "qid": rec[column],
                    "source": _OLMO_SOURCE,
                }
            )
    return rows


def reference_rows() -> tuple[pd.DataFrame, dict[str, int]]:
    """Flatten the bundled reference files into unvalidated canonical rows.

    Published PTQ rows come first, in file order, then the OLMo checkpoint rows (one per
    quantized setting and evaluation set, C4 before WikiText-2). ``params`` is the
    non-embedding count from ``families.csv``; ``tokens`` is the row's ``train_tokens``,
    else the model's ``training_tokens``.

    Returns
    -------
    rows : pandas.DataFrame
        The canonical columns in order, values still as read (mostly text).
    excluded : dict of str to int
        Rows left out, by reason: a non-integer bit format, unknown non-embedding
        parameters, unknown training tokens (in that precedence, each row counted once),
        and OLMo cells with no loss in the source. Reasons with no rows are omitted.
    """
    models = _read("families.csv").set_index("model")
    excluded = dict.fromkeys(_REASONS, 0)
    rows = _ptq_rows(_read("ptq_results.csv"), models, excluded)
    rows += _olmo_rows(_read("olmo_checkpoints.csv"), models, excluded)
    counts = {_REASONS[key]: count for key, count in excluded.items() if count}
    return pd.DataFrame(rows), counts
