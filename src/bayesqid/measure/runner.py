"""Measure one loaded model: shared 16-bit and calibration work, then each pending method.

The work every method shares is done once per checkpoint: the 16-bit evaluation, and one
calibration pass that records each quantized layer's input statistics and, when GPTQ is
pending, its Hessian (factored once, then reused for every bit width and group size). Each
method then quantizes the weights, evaluates on the same windows, and restores them.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesqid.errors import DataError
from bayesqid.measure.plan import MIN_EVAL_TOKENS, WARN_EVAL_TOKENS, Plan, Settings
from bayesqid.measure.table import ROW_COLUMNS
from bayesqid.measure.text import Corpus

if TYPE_CHECKING:
    import torch

    from bayesqid.measure.checkpoint import CheckpointInfo

#: Longest window used when the model does not say its context (and the cap on what it says).
MAX_SEQ_LEN = 2048
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


def run_units(
    model: torch.nn.Module,
    info: CheckpointInfo,
    plan: Plan,
    settings: Settings,
    corpora: tuple[Corpus, Corpus],
    pending: dict[str, str],
    say: Callable[[str], None],
    finished: Callable[[str, pd.DataFrame], None],
) -> None:
    """Measure the pending methods of one loaded model; hand each unit's rows to ``finished``.

    Parameters
    ----------
    model : torch.nn.Module
        The 16-bit model, in evaluation mode; left as it was on return.
    info : CheckpointInfo
        Its directory (tokenizer, weights hash).
    plan : Plan
        Its row identity and resume keys.
    settings : Settings
        The measurement's options.
    corpora : (Corpus, Corpus)
        Evaluation and calibration text.
    pending : dict of str to str
        Methods still to measure, with their resume keys.
    say : callable
        Progress lines.
    finished : callable
        ``finished(key, rows)`` after each method, with its rows in :data:`ROW_COLUMNS` order.

    Raises
    ------
    DataError
        If a text is too short for one window, or the tokenizer does not fit the model.
    """
    import torch

    from bayesqid.measure.activations import (
        calibrate,
        get_weight,
        quantizable_linears,
        quantized_inputs,
        set_weight,
    )
    from bayesqid.measure.checkpoint import non_embedding_params
    from bayesqid.measure.evaluate import batch_size_for, make_windows, mean_loss
    from bayesqid.measure.gptq import prepare
    from bayesqid.measure.methods import METHODS
    from bayesqid.measure.outliers import outlier_stats
    from bayesqid.measure.text import load_tokenizer

    evals, calib = corpora
    config = model.config
    vocab = int(model.get_input_embeddings().weight.shape[0])
    tokenizer = load_tokenizer(info.path, vocab)
    seq_len = _context(config, settings.seq_len)
    device = next(model.parameters()).device
    eval_ids = tokenizer.tokens(evals, settings.max_eval_tokens)
    windows = make_windows(eval_ids, seq_len, settings.max_eval_tokens)
    scored = int(windows.shape[0] * max(windows.shape[1] - 1, 0))
    check_eval_tokens(scored, evals.name)
    calib_ids = tokenizer.tokens(calib, 8 * settings.calib_tokens)
    if len(calib_ids) < 2:
        raise DataError(f"{calib.name}: the calibration text has fewer than 2 tokens (--calib)")
    for name, ids in ((evals.name, eval_ids), (calib.name, calib_ids)):
        if int(ids.max()) >= vocab:
            raise DataError(f"{info.path}: its tokenizer gives ids >= the vocabulary size {vocab} on {name}")
    # The first progress line comes once the model and its texts are accepted, so that a
    # refused checkpoint prints one line: its error.
    say(f"{plan.model}: measuring {info.path} (weights sha256 {info.sha256[:12]})")
    windows = windows.to(device)
    calib_windows = torch.as_tensor(_calibration_windows(
        calib_ids, seq_len, max(1, settings.calib_tokens // seq_len), settings.seed)).to(device)
    batch = batch_size_for(windows.shape[1], int(getattr(config, "vocab_size", vocab) or vocab))

    tied = _tied(model)
    linears = quantizable_linears(model, settings.quantize_head)
    originals = {name: get_weight(module).clone() for name, module in linears.items()}
    try:
        start = time.perf_counter()
        fp16_loss = _finite(mean_loss(model, windows, batch), f"{info.path}: the 16-bit loss")
        say(f"{plan.model}: 16-bit loss {fp16_loss:.4f} nats on {scored} tokens ({_rate(windows, start)})")
        hessians = any(METHODS[m].needs_hessian for m in pending)
        start = time.perf_counter()
        stats = calibrate(model, linears, calib_windows, batch_size=batch, hessians=hessians)
        prepared = {name: prepare(h, percdamp=settings.percdamp, act_order=settings.act_order)
                    for name, h in stats.hessians.items()}
        stats.hessians.clear()  # the factorisations replace them; free the memory
        say(f"{plan.model}: calibration on {stats.tokens} tokens in {time.perf_counter() - start:.1f} s")
        common = {
            "family": plan.family, "model": plan.model, "params": float(non_embedding_params(model)),
            "tokens": plan.tokens, "eval_set": evals.name,
            "source": f"bayesqid measure {info.path} (weights sha256 {info.sha256[:16]})",
            "fp16_loss": fp16_loss, "eval_tokens": scored, "seq_len": int(windows.shape[1]),
            "calib_set": calib.name, "calib_tokens": stats.tokens, "eval_sha256": evals.sha256,
            "calib_sha256": calib.sha256, "tokenizer": tokenizer.name,
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."), "seed": settings.seed,
            "weights_sha256": info.sha256, **outlier_stats(stats, originals),
        }  # fmt: skip
        for method_name in settings.methods:
            if method_name not in pending:
                continue
            method = METHODS[method_name]
            rows = []
            for bits, group_size in settings.grid(method_name):
                start = time.perf_counter()
                for name, module in linears.items():
                    set_weight(module, method.quantize(originals[name], bits, group_size, prepared.get(name)))
                quantizing = time.perf_counter() - start
                start = time.perf_counter()
                if method.activation_bits is not None:
                    with quantized_inputs(linears, method.activation_bits):
                        quant_loss = mean_loss(model, windows, batch)
                else:
                    quant_loss = mean_loss(model, windows, batch)
                grid = "per-channel" if group_size is None else f"g{group_size}"
                quant_loss = _finite(quant_loss,
                                     f"{info.path}: the loss under {method.label} {bits}-bit {grid}")
                rows.append({**common, "bits": bits, "group_size": group_size, "method": method.label,
                             "qid": quant_loss - fp16_loss, "quant_loss": quant_loss,
                             "settings": settings.method_settings(method_name),
                             "unit": pending[method_name], **settings.extra})
                say(f"{plan.model}: {method.label} {bits}-bit {grid}: qid {quant_loss - fp16_loss:+.4f} nats "
                    f"(quantize {quantizing:.1f} s, eval {_rate(windows, start)})")
            _restore(linears, originals)
            frame = pd.DataFrame(rows)
            frame["group_size"] = frame["group_size"].astype("Int64")
            finished(pending[method_name], frame.reindex(columns=[*ROW_COLUMNS, *settings.extra]))
    finally:
        _restore(linears, originals)
        if tied is not None and settings.quantize_head:
            head, embedding = tied
            head.weight = embedding.weight  # re-tie what quantizable_linears untied


def check_eval_tokens(scored: int, name: str) -> None:
    """Refuse an evaluation too short to resolve QiD, and warn when it is short.

    QiD is a difference of two mean losses on the same tokens; on fewer than
    :data:`MIN_EVAL_TOKENS` predicted tokens its noise is of the size of the effects measured.

    Raises
    ------
    DataError
        Naming the text and ``--eval`` / ``--max-eval-tokens``.
    """
    if scored < MIN_EVAL_TOKENS:
        raise DataError(f"{name}: {scored} evaluation tokens are too few to resolve QiD (at least "
                        f"{MIN_EVAL_TOKENS}; give a longer --eval text or a larger --max-eval-tokens)")
    if scored < WARN_EVAL_TOKENS:
        warnings.warn(f"{name}: only {scored} evaluation tokens; QiD below ~0.01 nats is not resolved "
                      f"(use {WARN_EVAL_TOKENS} or more)", UserWarning, stacklevel=3)


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise DataError(f"{what} is not finite ({value}); the weights or the quantized model overflow")
    return value


def _restore(linears: dict[str, Any], originals: dict[str, Any]) -> None:
    from bayesqid.measure.activations import set_weight

    for name, module in linears.items():
        set_weight(module, originals[name])


def _tied(model: Any) -> tuple[Any, Any] | None:
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and embedding is not None and head.weight is embedding.weight:
        return head, embedding
    return None


def _rate(windows: Any, start: float) -> str:
    seconds = max(time.perf_counter() - start, 1e-9)
    return f"{windows.numel() / seconds:,.0f} tokens/s"


def _context(config: Any, requested: int | None) -> int:
    if requested is not None:
        return requested
    sizes = [getattr(config, key, None) for key in _CONTEXT_KEYS]
    known = [int(s) for s in sizes if isinstance(s, int) and s > 1]
    return min(known[0], MAX_SEQ_LEN) if known else MAX_SEQ_LEN


def _calibration_windows(ids: np.ndarray, seq_len: int, count: int, seed: int) -> np.ndarray:
    """``count`` windows at random offsets (GPTQ's sampling), or the whole text if shorter."""
    if len(ids) <= seq_len:
        return ids.reshape(1, -1)
    starts = np.random.default_rng(seed).integers(0, len(ids) - seq_len + 1, size=count)
    return np.stack([ids[s:s + seq_len] for s in starts])
