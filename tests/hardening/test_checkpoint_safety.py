"""Checkpoints load with ``torch.load(weights_only=True)`` and an explicit allow-list everywhere:
a pickle that would run code is refused by every loader, and nothing in mmdynup or tools/ can
load one otherwise."""
import ast
from pathlib import Path

import pytest
import torch

from mmdynup.converters.checkpoint_io import UnsafeCheckpointError, load_checkpoint
from mmdynup.engine import mmengine_checkpoint_globals

from .test_bad_inputs import write_checkpoints

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(path for folder in ('mmdynup', 'tools')
                 for path in (REPO_ROOT / folder).rglob('*.py'))


@pytest.fixture
def malicious(tmp_path, monkeypatch):
    """Files whose unpickling would create ``code_ran``; checks afterwards that it never did."""
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    marker = write_checkpoints(tmp_path)
    yield tmp_path
    assert not marker.exists(), 'a refused checkpoint ran its pickled code'


def test_mmdynup_loader_refuses_code(malicious):
    for name in ('evil.pth', 'evil.pdparams'):
        with pytest.raises(UnsafeCheckpointError, match='refusing to load'):
            load_checkpoint(str(malicious / name))


def test_convert_checkpoint_tool_refuses_code(malicious):
    from ..tools.conftest import load_tool
    tool = load_tool('convert_checkpoint.py')
    with pytest.raises(UnsafeCheckpointError, match='nothing from the file was executed'):
        tool.main([str(malicious / 'evil.pth'), str(malicious / 'out.pth'),
                   '--source', 'dysample.DySample'])
    assert not (malicious / 'out.pth').exists()


def test_mmengine_loader_refuses_code(malicious):
    """``load_from`` / ``--resume`` / ``tools/test.py`` / ``init_model`` go through mmengine's
    ``load_checkpoint``, which calls ``torch.load`` with torch's default ``weights_only=True``."""
    import pickle

    from mmengine.runner import load_checkpoint as mmengine_load_checkpoint
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        mmengine_load_checkpoint(torch.nn.Linear(1, 1), str(malicious / 'evil.pth'))


def test_mmengine_checkpoint_allow_list_is_explicit():
    """The allow-list names classes and functions (no module wildcards), none of which runs code
    when called by the unpickler other than building its own type."""
    allowed = mmengine_checkpoint_globals()
    assert allowed and all(callable(entry) for entry in allowed)
    names = {getattr(entry, '__name__', repr(entry)) for entry in allowed}
    for dangerous in ('system', 'exec', 'eval', 'mkdir', 'popen', 'import_module', '__import__'):
        assert dangerous not in names


def _calls(tree, module, function):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == function and isinstance(node.func.value, ast.Name)
                and node.func.value.id == module):
            yield node


@pytest.mark.parametrize('path', SOURCES, ids=[str(p.relative_to(REPO_ROOT)) for p in SOURCES])
def test_every_torch_load_is_weights_only(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for call in _calls(tree, 'torch', 'load'):
        flags = {keyword.arg: keyword.value for keyword in call.keywords}
        value = flags.get('weights_only')
        assert isinstance(value, ast.Constant) and value.value is True, \
            f'{path}:{call.lineno}: torch.load without weights_only=True'
    for function in ('load', 'loads'):
        unsafe = [call.lineno for call in _calls(tree, 'pickle', function)]
        assert not unsafe, f'{path}:{unsafe}: pickle.{function} runs arbitrary code'
