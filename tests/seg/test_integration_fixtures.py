"""The authors' decode heads reproduced through build_from_official / official_forward: the fork's
UPerHead_Upsample (shared/reference/integration/seg_*.pt) and the FADE authors' NVlabs-style
SegFormerHead (segformer_head_*.pt): forward, input gradients, parameter gradients (float64), and
the converters' refusals."""
import pytest
import torch

from mmdynup.converters import build_from_official, convert_official
from mmdynup.converters.segmentation_fork import convert_segmentation_fork
from mmdynup.seg import SegformerHeadWithUpsampler, UPerHeadWithUpsampler
from tests.conftest import reference_files, skip_without_reference

FILES = [path for path in reference_files('integration')
         if path.stem.startswith(('seg_', 'segformer_head_'))]
ATOL, RTOL = 1e-10, 1e-8
OFFICIAL = {'repo': 'tiny-smart/segmentation-with-upsamplers', 'cls': 'UPerHead_Upsample'}
FORK_KWARGS = dict(in_channels=[8, 8, 8, 8], in_index=[0, 1, 2, 3], channels=8, num_classes=3,
                   pool_scales=[1, 2], norm_cfg=dict(type='BN', requires_grad=True),
                   align_corners=False)


def _load(path):
    return torch.load(path, weights_only=True)


@skip_without_reference('integration')
@pytest.mark.parametrize('path', FILES, ids=[path.stem for path in FILES])
def test_reproduces_the_authors_head(path):
    record = _load(path)
    conversion = convert_official(record['official'], record['kwargs'], record['state_dict'])
    head = conversion.module
    assert not head.training and next(head.parameters()).dtype == torch.float64
    inputs = [tensor.detach().clone().requires_grad_(True) for tensor in record['inputs']]
    output = conversion.official_forward(inputs=inputs)
    torch.testing.assert_close(output, record['output'], atol=ATOL, rtol=RTOL)

    output.backward(record['grad_output'])
    for index, (tensor, expected) in enumerate(zip(inputs, record['grads'])):
        torch.testing.assert_close(tensor.grad, expected, atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f'input gradient {index}: {m}')
    ours = {conversion.official_names[name]: parameter.grad
            for name, parameter in head.named_parameters()}
    assert set(record['param_grads']) <= set(ours)
    for name in record['params_without_grad']:
        # Unused by the official forward: ours has no such parameter, or it gets no gradient.
        assert ours.get(name) is None, f'{name} got a gradient; the official head never uses it'
    for name, expected in record['param_grads'].items():
        assert ours[name] is not None, f'{name} received no gradient'
        # NVlabs' Linear projections (E, C) are our 1x1 convs (E, C, 1, 1): same numbers.
        torch.testing.assert_close(ours[name].reshape(expected.shape), expected, atol=ATOL,
                                   rtol=RTOL,
                                   msg=lambda m: f'parameter gradient {name}: {m}')


@skip_without_reference('integration')
@pytest.mark.parametrize('path', FILES[:1], ids=[path.stem for path in FILES[:1]])
def test_loaded_weights_are_the_records(path):
    record = _load(path)
    conversion = convert_official(record['official'], record['kwargs'], record['state_dict'])
    assert isinstance(conversion.module, UPerHeadWithUpsampler)
    for name, tensor in conversion.module.state_dict().items():
        assert torch.equal(tensor, record['state_dict'][conversion.official_names[name]])


def _fork_state_dict(upsample_cfg, fork_renames):
    """A state_dict in the fork's layout, made from our head (the documented diff, reversed)."""
    from mmdynup.converters.fork_upsamplers import convert_fork_upsample_cfg
    ours, _ = convert_fork_upsample_cfg(upsample_cfg, 'test')
    head = UPerHeadWithUpsampler(upsample_cfg=ours, **dict(FORK_KWARGS, pool_scales=(1, 2)))
    fork = {}
    for key, value in head.state_dict().items():
        for our_prefix, fork_prefix in fork_renames:
            if key.startswith(our_prefix):
                key = fork_prefix + key[len(our_prefix):]
                break
        fork[key] = value.clone()
    return head, fork


@pytest.mark.parametrize('upsample_cfg, fork_renames', [
    (dict(type='deconv', guided=False),
     [(f'upsamplers.{n}.deconv', f'upsample_modules.{n}') for n in range(3)]),
    (dict(type='pixelshuffle', guided=False),
     [(f'upsamplers.{n}.upsample_conv', f'upsample_modules.{n}.0') for n in range(3)]),
    (dict(type='dysample', guided=False, dyscope=True), [('upsamplers', 'upsample_modules')]),
], ids=['deconv', 'pixelshuffle', 'dysample_plus'])
def test_layouts_that_differ_inside_the_upsampler_are_renamed(upsample_cfg, fork_renames):
    head, fork = _fork_state_dict(upsample_cfg, fork_renames)
    converted = build_from_official(OFFICIAL, dict(FORK_KWARGS, upsample_cfg=upsample_cfg), fork)
    for key, value in head.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value)


