"""Run a lab sweep: train every size x recipe x seed, measure each checkpoint, write ``qid.csv``.

One Dask task per training run (its main run and its cooldown branches, then the measurement
of all its checkpoints). A task's rows are stored by the fan-out layer as soon as it finishes,
its checkpoints as they are saved, and each checkpoint's rows by ``measure`` as they are
measured, so a sweep killed at any point and run again with the same ``out`` continues where
it stopped and ends with the same rows (same device, seeds and torch threads per run: the
order of floating-point sums depends on the thread count). Output::

    out/qid.csv            canonical rows + recipe columns (lr_schedule, lr_frac, annealed, ...)
    out/manifest.json      config, corpus hashes, package versions, seeds, device
    out/checkpoints/SIZE/RECIPE/seedS/{main,cooldown}-t.../   safetensors checkpoints
    out/tasks/             finished runs' rows (parquet, for resuming)

Torch is imported only inside the functions that train.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from bayesqid.checks.fanout import Task, run_tasks
from bayesqid.errors import BayesqidError, DataError, SpecError
from bayesqid.lab.config import LabConfig, load_config
from bayesqid.outputs import write_atomic, write_csv

__all__ = ["RECIPE_COLUMNS", "lab_dataset_path", "load_lab_dataset", "run_lab", "run_one"]

#: Columns the lab appends to ``measure``'s rows, in order. ``measure``'s own ``seed`` column (the
#: seed of its calibration windows) is given the training seed, so ``seed`` names the run.
RECIPE_COLUMNS: tuple[str, ...] = ("lr_schedule", "lr_frac", "annealed", "train_precision", "weight_decay",
                                   "dropout", "grad_clip", "peak_lr", "average_last", "cooldown_from",
                                   "train_loss", "train_epochs")
#: Bundled lab datasets live in ``bayesqid/lab/data/<name>/qid.csv``.
#: Bundled lab datasets live with the other bundled data (the data wing reads them too).
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "lab"


class RunsFailed(BayesqidError):
    """Some runs of a sweep failed; :func:`run_lab` says what was kept."""


def lab_dataset_path(name: str = "lab-default") -> Path:
    """Path of a bundled lab dataset's ``qid.csv``.

    Raises
    ------
    DataError
        If no dataset of that name is bundled (the message lists those that are).
    """
    path = DATA_DIR / name / "qid.csv"
    if not path.is_file():
        found = sorted(p.parent.name for p in DATA_DIR.glob("*/qid.csv"))
        raise DataError(f"no bundled lab dataset {name!r}; bundled: {found or 'none'} "
                        "(run one with: bayesqid lab run default --out DIR)")
    return path


def load_lab_dataset(name: str = "lab-default") -> pd.DataFrame:
    """A bundled lab dataset with its recipe columns (``bayesqid.validate`` keeps the canonical ones)."""
    return pd.read_csv(lab_dataset_path(name), keep_default_na=False, na_values={"group_size": [""]})


def run_lab(config: str | Path | LabConfig, out: str | os.PathLike[str], *, scheduler: str | None = None,
            n_workers: int | None = None, device: str = "auto",
            progress: Callable[[str], None] | None = None, threads: int | None = None) -> pd.DataFrame:
    """Train and measure a sweep; resumable with the same ``out``.

    Parameters
    ----------
    config : str, Path or LabConfig
        A shipped name (``smoke``, ``default``, ``gpu``), a TOML path or a loaded config.
    out : path
        Output directory (created). Reusing it resumes; it must hold the same config.
    scheduler : str, optional
        ``None``: a local Dask cluster; ``"synchronous"``: in this process; else a scheduler
        address.
    n_workers : int, optional
        Workers of the local cluster (default: one per core, or one on a GPU).
    device : str
        ``"auto"`` (a GPU when there is one), ``"cpu"`` or ``"cuda"``.
    progress : callable, optional
        Receives progress lines. In-process it also gets every run's tokens, loss and tokens/s;
        Dask workers print those lines to their stderr.
    threads : int, optional
        Torch threads per run: default 2 in-process, 1 per Dask worker. On cores shared with
        other work, 1 is much faster than 2 in-process (measured: 35k vs 1.8k tokens/s on a
        busy 2-core machine, where OpenMP threads spin waiting for each other).

    Returns
    -------
    pandas.DataFrame
        The rows written to ``out/qid.csv``.

    Raises
    ------
    SpecError, DataError
        A bad config, an unwritable ``out``, an ``out`` holding another sweep, or failed runs
        (one line naming them; finished runs stay stored for the rerun).
    """
    from bayesqid.measure.deps import require_lab

    torch = require_lab("bayesqid lab")
    from bayesqid.lab.estimate import check_memory
    from bayesqid.lab.train import check_precision

    say = progress or (lambda _line: None)
    cfg = config if isinstance(config, LabConfig) else load_config(config)
    # Everything that can be refused is checked before the output folder is made.
    device = _device(torch, device)
    for recipe in cfg.recipes:
        check_precision(recipe, torch.device(device))
    in_process = scheduler == "synchronous"
    concurrent = 1 if in_process or device.startswith("cuda") else (n_workers or os.cpu_count() or 1)
    check_memory(cfg, device, concurrent=concurrent if scheduler in (None, "synchronous") else 1)
    corpus = _corpus_record(cfg)
    created = not Path(out).exists()
    out = _writable(Path(out))
    try:
        return _sweep(cfg, out, corpus, device, scheduler, n_workers, threads, in_process, progress, say)
    except Exception as err:
        if created and not _any_checkpoint(out):
            shutil.rmtree(out, ignore_errors=True)  # a failed start leaves no half-made folder
            if isinstance(err, RunsFailed):
                raise BayesqidError(f"{err}; nothing was trained, so {out} was removed") from None
        elif isinstance(err, RunsFailed):
            raise BayesqidError(f"{err}; finished runs are kept, rerun with the same --out") from None
        raise


def _sweep(cfg: LabConfig, out: Path, corpus: dict[str, Any], device: str, scheduler: str | None,
           n_workers: int | None, threads: int | None, in_process: bool,
           progress: Callable[[str], None] | None, say: Callable[[str], None]) -> pd.DataFrame:
    """The sweep itself, once everything it needs is checked (see :func:`run_lab`)."""
    _check_manifest(out, cfg, corpus)
    started = time.time()
    _write_manifest(out, cfg, corpus, device, scheduler, status="running")
    # Two torch threads in-process on the 2-core machines this was sized on; one per Dask worker,
    # whose processes already fill the cores.
    if threads is None:
        threads = min(2, os.cpu_count() or 1) if in_process else 1
    if n_workers is None and scheduler is None and device.startswith("cuda"):
        n_workers = 1  # one GPU: runs take turns rather than share its memory
    tasks = [Task(key=_key(size.name, recipe.name, seed), fn=run_one, kwargs={
        "config": cfg, "size": size.name, "recipe": recipe.name, "seed": seed, "out": str(out),
        "device": device, "threads": threads, "train_sha256": corpus["train"]["sha256"],
        "progress": progress if in_process else None})
        for size in cfg.sizes for recipe in cfg.recipes for seed in cfg.seeds]
    say(f"lab {cfg.name}: {len(tasks)} run(s) ({len(cfg.sizes)} size(s) x {len(cfg.recipes)} recipe(s) x "
        f"{len(cfg.seeds)} seed(s)), {cfg.tokens:,} tokens each, on {device}; output in {out}")
    outcome = run_tasks(tasks, out / "tasks", scheduler=scheduler, n_workers=n_workers, retries=1, log=say)
    if outcome.failed:
        first = next(iter(outcome.failed.items()))
        _write_manifest(out, cfg, corpus, device, scheduler, status="failed", wall_s=time.time() - started)
        raise RunsFailed(f"lab {cfg.name}: {len(outcome.failed)} of {len(tasks)} run(s) failed (first: "
                         f"{first[0]}: {first[1]})")
    rows = pd.concat([outcome.results[t.key] for t in tasks], ignore_index=True)
    write_csv(rows, out / "qid.csv")
    _write_manifest(out, cfg, corpus, device, scheduler, status="finished", wall_s=time.time() - started,
                    rows=len(rows))
    say(f"lab {cfg.name}: {len(rows)} rows written to {out / 'qid.csv'} ({time.time() - started:.0f} s)")
    return rows


def run_one(*, config: LabConfig, size: str, recipe: str, seed: int, out: str, device: str, threads: int,
            train_sha256: str, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Train one run (with its cooldown branches) and measure all its checkpoints (a Dask task).

    Returns
    -------
    pandas.DataFrame
        ``measure``'s rows of every checkpoint plus :data:`RECIPE_COLUMNS`.
    """
    import torch

    from bayesqid.lab.corpus import epochs
    from bayesqid.lab.train import load_train_text, train_run
    from bayesqid.measure.qid import measure

    torch.set_num_threads(threads)
    say = progress or _stderr
    by_name = {s.name: s for s in config.sizes}, {r.name: r for r in config.recipes}
    the_size, the_recipe = by_name[0][size], by_name[1][recipe]
    train, sha = load_train_text(config.corpus.train, config.corpus.train_bytes)
    if sha != train_sha256:  # a worker with another Python has another standard library
        raise DataError(f"{config.corpus.train}: the training text on this worker ({platform.node()}) "
                        "differs from the client's (another Python version?)")
    run_dir = Path(out) / "checkpoints" / size / recipe / f"seed{seed}"
    checkpoints = train_run(config, the_size, the_recipe, seed, run_dir, train, device=torch.device(device),
                            progress=say)
    frames = []
    m = config.measure
    for ckpt in checkpoints:
        rows = measure(ckpt.path, eval_text=_text(config.corpus.eval), calib_text=_text(config.corpus.calib),
                       bits=m.bits, methods=m.methods, group_sizes=m.group_sizes, device=device,
                       max_eval_tokens=m.eval_tokens, calib_tokens=m.calib_tokens, seed=seed,
                       out=ckpt.path / "qid.csv", progress=say)
        # The checkpoint's place in the sweep instead of measure's absolute path, so that rows
        # do not depend on where the sweep was written.
        rows["source"] = (f"bayesqid lab {config.name}: {size}/{recipe}/seed{seed}/{ckpt.path.name} "
                          f"(weights sha256 {rows['weights_sha256'].iloc[0][:16]})")
        rows = rows.assign(
            lr_schedule=the_recipe.schedule, lr_frac=round(ckpt.lr_frac, 12),
            annealed="true" if ckpt.annealed else "false", train_precision=the_recipe.precision,
            weight_decay=the_recipe.weight_decay, dropout=the_recipe.dropout,
            grad_clip=the_recipe.grad_clip, seed=seed, peak_lr=the_recipe.peak_lr,
            average_last=ckpt.average_last, cooldown_from=ckpt.cooldown_from, train_loss=ckpt.train_loss,
            # Expected reads of each training byte up to this checkpoint (repeated text is a confound).
            train_epochs=round(epochs(ckpt.tokens, len(train)), 6))
        frames.append(rows)
    frame = pd.concat(frames, ignore_index=True)
    # Parquet needs one type per column; measure's text columns may hold pd.NA.
    return frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})


