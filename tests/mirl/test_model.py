"""MIRL pretraining model: masking, target, paired loss, gradients, segment layouts, errors."""
import pytest
import torch

from mmdynup.mirl import (MIRLPretrainer, equal_segment_ends, normalized_pixel_target,
                          paired_residual_loss, patchify, random_masking, residual_pairs,
                          sincos_position_embedding_2d)
from tests.conftest import reference_files

TINY = dict(img_size=32, patch_size=8, embed_dims=32, num_layers=6, num_heads=4,
            decoder_embed_dims=16, decoder_depth=1, decoder_num_heads=2)


def tiny(**overrides):
    return MIRLPretrainer(**{**TINY, **overrides}).double()


def images(batch=2, size=32):
    return torch.randn(batch, 3, size, size, dtype=torch.float64)


def test_mask_counts_and_visible_tokens():
    model = tiny()
    out = model.forward_with_noise(images(3), torch.rand(3, 16))
    assert out['mask'].shape == (3, 16)
    assert out['mask'].sum(dim=1).tolist() == [12, 12, 12]  # int(16 * 0.25) = 4 visible
    masking = random_masking(torch.rand(2, 196), 0.75)
    assert masking.ids_keep.shape == (2, 49)
    assert masking.mask.sum(dim=1).tolist() == [147, 147]
    # the kept patches are exactly the unmasked ones
    for n in range(2):
        assert set(masking.ids_keep[n].tolist()) == set(
            torch.nonzero(masking.mask[n] == 0).flatten().tolist())


def test_patchify_order_and_target():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).reshape(2, 3, 4, 4)
    patches = patchify(x, 2)
    # patch (row 0, col 1) of image 1: pixel (r, c) of the patch, channel ch, flattened (r, c, ch)
    expected = [x[1, ch, r, 2 + c] for r in range(2) for c in range(2) for ch in range(3)]
    torch.testing.assert_close(patches[1, 1], torch.stack(expected))
    target = normalized_pixel_target(x, 2)
    values = patches[0, 3]
    torch.testing.assert_close(
        target[0, 3], (values - values.mean()) / (values.var(unbiased=True) + 1e-6).sqrt())


def test_loss_against_hand_computation():
    num_segments, batch, length, dims = 4, 2, 5, 3
    preds = [torch.randn(batch, length, dims, dtype=torch.float64) for _ in range(num_segments)]
    target = torch.randn(batch, length, dims, dtype=torch.float64)
    mask = torch.tensor([[1., 0., 1., 1., 0.], [0., 1., 0., 0., 1.]])
    pair_losses = []
    for shallow, deep in [(0, 3), (1, 2)]:
        total, count = 0.0, 0
        for n in range(batch):
            for patch in range(length):
                if mask[n, patch]:
                    error = preds[shallow][n, patch] + preds[deep][n, patch] - target[n, patch]
                    total += float((error ** 2).sum()) / dims
                    count += 1
        pair_losses.append(total / count)
    loss, terms = paired_residual_loss(preds, target, mask)
    torch.testing.assert_close(torch.stack(terms), torch.tensor(pair_losses, dtype=torch.float64))
    torch.testing.assert_close(loss, torch.tensor(sum(pair_losses) / 2, dtype=torch.float64))
    assert residual_pairs(6) == [(0, 5), (1, 4), (2, 3)]


def test_zero_loss_when_shallow_is_target_and_deep_is_zero():
    target = torch.randn(2, 16, 12)
    mask = (torch.rand(2, 16) > 0.5).float()
    mask[:, 0] = 1
    preds = [target.clone() for _ in range(3)] + [torch.zeros_like(target) for _ in range(3)]
    loss, terms = paired_residual_loss(preds, target, mask)
    assert loss.item() == 0.0 and all(term.item() == 0.0 for term in terms)
    # a wrong deep decoder is penalised: the residual is the deep decoder's job
    preds[3] = torch.ones_like(target)
    assert paired_residual_loss(preds, target, mask)[1][2].item() == pytest.approx(1.0)


@pytest.mark.parametrize('num_segments', [2, 4, 6])
def test_every_segment_and_decoder_receives_gradient(num_segments):
    model = tiny(num_layers=num_segments, num_segments=num_segments)
    out = model.forward_with_noise(images(), torch.rand(2, 16))
    assert len(out['preds']) == num_segments and len(out['pair_losses']) == num_segments // 2
    out['loss'].backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_two_segments_reduce_to_a_plain_two_decoder_model():
    """2K = 2: one pair, decoder 0 attends to the low-level feature only, decoder 1 to its own
    shallower partner's embedding plus the low-level feature. Written out without the model's
    masking / decoder helpers."""
    model = tiny(num_layers=4, num_segments=2)
    assert model.out_indices == [1]
    x, noise = images(), torch.rand(2, 16)
    out = model.forward_with_noise(x, noise)

    order = noise.argsort(dim=1)
    visible = order[:, :4]
    tokens = model.patch_embed(x) + model.pos_embed[:, 1:]
    tokens = torch.stack([tokens[n, visible[n]] for n in range(2)])
    h = torch.cat([(model.cls_token + model.pos_embed[:, :1]).expand(2, -1, -1), tokens], 1)
    low = model.decoder_embed0_1(model.norm_low(h))
    h = model.blocks[1](model.blocks[0](h))
    shallow = model.norm0(h)
    deep = model.norm(model.blocks[3](model.blocks[2](h)))

    def decode(k, feature, memory):
        z = getattr(model, f'decoder_embed{k}')(feature)
        full = getattr(model, f'mask_token{k}').expand(2, 17, -1).clone()
        full[:, 0] = z[:, 0]
        for n in range(2):
            full[n, 1 + visible[n]] = z[n, 1:]
        full = full + getattr(model, f'decoder_pos_embed{k}')
        for block in getattr(model, f'decoder_blocks{k}'):
            full = block(full, memory(z))
        normed = getattr(model, f'decoder_norm{k}')(full)
        return getattr(model, f'decoder_pred{k}')(normed)[:, 1:], z

    pred0, z0 = decode(0, shallow, lambda z: low)
    pred1, _ = decode(1, deep, lambda z: torch.cat([z0, low], 1))
    target = normalized_pixel_target(x, 8)
    mask = torch.ones(2, 16)
    for n in range(2):
        mask[n, visible[n]] = 0
    expected = ((((pred0 + pred1 - target) ** 2).mean(-1)) * mask).sum() / mask.sum()
    torch.testing.assert_close(out['preds'][0], pred0)
    torch.testing.assert_close(out['preds'][1], pred1)
    torch.testing.assert_close(out['loss'], expected)
    torch.testing.assert_close(out['mask'], mask.to(out['mask'].dtype))


