"""Every NYU depth config builds (tiny override) and runs a training step and a prediction at
97 x 129; the mmseg 1.2.2 pitfalls of depth estimation, each with a test that catches it."""
import copy
import functools

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

pytest.importorskip('mmseg')

from tests.conftest import REPO_ROOT  # noqa: E402
from tests.seg.helpers import packed_batch  # noqa: E402

CONFIGS = sorted((REPO_ROOT / 'configs' / 'depth').glob('*.py'))
HEIGHT, WIDTH = 97, 129


@functools.lru_cache(maxsize=None)
def _parse(path) -> Config:
    return Config.fromfile(str(path))  # seconds each (mmseg:: bases): once per config


def _load(path) -> Config:
    cfg = copy.deepcopy(_parse(path))
    init_default_scope(cfg.default_scope)
    return cfg


def _tiny(model_cfg):
    """ResNet-18 with 8 base channels, a 16-channel decoder, no pretrained weights, 64 x 64
    crops; the head type, the upsampler and the loss stay the config's."""
    model = copy.deepcopy(model_cfg)
    model.pretrained = None
    model.backbone.update(depth=18, base_channels=8, stem_channels=8, init_cfg=None)
    model.data_preprocessor.size = (64, 64)
    head = model.decode_head
    if head.type == 'SkipConcatDepthHead':
        head.in_channels = [8, 8, 16, 32, 64]
        head.stage_channels = [8, 16, 16, 32]
        head.channels = 8
        if head.get('lateral_channels') is not None:
            head.lateral_channels = head.stage_channels[1:] + [64]
    else:
        head.in_channels, head.channels = [8, 16, 32, 64], 16
    return model


def _batch(height, width, batch=2):
    """A packed batch with random depths in [0.5, 9.5) m."""
    return packed_batch(height, width, lambda generator: (
        'gt_depth_map', torch.rand(1, height, width, generator=generator) * 9 + 0.5), batch)


def _build(model_cfg):
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(model_cfg)


