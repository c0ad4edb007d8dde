"""Shared fixtures: where the authors' reference outputs live, deterministic seeds."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_tool_process(name, *arguments, env=None):
    """``python tools/<name>.py ...`` in a fresh process (mmengine keeps global instances such as
    the visualizer per process, so two runners in one process would share them), with ``env``
    added to the environment; asserts it succeeded and returns what it printed."""
    result = subprocess.run([sys.executable, str(REPO_ROOT / 'tools' / f'{name}.py'),
                             *map(str, arguments)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600,
                            env=None if env is None else {**os.environ, **env})
    assert result.returncode == 0, f'tools/{name}.py failed:\n{result.stdout[-3000:]}\n' \
                                   f'{result.stderr[-3000:]}'
    return result.stdout + result.stderr

# One intra-op thread: deterministic reductions and no oversubscription on small CI machines.
torch.set_num_threads(1)
# Tests never reach the network (tools/train.py would probe pretrained-weight URLs); inherited
# by the tools the tests start as subprocesses.
os.environ['MMDYNUP_OFFLINE'] = '1'


def reference_dir() -> Path:
    """``shared/reference`` beside the repository, or ``$MMDYNUP_REFERENCE_DIR``."""
    override = os.environ.get('MMDYNUP_REFERENCE_DIR')
    if override:
        return Path(override)
    return REPO_ROOT.parent / 'shared' / 'reference'


def reference_files(subfolder: str = '') -> list:
    folder = reference_dir() / subfolder
    return sorted(folder.glob('*.pt')) if folder.is_dir() else []


def skip_without_reference(subfolder: str = ''):
    return pytest.mark.skipif(
        not reference_files(subfolder),
        reason=f'no reference files in {reference_dir() / subfolder} '
               f'(set MMDYNUP_REFERENCE_DIR to the shared/reference folder)')


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
