"""ADE20K UPerNet configs with MIRL backbones: each builds at full size (meta device) and its tiny
twin (6 x 32 backbone, 64x64) trains two iterations and runs slide inference on CPU."""
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from mmdynup.backbones import MIRLViT  # noqa: E402

CONFIGS = sorted((Path(__file__).resolve().parents[2] / 'configs' / 'mirl').glob('upernet_*.py'))
BN = dict(type='BN', requires_grad=True)


def load(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['mmdynup'], allow_failed_imports=False)
    init_default_scope('mmseg')
    return cfg


def tiny_twin(cfg):
    """Same components and recipe, tiny sizes; SyncBN -> BN for a single CPU process."""
    model = cfg.model
    model.backbone.update(arch=dict(embed_dims=32, num_layers=6, num_heads=4),
                          img_size=(64, 64), init_cfg=None)
    model.data_preprocessor.size = (64, 64)
    model.neck.update(embed_dim=32, norm_cfg=BN)
    model.decode_head.update(in_channels=[32] * 4, channels=16, num_classes=5, norm_cfg=BN)
    model.auxiliary_head.update(in_channels=32, channels=8, num_classes=5, norm_cfg=BN)
    model.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(43, 43))
    return cfg


def batch(size, batch_size, seed):
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(batch_size):
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, *size), generator=generator))
        samples.append(sample)
    inputs = [torch.randint(0, 256, (3, *size), generator=generator, dtype=torch.uint8)
              for _ in range(batch_size)]
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('path', CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds_at_full_size(path):
    cfg = load(path)
    backbone_cfg = cfg.model.backbone
    assert backbone_cfg.type == 'MIRLViT' and backbone_cfg.img_size == (512, 512)
    with torch.device('meta'):
        backbone = MODELS.build(backbone_cfg)
    assert isinstance(backbone, MIRLViT)
    assert backbone.out_indices == ([15, 23, 31, 47] if 'b48' in path.stem else [17, 26, 35, 53])
    assert cfg.model.neck.embed_dim == backbone.embed_dims
    assert cfg.model.decode_head.in_channels == [backbone.embed_dims] * 4
    assert cfg.optim_wrapper.constructor == 'LayerwiseLRDecayConstructor'
    assert cfg.optim_wrapper.paramwise_cfg == dict(decay_rate=0.88)


@pytest.mark.parametrize('path', CONFIGS, ids=[p.stem for p in CONFIGS])
def test_tiny_twin_trains_and_runs_slide_inference(path):
    cfg = tiny_twin(load(path))
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert len({group['lr'] for group in optim_wrapper.optimizer.param_groups}) == 6 + 2
    model.train()
    for step in range(2):
        losses = model.train_step(batch((64, 64), 2, seed=step), optim_wrapper)
        assert all(torch.isfinite(value) for value in losses.values())
    model.eval()
    with torch.no_grad():
        results = model.test_step(batch((80, 96), 1, seed=5))
    assert results[0].pred_sem_seg.data.shape == (1, 80, 96)
