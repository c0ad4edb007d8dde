"""tools/benchmark.py's memory probe: with glibc's mmap threshold fixed, a freed tensor leaves the
resident set at once (so the peak is the peak of live memory), and a case run in worker
processes comes back with its times and its memory."""
import torch

from .conftest import load_tool


def test_fixed_threshold_returns_freed_tensors_to_the_os():
    benchmark = load_tool('benchmark.py')
    device = torch.device('cpu')
    with benchmark.fixed_mmap_threshold(device):
        before = benchmark.resident_bytes()
        tensor = torch.ones(8 * 2 ** 20)  # 32 MiB, every page touched
        held = benchmark.resident_bytes() - before
        del tensor
        after = benchmark.resident_bytes() - before
    assert held >= 30 * 2 ** 20
    assert after < 2 * 2 ** 20


def test_isolated_case_has_times_from_one_worker_and_memory_from_another():
    benchmark = load_tool('benchmark.py')
    case = dict(name='bilinear', path='-', impl='auto', size=256, batch=1, channels=8, scale=2,
                device='cpu', threads=1, repeats=1)
    row = benchmark.run_isolated(case)
    assert row['fwd_ms'] > 0 and row['fwd_bwd_ms'] > 0
    # The output (1 x 8 x 512 x 512 float32, 8 MiB) is live at the peak (the interpreter's own
    # allocations move the figure by a fraction of a MiB).
    assert 7.5 <= row['peak_mib'] < 40
