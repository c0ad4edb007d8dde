"""FCNMaskHeadWithUpsampler: mmdet's FCNMaskHead with any upsampler in place of its deconvolution.
With nearest it equals mmdet's head (same weights); mmdet's CARAFE form builds our CARAFE;
guided operators get the nearest-enlarged feature as guide; bad configs fail at build."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DefaultScope

import mmdynup
from mmdynup.det import FCNMaskHeadWithUpsampler
from mmdynup.upsamplers.carafe import CARAFE
from tests.seg.helpers import RecordingGuidedUpsample

HEAD = dict(num_convs=2, in_channels=16, conv_out_channels=16, num_classes=3)


def test_nearest_equals_mmdet_fcn_mask_head():
    torch.manual_seed(0)
    reference = FCNMaskHead(upsample_cfg=dict(type='nearest', scale_factor=2), **HEAD).double()
    ours = FCNMaskHeadWithUpsampler(upsample_cfg=dict(type='NearestUpsample'), **HEAD).double()
    assert ours.state_dict().keys() == reference.state_dict().keys()
    ours.load_state_dict(reference.state_dict())
    rois = torch.randn(5, 16, 14, 14, dtype=torch.float64)
    torch.testing.assert_close(ours(rois), reference(rois), atol=0, rtol=0)


def test_mmdet_carafe_form_builds_our_carafe_with_mmdets_keys():
    cfg = dict(type='carafe', scale_factor=2, up_kernel=5, up_group=1, encoder_kernel=3,
               encoder_dilation=1, compressed_channels=8)
    head = FCNMaskHeadWithUpsampler(upsample_cfg=cfg, **HEAD)
    assert isinstance(head.upsample, CARAFE) and head.upsample.compressed_channels == 8
    # mmdet's CARAFE mask head: upsample.channel_compressor / content_encoder, logits 16 -> 3.
    keys = {key for key in head.state_dict() if key.startswith('upsample.')}
    assert keys == {'upsample.channel_compressor.weight', 'upsample.channel_compressor.bias',
                    'upsample.content_encoder.weight', 'upsample.content_encoder.bias'}
    encoder = head.upsample.content_encoder.weight
    head.init_weights()
    assert encoder.std() < 0.01  # CARAFE's own init survives FCNMaskHead.init_weights
    out = head(torch.randn(4, 16, 14, 14))
    assert out.shape == (4, 3, 28, 28)
    out.sum().backward()
    assert all(p.grad is not None for p in head.upsample.parameters())


@pytest.mark.parametrize('name', mmdynup.list_upsamplers())
def test_any_upsampler_gives_28x28_logits_and_gradients(name):
    # 32 channels: SAPABase's GroupNorm(32) needs multiples of 32.
    head = FCNMaskHeadWithUpsampler(upsample_cfg=dict(type=name), **dict(HEAD, in_channels=32,
                                                                         conv_out_channels=32))
    out = head(torch.randn(3, 32, 14, 14))
    assert out.shape == (3, 3, 28, 28)
    out.sum().backward()
    missing = [n for n, p in head.upsample.named_parameters() if p.grad is None]
    assert not missing, missing
    # A batch without positive RoIs (mmdet then still calls the head) keeps the shape.
    assert head(torch.randn(0, 32, 14, 14)).shape == (0, 3, 28, 28)


def test_guided_upsampler_is_guided_by_its_input_enlarged_by_nearest():
    head = FCNMaskHeadWithUpsampler(upsample_cfg=dict(type=RecordingGuidedUpsample), **HEAD)
    rois = torch.randn(2, 16, 14, 14)
    head(rois)
    (x, guide), = head.upsample.calls
    assert torch.equal(guide, F.interpolate(x, scale_factor=2, mode='nearest'))


def test_builds_in_the_mmdet_registry_and_scale_factor_4():
    with DefaultScope.overwrite_default_scope('mmdet'):
        head = MMDET_MODELS.build(dict(type='FCNMaskHeadWithUpsampler',
                                       upsample_cfg=dict(type='CARAFE', scale_factor=4), **HEAD))
    assert head(torch.randn(1, 16, 7, 7)).shape == (1, 3, 28, 28)


@pytest.mark.parametrize('cfg, error, words', [
    (dict(type='deconv', scale_factor=2), ValueError, ['deconv', 'DeconvUpsample']),
    (dict(type='carafe', channels=16), ValueError, ['channels']),
    (dict(type='Nope'), KeyError, ['Nope']),
    ('CARAFE', TypeError, ['upsample_cfg']),
])
def test_bad_config_fails_at_build(cfg, error, words):
    with pytest.raises(error) as info:
        FCNMaskHeadWithUpsampler(upsample_cfg=cfg, **HEAD)
    for word in words:
        assert word in str(info.value)
