"""SAPA upsamplers (SAPAI, SAPAB, SAPAG, SAPABase) and their official-code converters."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmdynup import build_upsampler, list_upsamplers
from mmdynup.converters import convert_official, official_sources
from mmdynup.upsamplers.sapa import SAPAB, SAPABase, SAPAG, SAPAI

SAPA_NAMES = ['SAPAI', 'SAPAB', 'SAPAG', 'SAPABase']

# Tiny configurations exercising every query / value / norm path (SAPABase norm needs 32 channels).
TINY = [
    (SAPAI, dict(in_channels=4)),
    (SAPAI, dict(in_channels=4, norm=False)),
    (SAPAB, dict(in_channels=4, guide_channels=3, embedding_dim=3)),
    (SAPAB, dict(in_channels=4, guide_channels=3, embedding_dim=3, q_mode='cat')),
    (SAPAB, dict(in_channels=4, embedding_dim=3, out_channels=5, qkv_bias=False)),
    (SAPAG, dict(in_channels=4, guide_channels=3, embedding_dim=3, v_embed=True)),
    (SAPABase, dict(in_channels=4, guide_channels=3, embedding_dim=3, norm=False)),
    (SAPABase, dict(in_channels=32, embedding_dim=2)),
]
TINY_IDS = [f'{cls.__name__}-{i}' for i, (cls, _) in enumerate(TINY)]


def _perturb(module, std=0.3):
    """Random parameters, so that zero-initialised biases and unit norms matter."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn_like(parameter) * std)
    return module


def _inputs(module, low=(2, 3), size=None, batch=2, dtype=torch.float64):
    s = module.scale_factor
    size = size or (s * low[0], s * low[1])
    x = torch.randn(batch, module.in_channels, *low, dtype=dtype)
    guide = torch.randn(batch, module.guide_channels, *size, dtype=dtype)
    return x, guide


def test_registered_and_built_from_default_config():
    assert set(SAPA_NAMES) <= set(list_upsamplers())
    for name in SAPA_NAMES:
        up = build_upsampler(dict(type=name, in_channels=256, scale_factor=2,
                                  guide_channels=256))
        assert up.requires_guide and up.out_channels == 256
        x = torch.randn(1, 256, 3, 2)
        assert up(x, torch.randn(1, 256, 6, 4)).shape == (1, 256, 6, 4)


def test_parameter_counts_follow_the_layers():
    def count(module):
        return sum(p.numel() for p in module.parameters())
    c, d = 256, 64
    layer_norms = 2 * 2 * c
    linear = c * d + d
    assert count(SAPAI(c)) == layer_norms
    assert count(SAPAB(c)) == layer_norms + 2 * linear
    assert count(SAPAB(c, q_mode='cat')) == layer_norms + 2 * linear + c * d
    assert count(SAPAG(c)) == layer_norms + 3 * linear + c + 1
    assert count(SAPAB(c, v_embed=True)) == layer_norms + 2 * linear + c * c + c
    assert count(SAPABase(c)) == 2 * 2 * c + 2 * (c * 32 + 32)
    assert count(SAPABase(c, norm=False, qkv_bias=False)) == 2 * c * 32


def test_authors_initialisation():
    up = SAPAG(64, embedding_dim=32)
    for linear in (up.qy, up.qx, up.k, up.gate):
        assert 0.01 < linear.weight.std() < 0.03
        assert torch.count_nonzero(linear.bias) == 0
    assert torch.all(up.norm_x.weight == 1) and torch.all(up.norm_y.bias == 0)
    base = SAPABase(64)
    assert 0.01 < base.q.weight.std() < 0.03 and torch.count_nonzero(base.k.bias) == 0


@pytest.mark.parametrize('cls,kwargs', TINY, ids=TINY_IDS)
def test_gradcheck_inputs_and_parameters(cls, kwargs):
    module = _perturb(cls(**kwargs).double())
    x, guide = _inputs(module, low=(2, 3))
    names = [name for name, _ in module.named_parameters()]
    parameters = [p.detach().clone().requires_grad_() for p in module.parameters()]

    def function(x, guide, *params):
        return torch.func.functional_call(module, dict(zip(names, params)), (x, guide))

    inputs = (x.requires_grad_(), guide.requires_grad_(), *parameters)
    assert torch.autograd.gradcheck(function, inputs, fast_mode=True)


