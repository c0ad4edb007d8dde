"""SAPA-deform against a per-pixel, per-point brute force of the journal formula.

Exact agreement with the authors' code is checked by tests/upsamplers/test_official_fixtures.py.
"""
import pytest
import torch

from mmdynup import build_upsampler
from mmdynup.upsamplers.sapa_deform import SAPADeform
from tests.ops.test_point_sampling import bilinear_brute_force


def perturbed(module, std=0.3):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(std * torch.randn_like(parameter))
    return module


def sapa_deform_brute_force(module, x, guide):
    """For every high-resolution pixel and group: sample keys and values at the parent centre
    plus each point's offset (zero outside the image), softmax of query . key over the points,
    weighted sum of the sampled raw values."""
    batch, channels, height, width = x.shape
    s, groups, points, embedding = (module.scale_factor, module.groups, module.num_point,
                                    module.embedding_dim)
    x_normed = module.norm_x(x) if module.norm else x
    guide_normed = module.norm_y(guide) if module.norm else guide
    queries, keys, offsets = module.q(guide_normed), module.k(x_normed), module.offset(x_normed)
    per_group = channels // groups
    out = x.new_zeros(batch, channels, s * height, s * width)
    for b in range(batch):
        for g in range(groups):
            key_image = keys[b, g * embedding:(g + 1) * embedding]
            value_image = x[b, g * per_group:(g + 1) * per_group]
            for row in range(s * height):
                for col in range(s * width):
                    i, a = divmod(row, s)
                    j, c = divmod(col, s)
                    query = queries[b, g * embedding:(g + 1) * embedding, row, col]
                    logits, values = [], []
                    for p in range(points):
                        position = []
                        for component, centre in ((0, j + 0.5), (1, i + 0.5)):
                            channel = (g * points + p) * 2 + component
                            if module.high_offset:
                                offset = offsets[b, channel * s * s + a * s + c, i, j]
                            else:
                                offset = offsets[b, channel, i, j]
                            position.append(centre + offset)
                        key = bilinear_brute_force(key_image, *position, 'zeros')
                        logits.append((query * key).sum())
                        values.append(bilinear_brute_force(value_image, *position, 'zeros'))
                    weights = torch.stack(logits).softmax(0)
                    out[b, g * per_group:(g + 1) * per_group, row, col] = (
                        weights[:, None] * torch.stack(values)).sum(0)
    return out


