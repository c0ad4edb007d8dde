"""MIRL deeper ViT backbones (mmseg ``MAE`` presets): sizes, official outputs, position resizing."""
import pytest
import torch

pytest.importorskip('mmseg')

from mmseg.models.backbones import MAE  # noqa: E402

from mmdynup.backbones import MIRL_ARCHS, MIRLViT, segment_end_out_indices  # noqa: E402
from mmdynup.converters.mirl import mirl_to_mmseg  # noqa: E402
from tests.conftest import reference_files, skip_without_reference  # noqa: E402

ENCODER_FILES = [path for path in reference_files('mirl')
                 if 'downstream' in torch.load(path, weights_only=True)]


def split_counts(backbone):
    """(official encoder tensors, layer-scale tensors) of a backbone, by parameter name."""
    layer_scale = sum(p.numel() for name, p in backbone.named_parameters() if '.gamma_' in name)
    encoder = sum(p.numel() for name, p in backbone.named_parameters() if '.gamma_' not in name)
    return encoder, layer_scale


@pytest.mark.parametrize('arch, encoder, layer_scale', [
    ('vit-s54', 96_193_152, 41_472),
    ('vit-b48', 340_962_048, 73_728),
    ('vit-b24', 170_853_120, 36_864),
    ('vit-b', 85_798_656, 18_432),
])
def test_parameter_counts_match_the_official_encoders(arch, encoder, layer_scale):
    # The official checkpoints hold patch embedding, cls token, 197-slot position embedding (224),
    # the blocks and the final norm; layer scale is what fine-tuning adds.
    with torch.device('meta'):
        backbone = MIRLViT(arch=arch, img_size=224, final_norm=True)
    assert split_counts(backbone) == (encoder, layer_scale)
    assert not any('relative_position' in name for name, _ in backbone.named_parameters())
    assert len(backbone.layers) == MIRL_ARCHS[arch]['num_layers']


@pytest.mark.parametrize('arch, ends', [
    ('vit-s54', [8, 17, 26, 35, 44, 53]), ('vit-b48', [7, 15, 23, 31, 39, 47]),
    ('vit-b24', [3, 7, 11, 15, 19, 23]), ('vit-b', [1, 3, 5, 7, 9, 11])])
def test_out_indices_are_mirl_segment_ends(arch, ends):
    preset = MIRL_ARCHS[arch]
    assert set(preset['out_indices']) <= set(ends)  # six equal segments
    assert list(preset['out_indices']) == [ends[1], ends[2], ends[3], ends[5]]
    assert segment_end_out_indices(preset['num_layers']) == tuple(preset['out_indices'])


def tiny(**kwargs):
    arch = dict(embed_dims=32, num_layers=6, num_heads=4)
    return MIRLViT(arch=arch, img_size=32, patch_size=8, **kwargs)


def test_tiny_twin_shapes_and_any_input_size():
    backbone = tiny()
    assert backbone.out_indices == [1, 2, 3, 5]
    outputs = backbone(torch.randn(2, 3, 40, 56))
    assert [tuple(out.shape) for out in outputs] == [(2, 32, 5, 7)] * 4


def test_runtime_position_resize_equals_mmseg_checkpoint_resize():
    """Our run-time resize of the 4x4 table to 6x6 equals mmseg's load-time resize."""
    small = tiny().eval()
    small.init_weights()
    with torch.no_grad():
        small.pos_embed.normal_()
    large = MIRLViT(arch=dict(embed_dims=32, num_layers=6, num_heads=4), img_size=48,
                    patch_size=8).eval()
    state = large.resize_abs_pos_embed(dict(small.state_dict()))
    large.load_state_dict(state)
    x = torch.randn(1, 3, 48, 48)
    for ours, theirs in zip(small(x), large(x)):
        torch.testing.assert_close(ours, theirs)


