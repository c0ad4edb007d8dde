"""mmdynup.compat gives the same answers through torch >= 2.4's APIs and through the older
spellings that torch 2.0 - 2.3 have (simulated by removing the new ones)."""
import pytest
import torch

from mmdynup import compat


class _Without:
    """``module`` without the attributes ``missing``, with ``overrides`` (an older torch)."""

    def __init__(self, module, missing=(), **overrides):
        self._module, self._missing, self._overrides = module, set(missing), overrides

    def __getattr__(self, name):
        if name in self._missing:
            raise AttributeError(name)
        return self._overrides.get(name, getattr(self._module, name))


def _old_torch(monkeypatch):
    """compat sees torch 2.0 - 2.3 (torch itself stays as it is: autocast needs the new API)."""
    def is_autocast_enabled_without_device(*args):
        if args:
            raise TypeError('is_autocast_enabled() takes 0 positional arguments')
        return torch.is_autocast_enabled('cuda')

    old = _Without(torch, missing={'get_autocast_dtype'},
                   is_autocast_enabled=is_autocast_enabled_without_device,
                   compiler=_Without(torch.compiler, missing={'is_compiling'}),
                   serialization=_Without(torch.serialization, missing={'add_safe_globals'}))
    monkeypatch.setattr(compat, 'torch', old)


@pytest.mark.parametrize('old', [False, True], ids=['torch>=2.4', 'torch<2.4'])
def test_autocast_state_and_dtype(old, monkeypatch):
    if old:
        _old_torch(monkeypatch)
    assert not compat.is_autocast_enabled('cpu')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert compat.is_autocast_enabled('cpu')
        assert not compat.is_autocast_enabled('cuda')
        assert compat.get_autocast_dtype('cpu') == torch.bfloat16


@pytest.mark.parametrize('old', [False, True], ids=['torch>=2.4', 'torch<2.4'])
def test_is_compiling_inside_and_outside_compile(old, monkeypatch):
    if old:
        _old_torch(monkeypatch)
    seen = []

    def function(x):
        seen.append(compat.is_compiling())
        return x + 1

    assert not compat.is_compiling()
    torch.compile(function, backend='eager')(torch.ones(2))
    assert seen == [True]


def test_add_safe_globals_reports_old_torch(monkeypatch):
    class Marker:
        pass

    assert compat.add_safe_globals([Marker])
    assert Marker in torch.serialization.get_safe_globals()
    _old_torch(monkeypatch)
    assert compat.add_safe_globals([Marker]) is False
