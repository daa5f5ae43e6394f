"""Measure the QiD of checkpoints: 16-bit and weight-quantized cross-entropy on the same tokens.

The Python API (stable; the training lab calls it)::

    measure(model_dirs, *, eval_text=None, calib_text=None, bits=(2, 3, 4, 8),
            methods=("rtn", "gptq"), group_sizes=(128,), family=None, tokens=None,
            device="auto", dtype="auto", max_eval_tokens=65536, calib_tokens=32768,
            seq_len=None, quantize_head=False, act_order=False, percdamp=0.01,
            seed=DEFAULT_SEED, out=None, progress=None, threads=None, extra=None)
        -> pandas.DataFrame          # every checkpoint x method x bits x group size; resumable

    measure_model(model, model_dir, *, eval_text=None, calib_text=None, bits=..., methods=...,
                  group_sizes=..., family=None, tokens=None, dtype="auto", max_eval_tokens=...,
                  calib_tokens=..., seq_len=None, quantize_head=False, act_order=False,
                  percdamp=0.01, seed=DEFAULT_SEED, progress=None, extra=None)
        -> pandas.DataFrame          # one model already in memory, saved at model_dir; no file

Per checkpoint the work shared by all methods is done once: the 16-bit loss, and one pass over
the calibration text that collects every quantized layer's input statistics and (for GPTQ) its
Hessian from the 16-bit model's activations ("one-shot" GPTQ: each layer's Hessian is computed
once and reused for every bit width and group size, rather than recomputed layer by layer from
already-quantized inputs). Each method then quantizes the weights, evaluates, and restores them.
Rows are written to ``out`` atomically when a (checkpoint, method) unit finishes; a rerun skips
units whose key (weights sha256 + settings) is already there and rewrites identical rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesqid.constants import DEFAULT_SEED
from bayesqid.errors import DataError
from bayesqid.measure.deps import require_lab
from bayesqid.measure.plan import Plan, Settings, per_checkpoint
from bayesqid.measure.table import (
    as_text,
    check_writable,
    merged,
    read_rows,
    typed,
    units_in,
    write_rows,
)
from bayesqid.measure.text import Corpus, default_corpora, load_corpus

if TYPE_CHECKING:
    import torch

    from bayesqid.measure.checkpoint import CheckpointInfo

__all__ = ["measure", "measure_model"]

#: ``progress(line)``: one human-readable line per step (the CLI prints them to stderr).
Progress = Callable[[str], None]


def measure(
    model_dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    eval_text: str | os.PathLike[str] | None = None,
    calib_text: str | os.PathLike[str] | None = None,
    bits: Sequence[int] = (2, 3, 4, 8),
    methods: Sequence[str] = ("rtn", "gptq"),
    group_sizes: Sequence[int | str | None] = (128,),
    family: str | None = None,
    tokens: float | Sequence[float] | None = None,
    device: str = "auto",
    dtype: str = "auto",
    max_eval_tokens: int = 65536,
    calib_tokens: int = 32768,
    seq_len: int | None = None,
    quantize_head: bool = False,
    act_order: bool = False,
    percdamp: float = 0.01,
    seed: int = DEFAULT_SEED,
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    threads: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Measure QiD of local checkpoints under every method, bit width and group size.

    Parameters
    ----------
    model_dirs : path or sequence of paths
        Hugging Face causal-LM directories (``config.json`` + ``*.safetensors``).
    eval_text, calib_text : path, optional
        A UTF-8 text file or a folder of them. Default: the evaluation and calibration parts
        of the running Python's standard library source (:mod:`bayesqid.measure.text`).
    bits : sequence of int, optional
        Weight bit widths, each in 2..8.
    methods : sequence of str, optional
        Any of ``rtn``, ``rtn-sym``, ``gptq``, ``gptq-sym``, ``w8a8`` (W8A8 is always 8-bit
        per-channel and ignores ``bits`` and ``group_sizes``).
    group_sizes : sequence, optional
        Input columns per scale; ``None`` or ``"per-channel"`` for one scale per output channel.
    family : str, optional
        ``family`` column. Default: ``bayesqid.json``'s ``family``, else the config's model type.
    tokens : float or sequence of float, optional
        Training tokens ``D`` (one for all checkpoints, or one each). Default: what the
        checkpoint declares (:mod:`bayesqid.measure.checkpoint`); an error if it declares nothing.
    device : {"auto", "cpu", "cuda"}, optional
        ``auto`` picks CUDA when available.
    dtype : {"auto", "float32", "bfloat16", "float16"}, optional
        Dtype of the unquantized model (``auto``: as stored). Quantized weights are cast to it.
    max_eval_tokens : int, optional
        Evaluation tokens at most (whole windows).
    calib_tokens : int, optional
        Calibration tokens (windows drawn at random offsets of the calibration text).
    seq_len : int, optional
        Window length. Default: the model's context, at most
        :data:`bayesqid.measure.runner.MAX_SEQ_LEN`.
    quantize_head : bool, optional
        Also quantize the output head (embeddings always stay 16-bit).
    act_order, percdamp : optional
        GPTQ's column order by decreasing Hessian diagonal, and its damping fraction.
    seed : int, optional
        Seed of the calibration windows' offsets.
    out : path, optional
        CSV written atomically after each (checkpoint, method); resumed when it exists.
    progress : callable, optional
        Called with one line per step (checkpoint, method, tokens/s).
    threads : int, optional
        ``torch.set_num_threads`` (e.g. 2 on a 2-core machine); default leaves torch's.
    extra : mapping, optional
        Constant columns appended to every row (and part of the resume key).

    Returns
    -------
    pandas.DataFrame
        This call's rows (resumed and new) in :data:`bayesqid.measure.table.ROW_COLUMNS` (+ extra);
        ``bayesqid.validate`` accepts them.

    Raises
    ------
    bayesqid.errors.BayesqidError
        One line naming the path or option: missing lab packages, a missing, corrupt, pickle-only
        or non-causal-LM directory, an unknown method, bits outside 2..8, empty text, unknown
        training tokens, or an unwritable ``out``.
    """
    torch = require_lab()
    from bayesqid.measure.checkpoint import check_model, inspect_checkpoint, load_model
    from bayesqid.measure.runner import run_units

    dirs = [model_dirs] if isinstance(model_dirs, str | os.PathLike) else list(model_dirs)
    if not dirs:
        raise DataError("MODEL_DIR: give at least one checkpoint directory")
    settings = _settings(bits, methods, group_sizes, family, device, dtype, max_eval_tokens,
                         calib_tokens, seq_len, quantize_head, act_order, percdamp, seed, extra)
    target = check_writable(out) if out is not None else None
    token_counts = per_checkpoint(tokens, len(dirs), "--tokens")
    corpora = _corpora(eval_text, calib_text)
    # Check every checkpoint (and hash it) before any long work, so a bad one fails fast.
    infos = [inspect_checkpoint(d) for d in dirs]
    plans = [_plan(info, settings, corpora, d) for info, d in zip(infos, token_counts, strict=True)]
    existing = read_rows(target) if target is not None else None
    # A unit is keyed by its weights and settings: the same checkpoint given twice is one unit,
    # measured and written once.
    order = list(dict.fromkeys(key for plan in plans for key in plan.keys.values()))
    expected = {key: len(settings.grid(m)) for plan in plans for m, key in plan.keys.items()}
    # A unit counts as done only with all its rows (a hand-truncated file is recomputed).
    done = {} if existing is None else {
        key: rows for key, rows in units_in(existing, order).items() if len(rows) == expected[key]
    }
    if threads is not None:
        torch.set_num_threads(int(threads))
    device_name = _device(torch, settings.device)
    say = progress or (lambda line: None)
    for info, plan in zip(infos, plans, strict=True):
        pending = {m: k for m, k in plan.keys.items() if k not in done}
        if not pending:
            where = target if target is not None else "this call"
            say(f"{plan.model}: all methods already measured ({where}); skipped")
            continue
        model = load_model(info, dtype=settings.dtype, device=device_name)
        check_model(model, info.path)

        def finished(key: str, rows: pd.DataFrame) -> None:
            done[key] = as_text(rows)
            if target is not None and existing is not None:
                write_rows(merged(existing, done, order), target)

        run_units(model, info, plan, settings, corpora, pending, say, finished)
        del model
    if target is not None and existing is not None and done:
        write_rows(merged(existing, done, order), target)  # also tidies the order of resumed rows
    rows = [done[key] for key in order if key in done]
    return typed(pd.concat(rows, ignore_index=True) if rows else pd.DataFrame())


