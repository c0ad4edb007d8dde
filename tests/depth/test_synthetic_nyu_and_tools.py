"""The synthetic NYU-layout set (depth at known values, read back through mmseg's NYUDataset and
LoadDepthAnnotation), and train -> checkpoint -> tools/test.py printing d1, abs_rel and rmse."""
import re
import subprocess
import sys

import numpy as np
import pytest

from mmdynup.datasets import write_synthetic_nyu
from mmdynup.datasets.synthetic_nyu import render_room
from tests.conftest import REPO_ROOT

pytest.importorskip('mmseg')

ITERS = 4


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_nyu')
    write_synthetic_nyu(root, num_train=4, num_test=2, height=120, width=160)
    return root


def test_scenes_are_rooms_with_boxes_at_known_depth():
    image, depth = render_room(np.random.default_rng(3), height=120, width=160)
    assert image.shape == (120, 160, 3) and image.dtype == np.uint8
    valid = depth > 0
    assert depth.max() <= 10.0 and valid.mean() > 0.97
    # The floor recedes towards the horizon: bottom rows are nearer than the row above them.
    bottom, above = depth[-1][valid[-1]], depth[-12][valid[-12]]
    assert np.median(bottom) < np.median(above)
    # Fronto-parallel boxes: many pixels share exactly one depth value.
    values, counts = np.unique(depth[valid], return_counts=True)
    assert counts.max() > 100


def test_nyu_dataset_and_depth_loader_read_millimetres_back_as_metres(data_root):
    from mmengine.registry import init_default_scope
    from mmseg.datasets import NYUDataset
    init_default_scope('mmseg')
    dataset = NYUDataset(
        data_root=str(data_root),
        data_prefix=dict(img_path='images/train', depth_map_path='annotations/train'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3)])
    assert len(dataset) == 4
    assert all(info['category_id'] >= 0 for info in dataset.data_list)  # NYU room names
    rng = np.random.default_rng(0)  # the writer's stream: the first training scene
    _, expected = render_room(rng, 120, 160)
    loaded = dataset[0]['gt_depth_map']
    assert loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, expected, atol=5e-4 + 1e-6)  # millimetre rounding


def test_writer_is_idempotent_and_refuses_foreign_folders(data_root, tmp_path):
    assert write_synthetic_nyu(data_root, num_train=4, num_test=2, height=120, width=160) == \
        {'train': 4, 'test': 2}
    with pytest.raises(FileExistsError, match='other arguments'):
        write_synthetic_nyu(data_root, num_train=5)
    (tmp_path / 'mine.txt').write_text('x')
    with pytest.raises(FileExistsError, match='not a synthetic set'):
        write_synthetic_nyu(tmp_path)
    with pytest.raises(ValueError, match='>= 32'):
        write_synthetic_nyu(tmp_path / 'small', height=16)


def _options(data_root):
    options = [
        'model.backbone.depth=18', 'model.backbone.base_channels=8',
        'model.backbone.stem_channels=8', 'model.backbone.init_cfg=None',
        'model.decode_head.in_channels=[8,8,16,32,64]',
        'model.decode_head.stage_channels=[8,16,16,32]', 'model.decode_head.channels=8',
        'model.data_preprocessor.size=(96,128)', 'train_dataloader.batch_size=2',
        'train_dataloader.dataset.pipeline.4.crop_size=(96,128)',
        f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
        f'default_hooks.checkpoint.interval={ITERS}', 'default_hooks.logger.interval=1',
    ]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False',
                    f'{loader}.dataset.data_root={data_root}']
    for loader in ('val_dataloader', 'test_dataloader'):
        options.append(f'{loader}.dataset.pipeline.1.scale=(160,120)')  # keep 120 x 160
    return options


def _run(script, *arguments):
    command = [sys.executable, str(REPO_ROOT / 'tools' / script), *map(str, arguments)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f'{script} failed:\n{result.stdout[-3000:]}\n' \
                                   f'{result.stderr[-3000:]}'
    return result.stdout + result.stderr


def test_train_writes_a_checkpoint_that_test_evaluates(data_root, tmp_path):
    config = REPO_ROOT / 'configs/depth/bts-skip_r50_sapa-b_4xb8-18k_nyu-480x480.py'
    options = _options(data_root)
    work_dir = tmp_path / 'work'
    _run('train.py', config, '--work-dir', work_dir, '--cfg-options', *options)
    checkpoint = work_dir / f'iter_{ITERS}.pth'
    assert checkpoint.is_file()
    assert list(work_dir.glob('best_rmse_iter_*.pth'))  # save_best='rmse', rule='less'
    log = _run('test.py', config, checkpoint, '--work-dir', tmp_path / 'test',
               '--cfg-options', *options)
    metrics = {name: re.search(rf'\b{name}: (\d+\.\d+)', log) for name in ('d1', 'abs_rel', 'rmse')}
    assert all(metrics.values()), f'metrics missing from the test log:\n{log[-3000:]}'
    values = {name: float(match.group(1)) for name, match in metrics.items()}
    assert 0.0 <= values['d1'] <= 1.0 and values['abs_rel'] > 0 and 0 < values['rmse'] < 10
