"""The bundled reference measurements, flattened into rows of the canonical QiD schema.

Reads ``bayesqid/data/reference_files/`` (see its README for the sources): published 16-bit vs
quantized perplexities (``ptq_results.csv``) and the OLMo checkpoint sweep
(``olmo_checkpoints.csv``), with non-embedding parameter counts and training tokens from
``families.csv``. Which rows enter a law, the family each source family belongs to, and which
models are post-trained are data (``reference_files/rules.toml``), not code paths: rows that
cannot enter a law are counted by the reason its rule gives, never silently lost. Validation and
typing are left to :func:`bayesqid.data.sources.load_reference`.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from importlib import resources

import pandas as pd

__all__ = ["REFERENCE_PATH", "ExclusionRule", "ReferenceRules", "candidate_rows", "load_rules",
           "reference_rows"]

#: ``Dataset.path`` of the reference data.
REFERENCE_PATH = "<bundled reference>"

# Ordered: a row is counted under the first reason that applies.
_OLMO_SOURCE = "OLMo checkpoint sweep, reeceshuttle/deep-learning-proj results (commit 7867758)"
_OLMO_METHODS = {"naive": "RTN", "awq": "AWQ"}  # both at group size 128 (source README)
_OLMO_EVAL_SETS = (("c4", "c4_delta_vs_16"), ("wikitext2", "wikitext2_delta_vs_16"))


@dataclass(frozen=True)
class ExclusionRule:
    """A reason for which candidate rows cannot enter a law.

    Parameters
    ----------
    id : str
        Short stable name (``"format"``, ``"pipeline"``...).
    reason : str
        What ``bayesqid data`` and the report print beside the count.
    match : dict of str to str
        Regular expressions, searched in the candidate row's fields; all must match.
    unless : dict of str to str
        Regular expressions that, when all match, keep the row in after all (empty: none).
    """

    id: str
    reason: str
    match: dict[str, re.Pattern]
    unless: dict[str, re.Pattern]

    def applies(self, row: dict[str, str]) -> bool:
        """Whether this rule leaves ``row`` (text fields) out."""

        def all_match(patterns: dict[str, re.Pattern]) -> bool:
            return all(p.search(row.get(field, "")) for field, p in patterns.items())

        return all_match(self.match) and not (self.unless and all_match(self.unless))


@dataclass(frozen=True)
class ReferenceRules:
    """The bundled reference's inclusion rules, lineage and post-training marker.

    Parameters
    ----------
    lineage : dict of str to str
        Source family name -> the family its models are fitted in.
    post_trained : dict of str to re.Pattern
        Fields whose patterns all match mark a post-trained (instruct/chat) checkpoint.
    exclude : tuple of ExclusionRule
        Tried in order; a row is counted under the first that applies.
    """

    lineage: dict[str, str]
    post_trained: dict[str, re.Pattern]
    exclude: tuple[ExclusionRule, ...]

    def first_exclusion(self, row: dict[str, str]) -> ExclusionRule | None:
        """The first rule that leaves ``row`` out, or None when the row enters a law."""
        return next((rule for rule in self.exclude if rule.applies(row)), None)

    def is_post_trained(self, row: dict[str, str]) -> bool:
        """Whether ``row``'s model is a post-trained checkpoint."""
        return bool(self.post_trained) and all(
            p.search(row.get(field, "")) for field, p in self.post_trained.items())


def _patterns(table: dict, where: str) -> dict[str, re.Pattern]:
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ValueError(f"{where} must be a table of field = regular expression")
    return {field: re.compile(pattern) for field, pattern in table.items()}


def load_rules(text: str | None = None) -> ReferenceRules:
    """Parse the inclusion rules (the bundled ``rules.toml`` unless ``text`` is given).

    Parameters
    ----------
    text : str, optional
        TOML text of the rules; by default the bundled file.

    Returns
    -------
    ReferenceRules
    """
    if text is None:
        text = (resources.files("bayesqid.data") / "reference_files" / "rules.toml").read_text("utf-8")
    raw = tomllib.loads(text)
    rules = tuple(
        ExclusionRule(id=r["id"], reason=r["reason"], match=_patterns(r["match"], f"exclude.{r['id']}.match"),
                      unless=_patterns(r.get("unless", {}), f"exclude.{r['id']}.unless"))
        for r in raw.get("exclude", ())
    )
    return ReferenceRules(lineage=dict(raw.get("lineage", {})),
                          post_trained=_patterns(raw.get("post_trained", {}), "post_trained"),
                          exclude=rules)


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
    # "0.1 (pre-training)" or "0.1 (not re-read)": the number as stated; "unknown": unknown.
    wd = re.match(r"\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)", model["weight_decay"])
    return {
        "lr_schedule": _choice(model["lr_schedule"], ("cosine", "linear")),
        "lr_frac": _FINAL_LR_FRAC.get(model["family"], ""),
        "annealed": annealed,
        "train_precision": _choice(model["train_precision"], ("fp16", "bf16", "fp32")),
        "weight_decay": wd.group(1) if wd else "",
    }


