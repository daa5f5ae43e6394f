"""The training lab's tests run torch on one thread; nothing here imports torch at collection."""

from __future__ import annotations

import pytest

from helpers import one_torch_thread


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    yield from one_torch_thread()
