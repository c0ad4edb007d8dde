"""The FADE authors' SegFormer checkpoints (NVlabs MiT + their head, source 'segformer-authors'):
a synthetic checkpoint in that layout (tiny MiT, FADE cascade, generated here) goes through
``tools/convert_checkpoint.py`` (detected from its keys; ``--dry-run`` too) and ``tools/test.py``
on tiny generated data; the converter's refusals."""
import re

import pytest
import torch

from mmdynup.converters.segformer_authors import convert_segformer_authors
from tests.tools.conftest import load_tool
from tests.tools.test_fork_checkpoint_evaluation import _perturbed_model
from tests.tools.tiny_seg import write_tiny_seg

SEGFORMER = """
_base_ = ['./tiny_seg.py']
model = dict(
    backbone=dict(_delete_=True, type='MixVisionTransformer', in_channels=3, embed_dims=8,
                  num_stages=4, num_layers=[1, 2, 1, 1], num_heads=[1, 2, 4, 8],
                  patch_sizes=[7, 3, 3, 3], sr_ratios=[8, 4, 2, 1], out_indices=(0, 1, 2, 3),
                  mlp_ratio=2, qkv_bias=True),
    decode_head=dict(_delete_=True, type='SegformerHeadWithUpsampler', head_form='authors',
                     upsample_cfg=dict(type='FADE'), in_channels=[8, 16, 32, 64],
                     in_index=[0, 1, 2, 3], channels=16, dropout_ratio=0.1, num_classes=4,
                     norm_cfg=dict(type='BN', requires_grad=True), align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', avg_non_ignore=True)))
"""


def _as_linear(value):
    return value[:, :, 0, 0]


def _nvlabs_layout(state_dict):
    """Our segmentor's weights under the names of NVlabs' MiT and the FADE authors' head (the
    documented diff, reversed), plus the keys they have and we drop."""
    theirs = {}
    for key, value in state_dict.items():
        match = re.fullmatch(r'backbone\.layers\.(\d)\.(\d)\.(.+)', key)
        if match:
            stage, part, rest = int(match.group(1)) + 1, int(match.group(2)), match.group(3)
            if part == 0:
                rest = rest.replace('projection.', 'proj.')
                theirs[f'backbone.patch_embed{stage}.{rest}'] = value
            elif part == 2:
                theirs[f'backbone.norm{stage}.{rest}'] = value
            else:
                block, inner = rest.split('.', 1)
                prefix = f'backbone.block{stage}.{block}.'
                if inner.startswith('attn.attn.in_proj_'):
                    tensor = inner[len('attn.attn.in_proj_'):]
                    width = value.shape[0] // 3
                    theirs[f'{prefix}attn.q.{tensor}'] = value[:width]
                    theirs[f'{prefix}attn.kv.{tensor}'] = value[width:]
                    continue
                for ours, nvlabs in (('attn.attn.out_proj.', 'attn.proj.'),
                                     ('ffn.layers.0.', 'mlp.fc1.'), ('ffn.layers.4.', 'mlp.fc2.'),
                                     ('ffn.layers.1.', 'mlp.dwconv.dwconv.')):
                    if inner.startswith(ours):
                        linear = nvlabs in ('mlp.fc1.', 'mlp.fc2.') and inner.endswith('weight')
                        inner = nvlabs + inner[len(ours):]
                        value = _as_linear(value) if linear else value
                        break
                theirs[prefix + inner] = value
            continue
        match = re.fullmatch(r'decode_head\.convs\.(\d)\.(weight|bias)', key)
        if match:
            theirs[f'decode_head.linear_c{int(match.group(1)) + 1}.proj.{match.group(2)}'] = \
                _as_linear(value) if match.group(2) == 'weight' else value
            continue
        for ours, authors in (('decode_head.fusion_conv.', 'decode_head.linear_fuse.'),
                              ('decode_head.conv_seg.', 'decode_head.linear_pred.'),
                              ('decode_head.pyramid_upsampler.upsamplers.',
                               'decode_head.upsamplers.')):
            if key.startswith(ours):
                key = authors + key[len(ours):]
                break
        theirs[key] = value
    theirs['backbone.head.weight'] = torch.randn(10, 64)  # MiT's ImageNet classifier
    theirs['backbone.head.bias'] = torch.randn(10)
    theirs['decode_head.conv_seg.weight'] = torch.randn(4, 5, 1, 1)  # NVlabs' unused conv_seg
    theirs['decode_head.conv_seg.bias'] = torch.randn(4)
    return theirs


@pytest.fixture(scope='module')
def authors_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp('segformer_authors')
    write_tiny_seg(directory)
    config = directory / 'segformer_authors.py'
    config.write_text(SEGFORMER)
    model = _perturbed_model(config)
    path = directory / 'segformer.b1_fade.512x512.ade.160k_authors.pth'
    theirs = _nvlabs_layout(model.state_dict())
    assert not any('layers.' in key for key in theirs if key.startswith('backbone.'))
    torch.save({'state_dict': theirs, 'meta': {'iter': 144000}}, path)
    return directory, config, path, model, theirs


def test_authors_checkpoint_converts_and_evaluates(authors_checkpoint, capsys):
    directory, config, path, model, theirs = authors_checkpoint
    convert = load_tool('convert_checkpoint.py')
    assert convert.main([str(path), '--dry-run']) == 0
    table = capsys.readouterr().out
    assert re.search(r'backbone\.head\.weight\s+10x64\s+\(dropped\)', table)
    assert 'concatenated with backbone.block2.1.attn.kv.weight' in table
    assert re.search(r'decode_head\.linear_c4\.proj\.weight\s+16x64\s+decode_head\.convs\.3\.'
                     r'weight\s+16x64x1x1\s+reshaped', table)

    converted_path = directory / 'converted.pth'
    assert convert.main([str(path), str(converted_path)]) == 0
    converted = torch.load(converted_path, weights_only=True)
    assert converted['meta']['source'] == 'segformer-authors'
    assert 'detected' in converted['meta']['detection']
    assert set(converted['meta']['dropped']) == {'backbone.head.weight', 'backbone.head.bias',
                                                 'decode_head.conv_seg.weight',
                                                 'decode_head.conv_seg.bias'} | {
        key for key in theirs if '.attn.kv.' in key}
    expected = model.state_dict()
    assert sorted(converted['state_dict']) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(converted['state_dict'][key], value), key
    metrics = load_tool('test.py').main([str(config), str(converted_path), '--work-dir',
                                         str(directory / 'eval')])
    assert 0.0 <= metrics['mIoU'] <= 100.0


def test_the_earlier_head_revision_is_refused_with_the_reason(authors_checkpoint):
    theirs = dict(authors_checkpoint[-1])
    theirs['decode_head.upsamplers.0.selector.weight'] = torch.zeros(1, 16, 1, 1)
    with pytest.raises(ValueError, match='revision before .*published one'):
        convert_segformer_authors(theirs)


def test_keys_outside_mit_and_the_head_are_refused(authors_checkpoint):
    theirs = dict(authors_checkpoint[-1])
    theirs['decode_head.extra_conv.weight'] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"\['decode_head.extra_conv.weight'\]"):
        convert_segformer_authors(theirs)
    theirs = dict(authors_checkpoint[-1], **{'backbone.block1.0.mystery.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='not NVlabs MiT'):
        convert_segformer_authors(theirs)
