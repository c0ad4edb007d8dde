"""MIRL pretraining configs: the tiny one trains through mmengine's Runner; the full ones build."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS
from mmengine.runner import Runner

from mmdynup.converters.checkpoint_io import load_checkpoint
from mmdynup.converters.mirl import mirl_to_mmseg
from mmdynup.mirl import MIRLPretrainer

CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / 'mirl'
TINY = CONFIGS / 'mirl_vit-tiny-d6_1xb8-40it_synthetic-32x32.py'


def test_tiny_pretraining_run_lowers_the_loss_and_converts(tmp_path):
    cfg = Config.fromfile(TINY)
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    assert isinstance(model, MIRLPretrainer)
    dataset = runner.train_dataloader.dataset
    batch = model.data_preprocessor(dict(inputs=[dataset[i]['inputs'] for i in range(8)]))
    noise = torch.rand(8, model.num_patches, generator=torch.Generator().manual_seed(1))

    def fixed_loss():
        with torch.no_grad():
            return model.forward_with_noise(batch['inputs'], noise)['loss'].item()

    before = fixed_loss()
    runner.train()
    after = fixed_loss()
    assert after < 0.9 * before, (before, after)

    checkpoint_path = tmp_path / 'iter_40.pth'
    assert checkpoint_path.is_file()
    backbone_state = mirl_to_mmseg(load_checkpoint(str(checkpoint_path)).state_dict, num_layers=6,
                                   embed_dims=32)
    torch.testing.assert_close(backbone_state['layers.5.attn.qkv.weight'],
                               model.blocks[5].attn.qkv.weight.detach())
    pytest.importorskip('mmseg')
    from mmdynup.backbones import MIRLViT
    backbone = MIRLViT(arch=dict(embed_dims=32, num_layers=6, num_heads=4), img_size=32,
                       patch_size=8)
    result = backbone.load_state_dict(backbone_state, strict=False)
    assert not result.unexpected_keys
    # The documented missing keys: layer scale, which MIRL does not have.
    assert sorted(result.missing_keys) == sorted(
        f'layers.{i}.gamma_{j}' for i in range(6) for j in (1, 2))


@pytest.mark.parametrize('name, num_layers, out_indices', [
    ('mirl_vit-b48-p16_64xb64-amp-coslr-800e_in1k.py', 48, [7, 15, 23, 31, 39]),
    ('mirl_vit-s54-p16_64xb64-amp-coslr-800e_in1k.py', 54, [8, 17, 26, 35, 44]),
])
def test_full_pretraining_configs_build(name, num_layers, out_indices):
    cfg = Config.fromfile(CONFIGS / name)
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(2.4e-3)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert isinstance(model, MIRLPretrainer)
    assert len(model.blocks) == num_layers and model.out_indices == out_indices
    assert model.num_segments == 6 and model.mask_ratio == 0.75
