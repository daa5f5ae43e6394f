"""Checkpoints: check a Hugging Face causal-LM directory, hash its weights, load it safely.

Only safetensors are ever read (a pickle can run code when loaded) and never with
``trust_remote_code``. Every fault a user can cause (a missing directory, no ``config.json``,
pickle-only weights, a corrupt file, a model that is not a causal LM) is a :class:`DataError`
naming the directory.

A checkpoint may declare how many tokens it was trained on in a ``bayesqid.json`` file beside
its ``config.json`` (``{"tokens": 2.6e9}``, as the training lab writes), or in ``config.json``
under one of :data:`TOKEN_KEYS`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bayesqid.errors import DataError

if TYPE_CHECKING:
    import torch

#: Keys of ``bayesqid.json`` or ``config.json`` read as the number of training tokens.
TOKEN_KEYS: tuple[str, ...] = ("tokens", "training_tokens", "tokens_seen")
#: Metadata a checkpoint may carry for bayesqid (written by the training lab).
METADATA_FILE = "bayesqid.json"
_PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.bin")


@dataclass(frozen=True)
class CheckpointInfo:
    """What is known of a checkpoint directory before loading its model.

    Parameters
    ----------
    path : pathlib.Path
        The directory, resolved.
    weights : tuple of pathlib.Path
        Its ``*.safetensors`` files, sorted by name.
    sha256 : str
        Hex sha256 over the weight files' bytes, in that order.
    config : dict
        The parsed ``config.json``.
    metadata : dict
        The parsed ``bayesqid.json``, or empty.
    """

    path: Path
    weights: tuple[Path, ...]
    sha256: str
    config: dict[str, Any]
    metadata: dict[str, Any]

    def declared_tokens(self) -> float | None:
        """Training tokens declared by the checkpoint, or None."""
        for source in (self.metadata, self.config):
            for key in TOKEN_KEYS:
                value = source.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                    return float(value)
        return None


def _json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable {what} ({type(err).__name__})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: {what} is not a JSON object")
    return value


def _sha256(files: tuple[Path, ...]) -> str:
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def inspect_checkpoint(model_dir: str | os.PathLike[str]) -> CheckpointInfo:
    """Check a checkpoint directory without building its model, and hash its weights.

    Each safetensors header is opened, so a truncated or corrupt file is caught here rather
    than deep inside transformers.

    Parameters
    ----------
    model_dir : str or path-like
        A local Hugging Face directory with ``config.json`` and ``*.safetensors``.

    Returns
    -------
    CheckpointInfo

    Raises
    ------
    DataError
        If the directory is missing, has no ``config.json``, has only pickle weights, or a
        weight file is corrupt.
    """
    from safetensors import safe_open

    path = Path(model_dir)
    if not path.is_dir():
        raise DataError(f"{path}: no such checkpoint directory")
    if not (path / "config.json").is_file():
        raise DataError(f"{path}: not a Hugging Face checkpoint (no config.json)")
    weights = tuple(sorted(path.glob("*.safetensors")))
    if not weights:
        pickles = [name for name in _PICKLES if (path / name).exists()]
        if pickles:
            raise DataError(f"{path}: has only pickle weights ({pickles[0]}); bayesqid loads safetensors "
                            "only (convert with save_pretrained(..., safe_serialization=True))")
        raise DataError(f"{path}: no *.safetensors weight files")
    for file in weights:
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # safetensors raises its own error types for bad headers
            raise DataError(f"{file}: corrupt safetensors file ({type(err).__name__})") from None
    config = _json(path / "config.json", "config.json")
    metadata = _json(path / METADATA_FILE, METADATA_FILE) if (path / METADATA_FILE).is_file() else {}
    return CheckpointInfo(path.resolve(), weights, _sha256(weights), config, metadata)


def load_model(info: CheckpointInfo, *, dtype: str = "auto", device: str = "cpu") -> torch.nn.Module:
    """Build the causal LM of a checked directory from its safetensors, in evaluation mode.

    Parameters
    ----------
    info : CheckpointInfo
        From :func:`inspect_checkpoint`.
    dtype : str, optional
        ``"auto"`` keeps the stored dtype; or ``"float32"``, ``"bfloat16"``, ``"float16"``.
    device : str, optional
        A torch device string.

    Returns
    -------
    torch.nn.Module
        A transformers causal-LM model.

    Raises
    ------
    DataError
        If the directory is not a causal language model transformers can build without
        remote code, or its weights do not fit its config.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(info.path, local_files_only=True, trust_remote_code=False)
    except Exception as err:  # unknown model_type, malformed fields, ...
        raise DataError(f"{info.path}: config.json is not a model transformers knows "
                        f"({_first_line(err)})") from None
    if getattr(config, "is_encoder_decoder", False):
        raise DataError(f"{info.path}: not a causal language model (model_type {config.model_type!r} is an "
                        "encoder-decoder)")
    try:
        with _quiet_transformers():
            # Mismatched shapes are reported below, in one line, rather than by the library's report.
            model, loading = AutoModelForCausalLM.from_pretrained(
                info.path, config=config, local_files_only=True, trust_remote_code=False,
                use_safetensors=True, dtype="auto" if dtype == "auto" else getattr(torch, dtype),
                output_loading_info=True, ignore_mismatched_sizes=True,
            )
    except ValueError as err:
        if "Unrecognized configuration class" in str(err):
            raise DataError(f"{info.path}: not a causal language model "
                            f"(model_type {config.model_type!r})") from None
        raise DataError(f"{info.path}: cannot load the model ({_first_line(err)})") from None
    except Exception as err:  # I/O errors, malformed tensors
        raise DataError(f"{info.path}: cannot load the model ({_first_line(err)})") from None
    _check_loading(info.path, loading)
    return model.to(device).eval()


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars (its faults are reported in one line)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _check_loading(path: Path, loading: dict[str, Any]) -> None:
    """Refuse weights that do not match the config: a missing tensor would be left random."""
    for key, what in (("missing_keys", "missing tensor"), ("unexpected_keys", "unexpected tensor"),
                      ("mismatched_keys", "tensor of the wrong shape")):
        found = sorted(str(_mismatch(k)) for k in loading.get(key) or ())
        if found:
            more = f" and {len(found) - 1} more" if len(found) > 1 else ""
            raise DataError(f"{path}: the weights do not fit config.json: {what} {found[0]}{more}")


