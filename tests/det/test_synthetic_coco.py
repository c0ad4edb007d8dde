"""The synthetic COCO set: mmdet's datasets read it, and its instance and panoptic annotations
agree pixel for pixel (the panoptic PNG decoded as COCO panoptic ids)."""
import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from mmdynup.datasets.synthetic_coco import coco_categories, write_synthetic_coco


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco') / 'data'
    assert write_synthetic_coco(root, num_train=3, num_val=2, size=64, seed=1) == \
        {'train2017': 3, 'val2017': 2}
    return root


def test_categories_follow_mmdets_class_order():
    from mmdet.datasets import CocoDataset, CocoPanopticDataset
    categories = coco_categories()
    assert [c['name'] for c in categories] == list(CocoPanopticDataset.METAINFO['classes'])
    assert [c['name'] for c in categories if c['isthing']] == \
        list(CocoDataset.METAINFO['classes'])
    assert [c['id'] for c in categories] == list(range(1, 134))


@pytest.mark.parametrize('split', ['train2017', 'val2017'])
def test_panoptic_png_matches_segments_and_instance_masks(root, split):
    instances = COCO(str(root / 'annotations' / f'instances_{split}.json'))
    panoptic = json.loads((root / 'annotations' / f'panoptic_{split}.json').read_text())
    assert len(panoptic['annotations']) == len(instances.getImgIds())
    names = {c['id']: c['name'] for c in panoptic['categories']}
    for annotation in panoptic['annotations']:
        rgb = cv2.imread(str(root / 'annotations' / f'panoptic_{split}' /
                             annotation['file_name']))[..., ::-1].astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 ** 2 * rgb[..., 2]
        segments = annotation['segments_info']
        assert sorted(np.unique(ids)) == sorted(s['id'] for s in segments), 'unlabelled pixels'
        image = cv2.imread(str(root / split / annotation['file_name'].replace('.png', '.jpg')))
        assert image.shape == (64, 64, 3)
        things = 0
        for segment in segments:
            mask = ids == segment['id']
            assert mask.sum() == segment['area']
            x, y, w, h = segment['bbox']
            rows, cols = np.nonzero(mask)
            assert (x, y, w, h) == (cols.min(), rows.min(), cols.max() - cols.min() + 1,
                                    rows.max() - rows.min() + 1)
            if names[segment['category_id']] in ('person', 'car'):
                things += 1
                instance, = instances.loadAnns([segment['id']])
                assert instance['category_id'] == segment['category_id']
                assert np.array_equal(instances.annToMask(instance).astype(bool), mask)
                assert instance['area'] == segment['area'] and instance['bbox'] == segment['bbox']
            else:
                assert names[segment['category_id']] in ('sky-other-merged', 'grass-merged')
        assert things == len(instances.getAnnIds(imgIds=[annotation['image_id']])) >= 1


def test_mmdet_coco_dataset_loads_it_with_its_own_classes(root):
    from mmdet.datasets import CocoDataset
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    dataset = CocoDataset(data_root=str(root), ann_file='annotations/instances_train2017.json',
                          data_prefix=dict(img='train2017/'), pipeline=[
                              dict(type='LoadImageFromFile'),
                              dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                              dict(type='PackDetInputs')])
    assert len(dataset) == 3
    sample = dataset[0]['data_samples']
    labels = set(sample.gt_instances.labels.tolist())
    assert labels <= {0, 2}  # person, car in mmdet's 80 classes
    assert sample.gt_instances.masks.to_ndarray().shape[1:] == (64, 64)


def test_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / 'something.txt').write_text('x')
    with pytest.raises(FileExistsError, match='not empty'):
        write_synthetic_coco(tmp_path)
