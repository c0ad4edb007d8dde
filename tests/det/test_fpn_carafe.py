"""FPNCARAFEWithUpsampler: mmdet's FPN_CARAFE topology with any upsampler. It reproduces
FPN_CARAFE itself (the shared record with CARAFE, exactly; mmdet's module with nearest, deconv and
pixel shuffle, odd sizes included), builds four upsamplers for four backbone levels, guides like
FPNWithUpsampler and keeps upsampler_init."""
import pytest
import torch
from mmdet.models.necks import FPN_CARAFE
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DefaultScope

import mmdynup
from mmdynup.converters import build_from_official, convert_official
from mmdynup.det import FPNCARAFEWithUpsampler, added_parameters
from tests.conftest import reference_dir, skip_without_reference
from tests.det.neck_records import assert_neck_reproduces_record
from tests.seg.helpers import RecordingGuidedUpsample, pyramid_features

# mmdet_fpn_carafe.pt and any further record of the same neck (other seeds, sizes, kernels).
RECORDS = sorted((reference_dir() / 'integration').glob('mmdet_fpn_carafe*.pt'))
IN_CHANNELS = [8, 16, 24, 32]


@skip_without_reference('integration')
@pytest.mark.parametrize('path', RECORDS, ids=[path.stem for path in RECORDS])
def test_reproduces_mmdet_fpn_carafe_record(path):
    record = torch.load(path, weights_only=True)
    conversion = assert_neck_reproduces_record(record, FPNCARAFEWithUpsampler)
    assert len(conversion.module.upsamplers) == len(conversion.module.lateral_convs) - 1
    built = build_from_official(record['official'], record['kwargs'], record['state_dict'])
    for name, tensor in built.state_dict().items():
        assert torch.equal(tensor, record['state_dict'][conversion.official_names[name]])


def _mmdet_pair(mmdet_cfg, ours_cfg, **kwargs):
    """mmdet's FPN_CARAFE (randomised weights, float64) and ours loaded with its state_dict."""
    torch.manual_seed(0)
    reference = FPN_CARAFE(IN_CHANNELS, 16, 5, upsample_cfg=mmdet_cfg, **kwargs).double()
    with torch.no_grad():
        for tensor in reference.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.2)
    conversion = convert_official('FPN_CARAFE', dict(in_channels=IN_CHANNELS, out_channels=16,
                                                     num_outs=5, upsample_cfg=ours_cfg, **kwargs),
                                  reference.state_dict())
    return reference.eval(), conversion.module


# mmdet's own layers; CARAFE needs mmcv's CUDA kernel, so the record above covers it.
MMDET_UPSAMPLERS = {
    'nearest': dict(type='nearest'),
    'deconv': dict(type='deconv', upsample_kernel=3),
    'pixel_shuffle': dict(type='pixel_shuffle', upsample_kernel=3),
}


@pytest.mark.parametrize('name', MMDET_UPSAMPLERS)
@pytest.mark.parametrize('size', [(64, 96), (45, 61)], ids=['64x96', '45x61'])
def test_equals_mmdet_fpn_carafe_with_its_other_upsamplers(name, size):
    from mmengine.config import ConfigDict
    # FPN_CARAFE reads upsample_kernel as an attribute: it takes a ConfigDict, as from a config.
    reference, ours = _mmdet_pair(ConfigDict(MMDET_UPSAMPLERS[name]), MMDET_UPSAMPLERS[name])
    features = pyramid_features(IN_CHANNELS, *size)
    ours_inputs = [f.clone().requires_grad_(True) for f in features]
    reference_inputs = [f.clone().requires_grad_(True) for f in features]
    ours_out, reference_out = ours(tuple(ours_inputs)), reference(tuple(reference_inputs))
    assert len(ours_out) == len(reference_out) == 5
    for level, (a, b) in enumerate(zip(ours_out, reference_out)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=lambda m: f'level {level}: {m}')
    upstream = [torch.randn_like(out) for out in ours_out]
    torch.autograd.backward(ours_out, upstream)
    torch.autograd.backward(reference_out, upstream)
    for a, b in zip(ours_inputs, reference_inputs):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=0)


