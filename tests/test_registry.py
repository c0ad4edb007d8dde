"""``import mmdynup`` alone makes every upsampler buildable from mmseg's and mmdet's registries,
under either default scope, by plain and by scoped name; the public API builds every name."""
import pytest
import torch
from mmengine.registry import DefaultScope

import mmdynup
from mmdynup.registry import MODELS as MMDYNUP_MODELS

NAMES = mmdynup.list_upsamplers()
COMMON = dict(in_channels=32, scale_factor=2, guide_channels=32)
MMCV_NAMES = {'carafe', 'nearest', 'bilinear', 'deconv', 'pixel_shuffle'}


def _host_registries():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    return {'mmseg': SEG_MODELS, 'mmdet': DET_MODELS}


def test_names_are_sorted_unique_and_do_not_collide_with_mmcv():
    assert NAMES == sorted(set(NAMES)) and len(NAMES) >= 18
    assert not MMCV_NAMES & set(NAMES)


@pytest.mark.parametrize('name', NAMES)
def test_public_build_with_common_arguments(name):
    module = mmdynup.build_upsampler(dict(type=name, in_channels=256, scale_factor=2,
                                          guide_channels=256))
    assert isinstance(module, torch.nn.Module)
    assert type(module).__name__ == name
    assert isinstance(type(module).requires_guide, bool)


@pytest.mark.parametrize('scope', ['mmseg', 'mmdet'])
@pytest.mark.parametrize('name', NAMES)
def test_host_registries_build_every_upsampler(name, scope):
    registries = _host_registries()
    with DefaultScope.overwrite_default_scope(scope):
        for host, registry in registries.items():
            for type_name in (name, f'mmdynup.{name}'):
                module = registry.build(dict(type=type_name, **COMMON))
                assert type(module).__name__ == name, (host, type_name)
    x = torch.randn(2, 32, 5, 7, requires_grad=True)
    guide = torch.randn(2, 32, 10, 14)
    out = module(x, guide if module.requires_guide else None)
    out.sum().backward()
    assert out.shape == (2, module.out_channels, 10, 14)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_scoped_name_reaches_mmdynup_registry():
    assert MMDYNUP_MODELS.get('DySample') is MMDYNUP_MODELS.get('mmdynup.DySample')


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(KeyError, match='available'):
        mmdynup.build_upsampler(dict(type='NoSuchUpsampler', in_channels=8))
    with pytest.raises(KeyError, match='"type"'):
        mmdynup.build_upsampler(dict(in_channels=8))
