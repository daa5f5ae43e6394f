"""The training lab's tests run torch on one thread; nothing here imports torch at collection."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # Two intra-op threads on a 2-core machine that also runs other work slow these tiny models
    # down 10-40x (threads spin waiting for each other); one thread is fastest here.
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
