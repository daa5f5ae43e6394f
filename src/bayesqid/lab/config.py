"""Lab configurations: read a TOML file (or a shipped name), check every key, resolve steps.

A configuration declares what a sweep trains and measures (see ``configs/smoke.toml`` for a
commented example). Every error names the file and the dotted key, on one line, and raises
:class:`~bayesqid.errors.SpecError`; nothing is trained from a file that has an unknown key, so
a typo can never silently fall back to a default. Token counts are resolved here to whole
optimizer steps of ``batch * seq_len`` tokens; the tokens recorded in the rows are those steps
times the tokens per step.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bayesqid.errors import SpecError
from bayesqid.lab.schedules import SCHEDULES, Schedule, cooldown_end, wsd_decay_start
from bayesqid.measure.plan import METHOD_LABELS, MIN_EVAL_TOKENS

__all__ = ["ARCHITECTURES", "METHODS", "PRECISIONS", "SHIPPED", "Corpus", "LabConfig",
           "MeasureSettings", "Recipe", "Size", "load_config", "shipped_path"]

#: Names of the configurations shipped in ``bayesqid/lab/configs``.
SHIPPED: tuple[str, ...] = ("smoke", "default", "gpu", "recipes", "recipes-gpu", "long")
ARCHITECTURES: tuple[str, ...] = ("gpt_neox", "llama")
PRECISIONS: tuple[str, ...] = ("bf16", "fp16", "fp32")
#: Training texts known by name: the standard library's sub-packages, or every Python source file
#: installed in the running environment (the standard library's and site-packages', deduplicated).
TRAIN_SOURCES: tuple[str, ...] = ("stdlib", "python")
#: Quantizers the lab asks ``measure`` for (checked here so a typo fails before training).
METHODS: tuple[str, ...] = tuple(sorted(METHOD_LABELS))
#: Weight bit widths ``measure`` quantizes to.
MEASURE_BITS: tuple[int, int] = (2, 8)

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_TOP = {"name", "description", "model", "sizes", "train", "recipe_defaults", "recipes", "corpus",
        "measure"}
_MODEL = {"architecture"}
_SIZE = {"layers", "d_model", "heads", "ffn"}
_TRAIN = {"tokens", "batch", "seq_len", "seeds", "checkpoints"}
_LOG_CHECKPOINTS = {"first", "count"}
_RECIPE = {"schedule", "peak_lr", "warmup_tokens", "min_lr_frac", "decay_frac", "cooldown_from",
           "weight_decay", "dropout", "grad_clip", "precision", "loss_scaling", "average_last"}
_RECIPE_DEFAULTS = {"warmup_tokens": 0, "min_lr_frac": 0.1, "decay_frac": 0.2, "cooldown_from": [],
                    "weight_decay": 0.1, "dropout": 0.0, "grad_clip": 1.0, "precision": "fp32",
                    "loss_scaling": True, "average_last": 0}
_CORPUS = {"train", "train_bytes", "eval", "calib"}
_MEASURE = {"bits", "methods", "group_size", "eval_tokens", "calib_tokens"}


@dataclass(frozen=True)
class Size:
    """A model size: a decoder of ``layers`` blocks of width ``d_model``."""

    name: str
    layers: int
    d_model: int
    heads: int
    ffn: int


@dataclass(frozen=True)
class Recipe:
    """A training recipe: schedule and optimiser settings (see the module's TOML keys)."""

    name: str
    schedule: str
    peak_lr: float
    warmup_tokens: int
    min_lr_frac: float
    decay_frac: float
    cooldown_from: tuple[int, ...]
    weight_decay: float
    dropout: float
    grad_clip: float
    precision: str
    loss_scaling: bool = True  # fp16 only: a dynamic loss scaler (GradScaler)
    average_last: int = 0  # > 1: also measure the mean weights of the last K main-run checkpoints


@dataclass(frozen=True)
class Corpus:
    """Where the texts come from: ``"stdlib"`` (the running interpreter's library source) or a path.

    The default training text is the standard library's sub-packages; ``"python"`` is every
    Python source file installed in the environment, deduplicated (for runs long enough to
    repeat the standard library many times). The default evaluation and calibration texts are
    ``measure``'s split of the top-level standard-library modules, which no training text holds.
    """

    train: str
    train_bytes: int
    eval: str
    calib: str


@dataclass(frozen=True)
class MeasureSettings:
    """What ``measure`` does with each checkpoint."""

    bits: tuple[int, ...]
    methods: tuple[str, ...]
    group_sizes: tuple[int | None, ...]  # None: one scale per output channel
    eval_tokens: int
    calib_tokens: int


@dataclass(frozen=True)
class LabConfig:
    """A checked lab configuration. Token counts are multiples of :attr:`tokens_per_step`."""

    name: str
    origin: str
    description: str
    architecture: str
    sizes: tuple[Size, ...]
    tokens: int
    batch: int
    seq_len: int
    seeds: tuple[int, ...]
    checkpoints: tuple[int, ...]
    recipes: tuple[Recipe, ...]
    corpus: Corpus
    measure: MeasureSettings

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq_len

    @property
    def total_steps(self) -> int:
        return self.tokens // self.tokens_per_step

    def steps(self, tokens: int) -> int:
        """Whole steps of a token count (already a multiple of :attr:`tokens_per_step`)."""
        return tokens // self.tokens_per_step

    def schedule(self, recipe: Recipe, total: int | None = None, decay_start: int | None = None) -> Schedule:
        """The recipe's schedule over the main run, or over a cooldown branch ending at ``total``."""
        total = self.total_steps if total is None else total
        if recipe.schedule == "wsd" and decay_start is None:
            decay_start = wsd_decay_start(total, recipe.decay_frac)
        return Schedule(recipe.schedule, total, self.steps(recipe.warmup_tokens), recipe.min_lr_frac,
                        decay_start if recipe.schedule == "wsd" else None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the manifest and for resume checks)."""
        return asdict(self)


def shipped_path(name: str) -> Path:
    """Path of a shipped configuration by name."""
    return Path(__file__).with_name("configs") / f"{name}.toml"


def load_config(config: str | Path) -> LabConfig:
    """Read and check a lab configuration.

    Parameters
    ----------
    config : str or Path
        A shipped name (:data:`SHIPPED`) or the path of a ``.toml`` file.

    Returns
    -------
    LabConfig

    Raises
    ------
    SpecError
        ``"<file>: <dotted.key>: <problem>"`` for the first problem found.
    """
    text_name = str(config)
    if text_name in SHIPPED and not Path(text_name).exists():
        path, shown = shipped_path(text_name), f"{text_name}.toml"
    else:
        path, shown = Path(config), text_name
        if path.is_dir():
            raise SpecError(f"{shown}: is a directory, not a config file; give a .toml file or a "
                            f"shipped config: {list(SHIPPED)}")
        if not path.is_file():
            raise SpecError(f"{shown}: no such config file; shipped configs: {list(SHIPPED)}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SpecError(f"{shown}: not valid TOML: {' '.join(str(err).split())}") from None
    except OSError as err:
        raise SpecError(f"{shown}: cannot be read ({err.strerror or type(err).__name__})") from None
    return _Checker(shown).config(raw, default_name=path.stem)


class _Checker:
    """Checks the parsed TOML; ``fail`` raises the one-line error of a key."""

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def fail(self, key: str, problem: str) -> SpecError:
        return SpecError(f"{self.shown}: {key}: {problem}")

    def table(self, raw: Any, key: str, known: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(raw, dict):
            raise self.fail(key, f"must be a table, got {raw!r}")
        for name in raw:
            if name not in known:
                raise self.fail(f"{key}.{name}" if key else name, f"unknown key; known: {sorted(known)}")
        for name in sorted(required):
            if name not in raw:
                raise self.fail(f"{key}.{name}" if key else name, "missing")
        return raw

    def integer(self, value: Any, key: str, low: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(key, f"must be an integer >= {low}, got {value!r}")
        return value

    def number(self, value: Any, key: str, low: float, high: float = math.inf,
               open_low: bool = False) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value > high or value < low or (open_low and value == low):
            span = f"{'(' if open_low else '['}{low}, {high}]"
            raise self.fail(key, f"must be a number in {span}, got {value!r}")
        return float(value)

    def choice(self, value: Any, key: str, known: tuple[str, ...], what: str) -> str:
        if value not in known:
            raise self.fail(key, f"unknown {what} {value!r}; known: {list(known)}")
        return value

    def int_list(self, value: Any, key: str, low: int = 1) -> tuple[int, ...]:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"must be a non-empty list of integers, got {value!r}")
        return tuple(self.integer(v, key, low) for v in value)

    def name(self, name: str, key: str) -> None:
        # Size and recipe names become directory names and task keys.
        if not _NAME.match(name):
            raise self.fail(key, "name must be letters, digits, '_' or '-' (it names files)")

    # -- sections ---------------------------------------------------------------------------

    def config(self, raw: dict, default_name: str) -> LabConfig:
        self.table(raw, "", _TOP, {"sizes", "train", "recipes", "measure"})
        model = self.table(raw.get("model", {}), "model", _MODEL)
        arch = self.choice(model.get("architecture", "gpt_neox"), "model.architecture", ARCHITECTURES,
                           "architecture")
        self.architecture = arch
        train = self.table(raw["train"], "train", _TRAIN, {"tokens", "batch", "seq_len"})
        batch = self.integer(train["batch"], "train.batch")
        seq_len = self.integer(train["seq_len"], "train.seq_len", 2)
        per_step = batch * seq_len
        budget = self.integer(train["tokens"], "train.tokens")
        if budget < per_step:
            raise self.fail("train.tokens", f"{budget} is less than one step (batch * seq_len = {per_step})")
        budget -= budget % per_step
        checkpoints = self.checkpoints(train.get("checkpoints", []), budget, per_step)
        seeds = self.int_list(train.get("seeds", [0]), "train.seeds", 0)
        if len(set(seeds)) != len(seeds):
            raise self.fail("train.seeds", f"repeated seed in {list(seeds)}")
        sizes = self.sizes(raw["sizes"])
        corpus = self.corpus(raw.get("corpus", {}))
        defaults = self.table(raw.get("recipe_defaults", {}), "recipe_defaults", _RECIPE - {"schedule"})
        recipes_raw = raw["recipes"]
        if not isinstance(recipes_raw, dict) or not recipes_raw:
            raise self.fail("recipes", "must be a table of named recipes, e.g. [recipes.cosine]")
        for name in recipes_raw:
            self.name(name, f"recipes.{name}")
        main_checkpoints = len(checkpoints)
        recipes = tuple(self.recipe(name, {**_RECIPE_DEFAULTS, **defaults, **self.table(
            body, f"recipes.{name}", _RECIPE, {"schedule"})}, budget, per_step, main_checkpoints)
            for name, body in recipes_raw.items())
        name = raw.get("name", default_name)
        if not isinstance(name, str) or not name:
            raise self.fail("name", f"must be a non-empty string, got {name!r}")
        return LabConfig(name=name, origin=self.shown, description=str(raw.get("description", "")),
                         architecture=arch, sizes=sizes, tokens=budget, batch=batch, seq_len=seq_len,
                         seeds=seeds, checkpoints=checkpoints, recipes=recipes, corpus=corpus,
                         measure=self.measure(raw["measure"]))

    def checkpoints(self, raw: Any, budget: int, per_step: int) -> tuple[int, ...]:
        key = "train.checkpoints"
        if isinstance(raw, dict):  # log-spaced from `first` to the budget
            spec = self.table(raw, key, _LOG_CHECKPOINTS, _LOG_CHECKPOINTS)
            first = self.integer(spec["first"], f"{key}.first")
            count = self.integer(spec["count"], f"{key}.count", 2)
            if first >= budget:
                raise self.fail(f"{key}.first",
                                f"{first} tokens is not below the budget train.tokens = {budget}")
            raw = [round(first * (budget / first) ** (i / (count - 1))) for i in range(count)]
        elif not isinstance(raw, list):
            raise self.fail(key, f"must be a list of token counts or a table {{first, count}}, got {raw!r}")
        resolved = {budget}  # the end of the run is always a checkpoint
        for tokens in raw:
            self.integer(tokens, key)
            resolved.add(self.tokens_at(tokens, key, budget, per_step))
        return tuple(sorted(resolved))

    def tokens_at(self, tokens: int, key: str, budget: int, per_step: int) -> int:
        """A token count rounded to whole steps, inside the budget."""
        if tokens > budget:
            raise self.fail(key, f"{tokens} tokens is beyond the budget train.tokens = {budget}")
        steps = round(tokens / per_step)
        if steps < 1:
            raise self.fail(key, f"{tokens} tokens is less than one step (batch * seq_len = {per_step})")
        return steps * per_step

    def sizes(self, raw: Any) -> tuple[Size, ...]:
        if not isinstance(raw, dict) or not raw:
            raise self.fail("sizes", "must be a table of named sizes, e.g. [sizes.tiny]")
        out = []
        for name, body in raw.items():
            key = f"sizes.{name}"
            self.name(name, key)
            spec = self.table(body, key, _SIZE, {"layers", "d_model", "heads"})
            d_model = self.integer(spec["d_model"], f"{key}.d_model")
            heads = self.integer(spec["heads"], f"{key}.heads")
            if d_model % heads:
                raise self.fail(f"{key}.d_model", f"{d_model} is not divisible by heads = {heads}")
            # Rotary embeddings rotate pairs of channels: all of a Llama head, a quarter of a NeoX one.
            step = 8 if self.architecture == "gpt_neox" else 2
            if (d_model // heads) % step:
                raise self.fail(f"{key}.heads", f"head size d_model / heads = {d_model // heads} must be a "
                                f"multiple of {step} for {self.architecture}")
            out.append(Size(name, self.integer(spec["layers"], f"{key}.layers"), d_model, heads,
                            self.integer(spec.get("ffn", 4 * d_model), f"{key}.ffn")))
        return tuple(out)

    def recipe(self, name: str, spec: dict, budget: int, per_step: int, main_checkpoints: int) -> Recipe:
        key = f"recipes.{name}"
        if "peak_lr" not in spec:
            raise self.fail(f"{key}.peak_lr", "missing (set it here or in [recipe_defaults])")
        schedule = self.choice(spec["schedule"], f"{key}.schedule", SCHEDULES, "schedule")
        warmup = spec["warmup_tokens"]
        if warmup != 0:
            warmup = self.tokens_at(self.integer(warmup, f"{key}.warmup_tokens"), f"{key}.warmup_tokens",
                                    budget, per_step)
        if warmup >= budget:
            raise self.fail(f"{key}.warmup_tokens",
                            f"{warmup} is not below the budget train.tokens = {budget}")
        decay_frac = self.number(spec["decay_frac"], f"{key}.decay_frac", 0.0, 1.0, open_low=True)
        if decay_frac >= 1.0:
            raise self.fail(f"{key}.decay_frac", f"must be below 1, got {decay_frac!r}")
        cooldown = spec["cooldown_from"]
        cooldown = () if cooldown == [] else self.int_list(cooldown, f"{key}.cooldown_from")
        if cooldown and schedule != "wsd":
            raise self.fail(f"{key}.cooldown_from",
                            f"cooldown branches need schedule 'wsd', not {schedule!r}")
        stable_end = wsd_decay_start(budget // per_step, decay_frac) * per_step
        if schedule == "wsd" and warmup > stable_end:
            raise self.fail(f"{key}.warmup_tokens",
                            f"{warmup} runs past the stable phase (ends at {stable_end})")
        starts = []
        for tokens in cooldown:
            at = self.tokens_at(tokens, f"{key}.cooldown_from", budget, per_step)
            if not warmup <= at <= stable_end:
                raise self.fail(f"{key}.cooldown_from", f"{tokens} tokens is outside the stable phase "
                                f"[{warmup}, {stable_end}] of this wsd run")
            if cooldown_end(at // per_step, decay_frac) * per_step > budget:
                raise self.fail(f"{key}.cooldown_from", f"the branch from {tokens} tokens would end past the "
                                f"budget train.tokens = {budget}")
            if at // per_step == wsd_decay_start(budget // per_step, decay_frac) and cooldown_end(
                    at // per_step, decay_frac) == budget // per_step:
                continue  # this branch is the main run's own decay: train it once
            starts.append(at)
        recipe = Recipe(
            name=name, schedule=schedule,
            peak_lr=self.number(spec["peak_lr"], f"{key}.peak_lr", 0.0, 10.0, open_low=True),
            warmup_tokens=warmup,
            min_lr_frac=self.number(spec["min_lr_frac"], f"{key}.min_lr_frac", 0.0, 1.0),
            decay_frac=decay_frac, cooldown_from=tuple(sorted(set(starts))),
            weight_decay=self.number(spec["weight_decay"], f"{key}.weight_decay", 0.0),
            dropout=self.number(spec["dropout"], f"{key}.dropout", 0.0, 0.9),
            grad_clip=self.number(spec["grad_clip"], f"{key}.grad_clip", 0.0),
            precision=self.choice(spec["precision"], f"{key}.precision", PRECISIONS, "precision"),
            loss_scaling=self.flag(spec["loss_scaling"], f"{key}.loss_scaling"),
            average_last=self.integer(spec["average_last"], f"{key}.average_last", 0))
        if recipe.precision == "fp16" and not recipe.loss_scaling:
            # fp16 gradients of small losses underflow to zero without a scaler: refused, not run.
            raise self.fail(f"{key}.loss_scaling", "fp16 training needs a loss scaler (set loss_scaling = "
                            "true, or use precision 'bf16' or 'fp32')")
        if recipe.average_last == 1:
            raise self.fail(f"{key}.average_last", "1 checkpoint is no average; use 0 (none) or 2 or more")
        if recipe.average_last > main_checkpoints:
            raise self.fail(f"{key}.average_last", f"averages {recipe.average_last} checkpoints but the main "
                            f"run has {main_checkpoints} (train.checkpoints)")
        return recipe

    def flag(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def corpus(self, raw: Any) -> Corpus:
        spec = self.table(raw, "corpus", _CORPUS)
        sources = {}
        for part in ("train", "eval", "calib"):
            source = spec.get(part, "stdlib")
            named = TRAIN_SOURCES if part == "train" else ("stdlib",)
            if not isinstance(source, str) or not source:
                raise self.fail(f"corpus.{part}", f"must be one of {list(named)} or a path, got {source!r}")
            if source not in named and not Path(source).exists():
                raise self.fail(f"corpus.{part}",
                                f"{source!r} does not exist (use one of {list(named)} or a file or folder)")
            sources[part] = source
        train_bytes = self.integer(spec.get("train_bytes", 4_000_000), "corpus.train_bytes", 1024)
        return Corpus(train=sources["train"], train_bytes=train_bytes, eval=sources["eval"],
                      calib=sources["calib"])

    def measure(self, raw: Any) -> MeasureSettings:
        spec = self.table(raw, "measure", _MEASURE, {"bits", "methods"})
        low, high = MEASURE_BITS
        bits = self.int_list(spec["bits"], "measure.bits")
        for b in bits:
            if not low <= b <= high:
                raise self.fail("measure.bits", f"{b} is outside [{low}, {high}]")
        methods = spec["methods"]
        if not isinstance(methods, list) or not methods:
            raise self.fail("measure.methods", f"must be a non-empty list, got {methods!r}")
        for m in methods:
            self.choice(m, "measure.methods", METHODS, "method")
        groups = spec.get("group_size", 32)
        groups = groups if isinstance(groups, list) else [groups]
        if not groups:
            raise self.fail("measure.group_size", "must be an integer, 'per-channel' or a list of them")
        group_sizes = tuple(None if g == "per-channel" else self.integer(g, "measure.group_size")
                            for g in groups)
        return MeasureSettings(
            bits=tuple(sorted(set(bits))), methods=tuple(dict.fromkeys(methods)),
            group_sizes=tuple(dict.fromkeys(group_sizes)),
            eval_tokens=self.integer(spec.get("eval_tokens", 16384), "measure.eval_tokens",
                                     MIN_EVAL_TOKENS),
            calib_tokens=self.integer(spec.get("calib_tokens", 8192), "measure.calib_tokens", 2))
