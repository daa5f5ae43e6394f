"""Tiny checkpoints built once per session, and the shared measurement of the trained one.

The measurement tests need torch (the ``bayesqid[lab]`` extra) and skip without it; nothing here
imports it at collection, so torch-free tests in this folder still run.
"""

from __future__ import annotations

import pytest

from helpers import one_torch_thread

#: Options of the shared measurement: small enough for seconds on 2 cores.
FAST = {"max_eval_tokens": 4096, "calib_tokens": 1024, "tokens": 1e6}
#: The shared measurement: every method of the trained model at 4 bit widths, 2 granularities.
GRID = {"methods": ("rtn", "gptq", "w8a8"), "bits": (2, 3, 4, 8), "group_sizes": (32, None)}


@pytest.fixture(scope="session")
def tiny():
    """The module that builds tiny checkpoints (imports torch; skips without it)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from . import tiny as module

    return module


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, tiny):
    """A Llama byte-level model (2 layers x 64, tied embeddings) trained 300 steps on stdlib source.

    Trained long enough (loss ~2.3 nats) for its blocks to matter: quantizing them to 2 bits
    costs 0.05-0.2 nats, to 8 bits almost nothing.
    """
    return tiny.build(tmp_path_factory.mktemp("ckpt") / "tiny-llama", "llama", steps=300, batch=16, lr=3e-3)


@pytest.fixture(scope="session")
def neox_dir(tmp_path_factory, tiny):
    """A GPT-NeoX byte-level model with an untied head, trained 10 steps."""
    return tiny.build(tmp_path_factory.mktemp("ckpt") / "tiny-neox", "neox", steps=10)


@pytest.fixture(scope="session")
def measured(trained_dir, tmp_path_factory):
    """RTN, GPTQ and W8A8 rows of the trained model, the file they were written to, the progress lines."""
    from bayesqid.measure.qid import measure

    out = tmp_path_factory.mktemp("rows") / "rows.csv"
    lines: list[str] = []
    rows = measure(trained_dir, out=out, progress=lines.append, **GRID, **FAST)
    return rows, out, lines
