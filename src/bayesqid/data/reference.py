"""The bundled reference measurements, flattened into rows of the canonical QiD schema.

Reads ``bayesqid/data/reference_files/`` (see its README for the sources): published 16-bit vs
quantized perplexities (``ptq_results.csv``) and the OLMo checkpoint sweep
(``olmo_checkpoints.csv``), with non-embedding parameter counts and training tokens from
``families.csv``. Rows that cannot enter a law are counted by reason, never silently lost.
Validation and typing are left to :func:`bayesqid.data.sources.load_reference`.
"""

from __future__ import annotations

import math
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
    with (resources.files("bayesqid.data") / "reference_files" / name).open("rb") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False, encoding="utf-8")


# --- recipe columns ---------------------------------------------------------------------------
# Curated from families.csv (each model's schedule, annealing, precision and weight decay, with
# their sources there) and, for the OLMo checkpoints, from the OLMo training configs
# (allenai/OLMo configs/official/OLMo-{1B,7B}.yaml, commit 15af6688). "UNVERIFIED" or "unknown"
# in the source stays unknown: nothing is guessed.

#: Learning rate at the end of each final-checkpoint schedule over its peak, where the source
#: states it (LLaMA, Llama-2, Pythia: cosine to 10%) or it follows from stated numbers (OPT:
#: linear decay to 10% over 300B tokens, stopped at 180B: 1 - 0.9 * 180/300 = 0.46).
_FINAL_LR_FRAC = {"LLaMA-1": 0.1, "Llama-2": 0.1, "Pythia": 0.1, "OPT": round(1 - 0.9 * 180 / 300, 4)}

#: OLMo schedules: (kind, warmup steps, decay steps, final fraction, tokens per step).
#: OLMo-1B: cosine over 739,328 steps; OLMo-7B: linear over its configured 2T tokens at
#: 2160 x 2048 tokens per step (452,112 steps), held at the floor after it (as OLMo's scheduler
#: clamps the step).
_OLMO_SCHEDULES = {
    "OLMo-1B": ("cosine", 2000, 739_328, 0.1),
    "OLMo-7B": ("linear", 5000, round(2e12 / (2160 * 2048)), 0.1),
}


def olmo_lr_frac(name: str, step: float) -> float:
    """Learning rate of an OLMo checkpoint over its peak, from its step and its configured schedule."""
    kind, warmup, total, floor = _OLMO_SCHEDULES[name]
    if step < warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    if kind == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1 - (1 - floor) * progress


def _choice(text: str, words: tuple[str, ...]) -> str:
    text = text.strip().lower()
    if not text or "unverified" in text:
        return "unknown"
    return next((w for w in words if text.startswith(w)), "unknown")


def _final_recipe(model: pd.Series) -> dict[str, object]:
    """Recipe columns of a released (final) checkpoint from its families.csv row."""
    annealed_text = model["final_checkpoint_annealed"].strip().lower()
    annealed = ("true" if annealed_text.startswith("yes") else
                "false" if annealed_text.startswith(("no", "likely no")) else "unknown")
    wd = model["weight_decay"].strip()
    return {
        "lr_schedule": _choice(model["lr_schedule"], ("cosine", "linear")),
        "lr_frac": _FINAL_LR_FRAC.get(model["family"], ""),
        "annealed": annealed,
        "train_precision": _choice(model["train_precision"], ("fp16", "bf16", "fp32")),
        "weight_decay": wd if wd and wd != "unknown" else "",
    }


def _olmo_recipe(name: str, model: pd.Series, step: float) -> dict[str, object]:
    kind, _warmup, _total, floor = _OLMO_SCHEDULES[name]
    frac = olmo_lr_frac(name, step)
    # A checkpoint "ends an LR decay" once its schedule has reached the floor.
    return {**_final_recipe(model), "lr_schedule": kind, "lr_frac": round(frac, 4),
            "annealed": "true" if frac <= floor + 1e-9 else "false"}


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
                **_final_recipe(model),
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
                    **_olmo_recipe(name, model, float(rec["step"])),
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
