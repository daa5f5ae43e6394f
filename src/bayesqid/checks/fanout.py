"""Run many independent tasks (CV folds, SBC replicates) on Dask, resumable from a result store.

Every task returns a small tidy DataFrame. Its result is written to ``store/<key>.parquet`` the
moment it completes, atomically, so a run that is killed keeps every finished task and a second
call with the same store only runs what is missing. A task that fails after its retries is
reported by key with a one-line message; it never stops the others.

Schedulers:

- ``None``: a :class:`distributed.LocalCluster` of single-threaded worker processes (one per
  core by default), closed at the end;
- ``"synchronous"``: in this process, one task after another, without Dask (tests, debugging);
- any other string: the address of a running scheduler (``tcp://host:8786``).
"""

from __future__ import annotations

import logging
import os
import re
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bayesqid.errors import BayesqidError
from bayesqid.outputs import write_atomic

#: Task keys name files: letters, digits and ``._=-`` only.
_KEY = re.compile(r"^[A-Za-z0-9._=-]+$")

#: Warnings filter of local workers: PyTensor warns at import when it finds no BLAS to link; the
#: graphs have no PyTensor matrix products, and the command line silences the same warning.
_WORKER_WARNINGS = "ignore:PyTensor could not link to a BLAS:UserWarning"

#: Suffix of stored results.
SUFFIX = ".parquet"


