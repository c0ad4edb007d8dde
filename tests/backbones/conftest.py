"""Run these small CPU tests on one intra-op thread: on a shared 2-core machine, thread
contention makes tiny models ~10x slower than a single thread."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