def test_equals_mmseg_mae_with_the_same_weights():
    """With relative position tables kept, MIRLViT is mmseg's MAE (catches upstream drift)."""
    ours = tiny(rel_pos_bias=True).eval()
    ours.init_weights()
    upstream = MAE(img_size=32, patch_size=8, embed_dims=32, num_layers=6, num_heads=4,
                   out_indices=[1, 2, 3, 5], norm_cfg=dict(type='LN', eps=1e-6),
                   init_values=1.0)
    upstream.eval()
    for a, b in zip(ours.layers, upstream.layers):
        assert torch.equal(a.attn.relative_position_index, b.attn.relative_position_index)
    with torch.no_grad():
        for layer in ours.layers:
            layer.attn.relative_position_bias_table.normal_()
    upstream.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for a, b in zip(ours(x), upstream(x)):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match='rel_pos_bias=True'):
        ours(torch.randn(1, 3, 40, 40))


@skip_without_reference('mirl')
@pytest.mark.parametrize('path', ENCODER_FILES, ids=[p.stem for p in ENCODER_FILES])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64], ids=['float32', 'float64'])
def test_converted_official_encoder_reproduces_the_official_outputs(path, dtype):
    """Paddle encoder weights -> mmseg keys -> MIRLViT: segment outputs and the official
    fine-tuning ``forward_features`` (fc_norm of the mean patch token)."""
    record = torch.load(path, weights_only=True)
    kwargs = record['kwargs']
    ends = record['segment_end_block_indices']
    backbone = MIRLViT(arch=dict(embed_dims=kwargs['embed_dim'], num_layers=kwargs['depth'],
                                 num_heads=kwargs['num_heads'], mlp_ratio=kwargs['mlp_ratio']),
                       img_size=kwargs['img_size'], patch_size=kwargs['patch_size'],
                       out_indices=ends)
    state = mirl_to_mmseg(record['state_dict'], num_layers=kwargs['depth'],
                          embed_dims=kwargs['embed_dim'])
    result = backbone.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    assert sorted(result.missing_keys) == sorted(
        f'layers.{i}.gamma_{j}' for i in range(kwargs['depth']) for j in (1, 2))
    backbone = backbone.to(dtype).eval()
    expected = record['float64'] if dtype == torch.float64 else record
    atol, rtol = (1e-10, 1e-8) if dtype == torch.float64 else (1e-5, 1e-5)
    outputs = backbone(record['inputs']['imgs'].to(dtype))
    raw = (record['segment_outputs_raw'] if dtype == torch.float32 else
           [expected['block_outputs'][i] for i in ends])
    for ours, theirs in zip(outputs, raw, strict=True):
        torch.testing.assert_close(ours.flatten(2).transpose(1, 2), theirs[:, 1:].to(dtype),
                                   atol=atol, rtol=rtol)
    fc_norm = torch.nn.LayerNorm(kwargs['embed_dim'], eps=1e-6).to(dtype)
    fc_norm.load_state_dict(record['downstream']['fc_norm'])
    features = fc_norm(outputs[-1].flatten(2).mean(-1))
    reference = (record['float64']['downstream_forward_features'] if dtype == torch.float64
                 else record['downstream']['forward_features'])
    torch.testing.assert_close(features, reference.to(dtype), atol=atol, rtol=rtol)


def test_bad_arch_is_refused():
    with pytest.raises(ValueError, match="arch must be one of"):
        MIRLViT(arch='vit-h')
    with pytest.raises(ValueError, match='missing'):
        MIRLViT(arch=dict(embed_dims=32))
    with pytest.raises(ValueError, match='num_layers=7 must be divisible by num_segments=6'):
        MIRLViT(arch=dict(embed_dims=32, num_layers=7, num_heads=4), img_size=32, patch_size=8)


def test_import_mmdynup_registers_the_backbone_and_constructor():
    """Configs load the plugin with ``custom_imports=dict(imports=['mmdynup'])`` only."""
    import subprocess
    import sys
    code = ('import mmdynup\n'
            'from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS\n'
            'assert MODELS.get("MIRLViT") is not None, "MIRLViT"\n'
            'assert OPTIM_WRAPPER_CONSTRUCTORS.get("LayerwiseLRDecayConstructor") is not None\n'
            'from mmengine.registry import MODELS as ROOT\n'
            'assert ROOT.get("mmdynup.MIRLPretrainer") is not None, "MIRLPretrainer"\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=str(__import__('pathlib').Path(__file__).resolve().parents[2]))
    assert result.returncode == 0, result.stderr[-2000:]
