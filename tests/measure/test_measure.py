"""``measure`` on tiny checkpoints: valid rows, QiD that falls with bits, exact 16-bit loss, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import bayesqid as bq  # noqa: E402
from bayesqid.measure.activations import calibrate, get_weight, quantizable_linears  # noqa: E402
from bayesqid.measure.evaluate import make_windows  # noqa: E402
from bayesqid.measure.gptq import gptq_quantize, prepare, reconstruction_error  # noqa: E402
from bayesqid.measure.qid import measure, measure_model  # noqa: E402
from bayesqid.measure.rtn import rtn_quantize  # noqa: E402
from bayesqid.measure.table import ROW_COLUMNS  # noqa: E402
from bayesqid.measure.text import default_corpora  # noqa: E402

from .conftest import FAST, GRID  # noqa: E402


def _load(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, use_safetensors=True).eval()


def test_rows_validate_and_carry_their_provenance(measured, trained_dir):
    rows, out, lines = measured
    assert list(rows.columns) == list(ROW_COLUMNS)
    canonical = bq.validate(rows)
    assert len(canonical) == len(rows) == 2 * 4 * 2 + 1
    assert set(rows["method"]) == {"RTN", "GPTQ", "W8A8"}
    assert set(rows["method"]) - {"W8A8"} <= set(bq.load_reference().frame["method"])
    assert rows["group_size"].isna().sum() == 2 * 4 + 1 and set(rows["group_size"].dropna()) == {32}
    assert np.allclose(rows["qid"], rows["quant_loss"] - rows["fp16_loss"])
    model = _load(trained_dir)
    embedding = model.config.vocab_size * model.config.hidden_size  # tied: the head is the same tensor
    assert rows["params"].eq(sum(p.numel() for p in model.parameters()) - embedding).all()
    first = rows.iloc[0]
    assert first["family"] == "llama" and first["model"] == "tiny-llama" and first["tokens"] == 1e6
    assert first["eval_set"].endswith("-stdlib") and first["calib_set"].endswith("-stdlib-calib")
    assert str(trained_dir.resolve()) in first["source"] and first["weights_sha256"][:16] in first["source"]
    assert first["tokenizer"] == "bytes" and first["eval_tokens"] == 4096 - 4096 // 64
    assert json.loads(first["settings"])["quantize_head"] is False
    assert any("tokens/s" in line and "GPTQ 3-bit g32" in line for line in lines)
    assert rows["act_outlier_max"].gt(1).all() and rows["weight_kurtosis_max"].gt(0).all()
    on_disk = pd.read_csv(out)
    assert len(on_disk) == len(rows) and (on_disk["unit"] == rows["unit"]).all()


def test_qid_falls_as_bits_rise(measured):
    rows, _, _ = measured
    weights_only = rows[rows["method"] != "W8A8"]
    for (method, group), part in weights_only.groupby(["method", weights_only["group_size"].fillna(0)]):
        qid = part.set_index("bits")["qid"]
        assert qid[2] > qid[3] + 0.02 and qid[2] > 0.04, (method, group, qid.to_dict())
        # From 3 bits on, QiD of this tiny model is a few thousandths, with evaluation noise of
        # about that size: allow for it between neighbours.
        assert qid[3] > qid[4] - 0.005 and qid[4] > qid[8] - 0.01, (method, group, qid.to_dict())
    by_bits = rows[rows["method"] != "W8A8"].groupby("bits")["qid"].mean()
    assert by_bits[2] > by_bits[3] > by_bits[4] > by_bits[8] - 0.002


def test_eight_bit_qid_is_near_zero(measured):
    rows, _, _ = measured
    eight = rows[rows["bits"] == 8]
    assert len(eight) == 5 and eight["qid"].abs().lt(0.01).all()


def test_gptq_beats_rtn_at_low_bits(measured):
    rows, _, _ = measured
    wide = rows.pivot_table(index=["bits", rows["group_size"].fillna(0)], columns="method", values="qid")
    assert (wide.loc[2]["GPTQ"] < 0.8 * wide.loc[2]["RTN"]).all()


def test_fp16_loss_equals_the_models_own_loss(measured, trained_dir):
    rows, _, _ = measured
    _, evals = default_corpora()
    ids = np.frombuffer("\n\n".join(evals.documents).encode()[:4096], dtype=np.uint8).astype(np.int64)
    windows = make_windows(ids, 64, 4096)
    model = _load(trained_dir)
    with torch.inference_mode():
        direct = np.mean([float(model(input_ids=w[None], labels=w[None]).loss) for w in windows])
    assert rows["fp16_loss"].iloc[0] == pytest.approx(direct, rel=1e-5)


def test_gptq_reconstructs_calibration_data_better_than_rtn(trained_dir):
    model = _load(trained_dir)
    linears = quantizable_linears(model)
    calib, _ = default_corpora()
    ids = np.frombuffer(calib.documents[0].encode()[:1024], dtype=np.uint8).astype(np.int64)
    stats = calibrate(model, linears, make_windows(ids, 64), batch_size=8, hessians=True)
    for name, module in linears.items():
        w, h = get_weight(module), stats.hessians[name]
        for bits in (3, 4):
            for group in (None, 32):
                gptq = reconstruction_error(w, gptq_quantize(w, prepare(h), bits, group), h)
                rtn = reconstruction_error(w, rtn_quantize(w, bits, group), h)
                assert gptq < rtn, (name, bits, group)


def test_rerun_resumes_and_rewrites_identical_rows(measured, trained_dir, tmp_path):
    rows, out, _ = measured
    full = out.read_bytes()
    lines: list[str] = []
    again = measure(trained_dir, out=out, progress=lines.append, **GRID, **FAST)
    assert out.read_bytes() == full
    assert any("skipped" in line for line in lines) and not any("loading" in line for line in lines)
    pd.testing.assert_frame_equal(again, rows)
    # A file holding only the RTN unit, and a hand-truncated GPTQ unit, is completed to the same bytes.
    text = pd.read_csv(out, dtype=str, keep_default_na=False)
    partial = pd.concat([text[text["method"] == "RTN"], text[text["method"] == "GPTQ"].iloc[:3]])
    resumed = tmp_path / "rows.csv"
    partial.to_csv(resumed, index=False)
    lines.clear()
    measure(trained_dir, out=resumed, progress=lines.append, **GRID, **FAST)
    assert resumed.read_bytes() == full
    assert not any(" RTN " in line for line in lines) and any(" GPTQ " in line for line in lines)


def test_other_rows_in_the_file_are_kept(measured, neox_dir, tmp_path):
    rows, out, _ = measured
    target = tmp_path / "rows.csv"
    target.write_bytes(out.read_bytes())
    measure(neox_dir, methods=("rtn",), bits=(4,), group_sizes=(None,), out=target, **FAST)
    both = pd.read_csv(target)
    assert len(both) == len(rows) + 1 and both["unit"].nunique() == 4
    assert both["model"].iloc[-1] == "tiny-neox"


def test_measure_model_matches_and_leaves_the_model_as_it_was(neox_dir):
    model = _load(neox_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    options = dict(methods=("gptq", "w8a8"), bits=(3,), group_sizes=(None,), quantize_head=True, **FAST)
    rows = measure_model(model, neox_dir, **options)
    pd.testing.assert_frame_equal(rows, measure(neox_dir, **options))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_pre_hooks for m in model.modules())
    embeddings = 2 * model.config.vocab_size * model.config.hidden_size  # embed_in + untied embed_out
    assert rows["params"].eq(sum(p.numel() for p in model.parameters()) - embeddings).all()


def test_tied_llama_declares_its_tokens_and_stays_tied(trained_dir, tmp_path):
    ckpt = tmp_path / "declared"
    model = _load(trained_dir)
    model.save_pretrained(ckpt, safe_serialization=True)
    (ckpt / "bayesqid.json").write_text(json.dumps({"tokens": 5e5, "family": "tiny-llamas"}))
    rows = measure_model(model, ckpt, methods=("gptq",), bits=(4,), group_sizes=(None,), quantize_head=True,
                         max_eval_tokens=512, calib_tokens=512)
    embedding = model.config.vocab_size * model.config.hidden_size
    assert rows["params"].iloc[0] == sum(p.numel() for p in model.parameters()) - embedding
    assert rows["tokens"].iloc[0] == 5e5 and rows["family"].iloc[0] == "tiny-llamas"
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    bq.validate(rows)


def test_own_tokenizer_and_text_files(neox_dir, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    ckpt = tmp_path / "with-tokenizer"
    _load(neox_dir).save_pretrained(ckpt, safe_serialization=True)
    text = "def f(x):\n    return x + 1\n" * 200
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel()
    bpe.train_from_iterator([text], tokenizers.trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]"]))
    transformers.PreTrainedTokenizerFast(tokenizer_object=bpe).save_pretrained(ckpt)
    (tmp_path / "eval.txt").write_text(text)
    folder = tmp_path / "calib"
    folder.mkdir()
    (folder / "b.txt").write_text("print('hello')\n" * 50)
    (folder / "a.txt").write_text("x = [i for i in range(10)]\n" * 50)
    rows = measure(ckpt, eval_text=tmp_path / "eval.txt", calib_text=folder, methods=("rtn",), bits=(4,),
                   group_sizes=(None,), tokens=1e6, max_eval_tokens=512, calib_tokens=256)
    row = rows.iloc[0]
    assert row["tokenizer"] != "bytes" and row["eval_set"] == "eval" and row["calib_set"] == "calib"
    assert 0 < row["eval_tokens"] < len(text) // 2  # subword tokens, fewer than bytes


@pytest.mark.nuts
def test_measured_rows_join_the_reference_and_fit_from_the_command_line(measured, tmp_path, capsys):
    """The promise of `bayesqid measure`: its rows go, as they are, into
    `bayesqid fit --data reference --data ROWS.csv`, and the fit knows the new family."""
    from bayesqid.cli import main

    _rows, out, _lines = measured
    assert main(["data", "--data", "reference", "--data", str(out)]) == 0
    assert "llama: 17" in capsys.readouterr().out
    run_path = tmp_path / "joined.nc"
    code = main(["fit", "--data", "reference", "--data", str(out), "--out", str(run_path),
                 "--draws", "150", "--tune", "300", "--chains", "2"])
    assert code == 0 and run_path.exists()
    run = bq.load_run(run_path)
    assert "llama" in run.levels["family"] and "W8A8 per-channel" in run.levels["quantizer"]
    assert len(run.data()) == len(bq.load_reference().frame) + 17
