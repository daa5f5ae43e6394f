"""Atomic writing of output files: a temporary file beside the target, then ``os.replace``.

An interrupted command therefore leaves either the previous file or the complete new one,
never a half-written table. Every failure to write is reported as an :class:`OutputError` that
names the path the user gave: the temporary file is an implementation detail, and an
``[Errno 17] File exists`` about a parent folder says nothing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


class OutputError(OSError):
    """An output path cannot be written: a file where a folder must be, a directory, no
    permission, a full disk. The message names the user's path, never a temporary file.

    An ``OSError`` (the floor imports nothing of ours, so not a ``BayesqidError``); the command
    line answers both with one line and exit status 2.
    """


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Refuse an output path that cannot be written, before anything is computed or created.

    Parameters
    ----------
    path : str or os.PathLike
        The output file; missing parent folders are fine (they are created on writing).

    Returns
    -------
    pathlib.Path
        ``path`` as a Path.

    Raises
    ------
    OutputError
        ``path`` is a directory; a parent of it is a regular file (or anything but a folder);
        or the nearest existing parent folder is not writable.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{target}: is a directory; give a file name for the output")
    # The nearest existing ancestor is where write_atomic's mkdir (or mkstemp) will start.
    existing = next((p for p in target.parents if p.exists() or p.is_symlink()), Path("."))
    if not existing.is_dir():
        raise OutputError(f"{target}: cannot be written: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: cannot be written: the folder {existing} is not writable")
    return target


def write_atomic(path: str | os.PathLike[str], writer: Callable[[str], None]) -> Path:
    """Call ``writer(tmp_path)`` then move the temporary file onto ``path``.

    Raises
    ------
    OutputError
        ``path`` cannot be written (see :func:`check_writable`), or writing failed (full disk,
        permissions); the message names ``path`` and nothing is left behind.
    """
    target = check_writable(path)
    # Folders made here are removed again if the write fails: a failed command leaves nothing.
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    done = False
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        except OSError as err:  # a race with check_writable, or what os.access cannot see (read-only mounts)
            raise OutputError(f"{target}: cannot be written ({_reason(err)})") from None
        os.close(fd)
        try:
            writer(tmp)
            # mkstemp creates 0600 files; give the result the permissions a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, target)
        except OSError as err:
            raise OutputError(f"{target}: cannot be written ({_reason(err)})") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        done = True
    finally:
        if not done:
            for folder in created:  # innermost first
                try:
                    folder.rmdir()
                except OSError:
                    break
    return target


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` as CSV atomically (no index; full float precision)."""
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
