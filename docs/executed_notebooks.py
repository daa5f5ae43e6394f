"""The executed notebooks the documentation renders, without executing them twice.

``tests/test_notebooks.py`` executes every notebook of ``notebooks/`` with the CI sampler
settings and keeps each executed copy in ``build/notebooks/``, stamped with the SHA-256 of the
notebook it came from. The documentation build renders those copies; a notebook whose copy is
missing or stale (its source changed since) is executed here the same way, so ``make docs``
also works without a test run, at the cost of the execution.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "notebooks"
#: Where executed copies are kept (by the tests and by :func:`prepare`).
EXECUTED = ROOT / "build" / "notebooks"
#: Notebook metadata key holding the SHA-256 of the source notebook of an executed copy.
SOURCE_KEY = "bayesqid_source_sha256"
#: Sampler settings of every execution: those of the test suite (CI).
PARAMETERS = {"SAMPLER": "ci"}


def source_sha256(path: Path) -> str:
    """SHA-256 of a notebook file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_current(source: Path) -> bool:
    """True when ``build/notebooks/`` holds an executed copy of this very version of ``source``."""
    copy = EXECUTED / source.name
    if not copy.exists():
        return False
    try:
        stamp = json.loads(copy.read_text(encoding="utf-8"))["metadata"].get(SOURCE_KEY)
    except (ValueError, KeyError):
        return False
    return stamp == source_sha256(source)


def keep(source: Path, executed: Path) -> Path:
    """Stamp an executed notebook with its source's hash and move it into ``build/notebooks/``."""
    notebook = json.loads(executed.read_text(encoding="utf-8"))
    errors = [c for c in notebook["cells"] if c["cell_type"] == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    if errors:
        raise RuntimeError(f"{source.name}: a cell raised; its executed copy is not kept")
    notebook["metadata"][SOURCE_KEY] = source_sha256(source)
    EXECUTED.mkdir(parents=True, exist_ok=True)
    part = EXECUTED / f".{source.name}.part"
    part.write_text(json.dumps(notebook, indent=1), encoding="utf-8")
    return Path(shutil.move(part, EXECUTED / source.name))


def execute(source: Path, out: Path) -> None:
    """Run ``source`` top to bottom with :data:`PARAMETERS` into ``out`` (papermill)."""
    import papermill

    papermill.execute_notebook(str(source), str(out), parameters=PARAMETERS, kernel_name="python3",
                               cwd=str(source.parent), progress_bar=False)


def prepare(dest: Path, log: Callable[[str], None] = print) -> list[str]:
    """Copy every notebook's executed copy into ``dest``, executing the missing or stale ones.

    Returns the names of the notebooks executed here (empty when the test run's copies served).
    """
    executed_here = []
    for source in sorted(SOURCES.glob("*.ipynb")):
        if not is_current(source):
            start = time.perf_counter()
            scratch = EXECUTED / f".{source.stem}.running.ipynb"
            EXECUTED.mkdir(parents=True, exist_ok=True)
            try:
                execute(source, scratch)
                keep(source, scratch)
            finally:
                if scratch.exists():
                    os.remove(scratch)
            executed_here.append(source.name)
            seconds = time.perf_counter() - start
            log(f"executed {source.name} in {seconds:.0f} s (no current copy from the tests)")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EXECUTED / source.name, dest / source.name)
    return executed_here


if __name__ == "__main__":
    names = prepare(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "notebooks")
    print(f"{len(names)} notebook(s) executed; the others reused from {EXECUTED}")
