"""The authors' FPN_UPSAMPLE outputs (shared/reference/integration/det_*.pt) reproduced by our neck
through build_from_official: every output level, input gradients, parameter gradients (float64);
spare upsamplers dropped with a printed list; everything else refused."""
import pytest
import torch

from mmdynup.converters import build_from_official, convert_official
from mmdynup.converters.checkpoint_io import (CheckpointMismatchError, choose_source,
                                              convert_checkpoint, split_checkpoint)
from mmdynup.converters.detection_fork import convert_detection_fork
from mmdynup.converters.fork_upsamplers import convert_fork_upsample_cfg
from mmdynup.det import FPNWithUpsampler
from tests.conftest import reference_dir, reference_files, skip_without_reference
from tests.det.neck_records import assert_neck_reproduces_record

FILES = [path for path in reference_files('integration') if path.stem.startswith('det_')]
OFFICIAL = {'repo': 'tiny-smart/detection-with-upsamplers', 'cls': 'FPN_UPSAMPLE'}
FORK_KWARGS = dict(in_channels=[8, 8, 16, 16], out_channels=8, num_outs=5)
EXTRACONVS = reference_dir() / 'integration' / 'det_fpn_dysample_plus_extraconvs.pt'


def _load(path):
    return torch.load(path, weights_only=True)


@skip_without_reference('integration')
@pytest.mark.parametrize('path', FILES, ids=[path.stem for path in FILES])
def test_reproduces_the_forks_neck(path):
    record = _load(path)
    assert_neck_reproduces_record(record, FPNWithUpsampler)
    neck = build_from_official(record['official'], record['kwargs'], record['state_dict'])
    assert isinstance(neck, FPNWithUpsampler)


@skip_without_reference('integration')
def test_spare_upsampler_keys_are_dropped_and_printed(capsys):
    record = _load(EXTRACONVS)
    conversion = convert_official(record['official'], record['kwargs'], record['state_dict'])
    printed = capsys.readouterr().out
    for key in record['spare_upsampler_keys']:
        assert key in printed
    assert 'dropped 5 key(s) of spare upsamplers' in printed
    assert len(conversion.module.upsamplers) == 3
    used = set(conversion.official_names.values())
    assert used == set(record['state_dict']) - set(record['spare_upsampler_keys'])
    for name, tensor in conversion.module.state_dict().items():
        assert torch.equal(tensor, record['state_dict'][conversion.official_names[name]])


def _fork_state_dict(upsample_cfg, fork_renames, spare=0, **kwargs):
    """A state_dict in the fork's layout made from our neck (the documented diff, reversed),
    plus ``spare`` upsamplers after the used ones, as the fork builds with extra convs."""
    ours, _ = convert_fork_upsample_cfg(upsample_cfg, 'test')
    torch.manual_seed(0)
    neck = FPNWithUpsampler(upsample_cfg=ours, **dict(FORK_KWARGS, **kwargs))
    fork = {}
    for key, value in neck.state_dict().items():
        for our_prefix, fork_prefix in fork_renames:
            if key.startswith(our_prefix):
                key = fork_prefix + key[len(our_prefix):]
                break
        fork[key] = value.clone()
    for index in range(spare):
        for key, value in list(fork.items()):
            if key.startswith('upsample_modules.0.'):
                fork[key.replace('.0.', f'.{3 + index}.', 1)] = value.clone()
    return neck, fork


