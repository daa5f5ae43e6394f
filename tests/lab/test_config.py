"""Lab configurations: the shipped ones load; each bad key gets its own one-line error."""

from __future__ import annotations

import re
import tomllib

import pytest

from bayesqid.errors import SpecError
from bayesqid.lab.config import SHIPPED, load_config, shipped_path

#: A small valid config; each case below breaks one key of it.
BASE = """
name = "t"
[sizes.tiny]
layers = 1
d_model = 16
heads = 2
[train]
tokens = 8192
batch = 4
seq_len = 16
checkpoints = [2048, 4096]
[recipe_defaults]
peak_lr = 1e-3
[recipes.cosine]
schedule = "cosine"
[recipes.wsd]
schedule = "wsd"
cooldown_from = [2048]
[measure]
bits = [3, 4]
methods = ["rtn"]
"""


def _write(tmp_path, text: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(name)
    assert cfg.name == name and cfg.origin == f"{name}.toml"
    assert cfg.checkpoints[-1] == cfg.tokens
    assert all(t % cfg.tokens_per_step == 0 for t in cfg.checkpoints)
    assert load_config(shipped_path(name)).as_dict() | {"origin": ""} == cfg.as_dict() | {"origin": ""}


def test_default_config_covers_the_issue() -> None:
    cfg = load_config("default")
    assert len(cfg.sizes) >= 3
    assert {r.schedule for r in cfg.recipes} >= {"cosine", "wsd", "constant"}
    assert any(r.cooldown_from for r in cfg.recipes)
    assert set(cfg.measure.bits) >= {2, 3, 4, 8} and set(cfg.measure.methods) >= {"rtn", "gptq"}


def test_base_config_resolves_steps_and_branches(tmp_path) -> None:
    cfg = load_config(_write(tmp_path, BASE))
    assert (cfg.tokens_per_step, cfg.total_steps, cfg.checkpoints) == (64, 128, (2048, 4096, 8192))
    assert cfg.recipes[1].cooldown_from == (2048,)
    assert cfg.recipes[0].min_lr_frac == 0.1  # defaults fill what neither recipe nor defaults set


BAD = [
    # (replace this, with this, expected message after "bad.toml: ")
    ('schedule = "wsd"', 'schedule = "foo"',
     "recipes.wsd.schedule: unknown schedule 'foo'; known: ['constant', 'cosine', 'linear', 'wsd']"),
    ('schedule = "cosine"', 'schedule = "cosine"\nlearning_rate = 1',
     "recipes.cosine.learning_rate: unknown key"),
    ("[train]", "[train]\nepochs = 3", "train.epochs: unknown key"),
    ('name = "t"', 'name = "t"\nmodels = 1', "models: unknown key"),
    ("checkpoints = [2048, 4096]", "checkpoints = [2048, 9000]",
     "train.checkpoints: 9000 tokens is beyond the budget train.tokens = 8192"),
    ("heads = 2", "heads = 3", "sizes.tiny.d_model: 16 is not divisible by heads = 3"),
    ("heads = 2", "heads = 4", "sizes.tiny.heads: head size d_model / heads = 4 must be a multiple of 8"),
    ("layers = 1", "layers = 0", "sizes.tiny.layers: must be an integer >= 1, got 0"),
    ("cooldown_from = [2048]", "cooldown_from = [7936]", "recipes.wsd.cooldown_from: 7936 tokens is outside "
     "the stable phase"),
    ('schedule = "cosine"', 'schedule = "cosine"\ncooldown_from = [2048]',
     "recipes.cosine.cooldown_from: cooldown branches need schedule 'wsd', not 'cosine'"),
    ('schedule = "cosine"', 'schedule = "cosine"\npeak_lr = -1.0',
     "recipes.cosine.peak_lr: must be a number in (0.0, 10.0], got -1.0"),
    ('schedule = "cosine"', 'schedule = "cosine"\nprecision = "fp64"',
     "recipes.cosine.precision: unknown precision 'fp64'; known: ['bf16', 'fp16', 'fp32']"),
    ('schedule = "cosine"', 'schedule = "cosine"\nweight_decay = -0.1',
     "recipes.cosine.weight_decay: must be a number in [0.0, inf], got -0.1"),
    ("bits = [3, 4]", "bits = [3, 12]", "measure.bits: 12 is outside [2, 8]"),
    ('methods = ["rtn"]', 'methods = ["awq"]', "measure.methods: unknown method 'awq'"),
    ("tokens = 8192", "tokens = 10", "train.tokens: 10 is less than one step"),
    ("[sizes.tiny]", "[sizes.'a b']", "sizes.a b: name must be letters, digits"),
    # recipe factors: unknown ones, averaging more checkpoints than exist, fp16 without a scaler
    ('schedule = "cosine"', 'schedule = "cosine"\nmomentum = 0.9', "recipes.cosine.momentum: unknown key"),
    ("peak_lr = 1e-3", "peak_lr = 1e-3\nlabel_smoothing = 0.1",
     "recipe_defaults.label_smoothing: unknown key"),
    ('schedule = "cosine"', 'schedule = "cosine"\naverage_last = 4',
     "recipes.cosine.average_last: averages 4 checkpoints but the main run has 3 (train.checkpoints)"),
    ('schedule = "cosine"', 'schedule = "cosine"\naverage_last = 1',
     "recipes.cosine.average_last: 1 checkpoint is no average"),
    ('schedule = "cosine"', 'schedule = "cosine"\naverage_last = -2',
     "recipes.cosine.average_last: must be an integer >= 0, got -2"),
    ('schedule = "cosine"', 'schedule = "cosine"\nprecision = "fp16"\nloss_scaling = false',
     "recipes.cosine.loss_scaling: fp16 training needs a loss scaler"),
    ('schedule = "cosine"', 'schedule = "cosine"\nloss_scaling = "yes"',
     "recipes.cosine.loss_scaling: must be true or false, got 'yes'"),
    ('schedule = "cosine"', 'schedule = "cosine"\ndropout = 0.95',
     "recipes.cosine.dropout: must be a number in [0.0, 0.9], got 0.95"),
    ("[train]", '[corpus]\ntrain = "nowhere-dir"\n[train]', "corpus.train: 'nowhere-dir' does not exist"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD, ids=[m.split(":")[0] + f"-{i}" for i, (_, _, m) in
                                                               enumerate(BAD)])
def test_each_bad_key_gets_one_line(tmp_path, old: str, new: str, message: str) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    tomllib.loads(text)  # the case breaks the config, not the TOML
    with pytest.raises(SpecError) as info:
        load_config(_write(tmp_path, text))
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"{tmp_path / 'bad.toml'}: {message}"), line


def test_missing_file_and_broken_toml(tmp_path) -> None:
    with pytest.raises(SpecError, match=re.escape("nope.toml: no such config file; shipped configs")):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_config(_write(tmp_path, "[train\n"))
    with pytest.raises(SpecError, match=r"recipes\.cosine\.peak_lr: missing"):
        load_config(_write(tmp_path, BASE.replace("peak_lr = 1e-3", "")))


def test_a_directory_is_not_a_config(tmp_path) -> None:
    with pytest.raises(SpecError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: is a directory, not a config file")


def test_recipe_factors_and_averaging_load(tmp_path) -> None:
    text = BASE.replace('schedule = "cosine"', 'schedule = "cosine"\nprecision = "fp16"\naverage_last = 3\n'
                        "dropout = 0.1\ngrad_clip = 0.0", 1)
    recipe = load_config(_write(tmp_path, text)).recipes[0]
    assert (recipe.precision, recipe.loss_scaling, recipe.average_last) == ("fp16", True, 3)
    assert (recipe.dropout, recipe.grad_clip) == (0.1, 0.0)


def test_recipes_config_varies_one_factor_at_a_time() -> None:
    from dataclasses import asdict

    cfg = load_config("recipes")
    assert len(cfg.seeds) >= 2 and len(cfg.sizes) == 1
    base, *others = cfg.recipes
    varied = {}
    for recipe in others:
        diff = {k for k, v in asdict(recipe).items()
                if k not in ("name", "average_last") and v != asdict(base)[k]}
        assert len(diff) == 1, (recipe.name, diff)  # one factor at a time
        (factor,) = diff
        varied.setdefault(factor, set()).add(getattr(recipe, factor))
    assert {0.0, 0.01} <= varied["weight_decay"] and base.weight_decay == 0.1
    assert varied["dropout"] == {0.1} and varied["grad_clip"] == {0.0}
    assert varied["precision"] == {"bf16", "fp16"} and base.precision == "fp32"
    assert len(varied["peak_lr"]) == 1 and base.average_last >= 2
    assert {"rtn", "gptq", "w8a8"} <= set(cfg.measure.methods) and {3, 4} <= set(cfg.measure.bits)
    assert len(cfg.checkpoints) >= 3  # the final checkpoint and earlier ones


def test_long_config_reaches_2000_tokens_per_parameter() -> None:
    from bayesqid.lab.estimate import cost_of

    cfg = load_config("long")
    assert {r.schedule for r in cfg.recipes} == {"cosine", "wsd"}
    assert any(r.cooldown_from for r in cfg.recipes)
    assert min(cfg.tokens / cost_of(cfg, s).non_embedding for s in cfg.sizes) >= 2000
    ratios = [b / a for a, b in zip(cfg.checkpoints, cfg.checkpoints[1:])]
    assert max(ratios) / min(ratios) < 1.05  # log-spaced
    assert cfg.corpus.train == "python"


@pytest.mark.parametrize(("name", "minutes"), [("recipes", 60), ("long", 45), ("default", 40)])
def test_shipped_cpu_sweeps_are_sized_for_two_cores(name: str, minutes: float) -> None:
    from bayesqid.lab.estimate import sweep_seconds

    assert sweep_seconds(load_config(name), workers=2) < minutes * 60
