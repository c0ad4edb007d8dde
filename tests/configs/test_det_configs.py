"""Every detection config in configs/ builds through mmengine's Config and mmdet's registry and runs
loss and predict on a CPU (RoIAlign and NMS from mmcv's compiled ops); the README tables give the
parameters the built models add; the README recipe turns mmdet configs we did not write into
ones with an upsampler."""
import copy
import functools
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmdynup.det import FPNWithUpsampler, added_parameters
from tests.conftest import REPO_ROOT
from tests.det.tiny_detection import packed_batch, shrink_two_stage

FOLDERS = ('faster-rcnn', 'mask-rcnn', 'panoptic-fpn')
CONFIGS = [path for folder in FOLDERS for path in sorted((REPO_ROOT / 'configs' / folder).glob(
    '*.py'))]
#: The issue's list: (folder, backbone) -> upsamplers that must have a config.
REQUIRED = {
    ('faster-rcnn', 'r50'): {'nearest', 'carafe', 'fade', 'sapa-b', 'sapa-g', 'dysample',
                             'dysample-plus'},
    ('faster-rcnn', 'r101'): {'nearest', 'dysample-plus'},
    ('mask-rcnn', 'r50'): {'nearest', 'dysample', 'dysample-plus', 'fade', 'sapa-b'},
    ('mask-rcnn', 'r101'): {'nearest', 'dysample', 'dysample-plus'},
    ('panoptic-fpn', 'r50'): {'nearest', 'dysample', 'dysample-plus'},
}
NAME = re.compile(r'^(?P<model>[a-z-]+)_(?P<backbone>r\d+)_fpn-(?P<upsampler>[a-z0-9-]+)_1x_coco$')


@functools.lru_cache(maxsize=None)
def _parse(path: str) -> Config:
    return Config.fromfile(path)  # resolving the mmdet:: bases takes most of a second


def _load(path) -> Config:
    """A fresh copy of the parsed config (tests shrink their copy in place)."""
    cfg = copy.deepcopy(_parse(str(path)))
    init_default_scope(cfg.default_scope)
    return cfg


def _build(model_cfg):
    from mmdet.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(model_cfg)


def test_the_issues_configs_exist_and_state_only_the_neck():
    found = {}
    for path in CONFIGS:
        match = NAME.match(path.stem)
        assert match, f'{path.name} does not follow <model>_<backbone>_fpn-<upsampler>_1x_coco'
        found.setdefault((path.parent.name, match['backbone']), set()).add(match['upsampler'])
        text = path.read_text()
        assert f"'mmdet::{match['model'].replace('-', '_')}/" in text
        assert f"'../_base_/upsamplers/{match['upsampler']}.py'" in text
        code = [line for line in text.splitlines() if line and not line.startswith('#')]
        assert len(code) <= 7, f'{path.name} should state only the change'
    for key, upsamplers in REQUIRED.items():
        assert upsamplers <= found.get(key, set()), f'{key}: missing {upsamplers - found[key]}'


