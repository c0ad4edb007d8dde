"""A Panoptic FPN checkpoint in the layout of the authors' detection fork (``FPN_UPSAMPLE`` neck:
``neck.upsample_modules.<i>.*``, the fork's config text in ``meta['cfg']``) goes through
``tools/convert_checkpoint.py`` (source detected from the keys) and ``tools/test.py`` with mmdet's
``CocoPanopticMetric``, as the Faster R-CNN one does in
``tests/tools/test_fork_checkpoint_evaluation.py``."""
import pytest

from mmdynup.datasets.synthetic_coco import write_synthetic_coco
from tests.det.test_panoptic_end_to_end import write_tiny_panoptic
from tests.tools.test_fork_checkpoint_evaluation import (_convert_and_test, _fork_checkpoint,
                                                         _perturbed_model)

pytest.importorskip('panopticapi', reason='mmdet imports panopticapi for panoptic data and PQ')

#: The fork's Panoptic FPN config, as mmengine stores its text in meta['cfg'] (what is read back).
FORK_PANOPTIC_CFG = """model = dict(type='PanopticFPN', neck=dict(type='FPN_UPSAMPLE',
    in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5,
    upsample_cfg=dict(type='dysample', guided=False, style='lp', groups=4, dyscope=True)))
"""


def test_panoptic_fork_checkpoint_converts_and_evaluates_with_pq(tmp_path):
    data_root = tmp_path / 'coco'
    write_synthetic_coco(data_root, num_train=1, num_val=2, size=64)
    config = write_tiny_panoptic(tmp_path / 'panoptic.py',
                                 'panoptic-fpn/panoptic-fpn_r50_fpn-dysample-plus_1x_coco.py',
                                 data_root)
    model = _perturbed_model(config)
    fork_path = tmp_path / 'panoptic-fpn_r50_fpn_dysample-plus_fork.pth'
    _fork_checkpoint(model, fork_path, 'neck.upsamplers.', 'neck.upsample_modules.',
                     FORK_PANOPTIC_CFG)
    metrics = _convert_and_test(tmp_path, config, fork_path, model, 'detection-fork')
    for name in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        assert 0.0 <= metrics[f'coco_panoptic/{name}'] <= 100.0, name
