"""MIRL checkpoint conversion on synthetic checkpoints in the three official layouts."""
import io
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from mmdynup.converters import convert_official
from mmdynup.converters.checkpoint_io import (CheckpointMismatchError, choose_source,
                                              convert_checkpoint, load_checkpoint)
from mmdynup.converters.mirl import (OFFICIAL, dropped_keys, load_pdparams, mirl_to_mmseg,
                                     official_kwargs_to_ours, transpose_linear_weights)
from mmdynup.mirl import MIRLPretrainer

TINY_OFFICIAL = dict(img_size=32, patch_size=8, in_chans=3, embed_dim=32, depth=6, num_heads=4,
                     decoder_embed_dims=[16] * 6, decoder_depth=1, decoder_num_heads=2,
                     mlp_ratio=4.0, norm_pix_loss=False, out_indices=[0, 1, 2, 3, 4],
                     weight_norm_pred=True,
                     norm_layer='partial(paddle.nn.LayerNorm, epsilon=1e-6)')


@pytest.fixture
def model():
    model = MIRLPretrainer(**official_kwargs_to_ours(TINY_OFFICIAL))
    with torch.no_grad():  # no zero biases or unit norms: every tensor distinct
        for tensor in model.parameters():
            tensor.add_(torch.randn_like(tensor) * 0.02)
    return model


def paddle_checkpoint(model, tuples=True):
    """What ``paddle.save({'model': state_dict, 'epoch': ...})`` pickles: numpy arrays, Linear
    weights [in, out], each tensor as a (parameter name, ndarray) tuple."""
    state = transpose_linear_weights(model.state_dict())
    arrays = OrderedDict(
        (name, (f'param_{i}', tensor.numpy()) if tuples else tensor.numpy())
        for i, (name, tensor) in enumerate(state.items()))
    arrays['StructuredToParameterName@@'] = {name: f'param_{i}' for i, name in enumerate(state)}
    return pickle.dumps({'model': arrays, 'epoch': 799}, protocol=4)


def expected_mmseg(model, final_norm=False):
    expected = {'cls_token': model.cls_token, 'pos_embed': model.pos_embed,
                'patch_embed.projection.weight': model.patch_embed.proj.weight,
                'patch_embed.projection.bias': model.patch_embed.proj.bias}
    for i, block in enumerate(model.blocks):
        for ours, module in [('ln1', block.norm1), ('ln2', block.norm2),
                             ('attn.qkv', block.attn.qkv), ('attn.proj', block.attn.proj),
                             ('ffn.layers.0.0', block.mlp.fc1), ('ffn.layers.1', block.mlp.fc2)]:
            expected[f'layers.{i}.{ours}.weight'] = module.weight
            expected[f'layers.{i}.{ours}.bias'] = module.bias
    if final_norm:
        expected['ln1.weight'], expected['ln1.bias'] = model.norm.weight, model.norm.bias
    return {name: tensor.detach() for name, tensor in expected.items()}


def assert_same_tensors(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=0, rtol=0,
                                   msg=lambda m: f'{name}: {m}')


@pytest.mark.parametrize('tuples', [True, False], ids=['paddle-tuples', 'plain-arrays'])
def test_paddle_pretraining_checkpoint_to_mmseg(model, tuples):
    checkpoint = load_pdparams(paddle_checkpoint(model, tuples))
    assert_same_tensors(mirl_to_mmseg(checkpoint, num_layers=6, embed_dims=32),
                        expected_mmseg(model))
    assert_same_tensors(mirl_to_mmseg(checkpoint, final_norm=True),
                        expected_mmseg(model, final_norm=True))
    dropped = dropped_keys(checkpoint)
    assert 'norm_low.weight' in dropped and 'norm4.bias' in dropped and 'norm.weight' in dropped
    assert 'decoder_pred5.weight_g' in dropped and 'mask_token0' in dropped
    assert not any(name.startswith(('blocks.', 'patch_embed')) for name in dropped)


def test_pytorch_export_and_our_checkpoints_to_mmseg(model):
    encoder_keys = ('cls_token', 'pos_embed', 'patch_embed.', 'blocks.', 'norm.')
    export = {'model': {name: tensor for name, tensor in model.state_dict().items()
                        if name.startswith(encoder_keys)}}
    ours = {'meta': {'epoch': 1}, 'state_dict': model.state_dict()}
    for checkpoint in (export, ours):
        assert_same_tensors(mirl_to_mmseg(checkpoint), expected_mmseg(model))


def test_layout_detection_transposes_square_linear_weights(model):
    checkpoint = load_pdparams(paddle_checkpoint(model))
    square = torch.from_numpy(checkpoint['model']['blocks.0.attn.proj.weight'][1])
    assert not torch.equal(square, square.t())
    converted = mirl_to_mmseg(checkpoint)
    torch.testing.assert_close(converted['layers.0.attn.proj.weight'], square.t())
    forced = mirl_to_mmseg(checkpoint, layout='torch')
    torch.testing.assert_close(forced['layers.0.attn.proj.weight'], square)


