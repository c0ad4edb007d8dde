"""End to end for a path-aggregation config on tiny COCO-format data: ``tools/train.py`` for one
epoch of two iterations -> checkpoint -> ``tools/test.py`` with mmdet's CocoMetric (bbox AP), for
Faster R-CNN R50-PAFPN with CARAFE in ``PAFPNWithUpsampler``, on ``test_end_to_end``'s tiny
override (a ResNet-18 backbone without a download, 64 x 64 images, data loading in the main
process, a fixed seed, ``score_thr=0``).

The YOLOX and RTMDet configs are built and counted in ``test_pafpn_configs`` and their necks run
every upsampler forward and backward in ``test_pafpn``; the train -> checkpoint -> test path is
the same. (An untrained RTMDet-tiny predicts near-zero box distances, so on this data its test
may score no box at all and CocoMetric prints no AP: not a test of the pipeline.)
"""
import re

import pytest

from tests.conftest import REPO_ROOT
from tests.det.test_end_to_end import _tiny_config, train_one_epoch_then_test
from tests.det.test_end_to_end import coco_root  # noqa: F401  (the module's fixture)


# One run: each further family cost 25-100 s of the suite's 15-minute budget on 2 cores
# (tests/det/test_end_to_end.py runs the other two-stage detectors).
@pytest.mark.parametrize('config', ['pafpn/faster-rcnn_r50_pafpn-carafe_1x_coco.py'],
                         ids=['pafpn-carafe'])
def test_train_checkpoint_then_test_with_coco_metric(config, coco_root, tmp_path):  # noqa: F811
    tiny = _tiny_config(tmp_path / 'tiny.py', REPO_ROOT / 'configs' / config, coco_root,
                        with_mask=False)
    losses, printed = train_one_epoch_then_test(tiny, tmp_path)
    assert all(entry['loss'] == entry['loss'] for entry in losses)
    value = re.search(r'coco/bbox_mAP: (-?[0-9.]+)', printed)
    assert value, 'tools/test.py printed no coco/bbox_mAP:\n' + printed[-3000:]
    assert 0.0 <= float(value[1]) <= 1.0, f'bbox mAP={value[1]}'
