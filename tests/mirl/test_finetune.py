"""MIRL ImageNet fine-tuning pieces: the classifier (sizes, official forward, conversion), the
batch augments, the authors' EMA and the top-k metric."""
import math
import random

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

from mmdynup.classification.batch_augments import (cutmix_box, erase_random_box_, mix_batch,
                                                   smooth_one_hot)
from mmdynup.classification.ema import ThresholdWarmupEMA, threshold_decay
from mmdynup.classification.metric import TopKAccuracy
from tests.conftest import reference_files, skip_without_reference

pytest.importorskip('mmseg')

from mmdynup.classification import MIRLClassifier  # noqa: E402
from mmdynup.converters.mirl import mirl_to_classifier  # noqa: E402

ENCODER_FILES = [path for path in reference_files('mirl')
                 if 'downstream' in torch.load(path, weights_only=True)]


@pytest.mark.parametrize('arch, total', [
    # The authors' models_vit with global_pool: encoder without its final norm, fc_norm, and a
    # 1000-way head; 341.7 M / 96.6 M / 86.6 M (the paper's 341M / 96M / 86M).
    ('vit-b48', 340_962_048 - 2 * 768 + 2 * 768 + 768 * 1000 + 1000),
    ('vit-s54', 96_193_152 - 2 * 384 + 2 * 384 + 384 * 1000 + 1000),
    ('vit-b', 85_798_656 - 2 * 768 + 2 * 768 + 768 * 1000 + 1000),
])
def test_classifier_sizes_are_the_authors(arch, total):
    with torch.device('meta'):
        model = MIRLClassifier(backbone=dict(arch=arch, img_size=224))
    counts = model.parameter_counts()
    assert counts['total'] == total
    assert not any('gamma' in name for name, _ in model.named_parameters())  # no layer scale


@skip_without_reference('mirl')
@pytest.mark.parametrize('path', ENCODER_FILES, ids=[p.stem for p in ENCODER_FILES])
def test_converted_official_weights_give_the_official_features(path):
    """Paddle encoder + fc_norm -> mirl_to_classifier -> MIRLClassifier.forward_features equals
    the official fine-tuning ViT's ``forward_features`` (float64)."""
    record = torch.load(path, weights_only=True)
    kwargs = record['kwargs']
    model = MIRLClassifier(backbone=dict(
        arch=dict(embed_dims=kwargs['embed_dim'], num_layers=kwargs['depth'],
                  num_heads=kwargs['num_heads'], mlp_ratio=kwargs['mlp_ratio']),
        img_size=kwargs['img_size'], patch_size=kwargs['patch_size']), num_classes=5)
    checkpoint = dict(record['state_dict'])
    checkpoint.update({f'fc_norm.{k}': v for k, v in record['downstream']['fc_norm'].items()})
    state, _, dropped, layout = mirl_to_classifier(checkpoint)
    assert layout == 'paddle' and 'norm.weight' in dropped and 'fc_norm.weight' in state
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and sorted(result.missing_keys) == ['head.bias',
                                                                          'head.weight']
    model = model.double().eval()
    features = model.forward_features(record['inputs']['imgs'].double())
    torch.testing.assert_close(features, record['float64']['downstream_forward_features'],
                               atol=1e-10, rtol=1e-8)


def test_fine_tuned_paddle_head_is_transposed(tmp_path):
    """A fine-tuned ``.pdparams`` (Paddle layout, fc_norm / head, no ``norm``) through the
    ``mirl-classifier`` source of tools/convert_checkpoint.py (its report is checked)."""
    import pickle

    from mmdynup.converters.checkpoint_io import (checkpoint_sources, convert_checkpoint,
                                                  load_checkpoint)
    head = np.arange(12, dtype=np.float32).reshape(4, 3)  # Paddle [in=4, out=3]
    model = {'cls_token': np.zeros((1, 1, 4), np.float32),
             'blocks.0.attn.qkv.weight': np.zeros((4, 12), np.float32),
             'fc_norm.weight': np.ones(4, np.float32), 'head.weight': head,
             'head.bias': np.zeros(3, np.float32)}
    path = tmp_path / 'finetuned.pdparams'
    path.write_bytes(pickle.dumps({name: (name, value) for name, value in model.items()}))
    state, report = convert_checkpoint(load_checkpoint(str(path)),
                                       checkpoint_sources()['mirl-classifier'])
    torch.testing.assert_close(state['head.weight'], torch.from_numpy(head.T.copy()))
    assert sorted(state) == ['backbone.cls_token', 'backbone.layers.0.attn.qkv.weight',
                             'fc_norm.weight', 'head.bias', 'head.weight']
    assert report.sources['backbone.layers.0.attn.qkv.weight'] == 'blocks.0.attn.qkv.weight'
    assert not report.dropped


