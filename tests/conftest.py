"""Shared fixtures: where the authors' reference outputs live, deterministic seeds."""
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

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
