"""Layer-wise lr decay constructor: per-parameter lr scale and weight decay on tiny models."""
import pytest
import torch
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from mmdynup.backbones.layer_decay import LayerwiseLRDecayConstructor, vit_layer_id

BASE_LR, BASE_WD, RATE = 1e-3, 0.05, 0.5


class TimmStyleViT(nn.Module):
    """A ViT with official/timm names (``blocks``) and a class name without MAE or BEiT."""

    def __init__(self, depth=3, dims=8):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, dims))
        self.patch_embed = nn.Conv2d(3, dims, 2, 2)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(dims), nn.Linear(dims, dims))
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dims)


class Segmentor(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.decode_head = nn.Conv2d(8, 4, 1)


def build(model, **paramwise):
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='LayerwiseLRDecayConstructor',
        optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=dict(
            type='AdamW', lr=BASE_LR, weight_decay=BASE_WD)),
        paramwise_cfg=dict(decay_rate=RATE, **paramwise)))
    return constructor(model).optimizer


def settings_by_name(model, optimizer):
    names = {id(p): name for name, p in model.named_parameters()}
    settings = {}
    for group in optimizer.param_groups:
        for parameter in group['params']:
            settings[names[id(parameter)]] = (group['lr'], group['weight_decay'])
    assert len(settings) == len(names)
    return settings


def test_timm_names_any_depth_and_class_name():
    model = Segmentor(TimmStyleViT(depth=3))
    settings = settings_by_name(model, build(model))
    top = 3 + 1  # blocks 0..2 have ids 1..3; the rest id 4 (scale 1)

    def lr(layer_id):
        return pytest.approx(BASE_LR * RATE ** (top - layer_id))

    assert settings['backbone.cls_token'] == (lr(0), 0.0)
    assert settings['backbone.pos_embed'] == (lr(0), 0.0)
    assert settings['backbone.patch_embed.weight'] == (lr(0), BASE_WD)
    assert settings['backbone.patch_embed.bias'] == (lr(0), 0.0)
    for i in range(3):
        assert settings[f'backbone.blocks.{i}.1.weight'] == (lr(i + 1), BASE_WD)
        assert settings[f'backbone.blocks.{i}.1.bias'] == (lr(i + 1), 0.0)
        assert settings[f'backbone.blocks.{i}.0.weight'] == (lr(i + 1), 0.0)  # norm
    assert settings['backbone.norm.weight'] == (lr(top), 0.0)
    assert settings['decode_head.weight'] == (BASE_LR, BASE_WD)
    assert settings['decode_head.bias'] == (BASE_LR, 0.0)


def test_mirl_backbone_names_layer_scale_and_explicit_depth():
    pytest.importorskip('mmseg')
    from mmdynup.backbones import MIRLViT
    backbone = MIRLViT(arch=dict(embed_dims=8, num_layers=6, num_heads=2), img_size=16,
                       patch_size=8, final_norm=True)
    model = Segmentor(backbone)
    settings = settings_by_name(model, build(model))
    assert settings['backbone.layers.0.gamma_1'] == (pytest.approx(BASE_LR * RATE ** 6), 0.0)
    assert settings['backbone.layers.5.attn.qkv.weight'] == (pytest.approx(BASE_LR * RATE),
                                                             BASE_WD)
    assert settings['backbone.layers.5.ffn.layers.1.weight'][0] == pytest.approx(BASE_LR * RATE)
    assert settings['backbone.patch_embed.projection.weight'] == (
        pytest.approx(BASE_LR * RATE ** 7), BASE_WD)
    assert settings['backbone.ln1.weight'] == (pytest.approx(BASE_LR), 0.0)
    # An explicit depth overrides the inferred one (mmseg-style configs set num_layers).
    explicit = settings_by_name(model, build(model, num_layers=10))
    assert explicit['backbone.layers.0.attn.qkv.weight'][0] == pytest.approx(BASE_LR * RATE ** 10)


def test_layer_ids_and_mmseg_alias():
    assert vit_layer_id('backbone.layers.11.attn.qkv.weight', 12) == 12
    assert vit_layer_id('backbone.mask_token', 12) == 0
    assert vit_layer_id('neck.lateral.weight', 12) == 13
    model = Segmentor(TimmStyleViT(depth=2))
    constructor = LayerwiseLRDecayConstructor(
        dict(optimizer=dict(type='SGD', lr=1.0, weight_decay=0.1)),
        dict(layer_decay_rate=0.9))
    lrs = sorted({group['lr'] for group in constructor(model).optimizer.param_groups})
    assert lrs == pytest.approx([0.9 ** 3, 0.9 ** 2, 0.9, 1.0])


def test_host_registries_resolve_the_constructor():
    pytest.importorskip('mmseg')
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as SEG_CONSTRUCTORS
    import mmdynup.backbones  # noqa: F401
    assert SEG_CONSTRUCTORS.get('LayerwiseLRDecayConstructor') is LayerwiseLRDecayConstructor


@pytest.mark.parametrize('paramwise, model, error, match', [
    (dict(), Segmentor(TimmStyleViT()), KeyError, 'must set decay_rate'),
    (dict(decay_rate=1.5), Segmentor(TimmStyleViT()), ValueError,
     r'decay_rate must be in \(0, 1\]'),
    (dict(decay_rate=0.5), nn.Linear(2, 2), ValueError, "no attribute 'backbone'"),
    (dict(decay_rate=0.5), Segmentor(nn.Linear(2, 2)), ValueError, 'cannot infer the depth'),
])
def test_bad_settings_are_refused(paramwise, model, error, match):
    with pytest.raises(error, match=match):
        constructor = LayerwiseLRDecayConstructor(
            dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)), paramwise)
        constructor(model)
