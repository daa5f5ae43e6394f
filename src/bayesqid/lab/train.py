"""Train one lab run (size x recipe x seed) with its cooldown branches, resumable from checkpoints.

Determinism: the model is initialised from ``torch.manual_seed(seed)``; the batch of step ``k``
is drawn by ``numpy.random.default_rng([seed, k])``, so the data order depends only on the seed
and the step, never on how often the run was interrupted; dropout's RNG state is saved with
every checkpoint. A checkpoint directory is written under a temporary name and renamed, so it
is complete or absent. It holds the model (``save_pretrained``, safetensors), ``bayesqid.json``
(tokens, ``lr_frac``, ``annealed``, ...) and, while the run still needs it, ``state/``: the
weights, the optimizer tensors and the RNG states as safetensors, and step, optimizer settings
and loss scaler as JSON. Nothing here is pickled.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from bayesqid.errors import SpecError
from bayesqid.lab.config import LabConfig, Recipe, Size
from bayesqid.lab.corpus import load_train_text
from bayesqid.lab.schedules import Schedule, cooldown_end
from bayesqid.measure.checkpoint import METADATA_FILE, non_embedding_params

__all__ = ["METADATA", "VOCAB", "Checkpoint", "TrainStep", "batch_at", "build_model", "check_precision",
           "load_train_text", "train_run"]

#: Byte-level vocabulary: every byte is a token, no tokenizer files are needed.
VOCAB = 256
#: Seconds between progress lines.
PROGRESS_EVERY = 10.0
_ADAM_BETAS = (0.9, 0.95)
#: A checkpoint's metadata, read by ``measure`` (its ``tokens``) and by the lab (the rest); a
#: checkpoint directory without it is incomplete.
METADATA = METADATA_FILE


@dataclass(frozen=True)
class Checkpoint:
    """A finished checkpoint of a run: where it is and what the recipe columns say about it."""

    path: Path
    step: int
    tokens: int
    lr_frac: float
    annealed: bool
    cooldown_from: int  # tokens where a cooldown branch left the stable phase; 0 on the main run
    params: int
    train_loss: float
    average_last: int = 0  # > 1: the mean weights of this many main-run checkpoints ending here


def check_precision(recipe: Recipe, device: torch.device) -> None:
    """Refuse a recipe's precision on a device that cannot train in it (before any work).

    fp16 trains with a dynamic loss scaler (``torch.amp.GradScaler``) and bf16 with autocast; a
    device without them (an old GPU without bf16, a torch build without a CPU scaler) is named
    in one line rather than failing inside the first step.

    Raises
    ------
    SpecError
        Naming ``recipes.NAME.precision`` and the device.
    """
    key = f"recipes.{recipe.name}.precision"
    if recipe.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SpecError(f"{key}: bf16 is not supported on {device} ({torch.cuda.get_device_name(device)}); "
                        "use 'fp16' (with its loss scaler) or 'fp32'")
    if recipe.precision == "fp16":
        try:
            torch.amp.GradScaler(device.type, enabled=True)
            with torch.autocast(device.type, dtype=torch.float16):
                torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
        except (RuntimeError, AssertionError, ValueError) as err:
            raise SpecError(f"{key}: fp16 needs autocast and a loss scaler, which {device} cannot do "
                            f"({type(err).__name__}); use 'bf16' or 'fp32'") from None


def build_model(architecture: str, size: Size, *, seq_len: int, dropout: float, seed: int) -> torch.nn.Module:
    """A freshly initialised byte-level decoder, built from a transformers config (no download).

    ``gpt_neox`` applies ``dropout`` to attention and residual branches; ``llama`` has attention
    dropout only.
    """
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    common = {"vocab_size": VOCAB, "hidden_size": size.d_model, "num_hidden_layers": size.layers,
              "num_attention_heads": size.heads, "intermediate_size": size.ffn,
              "max_position_embeddings": seq_len, "use_cache": False, "tie_word_embeddings": False,
              "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    torch.manual_seed(seed)
    if architecture == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_key_value_heads=size.heads, attention_dropout=dropout,
                                             **common))
    else:
        model = GPTNeoXForCausalLM(GPTNeoXConfig(hidden_dropout=dropout, attention_dropout=dropout, **common))
    return model


def batch_at(train: np.ndarray, seed: int, step: int, batch: int,
             seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-byte targets of step ``step`` (1-based): random windows, a function of (seed, step)."""
    starts = np.random.default_rng([seed, step]).integers(0, len(train) - seq_len - 1, size=batch)
    window = torch.from_numpy(train[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64))
    return window[:, :-1], window[:, 1:]


