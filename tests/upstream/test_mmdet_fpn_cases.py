"""The cases of mmdet 3.3.0's own ``test_fpn`` (tests/test_models/test_necks/test_necks.py,
rewritten here with the same inputs and assertions) with :class:`FPNWithUpsampler` swapped in for
``FPN``: mmdet's ``F.interpolate`` form of ``upsample_cfg`` included, and every registered
upsampler in the top-down path. Where mmdet asserts without a message we raise a ValueError /
TypeError that names the argument, so the expected exceptions are either."""
import pytest
import torch
from mmdet.models.necks import FPN
from torch.nn.modules.batchnorm import _BatchNorm

from mmdynup import list_upsamplers
from mmdynup.det import FPNWithUpsampler

S = 64
IN_CHANNELS = [8, 16, 32, 64]
FEAT_SIZES = [S // 2 ** i for i in range(4)]  # [64, 32, 16, 8]
OUT_CHANNELS = 8
REFUSED = (AssertionError, ValueError, TypeError)


def _features():
    return [torch.rand(1, IN_CHANNELS[i], FEAT_SIZES[i], FEAT_SIZES[i])
            for i in range(len(IN_CHANNELS))]


def _assert_pyramid(model, outs, first_stride_index):
    assert len(outs) == model.num_outs
    for i in range(model.num_outs):
        assert outs[i].shape[1] == OUT_CHANNELS
        assert outs[i].shape[2] == outs[i].shape[3] == S // (2 ** (i + first_stride_index))


def test_argument_cases():
    FPNWithUpsampler(IN_CHANNELS, OUT_CHANNELS, start_level=0, end_level=-1, num_outs=5)
    FPNWithUpsampler(IN_CHANNELS, OUT_CHANNELS, start_level=0, end_level=3, num_outs=5)
    for kwargs in (dict(start_level=1, end_level=2, num_outs=3),
                   dict(start_level=1, num_outs=2),
                   dict(start_level=1, end_level=4, num_outs=2),
                   dict(start_level=1, end_level=3, num_outs=1),
                   dict(start_level=1, add_extra_convs='on_xxx', num_outs=5)):
        with pytest.raises(REFUSED):
            FPNWithUpsampler(IN_CHANNELS, OUT_CHANNELS, **kwargs)


@pytest.mark.parametrize('kwargs,extra_convs', [
    (dict(add_extra_convs=True), 'on_input'),
    (dict(add_extra_convs=False), False),
    (dict(add_extra_convs=True, no_norm_on_lateral=False,
          norm_cfg=dict(type='BN', requires_grad=True)), 'on_input'),
    (dict(add_extra_convs='on_input'), 'on_input'),
    (dict(add_extra_convs='on_lateral'), 'on_lateral'),
    (dict(add_extra_convs='on_output'), 'on_output'),
])
def test_start_level_1_cases(kwargs, extra_convs):
    model = FPNWithUpsampler(IN_CHANNELS, OUT_CHANNELS, start_level=1, num_outs=5, **kwargs)
    outs = model(_features())
    assert model.add_extra_convs == extra_convs
    _assert_pyramid(model, outs, first_stride_index=1)
    if 'norm_cfg' in kwargs:
        assert any(isinstance(m, _BatchNorm) for m in model.modules())


@pytest.mark.parametrize('upsample_cfg', [dict(mode='bilinear', align_corners=True),
                                          dict(scale_factor=2), dict(mode='nearest'), None],
                         ids=['bilinear-align-corners', 'scale-factor-2', 'nearest', 'default'])
def test_interpolate_forms_equal_mmdet_fpn(upsample_cfg):
    kwargs = dict(in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS, start_level=0,
                  add_extra_convs=True, num_outs=5)
    theirs = FPN(**kwargs, **({} if upsample_cfg is None else dict(upsample_cfg=upsample_cfg)))
    ours = FPNWithUpsampler(**kwargs, upsample_cfg=upsample_cfg)
    ours.load_state_dict(theirs.state_dict())
    features = _features()
    outs = ours(features)
    _assert_pyramid(ours, outs, first_stride_index=0)
    for mine, expected in zip(outs, theirs(features)):
        assert torch.equal(mine, expected)


def test_interpolate_form_refuses_unknown_keys_and_the_merged_form():
    with pytest.raises(KeyError, match='F.interpolate arguments'):
        FPNWithUpsampler(IN_CHANNELS, OUT_CHANNELS, num_outs=4, upsample_cfg=dict(mod='nearest'))
    with pytest.raises(ValueError, match='_delete_=True'):
        FPNWithUpsampler(IN_CHANNELS, OUT_CHANNELS, num_outs=4,
                         upsample_cfg=dict(mode='nearest', type='DySample'))


@pytest.mark.parametrize('name', list_upsamplers())
def test_every_upsampler_in_mmdets_cases(name):
    model = FPNWithUpsampler(IN_CHANNELS, 32, start_level=0, add_extra_convs=True, num_outs=5,
                             upsample_cfg=dict(type=name)).eval()
    outs = model(_features())
    assert len(outs) == model.num_outs
    for i, out in enumerate(outs):
        assert out.shape == (1, 32, S // 2 ** i, S // 2 ** i)
