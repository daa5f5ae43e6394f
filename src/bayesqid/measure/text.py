"""Evaluation and calibration text: files, folders, the offline default corpus, tokenization.

Without a text of their own, measurements use the Python standard library's source of the
running interpreter (top-level ``.py`` files of ``os.path.dirname(os.__file__)``, sorted by
name), present on every machine. Every fourth file (sorted index 3, 7, 11, ...) forms the
calibration part and the rest the evaluation part, so the two never share a file. A corpus is
recorded by name and by the sha256 of its full text, so rows say exactly what they measured.

Tokens come from the checkpoint's own tokenizer when its directory has tokenizer files, else
from bytes (token id = byte value of the UTF-8 text, which needs a vocabulary of >= 256).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bayesqid.errors import DataError

#: Files in a checkpoint directory whose presence means "use the checkpoint's tokenizer".
TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json",
)  # fmt: skip
#: Joins documents, so that one file's end never reads as the start of the next one's line.
DOC_SEPARATOR = "\n\n"
#: Every ``CALIB_EVERY``-th file of the default corpus goes to calibration.
CALIB_EVERY = 4


@dataclass(frozen=True)
class Corpus:
    """A text to tokenize: a name, its documents and the sha256 of their joined text.

    Parameters
    ----------
    name : str
        What rows call it (``eval_set``), e.g. ``"python3.11-stdlib"`` or a file's stem.
    documents : tuple of str
        The documents, in order.
    sha256 : str
        Hex sha256 of ``DOC_SEPARATOR.join(documents)`` encoded as UTF-8.
    """

    name: str
    documents: tuple[str, ...]
    sha256: str


def _corpus(name: str, documents: list[str], what: str) -> Corpus:
    joined = DOC_SEPARATOR.join(documents)
    if not joined.strip():
        raise DataError(f"{what}: the text is empty")
    return Corpus(name, tuple(documents), hashlib.sha256(joined.encode("utf-8")).hexdigest())


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text ({option})") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({option}: {err.strerror or err})") from None


def load_corpus(path: str | os.PathLike[str], option: str = "--eval") -> Corpus:
    """Read a text file, or every non-hidden file under a folder (sorted by relative path).

    Parameters
    ----------
    path : str or path-like
        A UTF-8 text file or a folder of them.
    option : str, optional
        The option the path came from, named in error messages.

    Returns
    -------
    Corpus
        Named after the file's stem or the folder's name.

    Raises
    ------
    DataError
        If the path is missing, unreadable, not UTF-8, or holds no text.
    """
    source = Path(path)
    if source.is_file():
        return _corpus(source.stem, [_read(source, option)], f"{source} ({option})")
    if source.is_dir():
        files = sorted(
            p for p in source.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts)
        )
        if not files:
            raise DataError(f"{source}: the folder has no text files ({option})")
        return _corpus(source.resolve().name, [_read(p, option) for p in files], f"{source} ({option})")
    raise DataError(f"{source}: no such file or folder ({option})")


def default_corpora() -> tuple[Corpus, Corpus]:
    """The offline default: the running interpreter's standard library, split in two.

    Returns
    -------
    (Corpus, Corpus)
        ``(calib, evals)``: the calibration part (every :data:`CALIB_EVERY`-th file) and the
        evaluation part (the others), named ``python{major}.{minor}-stdlib-calib`` and
        ``python{major}.{minor}-stdlib``. (Calibration first: callers already unpack it so.)
    """
    root = Path(os.path.dirname(os.__file__))
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    calib, evals = [], []
    for i, path in enumerate(files):
        # Some distributions ship odd encodings in a few test modules; skip what isn't UTF-8
        # rather than failing, since the hash records exactly what was used.
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        (calib if i % CALIB_EVERY == CALIB_EVERY - 1 else evals).append(text)
    name = f"python{sys.version_info.major}.{sys.version_info.minor}-stdlib"
    return _corpus(f"{name}-calib", calib, f"{root} (calibration)"), _corpus(name, evals, f"{root}")


class Tokenizer:
    """Text to token ids: a checkpoint's own tokenizer, or bytes.

    Parameters
    ----------
    hf_tokenizer : transformers tokenizer or None
        None means byte-level (token id = byte value).
    name : str
        Recorded in rows: ``"bytes"`` or the tokenizer's class name.
    """

    def __init__(self, hf_tokenizer: Any | None, name: str) -> None:
        self.hf = hf_tokenizer
        self.name = name

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        if self.hf is None:
            return list(text.encode("utf-8"))
        return list(self.hf(text, add_special_tokens=False, verbose=False)["input_ids"])

    def tokens(self, corpus: Corpus, limit: int) -> np.ndarray:
        """The first ``limit`` token ids of a corpus (all of them if it has fewer).

        Documents are encoded one at a time and stop once ``limit`` is reached, so that a
        short evaluation never tokenizes megabytes of text.
        """
        out: list[int] = []
        for i, doc in enumerate(corpus.documents):
            out.extend(self.encode(doc if i == 0 else DOC_SEPARATOR + doc))
            if len(out) >= limit:
                break
        return np.asarray(out[:limit], dtype=np.int64)


def load_tokenizer(model_dir: str | os.PathLike[str], vocab_size: int) -> Tokenizer:
    """The checkpoint's tokenizer if its directory has tokenizer files, else bytes.

    Parameters
    ----------
    model_dir : str or path-like
        Checkpoint directory.
    vocab_size : int
        The model's vocabulary size; byte-level tokens need at least 256.

    Returns
    -------
    Tokenizer

    Raises
    ------
    DataError
        If the tokenizer files cannot be loaded, or there are none and ``vocab_size < 256``.
    """
    directory = Path(model_dir)
    if any((directory / name).is_file() for name in TOKENIZER_FILES):
        from transformers import AutoTokenizer

        try:
            # Local files only and no remote code: a checkpoint may never run its own Python.
            hf = AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
        except Exception as err:  # transformers raises many types for a broken tokenizer
            raise DataError(f"{directory}: cannot load its tokenizer ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''})") from None
        return Tokenizer(hf, type(hf).__name__)
    if vocab_size < 256:
        raise DataError(f"{directory}: no tokenizer files and a vocabulary of {vocab_size} < 256, "
                        "too small for byte-level tokens")
    return Tokenizer(None, "bytes")
