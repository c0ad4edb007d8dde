"""End to end with the command-line tools: tools/train.py writes a checkpoint for a UPerNet and a
SegFormer config with a guided dynamic upsampler, tools/test.py evaluates it with IoUMetric.

Tiny ADE20K-layout data (72 x 72 images: feature maps not a multiple of 32 at test time), small
backbones, 64 x 64 crops and four iterations, all through ``--cfg-options``.
"""
import re
import subprocess
import sys

import pytest

from mmdynup.datasets import write_synthetic_ade
from tests.conftest import REPO_ROOT

IMAGE_SIZE = 72
ITERS = 4


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_ade')
    write_synthetic_ade(root, num_train=4, num_val=2, size=IMAGE_SIZE)
    return root


def _data_options(data_root):
    """Point the ADE20K loaders at the synthetic set; crop 64, keep the 72 x 72 scale."""
    options = [
        'train_dataloader.batch_size=2',
        f'train_dataloader.dataset.pipeline.2.scale=({IMAGE_SIZE},{IMAGE_SIZE})',
        'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',
        'model.data_preprocessor.size=(64,64)',
        f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
        f'default_hooks.checkpoint.interval={ITERS}', 'default_hooks.logger.interval=1',
    ]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False',
                    f'{loader}.dataset.type=SyntheticADE20KDataset',
                    f'{loader}.dataset.data_root={data_root}']
    for loader in ('val_dataloader', 'test_dataloader'):
        options.append(f'{loader}.dataset.pipeline.1.scale=({IMAGE_SIZE},{IMAGE_SIZE})')
    return options


MODEL_OPTIONS = {
    # ResNet-18 instead of 50, a 32-channel head, no pretrained weights (SyncBN stays: mmengine
    # reverts it to BN outside distributed runs).
    'upernet/upernet_r50_fade-without-gating_4xb4-80k_ade20k-512x512.py': [
        'model.pretrained=None', 'model.backbone.depth=18',
        'model.decode_head.in_channels=[64,128,256,512]', 'model.decode_head.channels=32',
        'model.auxiliary_head.in_channels=256', 'model.auxiliary_head.channels=16',
        'model.decode_head.num_classes=4', 'model.auxiliary_head.num_classes=4'],
    # MiT with 16..128 channels and one block per stage; a 32-channel head.
    'segformer/segformer_mit-b1_sapa-b_8xb2-160k_ade20k-512x512.py': [
        'model.backbone.init_cfg=None', 'model.backbone.embed_dims=16',
        'model.backbone.num_layers=[1,1,1,1]', 'model.decode_head.in_channels=[16,32,80,128]',
        'model.decode_head.channels=32', 'model.decode_head.num_classes=4'],
}


def _run(script, *arguments):
    command = [sys.executable, str(REPO_ROOT / 'tools' / script), *map(str, arguments)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f'{script} failed:\n{result.stdout[-3000:]}\n' \
                                   f'{result.stderr[-3000:]}'
    return result.stdout + result.stderr


@pytest.mark.parametrize('config', sorted(MODEL_OPTIONS), ids=lambda c: c.split('/')[0])
def test_train_writes_a_checkpoint_that_test_evaluates(config, data_root, tmp_path):
    config_path = REPO_ROOT / 'configs' / config
    options = _data_options(data_root) + MODEL_OPTIONS[config]
    work_dir = tmp_path / 'work'
    _run('train.py', config_path, '--work-dir', work_dir, '--cfg-options', *options)
    checkpoint = work_dir / f'iter_{ITERS}.pth'
    assert checkpoint.is_file()

    log = _run('test.py', config_path, checkpoint, '--work-dir', tmp_path / 'test',
               '--cfg-options', *options)
    mean_iou = re.search(r'mIoU: (\d+\.\d+)', log)
    assert mean_iou, f'no mIoU in the test log:\n{log[-3000:]}'
    assert 0.0 <= float(mean_iou.group(1)) <= 100.0
