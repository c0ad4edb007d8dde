"""IndexNet (Lu et al., ICCV 2019): index blocks against the sub-pixel layout of the paper, the
authors' parameter layout, index-guided upsampling, odd sizes, init, converter and bad input.
The authors' own numbers are the records in shared/reference/next (test_official_fixtures.py)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmdynup import build_upsampler
from mmdynup.converters import convert_official
from mmdynup.upsamplers.indexnet import IndexBlock, IndexNet

KINDS = ('holistic', 'o2o', 'm2o')
VARIANTS = [(kind, nonlinear, context) for kind in KINDS for nonlinear in (False, True)
            for context in (False, True)]


def _noised(module, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(module.parameters()) + [b for b in module.buffers()
                                                    if b.is_floating_point()]:
            tensor.add_(0.3 * torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype))
            if tensor.dim() == 1:
                tensor.abs_()  # keeps BatchNorm variances positive
    return module.eval()


def _expected_keys(kind, nonlinear, context, channels):
    """The authors' state_dict layout of each block (reference README), as name -> shape."""
    k = 4 if context else 2
    if kind == 'holistic':
        if not nonlinear:
            return {'indexnet.weight': (4, channels, k, k)}
        keys = {'indexnet.0.weight': (2 * channels, channels, k, k),
                'indexnet.3.weight': (4, 2 * channels, 1, 1)}
        keys.update({f'indexnet.1.{n}': (2 * channels,)
                     for n in ('weight', 'bias', 'running_mean', 'running_var')})
        keys['indexnet.1.num_batches_tracked'] = ()
        return keys
    fan_in = 1 if kind == 'o2o' else channels
    keys = {}
    for branch in range(1, 5):
        keys[f'indexnet{branch}.0.weight'] = (channels, fan_in, k, k)
        if nonlinear:
            keys.update({f'indexnet{branch}.1.{n}': (channels,)
                         for n in ('weight', 'bias', 'running_mean', 'running_var')})
            keys[f'indexnet{branch}.1.num_batches_tracked'] = ()
            keys[f'indexnet{branch}.3.weight'] = (channels, fan_in, 1, 1)
    return keys


@pytest.mark.parametrize('kind, nonlinear, context', VARIANTS)
def test_parameter_layout_is_the_authors(kind, nonlinear, context):
    block = IndexBlock(6, kind, nonlinear, context)
    assert {n: tuple(t.shape) for n, t in block.state_dict().items()} == \
        _expected_keys(kind, nonlinear, context, 6)


def _sub_pixel_logits(block, guide):
    """Logits of sub-pixel j, (B, C_idx, H/2, W/2): holistic channel j / branch indexnet{j+1}."""
    if block.kind == 'holistic':
        logits = block.indexnet(guide)
        return [logits[:, j:j + 1] for j in range(4)]
    return [getattr(block, f'indexnet{j + 1}')(guide) for j in range(4)]


@pytest.mark.parametrize('kind, nonlinear, context', VARIANTS)
def test_index_maps_put_sub_pixel_j_at_its_place_in_the_block(kind, nonlinear, context):
    """idx_de is the sigmoid of sub-pixel j's logit at (2p + j // 2, 2q + j % 2); idx_en its
    softmax over the four sub-pixels of the block."""
    block = _noised(IndexBlock(5, kind, nonlinear, context).double())
    guide = torch.randn(2, 5, 6, 8, dtype=torch.float64)
    encoder_index, decoder_index = block(guide)
    channels = 1 if kind == 'holistic' else 5
    assert encoder_index.shape == decoder_index.shape == (2, channels, 6, 8)
    logits = _sub_pixel_logits(block, guide)
    sigmoids = torch.stack([torch.sigmoid(t) for t in logits])
    for j in range(4):
        row, col = divmod(j, 2)
        torch.testing.assert_close(decoder_index[..., row::2, col::2], sigmoids[j])
        torch.testing.assert_close(encoder_index[..., row::2, col::2],
                                   sigmoids[j].exp() / sigmoids.exp().sum(0))


@pytest.mark.parametrize('kind', KINDS)
def test_upsampling_is_the_decoder_index_times_nearest_upsampling(kind):
    up = _noised(IndexNet(4, index_block=kind, use_nonlinear=True, use_context=True).double())
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    guide = torch.randn(2, 4, 10, 12, dtype=torch.float64)
    _, decoder_index = up.index_block(guide)
    expected = decoder_index * F.interpolate(x, scale_factor=2, mode='nearest')
    torch.testing.assert_close(up(x, guide), expected, rtol=0, atol=0)


