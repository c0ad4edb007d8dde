"""Our decode heads build ``loss_decode`` as mmseg's BaseDecodeHead does, without its deprecated,
warning ``build_loss``."""
import warnings

import pytest
from mmseg.registry import MODELS
from torch import nn

import mmdynup  # noqa: F401

CROSS_ENTROPY = dict(type='CrossEntropyLoss', avg_non_ignore=True)
HEADS = {
    'UPerHeadWithUpsampler': dict(pool_scales=(1, 2), upsample_cfg=dict(type='FADE')),
    'SegformerHeadWithUpsampler': dict(upsample_cfg=dict(type='DySample')),
}


def _head(name, **kwargs):
    return MODELS.build(dict(type=name, in_channels=[8, 16], channels=8, num_classes=3,
                             in_index=[0, 1], **HEADS[name], **kwargs))


@pytest.mark.parametrize('name', HEADS)
def test_dict_gives_one_loss_and_a_list_a_module_list_without_build_loss(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        single = _head(name, loss_decode=CROSS_ENTROPY)
        several = _head(name, loss_decode=[CROSS_ENTROPY, dict(type='DiceLoss')])
    assert not [w for w in caught if 'build_loss' in str(w.message)]
    assert type(single.loss_decode).__name__ == 'CrossEntropyLoss'
    assert isinstance(several.loss_decode, nn.ModuleList)
    assert [type(loss).__name__ for loss in several.loss_decode] == ['CrossEntropyLoss', 'DiceLoss']


@pytest.mark.parametrize('name', HEADS)
def test_default_is_base_decode_heads_cross_entropy(name):
    loss = _head(name).loss_decode
    assert type(loss).__name__ == 'CrossEntropyLoss' and not loss.use_sigmoid
    assert loss.loss_weight == 1.0


@pytest.mark.parametrize('name', HEADS)
def test_other_loss_decode_is_refused_naming_the_head(name):
    with pytest.raises(TypeError, match=rf'{name}: loss_decode must be a dict'):
        _head(name, loss_decode='CrossEntropyLoss')