@pytest.mark.parametrize('path', CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_builds_trains_and_predicts_at_an_odd_size(path):
    cfg = _load(path)
    assert cfg.custom_imports == dict(imports=['mmdynup'], allow_failed_imports=False)
    assert cfg.model.type == 'DepthEstimator'
    model = _build(_tiny(cfg.model))
    model.train()
    data = model.data_preprocessor(_batch(HEIGHT, WIDTH), training=True)
    losses = model(**data, mode='loss')
    assert list(losses) == ['decode.loss_silog'] and torch.isfinite(losses['decode.loss_silog'])
    losses['decode.loss_silog'].backward()
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(_batch(HEIGHT, WIDTH, batch=1))
        prediction, = model(**data, mode='predict')
    depth = prediction.pred_depth_map.data
    assert depth.shape == (1, HEIGHT, WIDTH) and (depth > 0).all() and (depth <= 10).all()


def test_the_papers_upsamplers_have_configs():
    names = {path.name.split('_')[2] for path in CONFIGS if path.name.startswith('bts-skip')}
    assert {'nearest', 'bilinear', 'carafe', 'fade', 'sapa-b', 'sapa-g', 'dysample',
            'dysample-plus'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_follows_the_nyu_protocol(path):
    cfg = _load(path)
    assert cfg.train_dataloader.dataset.type == 'NYUDataset'
    loaders = [step for step in cfg.train_dataloader.dataset.pipeline
               if step['type'] == 'LoadDepthAnnotation']
    assert loaders == [dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3)]
    evaluator = {k: v for k, v in cfg.val_evaluator.items() if k != '_scope_'}
    assert evaluator == dict(type='DepthMetric', min_depth_eval=1e-3,
                                     max_depth_eval=10.0, crop_type='nyu_crop')
    assert cfg.default_hooks.checkpoint.save_best == 'rmse'
    assert cfg.default_hooks.checkpoint.rule == 'less'


# -- pitfalls of mmseg 1.2.2 ------------------------------------------------------------------

@pytest.mark.parametrize('path', CONFIGS, ids=[path.stem for path in CONFIGS])
def test_no_config_asks_for_slide_inference(path):
    """``DepthEstimator.inference`` checks ``'slide'`` and then runs whole-image inference for
    every mode but ``'slide_flip'`` (an ``if`` where an ``elif`` belongs)."""
    assert _load(path).model.test_cfg.mode in ('whole', 'slide_flip')


def test_mmseg_slide_mode_silently_runs_whole_image_inference():
    cfg = _load(CONFIGS[0])
    model_cfg = _tiny(cfg.model)
    model = _build(model_cfg).eval()
    inputs = torch.randn(1, 3, 64, 96)
    metas = [dict(img_shape=(64, 96), ori_shape=(64, 96), pad_shape=(64, 96))]
    whole = model.inference(inputs, metas)
    model.test_cfg = Config(dict(mode='slide', crop_size=(32, 32), stride=(16, 16)))
    calls = []
    model.slide_inference = lambda *args: calls.append(args) or torch.zeros_like(whole)
    torch.testing.assert_close(model.inference(inputs, metas), whole)
    assert len(calls) == 1  # slide ran, and its result was thrown away


def test_depth_metric_list_argument_raises_and_no_config_passes_it():
    from mmseg.evaluation import DepthMetric
    with pytest.raises(TypeError):
        DepthMetric(depth_metrics=['rmse'])  # isinstance(x, [tuple, list]) in mmseg 1.2.2
    for path in CONFIGS:
        assert 'depth_metrics' not in _load(path).val_evaluator


def test_default_seg_pad_val_pads_depth_with_255_metres_counted_as_valid():
    from mmseg.models.data_preprocessor import SegDataPreProcessor

    from mmdynup.depth import ScaleInvariantLogLoss
    batch = _batch(50, 60, batch=1)
    loss = ScaleInvariantLogLoss()
    upstream = SegDataPreProcessor(size=(64, 64))  # seg_pad_val=255
    padded = upstream(copy.deepcopy(batch), training=True)['data_samples'][0].gt_depth_map.data
    assert padded[0, 63, 63] == 255 and padded[0, 63, 63] > loss.min_depth  # supervised: wrong
    for path in CONFIGS:
        preprocessor = _load(path).model.data_preprocessor
        assert preprocessor.seg_pad_val == 0
        ours = SegDataPreProcessor(**{k: v for k, v in preprocessor.items() if k != 'type'})
        ours.size = (64, 64)
        ours_padded = ours(copy.deepcopy(batch), training=True)['data_samples'][0]
        assert (ours_padded.gt_depth_map.data[0, 50:] == 0).all()


def test_nyu_dataset_raises_on_names_without_a_digit(tmp_path):
    import cv2
    import numpy as np
    from mmseg.datasets import NYUDataset
    for folder in ('images', 'annotations'):
        (tmp_path / folder).mkdir()
    cv2.imwrite(str(tmp_path / 'images' / 'kitchen.jpg'), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / 'annotations' / 'kitchen.png'), np.zeros((8, 8), np.uint16))
    with pytest.raises(StopIteration):  # next(filter(str.isdigit, name)) on 'kitchen.jpg'
        NYUDataset(data_root=str(tmp_path))


@pytest.mark.parametrize('path', CONFIGS, ids=[path.stem for path in CONFIGS])
def test_train_pipeline_builds_without_albumentations(path):
    """mmseg's NYU base config has an ``Albu`` step; ``Albu`` needs albumentations, which
    mmseg does not depend on: our configs drop it and every step builds."""
    from mmseg.registry import TRANSFORMS
    pipeline = _load(path).train_dataloader.dataset.pipeline
    assert 'Albu' not in [step['type'] for step in pipeline]
    for step in pipeline:
        TRANSFORMS.build(step)
