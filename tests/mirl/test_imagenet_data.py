"""The ImageNet-layout data path without torchvision: the synthetic writer, the reader (class
folders and list file), the transforms (against PIL, the authors' image library, where it is
installed) and RandAugment."""
import random

import numpy as np
import pytest
import torch

from mmdynup.datasets import ImageNetLayout, write_synthetic_imagenet
from mmdynup.datasets import rand_augment as ra
from mmdynup.datasets.classification_transforms import (TRANSFORMS, CenterCrop,
                                                        RandomResizedCrop, ResizeShorterSide,
                                                        random_resized_crop_box, resize_bicubic)

Image = pytest.importorskip('PIL.Image')
from PIL import ImageEnhance, ImageOps  # noqa: E402


@pytest.fixture(scope='module')
def imagenet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('imagenet')
    write_synthetic_imagenet(root, num_classes=3, train_per_class=2, val_per_class=2, size=40)
    return root


def test_synthetic_set_reads_back_in_both_validation_layouts(imagenet_root):
    train = ImageNetLayout(data_root=str(imagenet_root), data_prefix=dict(img_path='train'))
    assert len(train) == 6 and train.metainfo['classes'] == ('n00000000', 'n00000001',
                                                             'n00000002')
    folders = ImageNetLayout(data_root=str(imagenet_root), data_prefix=dict(img_path='val'))
    listed = ImageNetLayout(data_root=str(imagenet_root), data_prefix=dict(img_path='val'),
                            ann_file='meta/val.txt')
    as_pairs = [(item['img_path'], item['gt_label']) for item in folders.load_data_list()]
    assert as_pairs == [(item['img_path'], item['gt_label']) for item in listed.load_data_list()]
    assert [label for _, label in as_pairs] == [0, 0, 1, 1, 2, 2]
    # Idempotent, and it never writes over a set made with other arguments.
    write_synthetic_imagenet(imagenet_root, num_classes=3, train_per_class=2, val_per_class=2,
                             size=40)
    with pytest.raises(FileExistsError, match='other arguments'):
        write_synthetic_imagenet(imagenet_root, num_classes=4)


def test_pipeline_packs_rgb_crops(imagenet_root):
    dataset = ImageNetLayout(data_root=str(imagenet_root), data_prefix=dict(img_path='val'),
                             pipeline=[dict(type='mmdynup.LoadRGBImage'),
                                       dict(type='mmdynup.ResizeShorterSide', size=36),
                                       dict(type='mmdynup.CenterCrop', size=32),
                                       dict(type='mmdynup.PackClassificationInputs')])
    item = dataset[3]
    assert item['inputs'].shape == (3, 32, 32) and item['inputs'].dtype == torch.uint8
    assert int(item['data_samples'].gt_label) == 1
    assert TRANSFORMS.get('RandAugment') is ra.RandAugment


def test_bad_inputs_are_refused(tmp_path, imagenet_root):
    bad_list = tmp_path / 'val.txt'
    bad_list.write_text('n00000000/val_000_0000.JPEG 7\n')
    with pytest.raises(ValueError, match=r'label 7 is not in \[0, 3\)'):
        ImageNetLayout(data_root=str(imagenet_root), data_prefix=dict(img_path='val'),
                       ann_file=str(bad_list))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        ImageNetLayout(data_root=str(tmp_path / 'missing'))
    with pytest.raises(ValueError, match='larger than the image'):
        CenterCrop(64)(dict(img=np.zeros((32, 40, 3), np.uint8)))
    with pytest.raises(ValueError, match='scale must be'):
        RandomResizedCrop(224, scale=(0.5, 0.2))
    with pytest.raises(KeyError, match='unknown operations'):
        ra.RandAugment(ops=('Cutout',))


