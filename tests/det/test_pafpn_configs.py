"""Every config of configs/yolox, configs/rtmdet and configs/pafpn builds (no download) with the
neck and upsampler it names, and the three-line recipe works on mmdet's own YOLOX, RTMDet and
PAFPN configs (YOLOX's base gives the neck an F.interpolate-form upsample_cfg: the recipe then
needs _delete_, and without it the error says so)."""
import re

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmdynup.det import added_parameters
from tests.conftest import REPO_ROOT

FOLDERS = {'yolox': 'YOLOXPAFPNWithUpsampler', 'rtmdet': 'CSPNeXtPAFPNWithUpsampler',
           'pafpn': 'PAFPNWithUpsampler'}
UPSAMPLERS = {'nearest': 'NearestUpsample', 'carafe': 'CARAFE', 'dysample': 'DySample',
              'fade': 'FADE'}


def _upsampler(config: str) -> str:
    return re.search(r'pafpn-([a-z]+)_', config)[1]


CONFIGS = sorted(path.relative_to(REPO_ROOT / 'configs').as_posix()
                 for folder in FOLDERS for path in (REPO_ROOT / 'configs' / folder).glob('*.py'))


def _build(cfg: Config):
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None
    return MODELS.build(cfg.model)


def test_each_folder_has_the_four_upsamplers():
    for folder in FOLDERS:
        names = {_upsampler(path) for path in CONFIGS
                 if path.startswith(folder + '/')}
        assert names == set(UPSAMPLERS), (folder, names)


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_with_its_neck_and_upsampler(config):
    cfg = Config.fromfile(REPO_ROOT / 'configs' / config)
    model = _build(cfg)
    folder, upsampler = config.split('/')[0], _upsampler(config)
    assert type(model.neck).__name__ == FOLDERS[folder]
    assert {type(up).__name__ for up in model.neck.upsamplers} == {UPSAMPLERS[upsampler]}
    assert (added_parameters(model.neck) == 0) == (upsampler == 'nearest')
    # The folder README's row: | [config](config) | upsampler | params | added | ...
    readme = (REPO_ROOT / 'configs' / folder / 'README.md').read_text()
    row = re.search(rf'^\| \[{re.escape(config.split("/")[1])}\].*$', readme, re.M)
    assert row, f'{config} has no row in configs/{folder}/README.md'
    params, added = (int(cell.strip().lstrip('+').replace(',', ''))
                     for cell in row[0].split('|')[3:5])
    assert params == sum(parameter.numel() for parameter in model.parameters())
    assert added == added_parameters(model.neck)


RECIPES = {
    'yolox': ('mmdet::yolox/yolox_s_8xb8-300e_coco.py', 'YOLOXPAFPNWithUpsampler', True),
    'rtmdet': ('mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py', 'CSPNeXtPAFPNWithUpsampler', False),
    'pafpn': ('mmdet::pafpn/faster-rcnn_r50_pafpn_1x_coco.py', 'PAFPNWithUpsampler', False),
}


def _recipe(tmp_path, base, neck_type, delete):
    upsample_cfg = "dict(_delete_=True, type='DySample')" if delete else "dict(type='DySample')"
    path = tmp_path / 'recipe.py'
    path.write_text(f"_base_ = {base!r}\n"
                    "custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)\n"
                    f"model = dict(neck=dict(type={neck_type!r}, upsample_cfg={upsample_cfg}))\n")
    return Config.fromfile(path)


@pytest.mark.parametrize('host', RECIPES)
def test_three_line_recipe_on_mmdet_configs(host, tmp_path):
    base, neck_type, needs_delete = RECIPES[host]
    model = _build(_recipe(tmp_path, base, neck_type, needs_delete)).eval()
    assert type(model.neck).__name__ == neck_type
    assert all(type(up).__name__ == 'DySample' for up in model.neck.upsamplers)
    with torch.no_grad():
        features = model.extract_feat(torch.randn(1, 3, 96, 64))
    assert all(torch.isfinite(feature).all() for feature in features)
    if needs_delete:  # the base's dict(scale_factor=2, mode='nearest') merged into ours
        with pytest.raises(ValueError, match=r'"mode".*_delete_=True'):
            _build(_recipe(tmp_path, base, neck_type, delete=False))