def test_unknown_and_missing_keys_are_refused_with_a_list():
    cfg = dict(type='carafe', guided=False, compressed_channels=4)
    _, fork = _fork_state_dict(cfg, [('upsamplers', 'upsample_modules')])
    kwargs = dict(FORK_KWARGS, upsample_cfg=cfg)
    extra = dict(fork, **{'upsample_modules.3.channel_compressor.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unknown keys \['upsample_modules.3.channel_compressor"):
        build_from_official(OFFICIAL, kwargs, extra)
    missing = {k: v for k, v in fork.items() if not k.startswith('upsample_modules.1.')}
    with pytest.raises(ValueError,
                       match=r"missing keys \['upsample_modules.1.channel_compressor.bias'"):
        build_from_official(OFFICIAL, kwargs, missing)


@pytest.mark.parametrize('upsample_cfg, match', [
    (dict(type='sierra', guided=False), 'sierra'),
    (dict(type='fade'), 'guided'),
    (dict(type='dysample', guided=True), 'guided'),
    (dict(type='fade', guided=True, embedding_dim=64), 'embedding_dim'),
])
def test_fork_configs_without_an_equivalent_are_refused(upsample_cfg, match):
    with pytest.raises(ValueError, match=match):
        build_from_official(OFFICIAL, dict(FORK_KWARGS, upsample_cfg=upsample_cfg), {})


def test_whole_checkpoint_conversion_renames_only_the_head_upsamplers():
    cfg = dict(type='deconv', guided=False)
    _, fork = _fork_state_dict(cfg, [(f'upsamplers.{n}.deconv', f'upsample_modules.{n}')
                                     for n in range(3)])
    state_dict = {**{f'decode_head.{k}': v for k, v in fork.items()},
                  'backbone.conv1.weight': torch.zeros(1),
                  'auxiliary_head.conv_seg.weight': torch.zeros(1)}
    meta = {'cfg': f'model = dict(decode_head=dict(upsample_cfg={cfg!r}))'}
    converted, report = convert_segmentation_fork(state_dict, meta=meta)
    assert 'decode_head.upsamplers.2.deconv.weight' in converted
    assert report.sources['decode_head.upsamplers.2.deconv.weight'] == \
        'decode_head.upsample_modules.2.weight'
    assert not any('upsample_modules' in key for key in converted)
    assert {'backbone.conv1.weight', 'auxiliary_head.conv_seg.weight'} <= set(converted)
    with pytest.raises(ValueError, match='stores no config'):
        convert_segmentation_fork(state_dict)
    state_dict['decode_head.not_a_layer.weight'] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"\['decode_head.not_a_layer.weight'\]"):
        convert_segmentation_fork(state_dict, upsample_cfg=cfg)


AUTHORS_SEGFORMER = {'repo': 'poppinace/fade', 'cls': 'SegFormerHead'}
AUTHORS_KWARGS = dict(in_channels=[8, 8, 8, 8], in_index=[0, 1, 2, 3],
                      feature_strides=[4, 8, 16, 32], channels=4, dropout_ratio=0.1, num_classes=3, decoder_params={'embed_dim': 8},
                      norm_cfg=dict(type='BN', requires_grad=True), align_corners=False)


@pytest.mark.parametrize('change, match', [
    (dict(upsample_cfg={'upsample_mode': 'fade', 'is_guided': False}), 'is_guided=False calls'),
    (dict(upsample_cfg={'upsample_mode': 'lca_exp', 'is_guided': True}), "mode='lca_exp'"),
    (dict(upsample_cfg={'upsample_mode': 'fade'}), 'is_guided=None'),
    (dict(upsample_cfg={'upsample_mode': 'fade', 'is_guided': True},
          feature_strides=[8, 4, 16, 32]), 'the finest first'),
    (dict(upsample_cfg={'upsample_mode': 'bilinear', 'is_guided': False}, pool_scales=[1]),
     r"\['pool_scales'\]"),
], ids=['unguided-fade', 'sapa-mode', 'no-is_guided', 'strides', 'unknown-kwarg'])
def test_authors_segformer_kwargs_it_would_not_build_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        build_from_official(AUTHORS_SEGFORMER, dict(AUTHORS_KWARGS, **change), {})


def test_authors_segformer_head_of_the_earlier_revision_is_refused():
    kwargs = dict(AUTHORS_KWARGS, upsample_cfg={'upsample_mode': 'fade', 'is_guided': True})
    with pytest.raises(ValueError, match='FadeUp selector'):
        build_from_official(AUTHORS_SEGFORMER, kwargs,
                            {'upsamplers.0.selector.weight': torch.zeros(1, 8, 1, 1)})


@skip_without_reference('integration')
def test_authors_segformer_weights_are_the_records():
    path = next(path for path in FILES if path.stem == 'segformer_head_fade')
    record = _load(path)
    conversion = convert_official(record['official'], record['kwargs'], record['state_dict'])
    assert isinstance(conversion.module, SegformerHeadWithUpsampler)
    assert conversion.module.head_form == 'authors'
    for name, tensor in conversion.module.state_dict().items():
        official = record['state_dict'][conversion.official_names[name]]
        assert torch.equal(tensor, official.reshape(tensor.shape)), name
    # Only NVlabs' unused conv_seg has no counterpart.
    assert set(record['state_dict']) - set(conversion.official_names.values()) == \
        set(record['params_without_grad'])