def test_layer_decay_groups_of_the_classifier():
    from mmengine.optim import build_optim_wrapper
    model = MIRLClassifier(backbone=dict(arch=dict(embed_dims=16, num_layers=6, num_heads=2),
                                         img_size=16, patch_size=8), num_classes=4)
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
        constructor='LayerwiseLRDecayConstructor', paramwise_cfg=dict(decay_rate=0.5)))
    scales = {group['group_name']: (group['lr_scale'], group['weight_decay'])
              for group in wrapper.optimizer.param_groups}
    # util/lr_decay.py: embeddings id 0, block i id i + 1, fc_norm / head id N + 1 = 7.
    assert scales['layer_0_no_decay'] == (0.5 ** 7, 0.0)  # cls_token, pos_embed, conv bias
    assert scales['layer_1_decay'] == (0.5 ** 6, 0.05)
    assert scales['layer_7_decay'] == (1.0, 0.05) and scales['layer_7_no_decay'] == (1.0, 0.0)


def test_classifier_loss_uses_soft_targets_and_predicts():
    torch.manual_seed(0)
    model = MIRLClassifier(backbone=dict(arch=dict(embed_dims=16, num_layers=6, num_heads=2),
                                         img_size=16, patch_size=8), num_classes=3)
    model.init_weights()
    assert model.head.weight.abs().max() <= 4e-5  # N(0, 2e-5) truncated at 2 std
    images = torch.randn(2, 3, 16, 24)
    samples = [BaseDataElement(gt_label=torch.tensor(label)) for label in (0, 2)]
    hard = model(images, samples, mode='loss')['loss']
    assert hard.item() == pytest.approx(math.log(3), abs=1e-3)  # a near-zero head
    for sample in samples:
        sample.gt_score = torch.tensor([0.2, 0.3, 0.5])
    logits = model(images, mode='tensor')
    soft = -(torch.tensor([0.2, 0.3, 0.5]) * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(model(images, samples, mode='loss')['loss'], soft)
    predicted = model(images, samples, mode='predict')
    assert predicted[0].pred_score.shape == (3,) and 'pred_label' in predicted[1]


def test_smoothing_mixup_and_cutmix_targets():
    targets = smooth_one_hot(torch.tensor([0, 1, 2, 1]), 3, 0.1)
    torch.testing.assert_close(targets[0], torch.tensor([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]))
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 8, 8).contiguous()
    np.random.seed(0)
    mixed, mixed_targets, mode = mix_batch(images, targets, 0.8, 1.0, mode='mixup')
    lam = float(mixed[0, 0, 0, 0] - 3) / -3  # image 0 mixed with image 3
    torch.testing.assert_close(mixed_targets, targets * lam + targets.flip(0) * (1 - lam))
    np.random.seed(1)
    cut, cut_targets, _ = mix_batch(images, targets, 0.8, 1.0, mode='cutmix')
    pasted = float((cut[0] == 3).float().mean())  # the share of image 0 now from image 3
    torch.testing.assert_close(cut_targets[0], targets[0] * (1 - pasted) + targets[3] * pasted)
    torch.testing.assert_close(cut_targets.sum(-1), torch.ones(4))
    np.random.seed(2)
    top, bottom, left, right = cutmix_box(8, 8, 0.0)
    assert 0 <= top <= bottom <= 8 and 0 <= left <= right <= 8
    with pytest.raises(ValueError, match='cutmix_alpha must be > 0'):
        mix_batch(images, targets, 0.8, 0.0, mode='cutmix')


