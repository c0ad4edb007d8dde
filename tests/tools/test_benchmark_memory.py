"""tools/benchmark.py's memory probe: with glibc's mmap threshold fixed, a freed tensor leaves the
resident set at once (so the peak is the peak of live memory), and a case run in worker
processes comes back with its times and its memory."""
import os
import subprocess
import sys
import textwrap

from .conftest import load_tool


#: A 24 MiB block freed first raises glibc's default (dynamic) threshold to 24 MiB; a 16 MiB
#: tensor then comes from the heap and, with a block after it, stays resident once freed.
FREED_TENSOR = textwrap.dedent("""
    import torch
    def resident():
        with open('/proc/self/statm') as statm:
            return int(statm.read().split()[1]) * 4096
    first = torch.ones(6 * 2 ** 20)
    del first
    before = resident()
    tensor = torch.ones(4 * 2 ** 20)  # 16 MiB, every page touched
    pin = torch.ones(2 ** 14)  # allocated after it: the freed block is not the heap's top
    held = resident() - before
    del tensor
    print(held, resident() - before)
""")


def resident_after_free(threshold):
    env = dict(os.environ)
    env.pop('MALLOC_MMAP_THRESHOLD_', None)
    if threshold is not None:
        env['MALLOC_MMAP_THRESHOLD_'] = str(threshold)
    completed = subprocess.run([sys.executable, '-c', FREED_TENSOR], capture_output=True,
                               text=True, env=env, check=True)
    return tuple(map(int, completed.stdout.split()))


def test_fixed_threshold_returns_freed_tensors_to_the_os():
    """The memory worker's threshold (a fresh interpreter, as the worker is): a freed tensor
    leaves the resident set; under glibc's default it may stay (what made peaks vary)."""
    benchmark = load_tool('benchmark.py')
    held, after = resident_after_free(benchmark.MEASURE_MMAP_THRESHOLD)
    assert held >= 15 * 2 ** 20 and after < 2 ** 20
    held, after = resident_after_free(None)
    assert held >= 15 * 2 ** 20 and after >= 15 * 2 ** 20


def test_isolated_case_has_times_from_one_worker_and_memory_from_another():
    benchmark = load_tool('benchmark.py')
    case = dict(name='bilinear', path='-', impl='auto', size=256, batch=1, channels=8, scale=2,
                device='cpu', threads=1, repeats=1)
    row = benchmark.run_isolated(case)
    assert row['fwd_ms'] > 0 and row['fwd_bwd_ms'] > 0
    # The output (1 x 8 x 512 x 512 float32, 8 MiB) is live at the peak (the interpreter's own
    # allocations move the figure by a fraction of a MiB).
    assert 7.5 <= row['peak_mib'] < 40