def _mismatch(entry: Any) -> str:
    # Mismatched keys come as (name, stored shape, expected shape).
    if isinstance(entry, tuple | list) and len(entry) == 3:
        name, stored, wanted = entry
        return f"{name} ({tuple(stored)} stored, {tuple(wanted)} expected)"
    return str(entry)


def check_model(model: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Refuse a model with non-finite weights, or one whose outputs see later tokens.

    An encoder (BERT and kin) builds as a "causal LM" in transformers and would be measured
    as one; here the logits at every position but the last are compared on two inputs that
    differ only in their last token: a causal model gives the same logits.

    Raises
    ------
    DataError
        Naming the directory and the tensor (non-finite values) or the fault.
    """
    import torch

    for name, param in model.named_parameters():
        if not bool(torch.isfinite(param).all()):
            raise DataError(f"{path}: weight tensor {name} holds non-finite values (NaN or inf)")
    vocab = int(model.get_input_embeddings().weight.shape[0])
    context = [getattr(model.config, k, None) for k in ("max_position_embeddings", "n_positions", "n_ctx")]
    length = min([16] + [int(c) for c in context if isinstance(c, int) and c > 1])
    device = next(model.parameters()).device
    first = (torch.arange(length, device=device) * 7 + 3).remainder(vocab).unsqueeze(0)
    second = first.clone()
    second[0, -1] = (second[0, -1] + vocab // 2) % vocab
    training = model.training
    model.eval()  # dropout would make two passes differ whatever the attention
    try:
        with torch.inference_mode():
            a = model(input_ids=first).logits[0, :-1].float()
            b = model(input_ids=second).logits[0, :-1].float()
    finally:
        model.train(training)
    if not bool(torch.isfinite(a).all()):
        raise DataError(f"{path}: the model's outputs are not finite")
    # A causal model computes the same numbers for the earlier positions (float noise at most);
    # even a freshly initialised encoder moves them by far more than this bound.
    if float((a - b).abs().max()) > 1e-5 * float(a.abs().max()) + 1e-8:
        raise DataError(f"{path}: not a causal language model (model_type "
                        f"{getattr(model.config, 'model_type', '?')!r}): outputs at earlier positions depend "
                        "on later tokens")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def non_embedding_params(model: torch.nn.Module) -> int:
    """Parameters of a model minus its input embedding, untied output head and position embeddings.

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model (``get_input_embeddings``/``get_output_embeddings``).

    Returns
    -------
    int
        ``N`` of the scaling laws. Tied weights are counted once, so a head tied to the input
        embedding is removed with it.
    """
    import torch

    embedding_ids: set[int] = set()
    # Every nn.Embedding (token, position, token-type) is a lookup table, not compute.
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            embedding_ids.update(id(p) for p in module.parameters())
    head = model.get_output_embeddings()
    if head is not None:
        embedding_ids.update(id(p) for p in head.parameters())
    return sum(p.numel() for p in model.parameters() if id(p) not in embedding_ids)
