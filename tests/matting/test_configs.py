"""Every configs/matting config builds its model with the upsampler its name says, and the README
table's parameter counts are those of the built models."""
import re

import pytest
from mmengine.config import Config

from tests.conftest import REPO_ROOT
from tests.matting.helpers import snippet

pytest.importorskip('mmseg')

FOLDER = REPO_ROOT / 'configs/matting'
ZOO = sorted(FOLDER.glob('a2u_r34_*_comp1k.py'))
ROW = re.compile(r'^\| \[[^]]+\]\(([^)]+\.py)\)[^|]*\|(.*)$')


def readme_counts():
    """Config file name -> (params, added) from the README table."""
    counts = {}
    for line in (FOLDER / 'README.md').read_text().splitlines():
        match = ROW.match(line)
        if match:
            cells = [cell.strip() for cell in match.group(2).strip(' |').split('|')]
            params, added = (int(cells[i].replace(',', '').lstrip('+')) for i in (-2, -1))
            counts[match.group(1)] = (params, added)
    return counts


def test_the_zoo_has_the_issue_s_upsamplers():
    names = {path.name[len('a2u_r34_'):-len('_comp1k.py')] for path in ZOO}
    assert names == {'bilinear', 'nearest', 'carafe', 'fade', 'fade-lite', 'sapa-b', 'sapa-g',
                     'dysample', 'indexnet', 'a2u'}


def test_configs_build_with_their_upsampler_and_the_readme_counts():
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmseg')
    counts = readme_counts()
    assert set(counts) == {path.name for path in ZOO}
    baseline = None
    for path in sorted(ZOO, key=lambda p: 'bilinear' not in p.name):  # bilinear first
        cfg = Config.fromfile(str(path))
        name = path.name[len('a2u_r34_'):-len('_comp1k.py')]
        assert cfg.model.upsample_cfg == snippet(
            REPO_ROOT / f'configs/_base_/upsamplers/{name}.py')
        cfg.model.pretrained = None
        model = MODELS.build(cfg.model)
        assert all(type(stage.upsampler).__name__ == cfg.model.upsample_cfg['type']
                   for stage in model.decoder)
        params = sum(p.numel() for p in model.parameters())
        baseline = params if baseline is None else baseline
        assert counts[path.name] == (params, params - baseline), path.name