# Scales 2 and 4 for every configuration, 3 as well for the journal class (its fixture uses 3).
SCALED = [(cls, kwargs, scale) for cls, kwargs in TINY
          for scale in ((2, 3, 4) if cls is SAPABase else (2, 4))]


@pytest.mark.parametrize('cls,kwargs,scale', SCALED,
                         ids=[f'{cls.__name__}-{i}-s{scale}'
                              for i, (cls, _, scale) in enumerate(SCALED)])
def test_forward_backward_non_square_batch_2(cls, kwargs, scale):
    module = _perturb(cls(scale_factor=scale, **kwargs))
    x, guide = _inputs(module, low=(3, 5), dtype=torch.float32)
    x.requires_grad_()
    guide.requires_grad_()
    out = module(x, guide)
    assert out.shape == (2, module.out_channels, 3 * scale, 5 * scale)
    out.square().sum().backward()
    for tensor in (x.grad, guide.grad, *(p.grad for p in module.parameters())):
        assert tensor is not None and torch.isfinite(tensor).all()
        assert tensor.abs().sum() > 0


@pytest.mark.parametrize('cls,kwargs', TINY, ids=TINY_IDS)
def test_odd_size_is_the_top_left_window(cls, kwargs):
    module = _perturb(cls(**kwargs).double())
    x, guide = _inputs(module, low=(5, 6))
    full = module(x, guide)
    cropped_guide = guide[..., :9, :11]
    out = module(x, cropped_guide)
    assert out.shape == (2, module.out_channels, 9, 11)
    assert module(x, cropped_guide, size=(9, 11)).shape == out.shape
    if isinstance(module, SAPABase) and module.norm:
        return  # GroupNorm statistics span the whole guide, so a crop changes every pixel
    # Every other path is pointwise on the guide: the output is the crop of the full output.
    torch.testing.assert_close(out, full[..., :9, :11])


@pytest.mark.parametrize('cls', [SAPAB, SAPABase])
def test_uniform_kernels_average_the_window(cls):
    # Zero projections give zero logits: each pixel averages its parent's window, zeros included.
    module = cls(8, embedding_dim=4, norm=False).double()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.zero_()
    x, guide = _inputs(module, low=(4, 5))
    expected = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=True)
    expected = F.interpolate(expected, scale_factor=2, mode='nearest')
    torch.testing.assert_close(module(x, guide), expected)


def test_sapai_is_sapab_with_identity_projections():
    sapai = _perturb(SAPAI(4).double())
    sapab = SAPAB(4, embedding_dim=4, qkv_bias=False).double()
    with torch.no_grad():
        sapab.q.weight.copy_(torch.eye(4))
        sapab.k.weight.copy_(torch.eye(4))
        for name in ('norm_x', 'norm_y'):
            getattr(sapab, name).load_state_dict(getattr(sapai, name).state_dict())
    x, guide = _inputs(sapai)
    torch.testing.assert_close(sapai(x, guide), sapab(x, guide))