def test_memory_ablation_is_a_plain_mae_decoder():
    model = tiny(use_memory=False)
    names = dict(model.named_parameters())
    assert not any(name.startswith(('norm_low', 'decoder_embed0_1')) for name in names)
    assert not any('cross_attn' in name for name in names)
    out = model.forward_with_noise(images(), torch.rand(2, 16))
    out['loss'].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_official_initialisation_and_frozen_tables():
    model = MIRLPretrainer(**TINY)
    buffers = dict(model.named_buffers())
    assert {'pos_embed', 'decoder_pos_embed0', 'decoder_pred5.weight_g'} <= set(buffers)
    assert all(not name.startswith(('pos_embed', 'decoder_pos_embed')) and
               not name.endswith('weight_g') for name, _ in model.named_parameters())
    assert torch.equal(model.decoder_pred0.weight_g, torch.ones(16))
    effective = model.decoder_pred0.weight  # (out, in): every input column has unit norm
    torch.testing.assert_close(effective.norm(dim=0), torch.ones(16))
    assert torch.equal(model.blocks[0].attn.qkv.bias, torch.zeros(96))
    assert torch.equal(model.norm3.weight, torch.ones(32))
    torch.testing.assert_close(model.pos_embed[0], sincos_position_embedding_2d(32, 4))
    assert torch.equal(model.pos_embed[0, 0], torch.zeros(32))


def test_position_table_equals_official_frozen_table():
    files = [path for path in reference_files('mirl')]
    if not files:
        pytest.skip('no reference files')
    record = torch.load(files[0], weights_only=True)
    official = record['state_dict']['pos_embed'][0]
    grid = int(round((official.shape[0] - 1) ** 0.5))
    torch.testing.assert_close(sincos_position_embedding_2d(official.shape[1], grid), official,
                               atol=0, rtol=0)


@pytest.mark.parametrize('preset, depth, ends, count', [
    (dict(embed_dims=384, num_layers=54, num_heads=12), 54, [8, 17, 26, 35, 44], 96_193_152),
    (dict(embed_dims=768, num_layers=48, num_heads=12), 48, [7, 15, 23, 31, 39], 340_962_048),
])
def test_released_encoders_have_the_official_size(preset, depth, ends, count):
    with torch.device('meta'):
        model = MIRLPretrainer(**preset)
    assert model.out_indices == ends == equal_segment_ends(depth, 6)
    encoder = {name: tensor for name, tensor in model.encoder_state_dict().items()
               if not (name.startswith('norm') and not name.startswith('norm.'))}
    assert sum(tensor.numel() for tensor in encoder.values()) == count


def test_mmengine_modes():
    model = tiny()
    losses = model(images(), mode='loss')
    assert set(losses) == {'loss', 'pair_0_5', 'pair_1_4', 'pair_2_3'}
    assert losses['loss'].requires_grad and not losses['pair_0_5'].requires_grad
    assert set(model(images(), mode='tensor')) == {'loss', 'pair_losses', 'preds', 'target', 'mask'}
    with pytest.raises(ValueError, match="mode must be 'loss' or 'tensor'"):
        model(images(), mode='predict')


@pytest.mark.parametrize('overrides, match', [
    (dict(num_segments=3), 'num_segments must be even'),
    (dict(num_layers=7), 'num_layers=7 must be divisible by num_segments=6'),
    (dict(out_indices=[0, 2, 1, 3, 4]), 'strictly increasing'),
    (dict(out_indices=[0, 1, 2, 3, 5]), 'below num_layers - 1'),
    (dict(out_indices=[0, 1, 2, 3]), 'odd number of segment ends'),
    (dict(out_indices=[1], num_segments=4), 'disagrees with out_indices'),
    (dict(mask_ratio=1.0), 'mask_ratio must be in'),
    (dict(img_size=30), 'img_size=30 must be divisible by patch_size=8'),
])
def test_bad_arguments_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        MIRLPretrainer(**{**TINY, **overrides})


def test_bad_inputs_are_refused():
    model = tiny()
    with pytest.raises(ValueError, match='images must be 32x32'):
        model.forward_with_noise(images(size=40), torch.rand(2, 25))
    with pytest.raises(ValueError, match=r'noise must have shape \(N, L\) = \(2, 16\)'):
        model.forward_with_noise(images(), torch.rand(2, 15))