@pytest.mark.parametrize('kwargs', [
    dict(scale_factor=2, num_point=3, groups=2, high_offset=True),
    dict(scale_factor=3, num_point=2, groups=1, high_offset=False, qkv_bias=False),
    dict(scale_factor=2, num_point=4, groups=2, high_offset=True, norm=True),
])
def test_equals_brute_force(kwargs):
    channels, guide_channels = (32, 64) if kwargs.get('norm') else (4, 6)
    module = perturbed(SAPADeform(channels, guide_channels=guide_channels, embedding_dim=3,
                                  **kwargs).double(), std=0.5)
    s = module.scale_factor
    x = torch.randn(2, channels, 2, 3, dtype=torch.float64)
    guide = torch.randn(2, guide_channels, 2 * s, 3 * s, dtype=torch.float64)
    torch.testing.assert_close(module(x, guide), sapa_deform_brute_force(module, x, guide),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize('kwargs', [dict(high_offset=True), dict(high_offset=False),
                                    dict(norm=True)])
def test_gradcheck(kwargs):
    norm = kwargs.get('norm', False)
    channels = 32 if norm else 4  # GroupNorm(32) needs 32 channels
    module = perturbed(SAPADeform(channels, guide_channels=channels, num_point=3, groups=2,
                                  embedding_dim=2, **kwargs).double())
    x = torch.randn(1, channels, 2, 2, dtype=torch.float64, requires_grad=True)
    guide = torch.randn(1, channels, 3, 4, dtype=torch.float64, requires_grad=True)
    # fast mode (random projections of the Jacobian) keeps the 32-channel case small
    assert torch.autograd.gradcheck(module, (x, guide), fast_mode=norm)


@pytest.mark.parametrize('high_offset', [True, False])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_odd_size_keeps_top_left_window_and_backpropagates(high_offset, scale):
    module = perturbed(SAPADeform(8, scale, guide_channels=6, num_point=3, groups=2,
                                  embedding_dim=4, high_offset=high_offset))
    x = torch.randn(2, 8, 5, 3, requires_grad=True)
    guide = torch.randn(2, 6, 5 * scale, 3 * scale, requires_grad=True)
    full = module(x, guide)
    assert full.shape == (2, 8, 5 * scale, 3 * scale)
    size = (5 * scale - 1, 3 * scale - scale + 1)
    cropped = module(x, guide[..., :size[0], :size[1]])
    torch.testing.assert_close(cropped, full[..., :size[0], :size[1]])
    cropped.square().sum().backward()
    assert x.grad.abs().sum() > 0 and guide.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_runs_under_bfloat16_autocast():
    module = perturbed(SAPADeform(8, guide_channels=8, num_point=3, groups=2, embedding_dim=4))
    x, guide = torch.randn(2, 8, 3, 5), torch.randn(2, 8, 6, 10)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = module(x, guide)
    out.float().sum().backward()
    torch.testing.assert_close(out.float(), module(x, guide), atol=0.1, rtol=0.05)


def test_builds_from_the_common_config_with_the_authors_init():
    module = build_upsampler(dict(type='SAPADeform', in_channels=256, scale_factor=2,
                                  guide_channels=256))
    assert module.requires_guide
    # q, k: 256 -> 4 * 32 with bias; offset: 256 -> 4 groups * 9 points * 2 * 2^2 with bias.
    assert sum(p.numel() for p in module.parameters()) == 2 * (256 * 128 + 128) + 256 * 288 + 288
    for conv in (module.q, module.k, module.offset):
        assert conv.bias.abs().sum() == 0
        assert 0.015 < conv.weight.std().item() < 0.025
    out = module(torch.randn(2, 256, 3, 5), torch.randn(2, 256, 6, 10))
    assert out.shape == (2, 256, 6, 10)


def test_qkv_bias_also_switches_the_offset_bias():
    module = SAPADeform(16, qkv_bias=False, high_offset=False, num_point=5)
    assert module.q.bias is None and module.k.bias is None and module.offset.bias is None
    assert module.offset.out_channels == 4 * 5 * 2


@pytest.mark.parametrize('kwargs,names', [
    (dict(in_channels=6, groups=4), ['in_channels=6', 'groups=4']),
    (dict(in_channels=16, guide_channels=32, norm=True), ['in_channels', '32']),
    (dict(in_channels=32, guide_channels=48, norm=True), ['guide_channels', '32']),
    (dict(in_channels=16, num_point=0), ['num_point']),
    (dict(in_channels=16, embedding_dim=0), ['embedding_dim']),
    (dict(in_channels=16, scale_factor=2.5), ['scale_factor']),
])
def test_bad_construction_names_the_argument(kwargs, names):
    with pytest.raises(ValueError) as error:
        SAPADeform(**kwargs)
    for name in names:
        assert name in str(error.value)


def test_bad_inputs_name_the_argument():
    module = SAPADeform(8, guide_channels=4)
    x = torch.randn(1, 8, 3, 4)
    with pytest.raises(ValueError, match='guide=None'):
        module(x)
    with pytest.raises(ValueError, match='guide_channels=4'):
        module(x, torch.randn(1, 6, 6, 8))
    with pytest.raises(ValueError, match='in_channels=8'):
        module(torch.randn(1, 5, 3, 4), torch.randn(1, 4, 6, 8))
    with pytest.raises(ValueError, match='guide has spatial size'):
        module(x, torch.randn(1, 4, 6, 8), size=(5, 8))
    with pytest.raises(TypeError, match='high_offset'):
        SAPADeform(8, high_offset=1)