@dataclass(frozen=True)
class Task:
    """One unit of work.

    Parameters
    ----------
    key : str
        Unique, filesystem-safe name; names the stored result ``<key>.parquet``.
    fn : callable
        Importable module-level function (picklable) returning a DataFrame.
    kwargs : Mapping
        Keyword arguments of ``fn`` (picklable).
    """

    key: str
    fn: Callable[..., pd.DataFrame]
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What :func:`run_tasks` produced.

    Attributes
    ----------
    results : dict
        Key -> result, for every finished task (including those loaded from the store).
    failed : dict
        Key -> one-line error, for tasks that failed after their retries.
    resumed : tuple of str
        Keys whose results were already in the store before the call.
    """

    results: dict[str, pd.DataFrame]
    failed: dict[str, str]
    resumed: tuple[str, ...]


def result_path(store: Path, key: str) -> Path:
    """Where the result of task ``key`` is stored."""
    return Path(store) / f"{key}{SUFFIX}"


def run_tasks(tasks: Sequence[Task], store: Path, *, scheduler: str | None = None,
              n_workers: int | None = None, retries: int = 1,
              log: Callable[[str], None] | None = None) -> Outcome:
    """Run ``tasks``, skipping those already stored, and store each result as it completes.

    Parameters
    ----------
    tasks : sequence of Task
        Work to do; keys must be unique.
    store : Path
        Directory of results (created if missing). Reusing it resumes an interrupted call.
    scheduler : str, optional
        ``None`` (a local cluster), ``"synchronous"`` (in-process) or a scheduler address.
    n_workers : int, optional
        Workers of the local cluster (default: one per core).
    retries : int
        Extra attempts of a failing task before it counts as failed.
    log : callable, optional
        Progress lines.

    Returns
    -------
    Outcome
        Results, failures and the keys resumed from the store.
    """
    say = log or (lambda _msg: None)
    _check_keys(tasks)
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    for stale in store.glob(f".*{SUFFIX}.*.part"):  # temporary files of a killed run's last writes
        stale.unlink(missing_ok=True)
    results: dict[str, pd.DataFrame] = {}
    resumed = []
    todo = []
    for task in tasks:
        stored = _load(store, task.key)
        if stored is None:
            todo.append(task)
        else:
            results[task.key] = stored
            resumed.append(task.key)
    if resumed:
        say(f"resuming: {len(resumed)} of {len(tasks)} tasks already finished in {store}")
    failed: dict[str, str] = {}
    if todo:
        runner = _run_synchronous if scheduler == "synchronous" else _run_dask
        runner(todo, store, results, failed, scheduler=scheduler, n_workers=n_workers,
               retries=max(0, int(retries)), say=say)
    order = [t.key for t in tasks]
    return Outcome(results={k: results[k] for k in order if k in results},
                   failed={k: failed[k] for k in order if k in failed},
                   resumed=tuple(resumed))


def _check_keys(tasks: Sequence[Task]) -> None:
    seen: set[str] = set()
    for task in tasks:
        if not _KEY.match(task.key):
            raise BayesqidError(f"task key {task.key!r} is not filesystem-safe (use letters, digits, ._=-)")
        if task.key in seen:
            raise BayesqidError(f"task key {task.key!r} is not unique")
        seen.add(task.key)


def _load(store: Path, key: str) -> pd.DataFrame | None:
    """A stored result, or None if absent or unreadable (then the task runs again)."""
    path = result_path(store, key)
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception:  # a file from an older layout or a damaged disk: recompute, do not crash
        return None


def _save(store: Path, key: str, frame: pd.DataFrame) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise BayesqidError(f"task {key!r} returned {type(frame).__name__}, expected a DataFrame")
    write_atomic(result_path(store, key), lambda tmp: frame.to_parquet(tmp, index=False))


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _run_synchronous(todo: Sequence[Task], store: Path, results: dict[str, pd.DataFrame],
                     failed: dict[str, str], *, retries: int, say: Callable[[str], None],
                     **_: Any) -> None:
    """Run in this process, in order; same retry and storage rules as the Dask path."""
    for i, task in enumerate(todo, 1):
        for attempt in range(retries + 1):
            try:
                frame = task.fn(**task.kwargs)
                _save(store, task.key, frame)
            except KeyboardInterrupt:
                raise
            except Exception as err:
                if attempt == retries:
                    failed[task.key] = _one_line(err)
                    say(f"task {task.key} FAILED after {retries + 1} attempt(s): {failed[task.key]}")
                continue
            results[task.key] = frame
            say(f"finished {task.key} ({i}/{len(todo)})")
            break


def _call(fn: Callable[..., pd.DataFrame], kwargs: Mapping[str, Any]) -> pd.DataFrame:
    """Worker-side call (module level, so it pickles by reference)."""
    return fn(**kwargs)


def _run_dask(todo: Sequence[Task], store: Path, results: dict[str, pd.DataFrame],
              failed: dict[str, str], *, scheduler: str | None, n_workers: int | None,
              retries: int, say: Callable[[str], None]) -> None:
    """Submit everything, then store results in completion order."""
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    client = None
    futures = []
    try:
        if scheduler is None:
            workers = n_workers or os.cpu_count() or 1
            say(f"starting a local Dask cluster: {workers} worker process(es), 1 thread each")
            # Worker logs are silenced: a failing task is reported once, by key, in ``failed``. The
            # dashboard takes any free port, so that two clusters on one machine never clash.
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.CRITICAL,
                                   env={"PYTHONWARNINGS": _WORKER_WARNINGS})
            client = Client(cluster)
        else:
            say(f"connecting to the Dask scheduler at {scheduler}")
            try:
                client = Client(scheduler, timeout="30s")
            except (OSError, TimeoutError) as err:
                raise BayesqidError(
                    f"cannot reach the Dask scheduler {scheduler!r}: {_one_line(err)}") from None
        # A per-call token keeps two comparisons on one shared scheduler from colliding.
        token = uuid.uuid4().hex[:8]
        by_future = {}
        for task in todo:
            # pure=False: a retried or resumed task must really run, never reuse a cached result.
            fut = client.submit(_call, task.fn, dict(task.kwargs), key=f"bayesqid-{token}-{task.key}",
                                retries=retries, pure=False)
            by_future[fut] = task.key
            futures.append(fut)
        done = 0
        for fut in as_completed(futures):
            key = by_future[fut]
            done += 1
            if fut.status == "finished":
                try:
                    frame = fut.result()
                    _save(store, key, frame)
                except Exception as err:
                    failed[key] = _one_line(err)
                else:
                    results[key] = frame
                    say(f"finished {key} ({done}/{len(todo)})")
                    fut.release()
                    continue
            else:
                failed[key] = _one_line(_exception_of(fut))
            say(f"task {key} FAILED after {retries + 1} attempt(s): {failed[key]}")
    finally:
        # On Ctrl-C: stop outstanding work, close the cluster; finished results are already stored
        # (each by an atomic rename), so the store holds only complete files.
        for fut in futures:
            if not fut.done():
                fut.cancel()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _exception_of(fut: Any) -> BaseException:
    try:
        err = fut.exception()
    except Exception as exc:  # cancelled or lost with its worker
        return exc
    if err is None:
        return RuntimeError(f"task ended with status {fut.status!r}")
    if isinstance(err, BaseException):
        return err
    return RuntimeError("".join(traceback.format_exception_only(type(err), err)).strip())
