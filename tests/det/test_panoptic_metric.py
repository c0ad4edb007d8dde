"""mmdet's ``CocoPanopticMetric`` (with the pinned ``panopticapi`` module of panopticapi-lite)
against an independent PQ implementation (hotcoco, written in Rust) on generated COCO-panoptic
data with VOID pixels and crowd regions.

Ground truth: the synthetic COCO set with a VOID band across every image and one thing per image
marked ``iscrowd``. Predictions: the ground-truth segments shifted by a few pixels, some relabelled,
some dropped, a spurious disc, and VOID (label 133) pixels, in mmdet's panoptic encoding
``label + instance * INSTANCE_OFFSET``. Both evaluators read the same label maps; the independent
side writes its own prediction PNG and JSON in the COCO panoptic format.
"""
import json

import cv2
import numpy as np
import pytest
import torch

from mmdynup.datasets.synthetic_coco import write_synthetic_coco

hotcoco_panoptic = pytest.importorskip('hotcoco.panoptic', reason='hotcoco is a test dependency')

NUM_CLASSES = 133  # mmdet's COCO panoptic classes; label == NUM_CLASSES is VOID
VAL_IMAGES = 6


def _read_ids(path):
    rgb = cv2.imread(str(path))[..., ::-1].astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 ** 2 * rgb[..., 2]


def _write_ids(path, ids):
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 256 ** 2], -1).astype(np.uint8)
    cv2.imwrite(str(path), rgb[..., ::-1])


def _add_void_and_crowd(root):
    """A VOID band (id 0) across each validation image and the image's first thing as crowd;
    areas recomputed from the PNG, segments the band swallows removed."""
    json_path = root / 'annotations' / 'panoptic_val2017.json'
    panoptic = json.loads(json_path.read_text())
    things = {c['id'] for c in panoptic['categories'] if c['isthing']}
    for index, annotation in enumerate(panoptic['annotations']):
        png = root / 'annotations' / 'panoptic_val2017' / annotation['file_name']
        ids = _read_ids(png)
        ids[20 + index:26 + index, :] = 0
        _write_ids(png, ids)
        kept, crowd_marked = [], False
        for segment in annotation['segments_info']:
            segment['area'] = int((ids == segment['id']).sum())
            if segment['area'] == 0:
                continue
            if segment['category_id'] in things and not crowd_marked:
                segment['iscrowd'], crowd_marked = 1, True
            kept.append(segment)
        annotation['segments_info'] = kept
    json_path.write_text(json.dumps(panoptic))
    return panoptic


def _predicted_labels(ground_truth_ids, segments, rng):
    """(H, W) mmdet panoptic labels ``label + instance * 1000`` (VOID: label 133)."""
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    size = ground_truth_ids.shape[0]
    prediction = np.full(ground_truth_ids.shape, NUM_CLASSES, np.int64)
    instance = 0
    for segment in segments:
        if rng.random() < 0.15:
            continue
        label = segment['category_id'] - 1
        if rng.random() < 0.15:
            label = (label + 1) % NUM_CLASSES
        mask = np.roll(ground_truth_ids == segment['id'], tuple(rng.integers(-3, 4, 2)), (0, 1))
        instance += 1
        prediction[mask] = label + instance * INSTANCE_OFFSET
    rows, cols = np.mgrid[:size, :size]
    centre = rng.uniform(10, size - 10, 2)
    disc = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < rng.uniform(16, 49)
    instance += 1
    prediction[disc] = int(rng.integers(0, 80)) + instance * INSTANCE_OFFSET
    return prediction


def _coco_panoptic_prediction(labels, folder, file_name, image_id):
    """Our own writing of a prediction in the COCO panoptic format: segment ids 1, 2, ...,
    category id = label + 1, VOID id 0."""
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    ids = np.zeros(labels.shape, np.int64)
    segments = []
    for value in np.unique(labels):
        label = int(value % INSTANCE_OFFSET)
        if label == NUM_CLASSES:
            continue
        segment_id = len(segments) + 1
        ids[labels == value] = segment_id
        segments.append(dict(id=segment_id, category_id=label + 1,
                             area=int((labels == value).sum())))
    _write_ids(folder / file_name, ids)
    return dict(image_id=image_id, file_name=file_name, segments_info=segments)