def test_random_erasing_fills_one_box_with_noise():
    random.seed(0)
    image = torch.zeros(3, 20, 20)
    assert erase_random_box_(image)
    changed = (image != 0).any(0)
    rows, columns = changed.any(1).nonzero(), changed.any(0).nonzero()
    height, width = int(rows.max() - rows.min() + 1), int(columns.max() - columns.min() + 1)
    assert changed.sum() == height * width  # a rectangle
    assert 0.02 * 400 * 0.5 <= height * width <= 400 / 3 * 1.5


def test_ema_is_the_authors_model_ema():
    """The authors' util/ema.py written out (zero start, threshold decay, bias correction) vs
    ours, with accumulation 2: updates after iterations 2, 4, ..."""
    model = torch.nn.Linear(3, 2).double()
    ema = ThresholdWarmupEMA(model, decay=0.9998, interval=2)
    raw = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    decay = None
    for step in range(12):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        ema.update_parameters(model)  # iteration 2 * step (no optimizer step: no update)
        ema.update_parameters(model)  # iteration 2 * step + 1
        decay = threshold_decay(step, 0.9998)
        assert decay == min(0.9998, (1 + step) / (10 + step))
        for name, value in model.state_dict().items():
            raw[name] = decay * raw[name] + (1 - decay) * value
        for name, value in ema.module.state_dict().items():
            torch.testing.assert_close(value, raw[name] / (1 - decay ** (step + 1)),
                                       atol=1e-12, rtol=1e-10)


def test_top_k_accuracy():
    metric = TopKAccuracy(topk=(1, 2))
    scores = [torch.tensor([0.1, 0.7, 0.2]), torch.tensor([0.5, 0.1, 0.4]),
              torch.tensor([0.2, 0.3, 0.5])]
    metric.process(None, [dict(pred_score=s, gt_label=torch.tensor(label))
                          for s, label in zip(scores, (1, 2, 1))])
    assert metric.compute_metrics(metric.results) == {'top1': pytest.approx(100 / 3),
                                                      'top2': pytest.approx(100.0)}
    with pytest.raises(ValueError, match='topk must be positive'):
        TopKAccuracy(topk=(0,))


@pytest.mark.parametrize('name, arch, lr, epochs, warmup, drop_path, decay, steps', [
    ('mirl_vit-b48-p16_ft-32xb16-accum4-amp-coslr-60e_in1k.py', 'vit-b48', 7.5e-4 * 8, 60, 30,
     0.0, 0.88, (16, 4, 32)),
    ('mirl_vit-s54-p16_ft-16xb64-accum2-amp-coslr-100e_in1k.py', 'vit-s54', 7.5e-4 * 8, 100, 20,
     0.1, 0.88, (64, 2, 16)),
    ('mirl_vit-b-p16_ft-32xb32-amp-coslr-100e_in1k.py', 'vit-b', 5e-4 * 4, 100, 5, 0.1, 0.65,
     (32, 1, 32)),
])
def test_full_fine_tuning_configs(name, arch, lr, epochs, warmup, drop_path, decay, steps):
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.registry import MODELS, init_default_scope

    from tests.conftest import REPO_ROOT
    cfg = Config.fromfile(REPO_ROOT / 'configs' / 'mirl' / name)
    batch, accumulation, gpus = steps
    assert (cfg.train_dataloader.batch_size, cfg.optim_wrapper.accumulative_counts,
            cfg.auto_scale_lr.base_batch_size) == (batch, accumulation, batch * gpus)
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(lr)
    assert cfg.optim_wrapper.paramwise_cfg.decay_rate == decay
    warm, cosine = cfg.param_scheduler
    assert (warm.end, cosine.begin, cosine.end, cfg.train_cfg.max_epochs) == (
        warmup, warmup, epochs, epochs)
    assert cosine.eta_min_ratio * lr == pytest.approx(1e-6)
    assert cfg.custom_hooks[0].interval == accumulation
    init_default_scope(cfg.default_scope)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert model.backbone.arch == arch and model.num_classes == 1000
    assert model.backbone.drop_path_rate == drop_path
    image = np.zeros((300, 260, 3), np.uint8)
    train = Compose(cfg.train_pipeline[1:])(dict(img=image, gt_label=3))
    test = Compose(cfg.test_pipeline[1:])(dict(img=image, gt_label=3))
    assert train['inputs'].shape == test['inputs'].shape == (3, 224, 224)
