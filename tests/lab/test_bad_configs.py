"""Lab configs ``lab check`` and ``lab run`` must refuse, generated many at a time.

Each is one line on stderr naming the key, exit 2, no traceback, and no output folder: sizes
whose parameters, optimizer state and activations cannot fit the machine (refused before any
tensor is allocated), unknown recipe factors, averaging more checkpoints than a run has, fp16
without a loss scaler, an empty training text, a directory given as the config, and a run that
fails before it trained anything.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesqid.cli import main
from bayesqid.errors import SpecError
from bayesqid.lab.config import load_config
from bayesqid.lab.estimate import check_memory, cost_of

SOME = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: A small valid config; the cases below change one part of it.
BASE = """
name = "t"
[sizes.tiny]
layers = {layers}
d_model = {d_model}
heads = {heads}
[train]
tokens = 8192
batch = 4
seq_len = 16
checkpoints = [2048, 4096]
[corpus]
train = "{train}"
[recipe_defaults]
peak_lr = 1e-3
[recipes.base]
schedule = "cosine"
{recipe}
[measure]
bits = [3, 4]
methods = ["rtn"]
eval_tokens = 1024
"""


def _config(folder: Path, layers=1, d_model=16, heads=2, train="stdlib", recipe="") -> Path:
    path = folder / "bad.toml"
    path.write_text(BASE.format(layers=layers, d_model=d_model, heads=heads, train=train, recipe=recipe))
    return path


def _refused(argv: list[str], capsys) -> str:
    """One stderr line, exit 2, no traceback; returns the line."""
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    return captured.err.strip()


def _check_and_run_refuse(path: Path, capsys, expected: str) -> None:
    """Both commands refuse with the same line, and ``lab run`` makes no output folder."""
    out = path.parent / "out"
    assert expected in _refused(["lab", "check", str(path)], capsys)
    assert expected in _refused(["lab", "run", str(path), "--out", str(out), "--scheduler", "synchronous"],
                                capsys)
    assert not out.exists()


#: Sizes far beyond any machine's memory: at least 2e11 parameters (3.2 TB of weights and AdamW state).
HUGE = st.tuples(st.integers(1, 64), st.integers(8, 2_000), st.integers(1, 100_000)).map(
    lambda t: (t[0], 8 * t[0] * t[1], t[2])).filter(lambda t: 12 * t[2] * t[1] ** 2 >= 2e11)


@SOME
@given(size=HUGE)
def test_sizes_that_cannot_fit_are_refused_before_anything_is_built(capsys, size):
    heads, d_model, layers = size
    with tempfile.TemporaryDirectory() as tmp:
        path = _config(Path(tmp), layers=layers, d_model=d_model, heads=heads)
        line = _refused(["lab", "check", str(path)], capsys)
        assert "sizes.tiny: needs about" in line and "more than the" in line
        if importlib.util.find_spec("torch") is not None:  # lab run needs the lab's extra
            out = Path(tmp) / "out"
            line = _refused(["lab", "run", str(path), "--out", str(out), "--device", "cpu"], capsys)
            assert "sizes.tiny: needs about" in line
            assert not out.exists()  # no manifest, no tasks/, no folder


def test_memory_estimate_counts_parameters_and_scales_with_concurrency(tmp_path):
    cfg = load_config(_config(tmp_path, layers=2, d_model=32, heads=4))
    cost = cost_of(cfg, cfg.sizes[0])
    assert cost.non_embedding == 2 * (4 * 32 * 32 + 2 * 32 * 128 + 9 * 32 + 128) + 2 * 32
    assert cost.params == cost.non_embedding + 2 * 256 * 32
    need = max(cost.train_bytes, cost.measure_bytes)
    check_memory(cfg, "cpu", available=need)  # fits exactly
    with pytest.raises(SpecError, match=r"sizes.tiny: needs about .* x 2 concurrent runs"):
        check_memory(cfg, "cpu", concurrent=2, available=need)


KNOWN = {"schedule", "peak_lr", "warmup_tokens", "min_lr_frac", "decay_frac", "cooldown_from", "weight_decay",
         "dropout", "grad_clip", "precision", "loss_scaling", "average_last"}


@SOME
@given(key=st.from_regex(r"[a-z][a-z_]{1,20}", fullmatch=True).filter(lambda k: k not in KNOWN))
def test_an_unknown_factor_is_named(capsys, key):
    with tempfile.TemporaryDirectory() as tmp:
        path = _config(Path(tmp), recipe=f"{key} = 0.5")
        _check_and_run_refuse(path, capsys, f"recipes.base.{key}: unknown key")


@SOME
@given(k=st.integers(4, 1000))
def test_averaging_more_checkpoints_than_the_run_has(capsys, k):
    with tempfile.TemporaryDirectory() as tmp:
        path = _config(Path(tmp), recipe=f"average_last = {k}")
        expected = f"recipes.base.average_last: averages {k} checkpoints but the main run has 3"
        _check_and_run_refuse(path, capsys, expected)


def test_fp16_without_a_loss_scaler(tmp_path, capsys):
    path = _config(tmp_path, recipe='precision = "fp16"\nloss_scaling = false')
    _check_and_run_refuse(path, capsys, "recipes.base.loss_scaling: fp16 training needs a loss scaler")


def test_precision_the_device_cannot_do_is_refused(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")

    def no_scaler(*args, **kwargs):
        raise RuntimeError("GradScaler is not supported on this device")

    monkeypatch.setattr(torch.amp, "GradScaler", no_scaler)
    path = _config(tmp_path, recipe='precision = "fp16"')
    out = tmp_path / "out"
    line = _refused(["lab", "run", str(path), "--out", str(out), "--device", "cpu"], capsys)
    assert "recipes.base.precision: fp16 needs autocast and a loss scaler, which cpu cannot do" in line
    assert not out.exists()


@SOME
@given(files=st.lists(st.text(alphabet=" \t\n\r", max_size=20), max_size=3))
def test_an_empty_training_text_is_one_line_and_no_folder(capsys, files):
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for i, text in enumerate(files):
            (corpus / f"f{i}.txt").write_text(text)
        path = _config(Path(tmp), train=str(corpus))
        _check_and_run_refuse(path, capsys, "the training text is empty (corpus.train)")


def test_a_directory_is_not_a_config(tmp_path, capsys):
    line = _refused(["lab", "check", str(tmp_path)], capsys)
    assert line.startswith(f"bayesqid lab: error: {tmp_path}: is a directory, not a config file")


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    import bayesqid.lab.train as train

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(train, "train_run", out_of_memory)
    path = _config(tmp_path)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["lab", "run", str(path), "--out", str(out), "--scheduler", "synchronous"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # The run had started (progress lines); it ends with one error line and no folder.
    assert [line for line in err if "error:" in line] == [err[-1]] and "Traceback" not in "".join(err)
    assert "run(s) failed" in err[-1] and "not enough memory" in err[-1] and "was removed" in err[-1]
    assert not out.exists()


def test_a_gpu_plan_checked_on_a_small_machine_is_noted_not_refused(capsys, monkeypatch):
    import bayesqid.lab.estimate as estimate

    monkeypatch.setattr(estimate, "device_memory", lambda device: 4 * 10**9)  # a 4 GB laptop
    capsys.readouterr()
    assert main(["lab", "check", "gpu"]) == 0
    out = capsys.readouterr().out
    assert "note: size n14M needs about" in out and "more than this machine's 4 GB" in out
