"""Checkpoints ``measure`` must refuse, generated many at a time: each is one line on stderr, exit 2.

The classes (tests/data/bad/README.md): a model that is not causal (an encoder), weights that do
not fit the config (a tensor missing, renamed or of another shape), non-finite weights, an
evaluation text too short to resolve QiD. None may leave a row, an output file or a temporary
file behind; the same checkpoint given twice is measured once.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file, save_file  # noqa: E402

from bayesqid.cli import main  # noqa: E402

QUICK = ["--bits", "4", "--method", "rtn", "--group-size", "per-channel", "--max-eval-tokens", "512",
         "--tokens", "1e6"]
SOME = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _refused(argv: list[str], capsys, out: Path) -> str:
    """Run the command; check exit 2, one stderr line, no traceback, no output; return the line."""
    capsys.readouterr()
    before = sorted(out.parent.iterdir()) if out.parent.exists() else None
    assert main(["measure", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    # nothing left behind: no output, no temporary file, not even the folder --out named
    assert (sorted(out.parent.iterdir()) if out.parent.exists() else None) == before
    return err.strip()


def _variant(base: Path, where: Path, change) -> Path:
    """A copy of a checkpoint whose tensors went through ``change(dict) -> dict``."""
    ckpt = where / "ckpt"
    shutil.copytree(base, ckpt)
    tensors = change(load_file(ckpt / "model.safetensors"))
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    return ckpt


def _drop(tensors, name):
    return {k: v for k, v in tensors.items() if k != name}


def _rename(tensors, name):
    return {(k + "_renamed" if k == name else k): v for k, v in tensors.items()}


def _reshape(tensors, name):
    value = tensors[name]
    smaller = value[..., :-1].contiguous() if value.shape[-1] > 1 else torch.cat([value, value])
    return {**tensors, name: smaller}


def _poison(value):
    def change(tensors, name):
        poisoned = tensors[name].clone()
        poisoned.view(-1)[poisoned.numel() // 2] = value
        return {**tensors, name: poisoned}
    return change


FAULTS = {
    "drop": (_drop, "the weights do not fit config.json: missing tensor"),
    "rename": (_rename, "the weights do not fit config.json: missing tensor"),
    "reshape": (_reshape, "the weights do not fit config.json: tensor of the wrong shape"),
    "nan": (_poison(float("nan")), "holds non-finite values"),
    "inf": (_poison(float("inf")), "holds non-finite values"),
}


@SOME
@given(fault=st.sampled_from(sorted(FAULTS)), pick=st.integers(0, 10_000))
def test_tensors_that_do_not_fit_are_refused(neox_dir, capsys, fault, pick):
    names = sorted(load_file(neox_dir / "model.safetensors"))
    name = names[pick % len(names)]
    change, expected = FAULTS[fault]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _variant(neox_dir, Path(tmp), lambda t: change(t, name))
        line = _refused([str(ckpt), *QUICK], capsys, Path(tmp) / "out" / "rows.csv")
    assert line.startswith("bayesqid measure: error: ") and expected in line, (fault, name, line)


def test_an_encoder_is_not_a_causal_lm(tmp_path, capsys):
    config = transformers.BertConfig(vocab_size=256, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    # transformers builds BERT as a "causal LM" (BertLMHeadModel) and would measure it as one.
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path / "bert", safe_serialization=True)
    line = _refused([str(tmp_path / "bert"), *QUICK], capsys, tmp_path / "rows.csv")
    assert "not a causal language model" in line and "'bert'" in line


def test_a_causal_model_passes_the_causality_probe(neox_dir, trained_dir):
    from bayesqid.measure.checkpoint import check_model, inspect_checkpoint, load_model

    for ckpt in (neox_dir, trained_dir):
        check_model(load_model(inspect_checkpoint(ckpt)), ckpt)  # no error


@SOME
@given(length=st.integers(0, 150))
def test_evaluation_text_too_short_to_resolve_qid(neox_dir, capsys, length):
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "short.txt"
        text.write_text(("def f(x):\n    return x\n" * 20)[:length])
        line = _refused([str(neox_dir), *QUICK, "--eval", str(text)], capsys, Path(tmp) / "rows.csv")
    assert "too few to resolve QiD" in line or "the text is empty" in line, line


@SOME
@given(tokens=st.integers(-5, 199))
def test_max_eval_tokens_below_the_floor(neox_dir, capsys, tokens):
    with tempfile.TemporaryDirectory() as tmp:
        argv = [str(neox_dir), *QUICK[:-4], "--max-eval-tokens", str(tokens), "--tokens", "1e6"]
        line = _refused(argv, capsys, Path(tmp) / "rows.csv")
    assert "--max-eval-tokens" in line


def test_a_short_evaluation_warns(neox_dir, tmp_path):
    from bayesqid.measure.qid import measure

    with pytest.warns(UserWarning, match="only 252 evaluation tokens"):
        measure(neox_dir, bits=[4], methods=["rtn"], group_sizes=[None], max_eval_tokens=256, tokens=1e6)


def test_the_same_checkpoint_twice_is_measured_once(neox_dir, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    assert main(["measure", str(neox_dir), str(neox_dir), *QUICK, "--out", str(out)]) == 0
    first = out.read_text()
    assert first.count("\n") == 2  # header + one row (one bit width, one method)
    capsys.readouterr()
    assert main(["measure", str(neox_dir), str(neox_dir), *QUICK, "--out", str(out)]) == 0
    assert "skipped" in capsys.readouterr().err
    assert out.read_text() == first  # a rerun adds nothing


def test_buffers_older_checkpoints_carry_are_not_unexpected(neox_dir, tmp_path):
    """Pythia-era GPT-NeoX files hold rotary and mask buffers; transformers ignores them, so do we."""
    from bayesqid.measure.checkpoint import inspect_checkpoint, load_model

    def add_buffers(tensors):
        return {**tensors, "gpt_neox.layers.0.attention.rotary_emb.inv_freq": torch.ones(8),
                "gpt_neox.layers.0.attention.bias": torch.ones(1, 1, 64, 64, dtype=torch.bool),
                "gpt_neox.layers.0.attention.masked_bias": torch.tensor(-1e9)}

    ckpt = _variant(neox_dir, tmp_path, add_buffers)
    assert load_model(inspect_checkpoint(ckpt)) is not None
