"""MIRL pretraining against the authors' PaddlePaddle outputs (shared/reference/mirl, README).

Every file is dispatched on its content: full pretraining records (``preds``) and encoder records
(``block_outputs``). The architecture is always read from the file's ``kwargs``.
"""
import pytest
import torch

from mmdynup.converters import convert_official
from mmdynup.converters.mirl import (OFFICIAL, is_paddle_linear_weight, official_kwargs_to_ours,
                                     transpose_linear_weights)
from mmdynup.mirl import MIRLPretrainer
from mmdynup.mirl.objective import random_masking
from tests.conftest import reference_files, skip_without_reference

FILES = reference_files('mirl')
ATOL64, RTOL64 = 1e-10, 1e-8


def _records(kind):
    records = [torch.load(path, weights_only=True) for path in FILES]
    return [pytest.param(record, id=path.stem) for path, record in zip(FILES, records)
            if kind in record]


PRETRAIN_RECORDS = _records('preds')
ENCODER_RECORDS = _records('block_outputs')


def _converted(record, dtype):
    assert record['official'] == OFFICIAL
    conversion = convert_official(record['official'], record['kwargs'], record['state_dict'])
    return conversion.module.to(dtype)


def _block_outputs(model):
    outputs = []
    handles = [block.register_forward_hook(lambda module, args, out: outputs.append(out))
               for block in model.blocks]
    return outputs, handles


@skip_without_reference('mirl')
@pytest.mark.parametrize('record', PRETRAIN_RECORDS)
def test_pretraining_float64_matches_official(record):
    model = _converted(record, torch.float64)
    images = record['inputs']['imgs'].double().requires_grad_(True)
    out = model.forward_with_noise(images, record['noise'], mask_ratio=record['mask_ratio'])
    expected = record['float64']
    torch.testing.assert_close(out['mask'], record['mask'], atol=0, rtol=0)
    torch.testing.assert_close(out['mask'], record['output']['mask'], atol=0, rtol=0)
    assert len(out['preds']) == len(expected['preds'])
    for k, (ours, theirs) in enumerate(zip(out['preds'], expected['preds'])):
        torch.testing.assert_close(ours, theirs, atol=ATOL64, rtol=RTOL64,
                                   msg=lambda m: f'decoder {k}: {m}')
    torch.testing.assert_close(out['target'], expected['target'], atol=ATOL64, rtol=RTOL64)
    torch.testing.assert_close(out['loss'], expected['output']['loss'], atol=ATOL64, rtol=RTOL64)
    torch.testing.assert_close(torch.stack(out['pair_losses']),
                               torch.stack(expected['output']['loss_terms']),
                               atol=ATOL64, rtol=RTOL64)
    out['loss'].backward()
    torch.testing.assert_close(images.grad, expected['grads']['imgs'], atol=ATOL64, rtol=RTOL64)


@skip_without_reference('mirl')
@pytest.mark.parametrize('record', PRETRAIN_RECORDS)
def test_pretraining_float64_intermediates(record):
    model = _converted(record, torch.float64)
    masking = random_masking(record['noise'], record['mask_ratio'])
    torch.testing.assert_close(masking.ids_keep, record['ids_keep'], atol=0, rtol=0)
    torch.testing.assert_close(masking.ids_restore, record['ids_restore'], atol=0, rtol=0)
    encoded = model.forward_encoder(record['inputs']['imgs'].double(), masking)
    expected = record['float64']['intermediates']
    torch.testing.assert_close(encoded['low_level'], expected['low_feat'], atol=ATOL64,
                               rtol=RTOL64)
    for ours, theirs in zip(encoded['features'], expected['feats'] + [expected['latent']]):
        torch.testing.assert_close(ours, theirs, atol=ATOL64, rtol=RTOL64)


@skip_without_reference('mirl')
@pytest.mark.parametrize('record', PRETRAIN_RECORDS)
def test_pretraining_float32_matches_official(record):
    model = _converted(record, torch.float32)
    images = record['inputs']['imgs'].clone().requires_grad_(True)
    out = model.forward_with_noise(images, record['noise'], mask_ratio=record['mask_ratio'])
    for ours, theirs in zip(out['preds'], record['preds']):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out['target'], record['target'], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out['loss'], record['output']['loss'], atol=1e-5, rtol=1e-5)
    out['loss'].backward()
    scale = record['grads']['imgs'].abs().max()
    torch.testing.assert_close(images.grad, record['grads']['imgs'], atol=1e-5 * scale, rtol=0)

    # Parameter gradients, Linear weights back in Paddle's [in, out] layout.
    ours = {name: parameter.grad for name, parameter in model.named_parameters()}
    assert set(ours) == set(record['param_grads']), \
        f'trainable sets differ: {sorted(set(ours) ^ set(record["param_grads"]))}'
    for name, expected in record['param_grads'].items():
        grad = ours[name]
        assert grad is not None, f'{name} received no gradient'
        if is_paddle_linear_weight(name, grad):
            grad = grad.t()
        torch.testing.assert_close(grad, expected, atol=1e-5 * expected.abs().max(), rtol=0,
                                   msg=lambda m: f'gradient of {name}: {m}')


@skip_without_reference('mirl')
@pytest.mark.parametrize('record', ENCODER_RECORDS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64], ids=['float32', 'float64'])
def test_encoder_matches_official(record, dtype):
    model = MIRLPretrainer(**official_kwargs_to_ours(record['kwargs']))
    result = model.load_state_dict(transpose_linear_weights(record['state_dict']), strict=False)
    assert not result.unexpected_keys
    assert all(name.startswith(('decoder_', 'mask_token')) for name in result.missing_keys), \
        result.missing_keys
    assert model.segment_ends == record['segment_end_block_indices']
    model = model.to(dtype)
    masking = random_masking(record['noise'], 0.0)
    outputs, handles = _block_outputs(model)
    encoded = model.forward_encoder(record['inputs']['imgs'].to(dtype), masking)
    for handle in handles:
        handle.remove()
    expected = record['float64'] if dtype == torch.float64 else record
    atol, rtol = (ATOL64, RTOL64) if dtype == torch.float64 else (1e-5, 1e-5)
    torch.testing.assert_close(encoded['low_level'], expected['low_feat'], atol=atol, rtol=rtol)
    for ours, theirs in zip(outputs, expected['block_outputs'], strict=True):
        torch.testing.assert_close(ours, theirs, atol=atol, rtol=rtol)
    for ours, theirs in zip(encoded['features'], expected['segment_outputs_normed'], strict=True):
        torch.testing.assert_close(ours, theirs, atol=atol, rtol=rtol)