class TrainStep:
    """One optimizer update of the lab: AdamW, gradient clipping, fp32 / bf16 autocast / fp16 + GradScaler.

    Weight decay applies to matrices only (not to biases, norms); the learning rate of each
    update is set by the caller. :meth:`__call__` returns the loss as a tensor so that a GPU
    never waits for a host copy on every step.
    """

    def __init__(self, model: torch.nn.Module, recipe: Recipe, device: torch.device) -> None:
        self.model, self.device, self.clip = model, device, recipe.grad_clip
        matrices = [p for n, p in model.named_parameters() if p.dim() >= 2]
        others = [p for n, p in model.named_parameters() if p.dim() < 2]
        groups = [{"params": matrices, "weight_decay": recipe.weight_decay},
                  {"params": others, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=recipe.peak_lr, betas=_ADAM_BETAS,
                                           fused=device.type == "cuda")
        self.peak = recipe.peak_lr
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.precision)
        self.autocast = ((lambda: torch.autocast(device.type, dtype=dtype)) if dtype
                         else contextlib.nullcontext)
        self.scaler = torch.amp.GradScaler(device.type, enabled=recipe.precision == "fp16")

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor, lr_frac: float) -> torch.Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = self.peak * lr_frac
        with self.autocast():
            logits = self.model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), targets.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()

    # -- state: safetensors for tensors, JSON for the rest ---------------------------------------

    def save_state(self, folder: Path, step: int) -> None:
        opt = self.optimizer.state_dict()
        tensors = {f"opt.{i}.{k}": v.detach().cpu().contiguous() for i, s in opt["state"].items()
                   for k, v in s.items()}
        tensors |= {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        tensors["rng.cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(tensors, folder / "state.safetensors")
        meta = {"step": step, "param_groups": opt["param_groups"], "scaler": self.scaler.state_dict()}
        (folder / "state.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")

    def load_state(self, folder: Path) -> int:
        tensors = load_file(folder / "state.safetensors")
        meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        if meta["scaler"]:
            self.scaler.load_state_dict(meta["scaler"])
        torch.set_rng_state(tensors["rng.cpu"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        return int(meta["step"])


def train_run(config: LabConfig, size: Size, recipe: Recipe, seed: int, run_dir: Path, train: np.ndarray, *,
              device: torch.device, progress: Callable[[str], None] | None = None) -> list[Checkpoint]:
    """Train the main run and its cooldown branches, resuming from the last saved checkpoint.

    Parameters
    ----------
    config : LabConfig
        Budget, batch, checkpoints and architecture.
    size, recipe : Size, Recipe
        What to train, and how.
    seed : int
        Seed of the initialisation, the data order and dropout.
    run_dir : Path
        Directory of this run's checkpoints (created; reused to resume).
    train : numpy.ndarray of uint8
        Training bytes.
    device : torch.device
        Where to train.
    progress : callable, optional
        Receives progress lines (tokens, loss, tokens/s) and one line per checkpoint.

    Returns
    -------
    list of Checkpoint
        Main-run checkpoints in token order, then the cooldown branches' ends.
    """
    say = progress or (lambda _line: None)
    label = f"{size.name}/{recipe.name}/seed{seed}"
    main = config.schedule(recipe)
    starts = {config.steps(t) for t in recipe.cooldown_from}
    stops = sorted({config.steps(t) for t in config.checkpoints} | starts)
    names = {s: f"main-t{s * config.tokens_per_step:012d}" for s in stops}
    done = _finished(run_dir)
    todo = [s for s in stops if names[s] not in done]
    if todo:
        resume = max((s for s in stops if s < todo[0] and (run_dir / names[s] / "state").is_dir()), default=0)
        _segment(config, size, recipe, seed, run_dir, train, device, main, resume,
                 [(s, names[s], 0) for s in stops if s > resume], label, say, origin=names.get(resume))
    for start in sorted(starts):
        end = cooldown_end(start, recipe.decay_frac)
        name = f"cooldown-t{start * config.tokens_per_step:012d}-t{end * config.tokens_per_step:012d}"
        if name not in _finished(run_dir):
            branch = config.schedule(recipe, total=end, decay_start=start)
            _segment(config, size, recipe, seed, run_dir, train, device, branch, start, [(end, name, start)],
                     f"{label} cooldown from {start * config.tokens_per_step:,} tokens", say,
                     origin=names[start])
        _drop_state(run_dir / names[start])  # its branch is done: the stable state is no longer needed
    _drop_state(run_dir / names[stops[-1]])
    if recipe.average_last:
        main_names = [names[config.steps(t)] for t in config.checkpoints]
        _average(config, size, recipe, seed, run_dir, main_names, say)
    return [_read(run_dir / n) for n in [names[s] for s in stops] + sorted(
        n for n in _finished(run_dir) if n.startswith(("cooldown-", "average-")))]


def _average(config: LabConfig, size: Size, recipe: Recipe, seed: int, run_dir: Path, main: list[str],
             say: Callable[[str], None]) -> None:
    """Write the mean weights of the last ``recipe.average_last`` main-run checkpoints as a checkpoint.

    Weight averaging of the last checkpoints (Catalan-Tatjer et al. 2025) is measured as a
    checkpoint of its own, beside the plain final one; its metadata is the final checkpoint's
    with ``average_last`` set.
    """
    parts = main[-recipe.average_last:]
    name = f"average-last{recipe.average_last}-{parts[-1].removeprefix('main-')}"
    if (run_dir / name / METADATA).is_file():
        return
    from transformers import AutoModelForCausalLM

    # Read back through transformers, whose tensor names on disk may differ from the module's.
    models = [AutoModelForCausalLM.from_pretrained(run_dir / part, local_files_only=True,
                                                   use_safetensors=True) for part in parts]
    states = [m.state_dict() for m in models]
    model = models[-1]
    model.load_state_dict({k: torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype)
                           for k, v in states[-1].items()}, strict=True)
    info = json.loads((run_dir / parts[-1] / METADATA).read_text(encoding="utf-8"))
    info |= {"average_last": recipe.average_last, "averaged": parts}
    _save_checkpoint(run_dir / name, model, None, info)
    say(f"[{size.name}/{recipe.name}/seed{seed}] checkpoint {name}: mean of {', '.join(parts)}")


def _segment(config: LabConfig, size: Size, recipe: Recipe, seed: int, run_dir: Path, train: np.ndarray,
             device: torch.device, schedule: Schedule, start: int, stops: list[tuple[int, str, int]],
             label: str, say: Callable[[str], None], origin: str | None = None) -> None:
    """Train from ``start`` (0, or a saved checkpoint) through ``stops`` (step, directory, branch start)."""
    model = build_model(config.architecture, size, seq_len=config.seq_len, dropout=recipe.dropout, seed=seed)
    model.to(device).train()
    trainer = TrainStep(model, recipe, device)
    if start:
        loaded = trainer.load_state(run_dir / str(origin) / "state")
        assert loaded == start, (loaded, start)
        say(f"[{label}] resuming at {start * config.tokens_per_step:,} tokens")
    params = non_embedding_params(model)
    per_step = config.tokens_per_step
    losses: deque[torch.Tensor] = deque(maxlen=20)  # the last steps' losses, read only when printed
    # The loss recorded with a checkpoint is the mean since the previous checkpoint, which a
    # resumed run (always restarted at a checkpoint) reproduces exactly.
    since = torch.zeros((), device=device)
    count = 0
    clock, last_step, last_line = time.perf_counter(), start, time.perf_counter()
    step = start
    for stop, name, branch_start in stops:
        while step < stop:
            step += 1
            inputs, targets = batch_at(train, seed, step, config.batch, config.seq_len)
            loss = trainer(inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True),
                           schedule.frac(step))
            losses.append(loss)
            since += loss
            count += 1
            if time.perf_counter() - last_line > PROGRESS_EVERY:
                now = time.perf_counter()
                rate = (step - last_step) * per_step / (now - clock)
                say(f"[{label}] tokens {step * per_step:,}/{schedule.total * per_step:,} "
                    f"loss {float(torch.stack(list(losses)).mean()):.3f} {rate:,.0f} tokens/s")
                clock, last_step, last_line = now, step, now
        mean = float(since) / count
        since.zero_()
        count = 0
        info = {"step": step, "tokens": step * per_step, "lr_frac": schedule.frac(step),
                "annealed": schedule.annealed(step), "cooldown_from": branch_start * per_step,
                "params": params, "train_loss": mean, "family": recipe.name, "model": size.name, "seed": seed}
        _save_checkpoint(run_dir / name, model, trainer, info)
        if branch_start:
            _drop_state(run_dir / name)  # nothing continues from a branch's end
        say(f"[{label}] checkpoint {name}: loss {mean:.3f}, lr_frac {info['lr_frac']:.3g}"
            f"{', annealed' if info['annealed'] else ''}")
        if branch_start == 0:  # the previous main state is superseded unless a branch still starts there
            for older in _finished(run_dir):
                if older.startswith("main-") and older != name and not _is_branch_source(recipe, older):
                    _drop_state(run_dir / older)


def _save_checkpoint(folder: Path, model: torch.nn.Module, trainer: TrainStep | None,
                     info: dict[str, Any]) -> None:
    """Write the checkpoint under a temporary name, then rename it into place (complete or absent)."""
    from transformers.utils import logging as hf_logging

    tmp = folder.with_name(f".{folder.name}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    hf_logging.disable_progress_bar()  # save_pretrained's per-shard bar is noise in the lab's progress
    model.save_pretrained(tmp, safe_serialization=True)
    if trainer is not None:  # an averaged checkpoint continues nothing: no optimizer state
        trainer.save_state(tmp / "state", info["step"])
    (tmp / METADATA).write_text(json.dumps(info, indent=1), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _finished(run_dir: Path) -> set[str]:
    return {p.parent.name for p in run_dir.glob(f"*/{METADATA}") if not p.parent.name.startswith(".")}


def _is_branch_source(recipe: Recipe, name: str) -> bool:
    return any(name == f"main-t{t:012d}" for t in recipe.cooldown_from)


def _drop_state(folder: Path) -> None:
    shutil.rmtree(folder / "state", ignore_errors=True)


def _read(folder: Path) -> Checkpoint:
    info = json.loads((folder / METADATA).read_text(encoding="utf-8"))
    return Checkpoint(path=folder, step=info["step"], tokens=info["tokens"], lr_frac=info["lr_frac"],
                      annealed=info["annealed"], cooldown_from=info["cooldown_from"], params=info["params"],
                      train_loss=info["train_loss"], average_last=info.get("average_last", 0))