def _olmo_recipe(name: str, model: pd.Series, step: float) -> dict[str, object]:
    kind, _warmup, _total, floor = _OLMO_SCHEDULES[name]
    frac = olmo_lr_frac(name, step)
    # A checkpoint "ends an LR decay" once its schedule has reached the floor.
    return {**_final_recipe(model), "lr_schedule": kind, "lr_frac": round(frac, 4),
            "annealed": "true" if frac <= floor + 1e-9 else "false"}


def _ptq_candidates(ptq: pd.DataFrame, models: pd.DataFrame) -> list[dict]:
    rows = []
    for rec in ptq.to_dict("records"):
        model = models.loc[rec["model"]]
        rows.append(
            {
                "family": rec["family"],
                "model": rec["model"],
                "params": model["params_nonembedding"],
                "tokens": rec["train_tokens"] or model["training_tokens"],
                "bits": rec["bits"],
                "group_size": rec["group_size"],
                "method": rec["method"],
                "eval_set": rec["eval_set"],
                "qid": rec["qid_nats"],
                "source": rec["source"],
                "format": rec["format"],
                "note": rec["note"],
                **_final_recipe(model),
            }
        )
    return rows


def _olmo_candidates(olmo: pd.DataFrame, models: pd.DataFrame) -> list[dict]:
    rows = []
    for rec in olmo.to_dict("records"):
        if float(rec["w_bits"]) >= 16:  # the 16-bit baseline is the zero of every delta
            continue
        name = rec["model"].removeprefix("allenai/")
        model = models.loc[name]
        for eval_set, column in _OLMO_EVAL_SETS:
            rows.append(
                {
                    "family": model["family"],
                    "model": f"{name} step {rec['step']}",
                    "params": model["params_nonembedding"],
                    "tokens": str(float(rec["tokens_B"]) * 1e9),
                    "bits": rec["w_bits"],
                    "group_size": "128",
                    "method": _OLMO_METHODS[rec["method"]],
                    "eval_set": eval_set,
                    "qid": rec[column],
                    "source": _OLMO_SOURCE,
                    "format": "",
                    "note": "",
                    **_olmo_recipe(name, model, float(rec["step"])),
                }
            )
    return rows


def candidate_rows() -> list[dict[str, str]]:
    """Every source row as a candidate for a law, before the rules apply.

    Returns
    -------
    list of dict
        One dict per PTQ row (file order), then per OLMo cell: the canonical columns, the
        recipe columns and the source's ``format`` and ``note``, as text.
    """
    models = _read("families.csv").set_index("model")
    rows = _ptq_candidates(_read("ptq_results.csv"), models)
    return rows + _olmo_candidates(_read("olmo_checkpoints.csv"), models)


def reference_rows(rules: ReferenceRules | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Flatten the bundled reference files into unvalidated canonical rows.

    Published PTQ rows come first, in file order, then the OLMo checkpoint rows (one per
    quantized setting and evaluation set, C4 before WikiText-2). ``params`` is the
    non-embedding count from ``families.csv``; ``tokens`` is the row's ``train_tokens``,
    else the model's ``training_tokens``. ``family`` follows the rules' lineage (the source's
    name stays in ``model``); ``post_trained`` is true for models the rules mark as
    instruct/chat checkpoints, false for every other reference model.

    Parameters
    ----------
    rules : ReferenceRules, optional
        Inclusion rules; by default the bundled ``rules.toml`` (:func:`load_rules`).

    Returns
    -------
    rows : pandas.DataFrame
        The canonical columns in order, values still as read (mostly text).
    excluded : dict of str to int
        Rows left out, by the reason of the first rule that applies to each, in rule order.
        Reasons with no rows are omitted.
    """
    rules = load_rules() if rules is None else rules
    counts = {rule.id: 0 for rule in rules.exclude}
    rows = []
    for row in candidate_rows():
        rule = rules.first_exclusion(row)
        if rule is not None:
            counts[rule.id] += 1
            continue
        post = rules.is_post_trained(row)
        row = {k: v for k, v in row.items() if k not in ("format", "note")}
        rows.append({**row, "family": rules.lineage.get(row["family"], row["family"]),
                     "post_trained": "true" if post else "false"})
    reasons = {rule.id: rule.reason for rule in rules.exclude}
    return pd.DataFrame(rows), {reasons[key]: n for key, n in counts.items() if n}