@pytest.mark.parametrize('name', mmdynup.list_upsamplers())
def test_any_upsampler_on_odd_sizes_with_four_steps(name):
    neck = FPNCARAFEWithUpsampler(IN_CHANNELS, 32, 5, upsample_cfg=dict(type=name))
    features = pyramid_features(IN_CHANNELS, 45, 61, dtype=torch.float32)
    outputs = neck(tuple(features))
    sizes = [tuple(f.shape[-2:]) for f in features]
    assert [tuple(o.shape[-2:]) for o in outputs] == sizes + [(-(-sizes[-1][0] // 2),
                                                               -(-sizes[-1][1] // 2))]
    assert len(neck.upsamplers) == 4
    sum(output.sum() for output in outputs).backward()
    missing = [n for n, p in neck.named_parameters() if p.grad is None]
    assert not missing, missing


def test_guided_upsamplers_get_the_finer_lateral_before_the_addition():
    neck = FPNCARAFEWithUpsampler(IN_CHANNELS, 16, 5,
                                  upsample_cfg=dict(type=RecordingGuidedUpsample))
    features = tuple(pyramid_features(IN_CHANNELS, 72, 100, dtype=torch.float32))
    neck(features)
    laterals = neck.laterals(features)
    assert len(laterals) == 5 and laterals[4].shape[-2:] == (2, 2)  # P6: stride-2 conv on C5
    for step, upsampler in enumerate(neck.upsamplers):
        (x, guide), = upsampler.calls
        assert torch.equal(guide, laterals[step]), f'step {step}: guide is not the raw lateral'


def test_added_parameters_are_four_steps_at_256_channels():
    counts = {name: added_parameters(FPNCARAFEWithUpsampler([256, 512, 1024, 2048], 256, 5,
                                                            upsample_cfg=dict(type=name)))
              for name in ('DySample', 'DeconvUpsample', 'PixelShuffleUpsample')}
    assert counts == {'DySample': 4 * 8224, 'DeconvUpsample': 4 * 590080,
                      'PixelShuffleUpsample': 4 * 2360320}


@pytest.mark.parametrize('upsampler_init', ['neck', 'own'])
def test_upsampler_init(upsampler_init):
    neck = FPNCARAFEWithUpsampler(IN_CHANNELS, 64, 5, upsampler_init=upsampler_init,
                                  upsample_cfg=dict(type='CARAFE'))
    encoder = neck.upsamplers[0].content_encoder
    neck.init_weights()
    # CARAFE's own init (as mmdet's FPN_CARAFE re-applies): content encoder N(0, 0.001).
    small = encoder.weight.std().item() < 0.01
    assert small == (upsampler_init == 'own')
    assert torch.count_nonzero(neck.lateral_convs[4].conv.bias) == 0


def test_builds_from_the_mmdet_registry_under_each_default_scope():
    cfg = dict(type='FPNCARAFEWithUpsampler', in_channels=IN_CHANNELS, out_channels=16,
               num_outs=5, upsample_cfg=dict(type='mmdynup.FADE'))
    with DefaultScope.overwrite_default_scope('mmdet'):
        neck = MMDET_MODELS.build(cfg)
    assert isinstance(neck, FPNCARAFEWithUpsampler)
    assert type(neck.upsamplers[0]).__name__ == 'FADE'
    with DefaultScope.overwrite_default_scope('mmseg'):
        neck = MMDET_MODELS.build(dict(cfg, type='mmdet.FPNCARAFEWithUpsampler',
                                       upsample_cfg=dict(type='carafe', compressed_channels=8)))
    assert type(neck.upsamplers[0]).__name__ == 'CARAFE'


@pytest.mark.parametrize('kwargs, error, words', [
    (dict(upsample_cfg=dict(type='carafe', channels=16)), ValueError, ['channels', 'carafe']),
    (dict(upsample_cfg=dict(type=None)), ValueError, ['type=None']),
    (dict(upsample_cfg=dict(type='Nope')), KeyError, ['Nope']),
    (dict(upsampler_init='xavier'), ValueError, ['upsampler_init', 'xavier']),
    (dict(init_cfg=dict(type='Xavier', layer='Conv2d')), ValueError, ['init_cfg']),
    (dict(start_level=4), ValueError, ['start_level']),
])
def test_bad_config_fails_at_build_naming_the_key(kwargs, error, words):
    with pytest.raises(error) as info:
        FPNCARAFEWithUpsampler(IN_CHANNELS, 16, 5, **kwargs)
    for word in words:
        assert word in str(info.value)


def _carafe_on_cpu(features, masks, kernel_size, group_size, scale_factor):
    """mmcv's ``carafe`` (CUDA only) through our plain reference reassembly: masks
    (B, G * k * k, sH, sW), channel ``g * k * k + tap`` as mmcv's kernel reads them."""
    from mmdynup.ops.reassembly import reassemble_reference
    batch, _, height, width = masks.shape
    kernels = masks.view(batch, group_size, kernel_size ** 2, height, width)
    return reassemble_reference(features, kernels, kernel_size, scale_factor)


@pytest.mark.parametrize('carafe_cfg', [
    dict(up_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1, compressed_channels=8),
    dict(up_kernel=3, up_group=2, encoder_kernel=5, encoder_dilation=1, compressed_channels=4),
    dict(up_kernel=5, up_group=4, encoder_kernel=3, encoder_dilation=2, compressed_channels=16),
], ids=['k5g1', 'k3g2e5', 'k5g4d2'])
def test_equals_mmdet_fpn_carafe_with_carafe_at_odd_sizes(carafe_cfg, monkeypatch):
    # mmcv's CARAFEPack with its CUDA reassembly swapped for a CPU one (as the shared record).
    import sys
    monkeypatch.setattr(sys.modules['mmcv.ops.carafe'], 'carafe', _carafe_on_cpu)
    cfg = dict(type='carafe', **carafe_cfg)
    reference, ours = _mmdet_pair(cfg, cfg)
    features = pyramid_features(IN_CHANNELS, 45, 61, seed=3)
    ours_inputs = [f.clone().requires_grad_(True) for f in features]
    reference_inputs = [f.clone().requires_grad_(True) for f in features]
    ours_out, reference_out = ours(tuple(ours_inputs)), reference(tuple(reference_inputs))
    upstream = [torch.randn_like(out) for out in ours_out]
    torch.autograd.backward(ours_out, upstream)
    torch.autograd.backward(reference_out, upstream)
    for level, (a, b) in enumerate(zip(ours_out, reference_out)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8, msg=lambda m: f'level {level}: {m}')
    for a, b in zip(ours_inputs, reference_inputs):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-10, rtol=1e-8)
    theirs = dict(reference.named_parameters())
    for name, parameter in ours.named_parameters():
        torch.testing.assert_close(parameter.grad,
                                   theirs[name.replace('upsamplers.', 'upsample_modules.')].grad,
                                   atol=1e-10, rtol=1e-8, msg=lambda m: f'{name}: {m}')
