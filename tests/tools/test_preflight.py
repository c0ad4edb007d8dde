"""tools/train.py and tools/test.py name a missing data set or checkpoint in one message, before
building anything, and exit non-zero without a traceback (mmdynup.preflight)."""
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmdynup.preflight import cached_checkpoint_path, checkpoint_url, find_missing_inputs
from tests.tools.conftest import REPO_ROOT, load_tool

FASTER_RCNN = REPO_ROOT / 'configs/faster-rcnn/faster-rcnn_r50_fpn-dysample_1x_coco.py'
UPERNET = REPO_ROOT / 'configs/upernet/upernet_r50_dysample_4xb4-80k_ade20k-512x512.py'


def test_detection_config_without_coco_is_one_message_and_exit_2(tmp_path):
    """The new user's first run (issue 17): no COCO here, so no pycocotools traceback."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'tools/train.py'), str(FASTER_RCNN),
         '--work-dir', str(tmp_path / 'work')],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    assert "train_dataloader.dataset.data_root = 'data/coco/'" in result.stderr
    assert '--cfg-options train_dataloader.dataset.data_root=' in result.stderr
    assert 'docs/user_guide.md' in result.stderr
    assert not (tmp_path / 'work').exists(), 'nothing may be built before the check'


def test_segmentation_config_without_ade_names_every_phase(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        load_tool('train.py').main([str(UPERNET), '--work-dir', str(tmp_path / 'work')])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for phase in ('train', 'val'):
        assert f"{phase}_dataloader.dataset.data_root = 'data/ade/ADEChallengeData2016'" in err
    assert 'test_dataloader' not in err, 'training does not read the test split'


def test_evaluation_checks_its_split_and_the_evaluator_file(tmp_path, monkeypatch, capsys):
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    (tmp_path / 'data/coco').mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        load_tool('test.py').main([str(FASTER_RCNN), str(checkpoint),
                                   '--work-dir', str(tmp_path / 'work')])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "test_dataloader.dataset.ann_file = 'data/coco/annotations/instances_val2017.json'" \
        in err
    assert "test_dataloader.dataset.data_prefix.img = 'data/coco/val2017/'" in err
    assert 'test_evaluator.ann_file' in err and 'full path' in err


def test_wrapped_datasets_and_existing_paths(tmp_path):
    root = tmp_path / 'root'
    (root / 'images').mkdir(parents=True)
    (root / 'ann.json').write_text('{}')
    present = dict(type='CocoDataset', data_root=str(root), ann_file='ann.json',
                   data_prefix=dict(img='images'))
    absent = dict(present, data_prefix=dict(img='nowhere'))
    cfg = dict(train_dataloader=dict(dataset=dict(
        type='ConcatDataset', datasets=[dict(type='RepeatDataset', times=2, dataset=present),
                                        absent])))
    missing = find_missing_inputs(cfg, ['train'], check_weights=False)
    assert [item.key for item in missing] == \
        ['train_dataloader.dataset.datasets.1.data_prefix.img']
    assert missing[0].path == str(root / 'nowhere')
    assert find_missing_inputs(dict(train_dataloader=dict(dataset=present)), ['train']) == []


def test_pretrained_weights_not_cached_offline(tmp_path, monkeypatch):
    monkeypatch.setenv('MMDYNUP_OFFLINE', '1')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    cfg = dict(model=dict(pretrained='open-mmlab://resnet50_v1c',
                          backbone=dict(init_cfg=dict(type='Pretrained',
                                                      checkpoint=str(tmp_path / 'none.pth')))))
    missing = {item.key: item for item in find_missing_inputs(cfg, [])}
    url = checkpoint_url('open-mmlab://resnet50_v1c')
    assert url.startswith('https://') and url.endswith('.pth')
    assert str(tmp_path / 'torch') in cached_checkpoint_path(url)
    assert cached_checkpoint_path(url) in missing['model.pretrained'].fix
    assert 'cannot be reached' in missing['model.pretrained'].reason
    assert 'model.backbone.init_cfg.checkpoint' in missing
    # Once the file is where mmengine caches it, nothing is reported.
    cached = tmp_path / 'torch/hub/checkpoints' / url.rsplit('/', 1)[1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b'')
    assert 'model.pretrained' not in {item.key for item in find_missing_inputs(cfg, [])}


def test_torchvision_names_need_torchvision(monkeypatch):
    cfg = Config.fromfile(str(FASTER_RCNN))
    monkeypatch.setattr('mmdynup.preflight.find_spec',
                        lambda name: None if name == 'torchvision' else object())
    missing = [item for item in find_missing_inputs(cfg, []) if 'init_cfg' in item.key]
    assert len(missing) == 1 and missing[0].path == 'torchvision://resnet50'
    assert 'torchvision' in missing[0].reason
    assert 'download.pytorch.org' in missing[0].fix