def test_holistic_index_weights_every_channel_of_a_wider_input():
    up = IndexNet(48, guide_channels=16, index_block='holistic').eval()
    assert up.index_block.index_channels == 1
    assert up(torch.randn(1, 48, 3, 4), torch.randn(1, 16, 6, 8)).shape == (1, 48, 6, 8)


def test_odd_guide_sides_are_padded_by_a_replicated_row_and_column():
    """An odd guide (the hosts' 47 x 63 over 24 x 32) is padded to even by replication, the
    index maps are cropped back; each output keeps its parent (i // 2, j // 2)."""
    up = _noised(IndexNet(4, index_block='m2o', use_context=True).double())
    x = torch.randn(1, 4, 4, 5, dtype=torch.float64)
    guide = torch.randn(1, 4, 7, 9, dtype=torch.float64)
    out = up(x, guide)
    assert out.shape == (1, 4, 7, 9)
    padded = F.pad(guide, (0, 1, 0, 1), mode='replicate')
    _, decoder_index = up.index_block(padded)
    expected = (decoder_index * F.interpolate(x, scale_factor=2, mode='nearest'))[..., :7, :9]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_gradcheck_float64():
    up = _noised(IndexNet(3, index_block='m2o', use_nonlinear=True, use_context=True).double())
    x = torch.randn(1, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    guide = torch.randn(1, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: up(a, b), (x, guide))


def test_init_follows_the_indexnet_matting_network():
    """Convs normal(0, sqrt(2 / (k * k * out))), BatchNorm weight 1 and bias 0."""
    torch.manual_seed(0)
    block = IndexNet(64, index_block='holistic', use_nonlinear=True, use_context=True).index_block
    first, norm, _, last = block.indexnet
    for conv in (first, last):
        expected = math.sqrt(2.0 / (conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels))
        assert_normal(conv.weight, expected)
    assert torch.equal(norm.weight, torch.ones(128)) and torch.equal(norm.bias, torch.zeros(128))
    torch.manual_seed(0)
    depthwise = IndexBlock(256, 'm2o')
    weights = torch.cat([getattr(depthwise, f'indexnet{j}')[0].weight.flatten() for j in
                         range(1, 5)])
    assert_normal(weights, math.sqrt(2.0 / (4 * 256)))


def assert_normal(weight, std):
    """Sample mean and standard deviation of N(0, std^2) draws, within 4 standard errors."""
    weight, count = weight.detach().flatten().double(), weight.numel()
    assert abs(weight.mean().item()) < 4 * std / math.sqrt(count)
    assert abs(weight.std().item() / std - 1) < 4 / math.sqrt(2 * count)


def test_converter_maps_every_argument_and_returns_an_eval_module():
    block = IndexBlock(8, 'o2o', use_nonlinear=True)
    conversion = convert_official('hlindex.DepthwiseO2OIndexBlock',
                                  dict(inp=8, use_nonlinear=True), block.state_dict())
    assert not conversion.module.training
    assert set(conversion.official_names.values()) == set(block.state_dict())
    guide = torch.randn(2, 8, 4, 6)
    for ours, theirs in zip(conversion.official_forward(x=guide), block.eval()(guide)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    with pytest.raises(TypeError, match="unexpected arguments \\['kernel_size'\\]"):
        convert_official('hlindex.HolisticIndexBlock', dict(inp=8, kernel_size=3), {})
    # The holistic class has no default normalisation: nonlinear without one is refused.
    with pytest.raises(ValueError, match='batch_norm=None'):
        convert_official('hlindex.HolisticIndexBlock', dict(inp=8, use_nonlinear=True), {})


@pytest.mark.parametrize('call, error, message', [
    (lambda: IndexNet(16, scale_factor=4), ValueError, 'scale_factor must be 2, got 4'),
    (lambda: IndexNet(16, guide_channels=8), ValueError, 'guide_channels must equal in_channels'),
    (lambda: IndexNet(16, index_block='depthwise'), ValueError, "index_block='depthwise'"),
    (lambda: IndexNet(16, use_nonlinear=True, batch_norm='LayerNorm'), ValueError,
     "batch_norm='LayerNorm'"),
    (lambda: IndexNet(16, use_context=1), TypeError, 'use_context must be True or False'),
])
def test_bad_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_builds_from_a_config_with_sync_batch_norm():
    up = build_upsampler(dict(type='IndexNet', in_channels=8, index_block='holistic',
                              use_nonlinear=True, batch_norm='SyncBatchNorm'))
    assert isinstance(up.index_block.indexnet[1], torch.nn.SyncBatchNorm)