@pytest.mark.parametrize('path', CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_builds_and_runs_loss_and_predict(path):
    cfg = shrink_two_stage(_load(path))
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(imports=['mmdynup'], allow_failed_imports=False)
    snippet = Config.fromfile(str(REPO_ROOT / 'configs/_base_/upsamplers' /
                                  f"{NAME.match(path.stem)['upsampler']}.py"))
    assert cfg.model.neck.type == 'FPNWithUpsampler'
    assert cfg.model.neck.upsample_cfg == snippet.upsample_cfg
    model = _build(cfg.model)
    assert isinstance(model.neck, FPNWithUpsampler) and len(model.neck.upsamplers) == 3
    panoptic = cfg.model.type == 'PanopticFPN'
    with_mask = 'mask_head' in cfg.model.get('roi_head', {})
    model.train()
    packed = packed_batch([(64, 64), (48, 64)], [2, 1], with_mask, panoptic)
    losses = model(**model.data_preprocessor(packed, training=True), mode='loss')
    loss = sum(sum(v) if isinstance(v, list) else v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.neck.upsamplers.named_parameters() if p.grad is None]
    assert not missing, f'upsampler parameters without gradient: {missing}'
    # Whole-image inference at a size that is not a multiple of 32 (the preprocessor pads it).
    model.eval()
    with torch.no_grad():
        packed = packed_batch([(60, 84)], [1], with_mask, panoptic)
        prediction, = model(**model.data_preprocessor(packed), mode='predict')
    if panoptic:
        assert prediction.pred_panoptic_seg.sem_seg.shape == (1, 60, 84)
    else:
        assert prediction.pred_instances.bboxes.shape[1] == 4
        if with_mask:
            assert prediction.pred_instances.masks.shape[1:] == (60, 84)


def _readme_added_parameters():
    """config stem -> the 'added params (ours)' cell of its folder README (an int)."""
    table = {}
    for folder in FOLDERS:
        lines = (REPO_ROOT / 'configs' / folder / 'README.md').read_text().splitlines()
        header = next(line for line in lines if line.startswith('| config |'))
        column = [cell.strip() for cell in header.split('|')].index('added params (ours)')
        for line in lines:
            match = re.match(r'^\| \[([^\]]+)\.py\]', line)
            if match:
                cell = [cell.strip() for cell in line.split('|')][column]
                table[match[1]] = int(cell.replace(',', '').replace('+', ''))
    return table


def test_readme_tables_give_the_parameters_the_built_necks_add():
    table = _readme_added_parameters()
    assert sorted(table) == sorted(path.stem for path in CONFIGS)
    for path in CONFIGS:
        neck = _load(path).model.neck
        built = FPNWithUpsampler(neck.in_channels, neck.out_channels, neck.num_outs,
                                 upsample_cfg=neck.upsample_cfg)
        assert added_parameters(built) == table[path.stem], path.name
    # The issue's numbers: one DySample (lp, g4) at 256 channels = 8,224; three steps.
    assert table['faster-rcnn_r50_fpn-dysample_1x_coco'] == 3 * 8224 == 24672


def _readme_recipe():
    text = (REPO_ROOT / 'configs/faster-rcnn/README.md').read_text()
    section = text.split('## Add an upsampler to any mmdet FPN config', 1)[1]
    recipe = section.split('```python\n', 1)[1].split('```', 1)[0]
    lines = recipe.strip().splitlines()
    assert len(lines) <= 3 and lines[0].startswith('_base_ = ')
    return lines


@pytest.mark.parametrize('base', ['retinanet/retinanet_r50_fpn_1x_coco.py',
                                  'cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py'])
def test_readme_recipe_adds_an_upsampler_to_an_mmdet_config_we_did_not_write(base, tmp_path):
    lines = _readme_recipe()
    config = tmp_path / 'recipe.py'
    config.write_text('\n'.join([f"_base_ = 'mmdet::{base}'"] + lines[1:]) + '\n')
    cfg = shrink_two_stage(_load(config))
    model = _build(cfg.model)
    assert isinstance(model.neck, FPNWithUpsampler)
    # RetinaNet's FPN starts at C3 with extra convs: two top-down steps; Cascade R-CNN's three.
    assert len(model.neck.upsamplers) == len(model.neck.lateral_convs) - 1
    assert type(model.neck.upsamplers[0]).__name__ == 'DySample'
    model.train()
    packed = packed_batch([(64, 64), (64, 48)], [2, 1], False, False)
    losses = model(**model.data_preprocessor(packed, training=True), mode='loss')
    loss = sum(sum(v) if isinstance(v, list) else v for k, v in losses.items() if 'loss' in k)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.neck.upsamplers[0].offset.weight.grad is not None
    model.eval()
    with torch.no_grad():
        prediction, = model(**model.data_preprocessor(packed_batch([(60, 84)], [1], False,
                                                                   False)), mode='predict')
    assert prediction.pred_instances.bboxes.shape[1] == 4