def _any_checkpoint(out: Path) -> bool:
    return any((out / "checkpoints").glob("*/*/*/*/bayesqid.json"))


def _key(size: str, recipe: str, seed: int) -> str:
    return f"{size}--{recipe}--seed{seed}"


def _text(source: str) -> str | None:
    return None if source == "stdlib" else source


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _writable(out: Path) -> Path:
    """The output directory, created; one line if it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise DataError(f"{out}: cannot be written ({err.strerror or type(err).__name__})") from None
    return out


def _device(torch: Any, wanted: str) -> str:
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"--device {wanted}: CUDA is not available on this machine")
    if wanted != "cpu" and not wanted.startswith("cuda"):
        raise DataError(f"--device: expected auto, cpu or cuda[:N], got {wanted!r}")
    return wanted


def _corpus_record(cfg: LabConfig) -> dict[str, dict[str, Any]]:
    """Names, sizes and sha256 of the training, evaluation and calibration texts."""
    from bayesqid.lab.train import load_train_text
    from bayesqid.measure.text import default_corpora, load_corpus

    train, sha = load_train_text(cfg.corpus.train, cfg.corpus.train_bytes)
    calib, evals = default_corpora() if "stdlib" in (cfg.corpus.eval, cfg.corpus.calib) else (None, None)
    record = {"train": {"source": cfg.corpus.train, "bytes": len(train), "sha256": sha}}
    for part, source, default in (("eval", cfg.corpus.eval, evals), ("calib", cfg.corpus.calib, calib)):
        text = default if source == "stdlib" else load_corpus(source, f"corpus.{part}")
        record[part] = {"source": source, "name": text.name, "sha256": text.sha256}
    return record


def _check_manifest(out: Path, cfg: LabConfig, corpus: dict[str, Any]) -> None:
    """Refuse to resume into a directory that holds another sweep (its rows would be mixed)."""
    import json

    path = out / "manifest.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # unreadable: rewritten below; checkpoints are still checked by their hashes
    mine = json.loads(json.dumps({"config": _comparable(cfg), "corpus": corpus}))
    for part in ("config", "corpus"):
        if old.get(part) != mine[part]:
            raise SpecError(f"{out}: holds a lab sweep with another {part} ({path}); use a new --out, or "
                            "delete the directory to start over")


def _comparable(cfg: LabConfig) -> dict[str, Any]:
    record = cfg.as_dict()
    record.pop("origin")  # the same file may be named by path or by shipped name
    return record


def _write_manifest(out: Path, cfg: LabConfig, corpus: dict[str, Any], device: str, scheduler: str | None,
                    status: str, **extra: Any) -> None:
    versions = {"python": platform.python_version()}
    for name in ("bayesqid", "torch", "transformers", "safetensors", "numpy", "pandas", "dask"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # not installed as a distribution (e.g. run from a source tree)
            versions[name] = "unknown"
    import torch

    on_gpu = device.startswith("cuda")
    hardware = torch.cuda.get_device_name(device) if on_gpu else platform.processor() or "cpu"
    from bayesqid.lab.corpus import epochs
    from bayesqid.lab.estimate import run_tokens

    # Epochs of the training text each run reads (every size and seed of a recipe reads the same).
    read = {r.name: round(epochs(run_tokens(cfg, r), corpus["train"]["bytes"]), 6) for r in cfg.recipes}
    _write_json(out / "manifest.json", {
        "status": status, "config": _comparable(cfg), "config_origin": cfg.origin, "corpus": corpus,
        "epochs_per_run": read,
        "seeds": list(cfg.seeds), "device": device, "hardware": hardware,
        "scheduler": scheduler or "local", "versions": versions, **extra})


def _write_json(path: Path, payload: Any) -> None:
    import json

    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1, default=str),
                                                        encoding="utf-8"))
