"""A2UMatting: trains (forward, loss, backward) with every registered upsampler, pads
and restores at test time, and its loss is the authors' Charbonnier pair."""
import pytest
import torch

import mmdynup
from tests.matting.helpers import packed_matting_batch, tiny_model

pytest.importorskip('mmseg')


@pytest.mark.parametrize('upsampler', mmdynup.list_upsamplers())
def test_trains_and_predicts_with_every_upsampler(upsampler):
    model = tiny_model(dict(type=upsampler))
    model.train()
    data = model.data_preprocessor(packed_matting_batch(2, 32, 32), training=True)
    assert data['inputs'].shape == (2, 4, 32, 32)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_alpha', 'loss_composition'}
    sum(losses.values()).backward()
    for stage in model.decoder:  # the upsampler is in the graph of every stage
        grads = [p.grad for p in stage.upsampler.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        if grads:
            assert any(g.abs().sum() > 0 for g in grads), upsampler
    model.eval()
    with torch.no_grad():
        sample, = model(**model.data_preprocessor(packed_matting_batch(1, 36, 40)),
                        mode='predict')
    assert sample.pred_alpha.shape == (1, 36, 40)
    assert 0 <= sample.pred_alpha.min() <= sample.pred_alpha.max() <= 1


def test_predict_pads_crops_clips_and_restores_known_regions():
    model = tiny_model(dict(type='FADE')).eval()
    batch = packed_matting_batch(1, 40, 36)  # not multiples of the stride 16
    data = model.data_preprocessor(batch)
    with torch.no_grad():
        raw = model(data['inputs'], mode='tensor')
        sample, = model(**data, mode='predict')
    assert raw.shape == (1, 1, 40, 36)  # the encoder's ceil sizes are merged back
    alpha, trimap = sample.pred_alpha, sample.trimap
    assert alpha.shape == (1, 40, 36) and alpha.min() >= 0 and alpha.max() <= 1
    assert (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 1).all()


def test_loss_is_the_authors_weighted_charbonnier_pair():
    """One unknown pixel of two: pred 0.5 against gt 0, fg white, bg black. Alpha term
    (sqrt(0.25 + e^2) + e) / (1 + 1); composition: 0.5 difference in each of 3 channels."""
    from mmdynup.matting import matting_loss
    eps = 1e-6
    pred, gt = torch.tensor([0.5, 1.0]).view(1, 1, 1, 2), torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    unknown = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    fg, bg = torch.ones(1, 3, 1, 2), torch.zeros(1, 3, 1, 2)
    losses = matting_loss(pred, gt, unknown, fg, bg, alpha_weight=0.5, epsilon=eps)
    term = ((0.25 + eps ** 2) ** 0.5 + eps) / 2
    assert losses['loss_alpha'].item() == pytest.approx(0.5 * term)
    assert losses['loss_composition'].item() == pytest.approx(0.5 * 3 * term)


def test_batches_of_mixed_sizes_are_refused():
    model = tiny_model()
    batch = packed_matting_batch(1, 32, 32)
    other = packed_matting_batch(1, 48, 32)
    mixed = dict(inputs=batch['inputs'] + other['inputs'],
                 data_samples=batch['data_samples'] + other['data_samples'])
    with pytest.raises(ValueError, match='evaluate with batch_size=1'):
        model.data_preprocessor(mixed)


def test_pretrained_rgb_weights_load_with_a_zero_trimap_channel(tmp_path):
    """An ImageNet-style checkpoint of a 3-channel, 4-stage ResNet (torchvision's keys, with
    layer4 and fc): the encoder takes its first three stages, conv1 gets a zero 4th channel."""
    from mmseg.registry import MODELS
    rgb = MODELS.build(dict(type='ResNetWithStem', depth=18, in_channels=3, stem_channels=8,
                            base_channels=8))
    state = dict(rgb.state_dict(), **{'fc.weight': torch.zeros(10, 64),
                                      'fc.bias': torch.zeros(10)})
    torch.save(state, tmp_path / 'resnet18_rgb.pth')
    model = tiny_model()
    model.pretrained = str(tmp_path / 'resnet18_rgb.pth')
    model.init_weights()
    conv1 = model.backbone.conv1.weight
    assert torch.equal(conv1[:, :3], state['conv1.weight']) and not conv1[:, 3].any()
    assert torch.equal(model.backbone.layer3[0].conv1.weight, state['layer3.0.conv1.weight'])
