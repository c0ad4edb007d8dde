"""Every detection config in configs/ builds through mmengine's Config and mmdet's registry and runs
loss and predict on a CPU (RoIAlign and NMS from mmcv's compiled ops); each has the neck topology
of its row (mmdet ``FPN``: three upsamplers; ``FPN_CARAFE``: four); the README tables give the
parameters the built models have and the published figures, which the built models match at the
precision published; mmdet's own CARAFE configs run with only custom_imports and the types
changed; the README recipe turns mmdet configs we did not write into ones with an upsampler."""
import copy
import functools
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmdynup.det import (FCNMaskHeadWithUpsampler, FPNCARAFEWithUpsampler, FPNWithUpsampler,
                         added_parameters)
from tests.conftest import REPO_ROOT
from tests.det.tiny_detection import packed_batch, shrink_two_stage

FOLDERS = ('faster-rcnn', 'mask-rcnn', 'panoptic-fpn')
CONFIGS = [path for folder in FOLDERS for path in sorted((REPO_ROOT / 'configs' / folder).glob(
    '*.py'))]
#: The issue's list: (folder, neck, backbone) -> upsamplers that must have a config.
REQUIRED = {
    ('faster-rcnn', 'fpn', 'r50'): {'nearest', 'carafe', 'fade', 'sapa-b', 'sapa-g'},
    ('faster-rcnn', 'fpncarafe', 'r50'): {'nearest', 'dysample', 'dysample-plus', 'carafe',
                                          'fade-without-gating', 'deconv', 'pixel-shuffle',
                                          'sapa-deform'},
    ('faster-rcnn', 'fpncarafe', 'r101'): {'nearest', 'dysample-plus'},
    ('mask-rcnn', 'fpncarafe', 'r50'): {'nearest', 'dysample', 'dysample-plus', 'carafe'},
    ('mask-rcnn', 'fpncarafe', 'r101'): {'nearest', 'dysample', 'dysample-plus'},
    ('panoptic-fpn', 'fpn', 'r50'): {'nearest', 'dysample', 'dysample-plus'},
    ('panoptic-fpn', 'fpn', 'r101'): {'nearest', 'dysample-plus'},
}
NAME = re.compile(r'^(?P<model>[a-z-]+)_(?P<backbone>r\d+)_(?P<neck>fpn|fpncarafe)-'
                  r'(?P<upsampler>[a-z0-9-]+)_1x_coco$')
NECKS = {'fpn': (FPNWithUpsampler, 3), 'fpncarafe': (FPNCARAFEWithUpsampler, 4)}
#: mmdet's own CARAFE configs that ours inherit, changing only custom_imports and types.
MMDET_CARAFE = {'faster-rcnn_r50_fpncarafe-carafe_1x_coco': 'faster-rcnn_r50_fpn-carafe_1x_coco',
                'mask-rcnn_r50_fpncarafe-carafe_1x_coco': 'mask-rcnn_r50_fpn-carafe_1x_coco'}
#: What the published totals count: the Panoptic FPN figures (46.0M, 65.0M) include the frozen
#: stem and first stage, the Faster R-CNN ones (46.8M, 41.53M) only trainable parameters.
COUNTS_ALL = {'panoptic-fpn'}


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


def _code(path):
    return [line for line in path.read_text().splitlines() if line and not line.startswith('#')]


def test_the_issues_configs_exist_and_state_only_the_change():
    found = {}
    for path in CONFIGS:
        match = NAME.match(path.stem)
        assert match, f'{path.name} does not follow <model>_<backbone>_<neck>-<upsampler>_1x_coco'
        found.setdefault((path.parent.name, match['neck'], match['backbone']),
                         set()).add(match['upsampler'])
        text = path.read_text()
        if path.stem in MMDET_CARAFE:
            assert f"'mmdet::carafe/{MMDET_CARAFE[path.stem]}.py'" in text
        else:
            # mmdet's config (mmdet::) or our base of the same detector (./).
            assert f"'mmdet::{match['model'].replace('-', '_')}/" in text or \
                f"'./{match['model']}_" in text, f'{path.name}: inherit mmdet\'s config or ours'
        assert len(_code(path)) <= 10, f'{path.name} should state only the change'
    for key, upsamplers in REQUIRED.items():
        assert upsamplers <= found.get(key, set()), f'{key}: missing {upsamplers - found[key]}'


def _number(text):
    """``'46.8M'`` / ``'+32.7K'`` -> (value, one unit of the last digit)."""
    match = re.fullmatch(r'\+?([\d.]+)([KM])', text)
    assert match, f'cannot read the published figure {text!r}'
    scale = {'K': 1e3, 'M': 1e6}[match[2]]
    decimals = len(match[1].split('.')[1]) if '.' in match[1] else 0
    return float(match[1]) * scale, scale * 10 ** -decimals


