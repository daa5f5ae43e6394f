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
