"""The single place that decides how mmdynup names reach OpenMMLab registries.

Mechanism (chosen after reading mmengine's ``Registry``):

* ``MODELS`` below is a child of mmengine's root ``MODELS`` with scope ``'mmdynup'``. Every
  upsampler registers here, so ``'mmdynup.DySample'`` resolves from any default scope.
* A scoped child is invisible to *unscoped* lookups from its siblings, and mmseg / mmdet runs swap
  the registry that ``build_from_cfg`` uses to their own. So ``import mmdynup`` additionally
  registers every upsampler directly into ``mmseg.registry.MODELS`` and ``mmdet.registry.MODELS``
  (whichever are installed: a missing mmdet never breaks an mmseg user, and the reverse).
  ``dict(type='DySample')`` then builds inside either host with no import-order trap: the
  registration happens when the config's ``custom_imports=dict(imports=['mmdynup'])`` runs.
* Heads (mmseg) and necks (mmdet) subclass host classes and register only in their host registry,
  from ``mmdynup.seg`` / ``mmdynup.det``, imported by ``mmdynup/__init__.py`` when the host is
  importable.
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Type

from mmengine.registry import MODELS as ENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=ENGINE_MODELS, scope='mmdynup')

#: Upsampler classes by registered name, in registration order.
_UPSAMPLERS: Dict[str, type] = {}

# Host registries that upsamplers are mirrored into, by the module that defines each.
_HOST_REGISTRY_MODULES = ('mmseg.registry', 'mmdet.registry')


def host_registries() -> List[Registry]:
    """Return the ``MODELS`` registries of the installed hosts (mmseg, mmdet)."""
    registries = []
    for module_name in _HOST_REGISTRY_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        registries.append(module.MODELS)
    return registries


def register_upsampler(cls: Type) -> Type:
    """Class decorator: register an upsampler in mmdynup's and every host's ``MODELS``."""
    name = cls.__name__
    if name in _UPSAMPLERS and _UPSAMPLERS[name] is not cls:
        raise KeyError(f'upsampler name {name!r} is already registered by '
                       f'{_UPSAMPLERS[name].__module__}; pick another class name')
    _UPSAMPLERS[name] = cls
    MODELS.register_module(module=cls, force=True)
    for registry in host_registries():
        registry.register_module(module=cls, force=True)
    return cls


def upsampler_classes() -> Dict[str, type]:
    """Registered upsampler classes by name (a copy)."""
    return dict(_UPSAMPLERS)


def register_in_hosts(register: Callable[[Registry], None]) -> None:
    """Call ``register(registry)`` for every installed host registry."""
    for registry in host_registries():
        register(registry)