def measure_model(
    model: torch.nn.Module,
    model_dir: str | os.PathLike[str],
    *,
    eval_text: str | os.PathLike[str] | None = None,
    calib_text: str | os.PathLike[str] | None = None,
    bits: Sequence[int] = (2, 3, 4, 8),
    methods: Sequence[str] = ("rtn", "gptq"),
    group_sizes: Sequence[int | str | None] = (128,),
    family: str | None = None,
    tokens: float | None = None,
    dtype: str = "auto",
    max_eval_tokens: int = 65536,
    calib_tokens: int = 32768,
    seq_len: int | None = None,
    quantize_head: bool = False,
    act_order: bool = False,
    percdamp: float = 0.01,
    seed: int = DEFAULT_SEED,
    progress: Progress | None = None,
    extra: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Measure one model already in memory whose weights are saved in ``model_dir``.

    The directory supplies the weights' hash, the config, the tokenizer and declared tokens;
    the model is used as it is (its device and dtype), and left as it was (weights restored,
    hooks removed). Options as in :func:`measure`; nothing is written.

    Returns
    -------
    pandas.DataFrame
        Its rows, in :func:`measure`'s columns.
    """
    require_lab()
    from bayesqid.measure.checkpoint import check_model, inspect_checkpoint
    from bayesqid.measure.runner import run_units

    settings = _settings(bits, methods, group_sizes, family, "auto", dtype, max_eval_tokens,
                         calib_tokens, seq_len, quantize_head, act_order, percdamp, seed, extra)
    corpora = _corpora(eval_text, calib_text)
    info = inspect_checkpoint(model_dir)
    check_model(model, info.path)
    plan = _plan(info, settings, corpora, tokens)
    done: dict[str, pd.DataFrame] = {}
    run_units(model, info, plan, settings, corpora, dict(plan.keys), progress or (lambda line: None),
                    lambda key, rows: done.__setitem__(key, as_text(rows)))
    return typed(pd.concat(list(done.values()), ignore_index=True))


# --- shared steps ------------------------------------------------------------------------------


def _settings(bits, methods, group_sizes, family, device, dtype, max_eval_tokens, calib_tokens,  # type: ignore[no-untyped-def]
              seq_len, quantize_head, act_order, percdamp, seed, extra) -> Settings:
    return Settings.create(
        bits=bits, methods=methods, group_sizes=group_sizes, family=family, device=device, dtype=dtype,
        max_eval_tokens=max_eval_tokens, calib_tokens=calib_tokens, seq_len=seq_len,
        quantize_head=bool(quantize_head), act_order=bool(act_order), percdamp=percdamp, seed=seed,
        extra=dict(extra or {}),
    )


def _corpora(eval_text: Any, calib_text: Any) -> tuple[Corpus, Corpus]:
    """(evaluation, calibration) corpora; the standard library's parts stand in for missing ones."""
    needed = eval_text is None or calib_text is None
    default_calib, default_eval = default_corpora() if needed else (None, None)
    evals = load_corpus(eval_text, "--eval") if eval_text is not None else default_eval
    calib = load_corpus(calib_text, "--calib") if calib_text is not None else default_calib
    return evals, calib  # type: ignore[return-value]


def _plan(info: CheckpointInfo, settings: Settings, corpora: tuple[Corpus, Corpus], tokens: Any) -> Plan:
    if tokens is None:
        tokens = info.declared_tokens()
        if tokens is None:
            raise DataError(f"{info.path}: training tokens unknown; give --tokens D (or a bayesqid.json "
                            'with {"tokens": D} in the checkpoint directory)')
    try:
        tokens = float(tokens)
    except (TypeError, ValueError):
        raise DataError(f"--tokens: expected a number of training tokens, got {tokens!r}") from None
    if not (np.isfinite(tokens) and tokens > 0):
        raise DataError(f"--tokens: must be a positive number, got {tokens!r}")
    family = settings.family or str(info.metadata.get("family") or info.config.get("model_type") or "unknown")
    model = str(info.metadata.get("model") or info.path.name)
    evals, calib = corpora
    identity = {
        "weights": info.sha256, "model": model, "family": family, "tokens": tokens,
        "eval": [evals.name, evals.sha256], "calib": [calib.name, calib.sha256],
    }  # fmt: skip
    return Plan(model, family, tokens, {m: settings.unit_key(m, identity) for m in settings.methods})


def _device(torch: Any, wanted: str) -> str:
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"--device {wanted}: CUDA is not available on this machine")
    return wanted