@pytest.fixture(scope='module')
def panoptic_case(tmp_path_factory):
    root = tmp_path_factory.mktemp('panoptic') / 'coco'
    write_synthetic_coco(root, num_train=0, num_val=VAL_IMAGES, size=64, seed=3)
    ground_truth = _add_void_and_crowd(root)
    rng = np.random.default_rng(5)
    samples = []
    for annotation in ground_truth['annotations']:
        ids = _read_ids(root / 'annotations' / 'panoptic_val2017' / annotation['file_name'])
        samples.append(dict(image_id=annotation['image_id'], file_name=annotation['file_name'],
                            labels=_predicted_labels(ids, annotation['segments_info'], rng)))
    return root, ground_truth, samples


def _mmdet_metric(root, samples):
    from mmdet.datasets import CocoPanopticDataset
    from mmdet.evaluation import CocoPanopticMetric
    metric = CocoPanopticMetric(ann_file=str(root / 'annotations' / 'panoptic_val2017.json'),
                                seg_prefix=str(root / 'annotations' / 'panoptic_val2017') + '/',
                                nproc=1)
    metric.dataset_meta = CocoPanopticDataset.METAINFO
    for sample in samples:
        metric.process({}, [dict(
            img_id=sample['image_id'], ori_shape=sample['labels'].shape,
            img_path=str(root / 'val2017' / sample['file_name'].replace('.png', '.jpg')),
            pred_panoptic_seg=dict(sem_seg=torch.from_numpy(sample['labels'])[None]))])
    return metric.evaluate(len(samples))


def _independent(root, samples, tmp_path):
    folder = tmp_path / 'predictions'
    folder.mkdir()
    annotations = [_coco_panoptic_prediction(s['labels'], folder, s['file_name'], s['image_id'])
                   for s in samples]
    prediction_json = tmp_path / 'predictions.json'
    prediction_json.write_text(json.dumps(dict(annotations=annotations)))
    return hotcoco_panoptic.pq_compute(
        str(root / 'annotations' / 'panoptic_val2017.json'), str(prediction_json),
        str(root / 'annotations' / 'panoptic_val2017'), str(folder))


def test_generated_case_has_void_crowd_and_predictions_on_crowds(panoptic_case):
    """The case exercises the crowd rule: predicted segments of a crowd's category lying mostly
    on the crowd (ignored, not false positives) in some images."""
    from mmdet.evaluation.functional import INSTANCE_OFFSET
    root, ground_truth, samples = panoptic_case
    on_crowd = 0
    for annotation, sample in zip(ground_truth['annotations'], samples):
        ids = _read_ids(root / 'annotations' / 'panoptic_val2017' / annotation['file_name'])
        assert (ids == 0).sum() == 6 * 64
        assert sorted(np.unique(ids[ids > 0])) == sorted(
            s['id'] for s in annotation['segments_info'])
        crowd, = [s for s in annotation['segments_info'] if s['iscrowd']]
        for value in np.unique(sample['labels']):
            segment = sample['labels'] == value
            ignored = (ids == 0) | (ids == crowd['id'])
            if value % INSTANCE_OFFSET == crowd['category_id'] - 1 and \
                    (segment & ignored).sum() > segment.sum() / 2:
                on_crowd += 1
    assert on_crowd >= 2


def test_mmdet_pq_sq_rq_match_an_independent_implementation(panoptic_case, tmp_path):
    root, _, samples = panoptic_case
    ours = _mmdet_metric(root, samples)
    reference = _independent(root, samples, tmp_path)
    for group, suffix in (('All', ''), ('Things', '_th'), ('Stuff', '_st')):
        for name in ('pq', 'sq', 'rq'):
            expected = 100 * reference[group][name]
            assert ours[f'coco_panoptic/{name.upper()}{suffix}'] == pytest.approx(
                expected, abs=1e-9), f'{group} {name}'
    # Neither perfect nor empty: matches, misses and false positives all counted.
    assert 10 < ours['coco_panoptic/PQ'] < 90
    assert reference['Things']['n'] >= 2 and reference['Stuff']['n'] == 2