@pytest.mark.parametrize('upsample_cfg, fork_renames', [
    (dict(type='deconv', guided=False),
     [(f'upsamplers.{n}.deconv', f'upsample_modules.{n}') for n in range(3)]),
    (dict(type='pixelshuffle', guided=False, kernel_size=5, padding=2),
     [(f'upsamplers.{n}.upsample_conv', f'upsample_modules.{n}.0') for n in range(3)]),
    (dict(type='sapadeform', guided=True, embedding_dim=8, groups=2),
     [('upsamplers', 'upsample_modules')]),
    (dict(type='bilinear', guided=False), []),
], ids=['deconv', 'pixelshuffle', 'sapadeform', 'bilinear'])
def test_layouts_that_differ_inside_the_upsampler_are_renamed(upsample_cfg, fork_renames):
    neck, fork = _fork_state_dict(upsample_cfg, fork_renames)
    converted = build_from_official(OFFICIAL, dict(FORK_KWARGS, upsample_cfg=upsample_cfg), fork)
    assert converted.state_dict().keys() == neck.state_dict().keys()
    for key, value in neck.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value)
    features = tuple(torch.randn(1, c, 32 // 2 ** i, 24 // 2 ** i)
                     for i, c in enumerate(FORK_KWARGS['in_channels']))
    for a, b in zip(converted(features), neck(features)):
        assert torch.equal(a, b)


def test_unknown_and_missing_keys_are_refused_with_a_list():
    cfg = dict(type='carafe', guided=False, compressed_channels=4)
    _, fork = _fork_state_dict(cfg, [('upsamplers', 'upsample_modules')])
    kwargs = dict(FORK_KWARGS, upsample_cfg=cfg)
    extra = dict(fork, **{'neck_extra.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match=r"not part of the fork's neck.*\['neck_extra.weight'\]"):
        build_from_official(OFFICIAL, kwargs, extra)
    missing = {k: v for k, v in fork.items() if not k.startswith('upsample_modules.1.')}
    with pytest.raises(ValueError, match=r"missing \['upsamplers.1.channel_compressor.bias'"):
        build_from_official(OFFICIAL, kwargs, missing)
    other = dict(FORK_KWARGS, upsample_cfg=dict(type='dysample', guided=False))
    with pytest.raises(ValueError, match=r"unexpected \['upsamplers.0.channel_compressor"):
        build_from_official(OFFICIAL, other, fork)


@pytest.mark.parametrize('upsample_cfg, match', [
    (dict(type='sierra', guided=False), 'sierra'),
    (dict(type='fade'), "no 'guided'"),
    (dict(mode='nearest', guided=False), "no 'type'"),
    (dict(type='dysample', guided=True), 'guided=True'),
    (dict(type='sapa', guided=False), 'guided=False'),
    (dict(type='fade', guided=True, embedding_dim=64), 'embedding_dim'),
    (dict(type='deconv', guided=False, padding=0), 'does not upsample exactly 2x'),
    (dict(type='pixelshuffle', guided=False, padding=0), 'padding=0'),
    (dict(type='bicubic', guided=False), 'not a fork upsampler'),
])
def test_fork_configs_the_fork_would_not_build_are_refused(upsample_cfg, match):
    with pytest.raises(ValueError, match=match):
        build_from_official(OFFICIAL, dict(FORK_KWARGS, upsample_cfg=upsample_cfg), {})


def test_kwargs_without_upsample_cfg_are_refused():
    with pytest.raises(ValueError, match='no upsample_cfg'):
        build_from_official(OFFICIAL, FORK_KWARGS, {})


def _detector_checkpoint(upsample_cfg, with_meta=True):
    # Two extra levels by convs: the fork builds two spare upsamplers (3 and 4).
    _, fork = _fork_state_dict(upsample_cfg, [('upsamplers', 'upsample_modules')], spare=2,
                               add_extra_convs='on_input', num_outs=6)
    state_dict = {'backbone.conv1.weight': torch.zeros(2), **{f'neck.{k}': v
                                                             for k, v in fork.items()},
                  'rpn_head.rpn_conv.weight': torch.zeros(3)}
    checkpoint = {'state_dict': state_dict}
    if with_meta:
        checkpoint['meta'] = {'cfg': "model = dict(type='FasterRCNN', neck=dict("
                                     f"type='FPN_UPSAMPLE', upsample_cfg={upsample_cfg!r}))\n"}
    return checkpoint


def test_whole_detector_checkpoint_through_the_checkpoint_tool_api():
    cfg = dict(type='dysample', guided=False, style='lp', groups=4, dyscope=True)
    loaded = split_checkpoint(_detector_checkpoint(cfg))
    source, how = choose_source(loaded)
    assert source.name == 'detection-fork' and 'neck.upsample_modules' in how
    converted, report = convert_checkpoint(loaded, source)
    spare = sorted(key for key in loaded.state_dict if key.startswith(
        ('neck.upsample_modules.3.', 'neck.upsample_modules.4.')))
    assert len(spare) == 2 * 5 and sorted(report.dropped) == spare
    assert all('spare upsampler' in reason for reason in report.dropped.values())
    assert {'backbone.conv1.weight', 'rpn_head.rpn_conv.weight'} <= set(converted)
    assert not any('upsample_modules' in key for key in converted)
    ours, _ = convert_fork_upsample_cfg(cfg, 'test')
    neck = FPNWithUpsampler(upsample_cfg=ours, add_extra_convs='on_input',
                            **dict(FORK_KWARGS, num_outs=6))
    neck.load_state_dict({k[len('neck.'):]: v for k, v in converted.items()
                          if k.startswith('neck.')})


def test_whole_checkpoint_needs_the_forks_upsample_cfg():
    cfg = dict(type='deconv', guided=False)
    checkpoint = _detector_checkpoint(cfg, with_meta=False)
    loaded = split_checkpoint(checkpoint)
    source, _ = choose_source(loaded, 'detection-fork')
    with pytest.raises(CheckpointMismatchError, match='stores no config'):
        convert_checkpoint(loaded, source)
    converted, _ = convert_checkpoint(loaded, source, {'upsample_cfg': cfg})
    assert 'neck.upsamplers.2.deconv.weight' in converted
    bad = dict(checkpoint['state_dict'], **{'neck.not_a_layer.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match=r"\['neck.not_a_layer.weight'\]"):
        convert_detection_fork(bad, upsample_cfg=cfg)
