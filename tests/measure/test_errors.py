"""Every bad input of ``bayesqid measure`` is one line naming the path or option; the lab stays optional."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bayesqid.errors import BayesqidError, DataError  # noqa: E402
from bayesqid.measure.command import add_measure_parser, run_measure  # noqa: E402

QUICK = ["--bits", "4", "--method", "rtn", "--group-size", "per-channel", "--max-eval-tokens", "256",
         "--tokens", "1e6"]


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bayesqid")
    add_measure_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["measure", *argv])
    return args.func(args)


def _error(argv: list[str]) -> str:
    with pytest.raises(BayesqidError) as caught:
        _run(argv)
    message = str(caught.value)
    assert "\n" not in message and message.strip() == message
    return message


def test_the_command_writes_rows_and_reports_progress(neox_dir, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    assert _run([str(neox_dir), *QUICK, "--family", "tiny", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 rows in" in captured.out and "tokens/s" in captured.err and "RTN 4-bit" in captured.err
    assert out.read_text().count("\n") == 2


def test_group_sizes_parse(neox_dir, tmp_path):
    parser = argparse.ArgumentParser()
    add_measure_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["measure", "d", "--group-size", "128", "per-channel", "--out", "x.csv"])
    assert args.group_sizes == [128, None] and args.methods == ["rtn", "gptq"] and args.bits == [2, 3, 4, 8]
    assert args.func is run_measure


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp, ckpt: tmp / "nowhere", "no such checkpoint directory"),
        (lambda tmp, ckpt: tmp, "no config.json"),
    ],
)
def test_missing_checkpoints(make, expected, neox_dir, tmp_path):
    path = make(tmp_path, neox_dir)
    message = _error([str(path), *QUICK, "--out", str(tmp_path / "r.csv")])
    assert str(path) in message and expected in message


def _copy(src, dst, keep=("config.json", "model.safetensors")):
    dst.mkdir()
    for name in keep:
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_pickle_only_checkpoint_is_refused(neox_dir, tmp_path):
    ckpt = _copy(neox_dir, tmp_path / "pickled", keep=("config.json",))
    (ckpt / "pytorch_model.bin").write_bytes(b"not even a pickle")
    message = _error([str(ckpt), *QUICK, "--out", str(tmp_path / "r.csv")])
    assert str(ckpt) in message and "pytorch_model.bin" in message and "safetensors" in message


def test_corrupt_weights(neox_dir, tmp_path):
    ckpt = _copy(neox_dir, tmp_path / "corrupt")
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[:100])
    message = _error([str(ckpt), *QUICK, "--out", str(tmp_path / "r.csv")])
    assert "model.safetensors" in message and "corrupt" in message


def test_weights_that_do_not_fit_the_config(neox_dir, tmp_path):
    ckpt = _copy(neox_dir, tmp_path / "misfit")
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "hidden_size": 128}))
    message = _error([str(ckpt), *QUICK, "--out", str(tmp_path / "r.csv")])
    assert message.startswith(f"{ckpt}: the weights do not fit config.json: tensor of the wrong shape")


def test_not_a_causal_lm(neox_dir, tmp_path):
    ckpt = tmp_path / "vit"
    transformers.ViTModel(transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                 intermediate_size=64, image_size=8, patch_size=4)
                          ).save_pretrained(ckpt, safe_serialization=True)
    message = _error([str(ckpt), *QUICK, "--out", str(tmp_path / "r.csv")])
    assert str(ckpt) in message and "not a causal language model" in message


def test_unknown_tokens(neox_dir, tmp_path):
    argv = [a for a in QUICK if a not in ("--tokens", "1e6")]
    message = _error([str(neox_dir), *argv, "--out", str(tmp_path / "r.csv")])
    assert str(neox_dir) in message and "--tokens" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (["--method", "awq"], "--method: unknown method 'awq'"),
        (["--bits", "9"], "--bits"),
        (["--bits", "1"], "--bits"),
        (["--max-eval-tokens", "1"], "--max-eval-tokens"),
    ],
)
def test_bad_options(change, expected, neox_dir, tmp_path):
    argv = [*QUICK, *change]
    message = _error([str(neox_dir), *argv, "--out", str(tmp_path / "r.csv")])
    assert expected in message


def test_empty_and_missing_text(neox_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    message = _error([str(neox_dir), *QUICK, "--eval", str(empty), "--out", str(tmp_path / "r.csv")])
    assert str(empty) in message and "empty" in message and "--eval" in message
    missing = tmp_path / "none"
    message = _error([str(neox_dir), *QUICK, "--calib", str(missing), "--out", str(tmp_path / "r.csv")])
    assert str(tmp_path / "none") in message and "--calib" in message


def test_unwritable_out(neox_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker / "rows.csv", tmp_path):
        message = _error([str(neox_dir), *QUICK, "--out", str(out)])
        assert str(out) in message and "--out" in message


def test_out_that_measure_did_not_write(neox_dir, tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    message = _error([str(neox_dir), *QUICK, "--out", str(out)])
    assert str(out) in message and "not written by bayesqid measure" in message


def test_cuda_that_is_not_there(neox_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    message = _error([str(neox_dir), *QUICK, "--device", "cuda", "--out", str(tmp_path / "r.csv")])
    assert "--device cuda" in message


def test_lab_imports_are_light_and_a_missing_torch_is_one_line(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import bayesqid, bayesqid.lab, bayesqid.measure.command, bayesqid.measure.qid
        assert "torch" not in sys.modules, "importing the lab imported torch"
        sys.modules["torch"] = None  # as if the extra were not installed
        from bayesqid.measure.qid import measure
        from bayesqid.errors import BayesqidError
        try:
            measure({str(tmp_path)!r}, tokens=1)
        except BayesqidError as err:
            print(err)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pip install 'bayesqid[lab]'" in done.stdout and "torch" in done.stdout


def test_errors_are_data_errors(neox_dir, tmp_path):
    with pytest.raises(DataError):
        _run([str(tmp_path / "nowhere"), *QUICK, "--out", str(tmp_path / "r.csv")])