def _readme_rows():
    """config stem -> {column: cell} of its folder README's model-zoo table."""
    rows = {}
    for folder in FOLDERS:
        lines = (REPO_ROOT / 'configs' / folder / 'README.md').read_text().splitlines()
        for index, line in enumerate(lines):
            if not line.startswith('| config |'):
                continue
            header = [cell.strip() for cell in line.split('|')[1:-1]]
            for row in lines[index + 2:]:
                if not row.startswith('|'):
                    break
                cells = [cell.strip() for cell in row.split('|')[1:-1]]
                stem = re.match(r'\[([^\]]+)\.py\]', cells[0])[1]
                rows[stem] = dict(zip(header, cells))
    return rows


def _integer(cell):
    return int(cell.replace(',', '').replace('+', ''))


def check_parameter_columns(path, model, row):
    """The README row prints our counts of the built model, and its published figure matches
    them at the precision published (under the counting the cell states)."""
    parameters = list(model.parameters())
    counted = (parameters if path.parent.name in COUNTS_ALL
               else [p for p in parameters if p.requires_grad])
    total = sum(p.numel() for p in counted)
    added = added_parameters(model.neck)
    weights = sum(p.numel() for p in model.neck.upsamplers.parameters() if p.dim() > 1)
    assert _integer(row['params (ours)']) == total, f'{path.stem}: params (ours)'
    assert _integer(row['added (ours)']) == added, f'{path.stem}: added (ours)'
    paper = row['params (paper)']
    if not paper:
        return
    figure, *rule = paper.split(' ', 1)
    value, unit = _number(figure)
    if figure.startswith('+'):
        # "(conv weights)": the paper counted the upsamplers' conv weights, not their biases.
        assert rule in ([], ['(conv weights)']), f'{path.stem}: unknown counting note {paper!r}'
        ours = weights if rule else added
    else:
        assert not rule, f'{path.stem}: a total takes no counting note, got {paper!r}'
        ours = total
    # The papers round (24,576 -> 24.6K) or truncate (32,768 -> 32.7K) to the digits they print.
    assert value - unit / 2 <= ours < value + unit, f'{path.stem}: published {paper}, ours {ours}'


@pytest.mark.parametrize('path', CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_builds_and_runs_loss_and_predict(path):
    match = NAME.match(path.stem)
    cfg = shrink_two_stage(_load(path))
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(imports=['mmdynup'], allow_failed_imports=False)
    neck_class, steps = NECKS[match['neck']]
    assert cfg.model.neck.type == neck_class.__name__
    snippet = f"../_base_/upsamplers/{match['upsampler']}.py"
    if f"'{snippet}'" in path.read_text():
        expected = Config.fromfile(str(REPO_ROOT / 'configs' / snippet[3:])).upsample_cfg
        assert cfg.model.neck.upsample_cfg == expected
    model = _build(cfg.model)
    assert isinstance(model.neck, neck_class) and len(model.neck.upsamplers) == steps
    rows = _readme_rows()
    assert path.stem in rows, (f'{path.name} has no row in configs/{path.parent.name}/README.md '
                               f'(the columns params (ours) and added (ours) are checked)')
    check_parameter_columns(path, model, rows[path.stem])
    if match['backbone'] != 'r50':
        return  # R101 configs change only the backbone depth of their R50 sibling, which runs
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


def _without_scope(node):
    """A config dict without the ``_scope_`` keys that inheriting ``mmdet::`` adds."""
    if isinstance(node, dict):
        return {key: _without_scope(value) for key, value in node.items() if key != '_scope_'}
    if isinstance(node, list):
        return [_without_scope(value) for value in node]
    return node


@pytest.mark.parametrize('stem', MMDET_CARAFE)
def test_mmdet_carafe_configs_change_only_custom_imports_and_types(stem):
    path = next(path for path in CONFIGS if path.stem == stem)
    ours = _without_scope(_parse(str(path)).to_dict())
    import mmdet
    theirs = Config.fromfile(str(Path(mmdet.__file__).parent / '.mim' / 'configs' / 'carafe' /
                                 f'{MMDET_CARAFE[stem]}.py')).to_dict()
    assert ours.pop('custom_imports') == dict(imports=['mmdynup'], allow_failed_imports=False)
    assert ours['model']['neck'].pop('type') == 'FPNCARAFEWithUpsampler'
    assert theirs['model']['neck'].pop('type') == 'FPN_CARAFE'
    if 'mask_head' in theirs['model']['roi_head']:
        assert ours['model']['roi_head']['mask_head'].pop('type') == 'FCNMaskHeadWithUpsampler'
        assert theirs['model']['roi_head']['mask_head'].pop('type') == 'FCNMaskHead'
    assert ours == theirs
    # What they build: FPN_CARAFE's init (CARAFE's own kept) and, for Mask R-CNN, CARAFE in the
    # mask head, as mmdet's.
    model = _build(shrink_two_stage(_load(path)).model)
    assert model.neck.upsampler_init == 'own' and model.data_preprocessor.pad_size_divisor == 64
    if 'mask_head' in theirs['model']['roi_head']:
        assert isinstance(model.roi_head.mask_head, FCNMaskHeadWithUpsampler)
        assert type(model.roi_head.mask_head.upsample).__name__ == 'CARAFE'


def test_readme_tables_list_every_config():
    assert sorted(_readme_rows()) == sorted(path.stem for path in CONFIGS)


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
