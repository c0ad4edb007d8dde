"""The synthetic Composition-1K-layout writer, CompositionMattingDataset (both layouts, broken
folders) and the training pipeline (trimaps from alpha, crops on the unknown region, composite)."""
import cv2
import numpy as np
import pytest

from mmdynup.datasets.synthetic_matting import render_matte, write_synthetic_matting

pytest.importorskip('mmseg')

TRAIN_PREFIX = dict(fg='Training_set/fg', alpha='Training_set/alpha', bg='Training_set/bg')
TEST_PREFIX = dict(merged='Test_set/merged', alpha='Test_set/alpha', trimap='Test_set/trimaps')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic_matting')
    write_synthetic_matting(root, num_train=4, num_test=2, num_backgrounds=3, height=48, width=64)
    return root


def dataset(root, prefix, pipeline=()):
    from mmengine.registry import init_default_scope

    from mmdynup.matting import CompositionMattingDataset
    init_default_scope('mmseg')
    return CompositionMattingDataset(data_root=str(root), data_prefix=prefix,
                                     pipeline=list(pipeline))


def test_mattes_have_soft_fringes_and_an_opaque_core():
    alpha = render_matte(np.random.default_rng(1), 64, 64)
    assert alpha.max() == pytest.approx(1.0, abs=1e-3) and alpha.min() == 0
    fringe = (alpha > 0.02) & (alpha < 0.98)
    assert 0.03 < fringe.mean() < 0.5


def test_writer_is_idempotent_and_refuses_other_recipes(data_root, tmp_path):
    assert write_synthetic_matting(data_root, num_train=4, num_test=2, num_backgrounds=3,
                                   height=48, width=64)['train_fg'] == 4
    with pytest.raises(FileExistsError, match='other arguments'):
        write_synthetic_matting(data_root, num_train=5)
    (tmp_path / 'mine.txt').write_text('x')
    with pytest.raises(FileExistsError, match='not a synthetic set'):
        write_synthetic_matting(tmp_path)


def test_test_layout_pairs_composites_with_their_foregrounds_alpha(data_root):
    from mmdynup.matting.transforms import LoadMattingImages
    test = dataset(data_root, TEST_PREFIX)
    assert len(test) == 2
    info = test[0]
    assert info['merged_path'].endswith('merged/test_0000_0.png')
    assert info['alpha_path'].endswith('alpha/test_0000.png')  # the _0 suffix stripped
    assert info['trimap_path'].endswith('trimaps/test_0000_0.png')
    loaded = LoadMattingImages()(dict(info))
    assert loaded['merged'].shape == (48, 64, 3) and loaded['alpha'].dtype == np.float32
    assert set(np.unique(loaded['trimap'])) <= {0, 128, 255}
    assert (loaded['alpha'][loaded['trimap'] == 255] == 1).all()


def test_training_pipeline_crops_on_the_unknown_region_and_composites(data_root):
    pipeline = [dict(type='LoadMattingImages'), dict(type='RandomMattingFlip', prob=0.5),
                dict(type='GenerateTrimap', kernel_sizes=(1, 5)),
                dict(type='CropAroundUnknown', crop_size=32), dict(type='CompositeImage'),
                dict(type='PackMattingInputs')]
    train = dataset(data_root, TRAIN_PREFIX, pipeline)
    assert len(train) == 4  # max(4 foregrounds, 3 backgrounds)
    assert train.get_data_info(3)['bg_path'].endswith('bg_0000.jpg')  # background 3 mod 3
    np.random.seed(0)
    packed = train[1]
    sample = packed['data_samples']
    assert packed['inputs'].shape == (3, 32, 32)
    assert sample.trimap.shape == sample.gt_alpha.shape == (1, 32, 32)
    assert sample.trimap[0, 16, 16] == 128  # centred on an unknown pixel
    composite = sample.fg * sample.gt_alpha + sample.bg * (1 - sample.gt_alpha)
    assert np.allclose(packed['inputs'].numpy(), composite.numpy(), atol=1e-3)


def test_trimaps_from_alpha_erode_the_definite_regions():
    from mmdynup.matting.transforms import GenerateTrimap
    alpha = np.zeros((9, 9), np.float32)
    alpha[:, 5:] = 1
    alpha[:, 4] = 0.5
    trimap = GenerateTrimap(kernel_sizes=(1, 1))(dict(alpha=alpha))['trimap']
    np.testing.assert_array_equal(trimap[0], [0, 0, 0, 0, 128, 255, 255, 255, 255])
    eroded = GenerateTrimap(kernel_sizes=(3, 3))(dict(alpha=alpha))['trimap']
    np.testing.assert_array_equal(eroded[4], [0, 0, 0, 128, 128, 128, 255, 255, 255])


def test_a_broken_data_folder_names_what_is_missing(data_root, tmp_path):
    import shutil
    broken = tmp_path / 'broken'
    shutil.copytree(data_root, broken)
    (broken / 'Test_set/alpha/test_0001.png').unlink()
    with pytest.raises(FileNotFoundError, match=r"test_0001_0.png' has no alpha: expected .*"
                                                r'Test_set/alpha/test_0001_0.png or '
                                                r'test_0001.png'):
        dataset(broken, TEST_PREFIX)
    shutil.rmtree(broken / 'Training_set/bg')
    with pytest.raises(FileNotFoundError, match=r'data_prefix.bg: the folder .*Training_set/bg'):
        dataset(broken, TRAIN_PREFIX)
    with pytest.raises(KeyError, match='data_prefix must have the keys'):
        dataset(broken, dict(fg='Training_set/fg'))


def test_a_trimap_with_other_values_is_refused(data_root, tmp_path):
    from mmdynup.matting.transforms import LoadMattingImages
    info = dict(dataset(data_root, TEST_PREFIX)[0])
    bad = tmp_path / 'bad_trimap.png'
    cv2.imwrite(str(bad), np.full((48, 64), 100, np.uint8))
    info['trimap_path'] = str(bad)
    with pytest.raises(ValueError, match=r"bad_trimap.png' has values \[100\] besides"):
        LoadMattingImages()(info)