def test_value_embedding_sets_out_channels():
    up = SAPAB(16, embedding_dim=8, out_channels=24)
    assert up.out_channels == 24 and up.v.out_features == 24
    assert up(torch.randn(2, 16, 3, 4), torch.randn(2, 16, 6, 8)).shape == (2, 24, 6, 8)
    assert SAPAB(16, v_embed=True).v is not None and SAPAB(16).v is None


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize('build,match', [
    (lambda: SAPAB(16, up_kernel_size=4), 'up_kernel_size'),
    (lambda: SAPABase(32, up_kernel_size=6), 'up_kernel_size'),
    (lambda: SAPAB(16, scale_factor=1), 'scale_factor'),
    (lambda: SAPAB(16, embedding_dim=0), 'embedding_dim'),
    (lambda: SAPAB(16, q_mode='decoder'), 'q_mode'),
    (lambda: SAPAB(16, q_mode='gate'), 'SAPAG'),
    (lambda: SAPAB(16, norm='LayerNorm'), 'norm'),
    (lambda: SAPAG(16, out_channels=0), 'out_channels'),
    (lambda: SAPAI(16, guide_channels=8), 'guide_channels'),
    (lambda: SAPABase(48), 'in_channels=48'),
    (lambda: SAPABase(32, guide_channels=24), 'guide_channels=24'),
])
def test_bad_construction_names_the_argument(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_group_norm_divisibility_is_only_needed_with_norm():
    assert SAPABase(48, guide_channels=24, norm=False)(
        torch.randn(1, 48, 2, 2), torch.randn(1, 24, 4, 4)).shape == (1, 48, 4, 4)


@pytest.mark.parametrize('cls', [SAPAI, SAPAB, SAPAG, SAPABase])
@pytest.mark.parametrize('x_shape,guide_shape,size,match', [
    ((2, 32, 3, 4), None, None, 'guide'),
    ((2, 16, 3, 4), (2, 32, 6, 8), None, 'in_channels'),
    ((2, 32, 3, 4), (2, 16, 6, 8), None, 'guide_channels'),
    ((2, 32, 3, 4), (2, 32, 6, 8), (5, 7), 'guide has spatial size'),  # guide is not the output
    ((2, 32, 3, 4), (2, 32, 7, 8), None, 'size'),  # guide larger than 2x the input
    ((32, 3, 4), (2, 32, 6, 8), None, 'x must be 4-D'),
])
def test_bad_inputs_name_the_argument(cls, x_shape, guide_shape, size, match):
    up = cls(32)
    guide = None if guide_shape is None else torch.randn(guide_shape)
    with pytest.raises(ValueError, match=match):
        up(torch.randn(x_shape), guide, size=size)


# -- converters --------------------------------------------------------------------------------
def test_official_sources_registered():
    assert {'sapa.SAPA', 'sapaexp.SAPAExp', 'sapa_base.SAPA'} <= set(official_sources())


@pytest.mark.parametrize('official,kwargs,cls,ours', [
    ('sapa.SAPA', dict(dim_y=24, dim_x=16, embedding_dim=8, qkv_bias=False), SAPAB,
     dict(guide_channels=24, in_channels=16, embedding_dim=8, qkv_bias=False)),
    ('sapa.SAPA', dict(dim_y=16, norm=nn.Identity), SAPAB, dict(in_channels=16, norm=False)),
    ('sapaexp.SAPAExp', dict(dim_y=16, q_mode='encoder_only', norm='torch.nn.LayerNorm'), SAPAB,
     dict(in_channels=16)),
    ('sapaexp.SAPAExp', dict(dim_y=16, q_mode='gate', out_dim=8), SAPAG,
     dict(in_channels=16, out_channels=8)),
    ('sapaexp.SAPAExp', dict(dim_y=16, dim_x=8, q_mode='cat', v_embed=True), SAPAB,
     dict(guide_channels=16, in_channels=8, q_mode='cat', v_embed=True)),
    ('sapa_base.SAPA', dict(dim_y=32, up_factor=4, up_kernel_size=3), SAPABase,
     dict(in_channels=32, scale_factor=4, up_kernel_size=3)),
    ('sapa_base.SAPA', dict(dim_y=24, dim_x=16, scale_factor=3, norm=False), SAPABase,
     dict(guide_channels=24, in_channels=16, scale_factor=3, norm=False)),
])
def test_converter_maps_official_arguments(official, kwargs, cls, ours):
    source = _perturb(cls(**ours).double())
    conversion = convert_official(official, kwargs, source.state_dict())
    module = conversion.module
    assert type(module) is cls and conversion.input_roles == {'y': 'guide', 'x': 'x'}
    assert repr(module) == repr(source)
    for name, tensor in module.state_dict().items():
        assert tensor.dtype == torch.float64
        assert torch.equal(tensor, source.state_dict()[conversion.official_names[name]])


@pytest.mark.parametrize('official,kwargs,match', [
    ('sapa.SAPA', dict(dim_y=16, q_mode='cat'), 'q_mode'),
    ('sapa.SAPA', dict(dim_y=16, norm=nn.BatchNorm1d), 'norm'),
    ('sapa_base.SAPA', dict(dim_y=16, groups=4), 'groups'),
    ('sapa_base.SAPA', dict(dim_y=32, up_factor=2, scale_factor=2), 'scale_factor'),
    ('sapaexp.SAPAExp', dict(dim_x=16), 'dim_y'),
])
def test_converter_rejects_unknown_arguments(official, kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        convert_official(official, kwargs, {})
