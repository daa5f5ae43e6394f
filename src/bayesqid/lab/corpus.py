"""The training text of a lab sweep: the standard library, every installed Python file, or a path.

Training text never shares a file with the evaluation and calibration texts, which are
``measure``'s split of the standard library's top-level modules (:mod:`bayesqid.measure.text`):

- ``"stdlib"``: the ``.py`` files in the sub-packages of the running interpreter's standard
  library (~8 MB; not ``test``, ``encodings`` and data-table packages);
- ``"python"``: every ``.py`` file installed in the running environment (the standard library's
  sub-packages and every site-packages folder, hundreds of MB), for runs long enough to repeat
  ``stdlib`` many times. Files are deduplicated by content (vendored copies and the top-level
  modules ``measure`` evaluates on are left out);
- a path: a file, or every non-hidden file under a folder, sorted.

Named sources are read in an order fixed by the sha256 of each file's path relative to its root
(a mix of packages, the same on every run) and cut at the configured size; the sha256 of the
bytes used goes to the manifest, so a sweep records exactly what it trained on.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bayesqid.errors import DataError

__all__ = ["MIN_TRAIN_BYTES", "epochs", "load_train_text"]

#: Training text shorter than this cannot fill a batch of windows meaningfully.
MIN_TRAIN_BYTES = 1024
#: Joins files, so that one file's end never reads as the start of the next one's line.
_SEPARATOR = b"\n\n"
#: Standard-library folders left out of named sources: ``test`` is mostly repetitive fixtures,
#: the others are data tables; site-packages is walked as its own root.
_STDLIB_SKIP = {"site-packages", "dist-packages", "test", "encodings", "pydoc_data", "__pycache__"}


def _stdlib_root() -> Path:
    return Path(os.path.dirname(os.__file__))


def _by_path_hash(root: Path, files: list[Path]) -> list[Path]:
    return sorted(files, key=lambda p: hashlib.sha256(p.relative_to(root).as_posix().encode()).hexdigest())


def _walk(root: Path, skip_top_level: bool) -> list[Path]:
    files = []
    for folder, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _STDLIB_SKIP)
        if skip_top_level and Path(folder) == root:
            continue  # the top-level modules are measure's evaluation and calibration text
        files += [Path(folder, n) for n in names if n.endswith(".py")]
    return _by_path_hash(root, files)


def _named_files(source: str) -> Iterator[Path]:
    stdlib = _stdlib_root()
    yield from _walk(stdlib, skip_top_level=True)
    if source == "python":
        roots = {Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
        for root in sorted(r for r in roots if r.is_dir() and r != stdlib):
            yield from _walk(root, skip_top_level=False)


def _path_files(source: str) -> list[Path]:
    root = Path(source)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"{source}: no such file or folder (corpus.train)")
    return sorted(p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(root).parts))


def load_train_text(source: str, max_bytes: int) -> tuple[np.ndarray, str]:
    """Training bytes and their sha256.

    Parameters
    ----------
    source : str
        ``"stdlib"``, ``"python"`` or the path of a file or folder (see the module docstring).
    max_bytes : int
        The text is cut here.

    Returns
    -------
    (numpy.ndarray of uint8, str)
        The bytes and the hex sha256 of them.

    Raises
    ------
    DataError
        If the source is missing, empty, or shorter than :data:`MIN_TRAIN_BYTES`.
    """
    named = source in ("stdlib", "python")
    files = _named_files(source) if named else iter(_path_files(source))
    # "python" reads exact copies once and counts the evaluation text's files as read; "stdlib"
    # and paths keep every file, so their bytes (and sweeps already run on them) stay the same.
    dedupe = source == "python"
    seen = {hashlib.sha256(p.read_bytes()).digest() for p in _stdlib_root().glob("*.py")} if dedupe else set()
    chunks, size, content = [], 0, False
    for path in files:
        if size >= max_bytes:
            break
        try:
            data = path.read_bytes()
        except OSError as err:
            raise DataError(f"{path}: cannot be read (corpus.train: {err.strerror or err})") from None
        if dedupe:
            digest = hashlib.sha256(data).digest()
            if not data.strip() or digest in seen:
                continue
            seen.add(digest)
        content = content or bool(data.strip())
        chunk = data[: max_bytes - size] + _SEPARATOR
        chunks.append(chunk)
        size += len(chunk)
    text = b"".join(chunks)[:max_bytes]
    if not content:
        raise DataError(f"{source}: the training text is empty (corpus.train)")
    if len(text) < MIN_TRAIN_BYTES:
        raise DataError(f"{source}: too little training text ({len(text)} bytes; at least "
                        f"{MIN_TRAIN_BYTES} needed for corpus.train)")
    return np.frombuffer(text, dtype=np.uint8), hashlib.sha256(text).hexdigest()


def epochs(tokens: int, train_bytes: int) -> float:
    """How many times a run of ``tokens`` byte-level tokens reads its training text, on average.

    Batches are windows at random offsets, so this is the expected number of times each byte
    was seen: a confound of its own when it is well above 1 (repeated text is memorised).
    """
    return tokens / max(train_bytes, 1)