def test_other_architecture_is_refused(model):
    checkpoint = {'state_dict': model.state_dict()}
    with pytest.raises(ValueError, match='depth 6 and width 32, but the backbone expects depth 48'
                                         ' and width 768'):
        mirl_to_mmseg(checkpoint, num_layers=48, embed_dims=768)
    with pytest.raises(ValueError, match='depth 6 and width 32.*width 384'):
        mirl_to_mmseg(checkpoint, num_layers=6, embed_dims=384)
    with pytest.raises(ValueError, match="layout must be 'paddle', 'torch' or None"):
        mirl_to_mmseg(checkpoint, layout='tf')
    with pytest.raises(ValueError, match='not a ViT encoder checkpoint'):
        mirl_to_mmseg({'state_dict': {'decoder_norm0.weight': torch.ones(3)}})


class _Payload:
    def __reduce__(self):
        return (print, ('executed',))


@pytest.mark.parametrize('payload', [_Payload(), torch.nn.Linear(2, 2), np.random.RandomState(0)])
def test_pdparams_loader_refuses_arbitrary_objects(payload):
    data = pickle.dumps({'model': {'w': payload}})
    with pytest.raises(pickle.UnpicklingError, match='refusing to load'):
        load_pdparams(data)


def test_pdparams_loader_reads_files_and_numpy_scalars(tmp_path):
    path = tmp_path / 'checkpoint.pdparams'
    content = {'model': {'w': np.arange(6, dtype=np.float32).reshape(2, 3)}, 'lr': np.float64(0.1)}
    path.write_bytes(pickle.dumps(content, protocol=5))
    loaded = load_pdparams(str(path))
    np.testing.assert_array_equal(loaded['model']['w'], content['model']['w'])
    with open(path, 'rb') as handle:
        assert load_pdparams(handle)['lr'] == 0.1
    assert load_pdparams(io.BytesIO(path.read_bytes()).getvalue())['lr'] == 0.1


@pytest.mark.parametrize('suffix', ['.pdparams', '.pth'])
def test_checkpoint_source_detects_converts_and_reports(model, tmp_path, suffix):
    """Through tools/convert_checkpoint.py's pipeline: safe loading, detection, full report."""
    path = tmp_path / f'mirl{suffix}'
    if suffix == '.pdparams':
        path.write_bytes(paddle_checkpoint(model))
    else:
        torch.save({'meta': {}, 'state_dict': model.state_dict()}, path)
    checkpoint = load_checkpoint(str(path))
    source, how = choose_source(checkpoint)
    assert source.name == 'mirl' and '6 blocks of width 32' in how
    assert ('Paddle [in, out]' in how) == (suffix == '.pdparams')
    converted, report = convert_checkpoint(checkpoint, source,
                                           dict(num_layers=6, embed_dims=32))
    assert_same_tensors(converted, expected_mmseg(model))
    assert report.sources['layers.2.ffn.layers.0.0.weight'] == 'blocks.2.mlp.fc1.weight'
    assert set(report.dropped) == set(dropped_keys(checkpoint.state_dict))
    assert ('layers.0.attn.proj.weight' in report.notes) == (suffix == '.pdparams')
    with pytest.raises(CheckpointMismatchError, match='depth 6 and width 32'):
        convert_checkpoint(checkpoint, source, dict(num_layers=48, embed_dims=768))


def test_official_pretraining_checkpoint_builds_our_model(model):
    paddle_state = transpose_linear_weights(model.state_dict())
    converted = convert_official(OFFICIAL, TINY_OFFICIAL, paddle_state).module
    assert_same_tensors(converted.state_dict(), model.state_dict())


@pytest.mark.parametrize('overrides, error, match', [
    (dict(decoder_embed_dims=[16] * 4, out_indices=[1, 3]), ValueError, 'exactly six decoders'),
    (dict(decoder_embed_dims=[16] * 5 + [32]), ValueError, 'decoder_embed_dims must be equal'),
    (dict(unknown_argument=1), TypeError, 'unknown models_mirl.MIRLViT arguments'),
    (dict(norm_layer='partial(paddle.nn.BatchNorm1D)'), ValueError, 'must be a LayerNorm'),
])
def test_official_arguments_are_checked(overrides, error, match):
    with pytest.raises(error, match=match):
        official_kwargs_to_ours({**TINY_OFFICIAL, **overrides})


def test_official_arguments_map_to_ours():
    ours = official_kwargs_to_ours({**TINY_OFFICIAL, 'queue_size': 10, 'temperature': 0.2,
                                    'norm_layer': 'partial(nn.LayerNorm, epsilon=1e-5)',
                                    'weight_norm_pred': False})
    assert ours['norm_eps'] == 1e-5 and ours['weight_norm_pred'] is False
    assert ours['decoder_embed_dims'] == 16 and ours['out_indices'] == [0, 1, 2, 3, 4]
    model = MIRLPretrainer(**ours)
    assert isinstance(model.decoder_pred0, torch.nn.Linear)