def _smooth_image(height=37, width=45, seed=0):
    rows, columns = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(-6, 7, (height, width, 3))
    waves = np.stack([128 + 100 * np.sin(columns / 6.0 + c) * np.cos(rows / 7.0)
                      for c in range(3)], -1)
    return np.clip(waves + noise, 0, 255).astype(np.uint8)


def test_resize_matches_pil_bicubic():
    image = _smooth_image(120, 90)
    for size in [(40, 30), (97, 61), (224, 168)]:
        theirs = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BICUBIC))
        assert np.abs(resize_bicubic(image, size).astype(int) - theirs).max() <= 1
    shorter = ResizeShorterSide(256)(dict(img=image))['img']
    assert shorter.shape == (341, 256, 3)  # torchvision's int(256 * 120 / 90)


def test_random_resized_crop_box_stays_inside():
    random.seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(30, 50, (0.08, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 50 and h > 0 and w > 0


@pytest.mark.parametrize('factor', [0.1, 0.6, 1.9])
def test_point_operations_equal_pil(factor):
    image = np.random.default_rng(1).integers(0, 256, (23, 31, 3), dtype=np.uint8)
    pil = Image.fromarray(image)
    pairs = [(ra.color(image, factor), ImageEnhance.Color(pil).enhance(factor)),
             (ra.contrast(image, factor), ImageEnhance.Contrast(pil).enhance(factor)),
             (ra.brightness(image, factor), ImageEnhance.Brightness(pil).enhance(factor)),
             (ra.sharpness(image, factor), ImageEnhance.Sharpness(pil).enhance(factor)),
             (ra.auto_contrast(image // 2 + 20), ImageOps.autocontrast(Image.fromarray(
                 image // 2 + 20))),
             (ra.equalize(image // 3), ImageOps.equalize(Image.fromarray(image // 3))),
             (ra.invert(image), ImageOps.invert(pil)),
             (ra.posterize(image, 2), ImageOps.posterize(pil, 2)),
             (ra.solarize(image, 100), ImageOps.solarize(pil, 100))]
    for ours, theirs in pairs:
        np.testing.assert_array_equal(ours, np.asarray(theirs))
    assert not ra.posterize(image, 0).any()  # magnitude 10: no bits kept (PIL < 13 gives 0s)


def test_geometric_operations_follow_pil_conventions():
    """Same maps as PIL's affine transforms; cv2's bicubic kernel differs from PIL's, and the
    border against the fill differs a little, so compare the bulk of the pixels."""
    image, fill = _smooth_image(), (124, 116, 104)
    pil, size = Image.fromarray(image), (45, 37)

    def affine(coefficients):
        return pil.transform(size, Image.AFFINE, coefficients, resample=Image.BICUBIC,
                             fillcolor=fill)

    pairs = [(ra.rotate(image, 20, fill), pil.rotate(20, resample=Image.BICUBIC, fillcolor=fill)),
             (ra.shear_x(image, 0.2, fill), affine((1, 0.2, 0, 0, 1, 0))),
             (ra.shear_y(image, -0.2, fill), affine((1, 0, 0, -0.2, 1, 0))),
             (ra.translate_x_relative(image, 0.3, fill), affine((1, 0, 0.3 * 45, 0, 1, 0))),
             (ra.translate_y_relative(image, -0.3, fill), affine((1, 0, 0, 0, 1, -0.3 * 37)))]
    for ours, theirs in pairs:
        difference = np.abs(ours.astype(int) - np.asarray(theirs).astype(int))
        assert np.median(difference) <= 1 and (difference > 8).mean() < 0.04


def test_rand_augment_is_seeded_and_changes_images():
    transform = ra.RandAugment(num_ops=2, magnitude=9, magnitude_std=0.5)
    assert transform.fill == (124, 116, 104)
    image = _smooth_image()

    def run(seed):
        random.seed(seed)
        np.random.seed(seed)
        return [transform(dict(img=image.copy()))['img'] for _ in range(8)]

    first, again = run(3), run(3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert sum(not np.array_equal(out, image) for out in first) >= 4
