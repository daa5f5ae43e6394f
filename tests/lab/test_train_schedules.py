"""Learning-rate schedules against their definitions, and the train step's building blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayesqid.lab.schedules import Schedule, cooldown_end, wsd_decay_start

torch = pytest.importorskip("torch")


def test_warmup_is_linear_to_the_peak() -> None:
    s = Schedule("cosine", total=100, warmup=10, floor=0.1)
    assert [s.frac(t) for t in (1, 5, 10)] == pytest.approx([0.1, 0.5, 1.0])
    assert s.frac(0) == 0.0


def test_cosine_decays_to_its_floor() -> None:
    s = Schedule("cosine", total=110, warmup=10, floor=0.1)
    for t in (10, 35, 60, 85, 110):
        p = (t - 10) / 100
        assert s.frac(t) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))
    assert s.frac(110) == pytest.approx(0.1)
    assert s.frac(60) == pytest.approx(0.55)  # half way: half way between peak and floor
    assert s.annealed(110) and not s.annealed(109)


def test_linear_decays_to_its_floor() -> None:
    s = Schedule("linear", total=100, warmup=0, floor=0.0)
    assert [s.frac(t) for t in (0, 25, 50, 100)] == pytest.approx([1.0, 0.75, 0.5, 0.0])
    assert s.annealed(100)


def test_wsd_is_stable_then_decays_linearly() -> None:
    start = wsd_decay_start(100, 0.2)
    assert start == 80
    s = Schedule("wsd", total=100, warmup=5, floor=0.1, decay_start=start)
    assert s.frac(3) == pytest.approx(0.6)
    assert all(s.frac(t) == 1.0 for t in range(5, 81))
    assert s.frac(90) == pytest.approx(0.55)
    assert s.frac(100) == pytest.approx(0.1)
    assert s.annealed(100) and not s.annealed(80)


def test_constant_never_anneals() -> None:
    s = Schedule("constant", total=50, warmup=10)
    assert s.frac(5) == pytest.approx(0.5)
    assert s.frac(50) == 1.0 and not s.annealed(50)


def test_cooldown_branch_anneals_to_the_floor_from_its_start() -> None:
    end = cooldown_end(40, 0.2)
    assert end == 50  # decays for 20% of its own length, as the main run does
    branch = Schedule("wsd", total=end, warmup=5, floor=0.05, decay_start=40)
    main = Schedule("wsd", total=100, warmup=5, floor=0.05, decay_start=80)
    assert [branch.frac(t) for t in range(41)] == [main.frac(t) for t in range(41)]  # same stable phase
    assert branch.frac(45) == pytest.approx(0.525)
    assert branch.frac(end) == pytest.approx(0.05) and branch.annealed(end)


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        Schedule("step", total=10)
    with pytest.raises(ValueError, match="decay_start"):
        Schedule("wsd", total=10)


def test_lr_frac_at_checkpoints_of_a_config(tmp_path) -> None:
    from bayesqid.lab.config import load_config

    path = tmp_path / "c.toml"
    path.write_text(_TOML)
    cfg = load_config(path)
    cosine, wsd = cfg.recipes
    assert cfg.checkpoints == (1024, 2048, 4096)
    assert [cfg.schedule(cosine).frac(cfg.steps(t)) for t in cfg.checkpoints] == pytest.approx(
        [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)) for p in (0.25, 0.5, 1.0)])
    assert [cfg.schedule(wsd).frac(cfg.steps(t)) for t in cfg.checkpoints] == pytest.approx([1.0, 1.0, 0.1])


_TOML = """
[sizes.a]
layers = 1
d_model = 16
heads = 2
[train]
tokens = 4096
batch = 4
seq_len = 16
checkpoints = [1024, 2048]
[recipes.cosine]
schedule = "cosine"
peak_lr = 1e-3
[recipes.wsd]
schedule = "wsd"
peak_lr = 1e-3
[measure]
bits = [4]
methods = ["rtn"]
"""


def test_init_and_data_order_depend_only_on_the_seed() -> None:
    from bayesqid.lab.config import Size
    from bayesqid.lab.train import batch_at, build_model

    size = Size("a", 1, 16, 2, 32)
    a, b, c = (build_model("gpt_neox", size, seq_len=16, dropout=0.0, seed=s) for s in (3, 3, 4))
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
    assert not torch.equal(a.gpt_neox.embed_in.weight, c.gpt_neox.embed_in.weight)
    data = np.arange(1000, dtype=np.uint8)
    x1, y1 = batch_at(data, 0, 7, 4, 16)
    x2, _ = batch_at(data, 0, 7, 4, 16)
    assert torch.equal(x1, x2) and torch.equal(x1[:, 1:], y1[:, :-1])
    assert not torch.equal(x1, batch_at(data, 0, 8, 4, 16)[0])


@pytest.mark.parametrize(("architecture", "precision", "dropout"),
                         [("gpt_neox", "bf16", 0.1), ("gpt_neox", "fp16", 0.0), ("llama", "fp32", 0.1)])
def test_train_step_precisions_and_state_round_trip(tmp_path, architecture, precision, dropout) -> None:
    from bayesqid.lab.config import Recipe, Size
    from bayesqid.lab.train import TrainStep, batch_at, build_model

    size = Size("a", 1, 16, 2, 32)
    data = np.frombuffer(bytes(range(256)) * 8, dtype=np.uint8)
    recipe = Recipe("r", "cosine", 1e-2, 0, 0.1, 0.2, (), 0.1, dropout, 1.0, precision)

    def fresh() -> TrainStep:
        model = build_model(architecture, size, seq_len=16, dropout=dropout, seed=0).train()
        return TrainStep(model, recipe, torch.device("cpu"))

    first = fresh()
    losses = [float(first(*batch_at(data, 0, k, 4, 16), 1.0)) for k in (1, 2)]
    assert all(math.isfinite(v) for v in losses)
    first.save_state(tmp_path / "state", 2)
    more = [float(first(*batch_at(data, 0, k, 4, 16), 0.5)) for k in (3, 4)]
    second = fresh()
    assert second.load_state(tmp_path / "state") == 2
    again = [float(second(*batch_at(data, 0, k, 4, 16), 0.5)) for k in (3, 4)]
    assert again == more  # weights, optimizer, scaler and dropout RNG all restored
