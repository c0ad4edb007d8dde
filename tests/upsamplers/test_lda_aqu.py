"""LDA-AQU against a per-pixel brute force of its steps (LayerNorm'd q/k, align_corners=True query
resize, grouped offset branch, tanh-bounded offsets on the k_u x k_u grid in output pixels,
align_corners=True positions on the low-resolution maps, per-head attention with the key bias),
fractional scales, host sizes, its init and its argument checks.

Exact agreement with the authors' code is checked by tests/upsamplers/test_official_fixtures.py.
"""
import pytest
import torch
import torch.nn.functional as F

from mmdynup import build_upsampler
from mmdynup.converters import convert_official
from mmdynup.ops.dispatch import use_implementation
from mmdynup.upsamplers.lda_aqu import LDAAQU
from tests.ops.test_deformable_attention import assert_close_with_gradients
from tests.ops.test_point_sampling import bilinear_brute_force
# Random parameters, so that offsets, biases and the zero-initialised offset conv all matter.
from tests.upsamplers.test_frfu import perturbed

# (in_channels, scale_factor, kwargs, low-res (H, W))
SETTINGS = [
    (16, 2, dict(), (2, 3)),
    (16, 1.5, dict(num_heads=2, offset_groups=4, up_kernel=5, encoder_kernel=1), (3, 2)),
    (8, 3, dict(reduction_factor=2, key_bias=False, offset_range=2.0), (2, 2)),
    (8, 2.5, dict(reduction_factor=2, num_heads=2, offset_groups=1), (1, 2)),
]


def lda_aqu_brute_force(module, x):
    """Every output pixel from the module docstring's formulas, one pixel at a time."""
    batch, channels, height, width = x.shape
    s = module.scale_factor
    out_h, out_w = int(height * s), int(width * s)
    heads, groups, k = module.num_heads, module.offset_groups, module.up_kernel
    hidden = module.hidden_channels
    normed = F.layer_norm(x.permute(0, 2, 3, 1), (channels,), module.norm.weight,
                          module.norm.bias).permute(0, 3, 1, 2)
    query = F.interpolate(module.query(normed), (out_h, out_w), mode='bilinear',
                          align_corners=True)
    key = module.key(normed)
    offset_input = query.reshape(batch * groups, hidden // groups, out_h, out_w)
    hidden_offsets = module.offset_depthwise(offset_input)
    hidden_offsets = F.layer_norm(hidden_offsets.permute(0, 2, 3, 1), (hidden // groups,),
                                  module.offset_norm.weight,
                                  module.offset_norm.bias).permute(0, 3, 1, 2)
    predicted = module.offset_project(F.gelu(hidden_offsets)).tanh() * module.offset_range
    predicted = predicted.view(batch, groups, k * k, 2, out_h, out_w)
    row_ratio = (height - 1) / (out_h - 1) if out_h > 1 else 0.0
    col_ratio = (width - 1) / (out_w - 1) if out_w > 1 else 0.0
    key_group, value_group = hidden // groups, channels // groups
    key_head, value_head = hidden // heads, channels // heads
    scale = key_head ** -0.5
    out = x.new_zeros(batch, channels, out_h, out_w)
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                keys, values = [], []
                for p in range(k * k):
                    dy, dx = p // k - k // 2, p % k - k // 2
                    key_parts, value_parts = [], []
                    for g in range(groups):
                        row = (i + dy + predicted[b, g, p, 0, i, j]) * row_ratio
                        col = (j + dx + predicted[b, g, p, 1, i, j]) * col_ratio
                        key_parts.append(bilinear_brute_force(
                            key[b, g * key_group:(g + 1) * key_group], col + 0.5, row + 0.5,
                            'zeros'))
                        value_parts.append(bilinear_brute_force(
                            x[b, g * value_group:(g + 1) * value_group], col + 0.5, row + 0.5,
                            'zeros'))
                    keys.append(torch.cat(key_parts))
                    values.append(torch.cat(value_parts))
                for h in range(heads):
                    q = query[b, h * key_head:(h + 1) * key_head, i, j]
                    logits = []
                    for p in range(k * k):
                        key_p = keys[p][h * key_head:(h + 1) * key_head]
                        if module.relative_position_bias is not None:
                            key_p = key_p + module.relative_position_bias[0, h, 0, p]
                        logits.append(scale * (q * key_p).sum())
                    weights = torch.stack(logits).softmax(0)
                    out[b, h * value_head:(h + 1) * value_head, i, j] = sum(
                        weights[p] * values[p][h * value_head:(h + 1) * value_head]
                        for p in range(k * k))
    return out


@pytest.mark.parametrize('channels,scale,kwargs,low', SETTINGS)
def test_equals_brute_force_with_gradients(channels, scale, kwargs, low):
    torch.manual_seed(0)
    module = perturbed(LDAAQU(channels, scale, **kwargs).double())
    x = torch.randn(1, channels, *low, dtype=torch.float64, requires_grad=True)
    out = module(x)
    assert out.shape == (1, channels, int(low[0] * scale), int(low[1] * scale))
    names = ['x', *(name for name, _ in module.named_parameters())]
    assert_close_with_gradients(out, lda_aqu_brute_force(module, x), (x, *module.parameters()),
                                names)


@pytest.mark.parametrize('scale,low,expected', [
    (1.5, (7, 9), (10, 13)), (3.0, (5, 4), (15, 12)), (1.1, (10, 3), (11, 3)),
    (2.5, (1, 1), (2, 2)), (1.5, (1, 3), (1, 4)), (1, (3, 2), (3, 2))])
def test_fractional_scales_give_int_of_the_product(scale, low, expected):
    """``int(H * s)`` as the authors compute it (truncation, float arithmetic included)."""
    module = LDAAQU(8, scale, reduction_factor=2)
    out = module(torch.randn(1, 8, *low))
    assert tuple(out.shape[-2:]) == expected == (int(low[0] * scale), int(low[1] * scale))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('scale,size', [(2, (5, 7)), (1.5, (4, 5)), (3, (14, 12))])
def test_size_keeps_top_left_window_of_the_full_output(scale, size):
    """A host size is the top-left window of the full ``int(H s)`` output (positions normalised
    by the full grid, as the authors' FPN_LAU crops), gradients included."""
    torch.manual_seed(0)
    module = perturbed(LDAAQU(8, scale, reduction_factor=2).double())
    x = torch.randn(2, 8, 5, 4, dtype=torch.float64, requires_grad=True)
    full = module(x)
    cropped = module(x, size=size)
    torch.testing.assert_close(cropped, full[..., :size[0], :size[1]], atol=1e-13, rtol=0)
    # an unguided upsampler takes only the size of a guide
    torch.testing.assert_close(module(x, torch.zeros(2, 3, *size, dtype=torch.float64)), cropped)
    grad = torch.randn_like(cropped)
    padded = F.pad(grad, (0, full.shape[-1] - size[1], 0, full.shape[-2] - size[0]))
    torch.testing.assert_close(torch.autograd.grad(cropped, x, grad)[0],
                               torch.autograd.grad(full, x, padded)[0], atol=1e-12, rtol=0)


def test_size_beyond_the_full_output_is_refused():
    module = LDAAQU(8, 1.5, reduction_factor=2)
    with pytest.raises(ValueError, match=r'size=\(11, 6\) is not reachable .* \(10x6\)'):
        module(torch.randn(1, 8, 7, 4), size=(11, 6))


def test_fast_path_equals_reference_in_the_module():
    torch.manual_seed(0)
    module = perturbed(LDAAQU(16, 2, num_heads=2, offset_groups=4).double())
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    results = []
    for impl in ('reference', 'tiled'):
        x_leaf = x.clone().requires_grad_()
        with use_implementation(impl):
            out = module(x_leaf, size=(9, 12))
        grads = torch.autograd.grad(out, (x_leaf, *module.parameters()), torch.ones_like(out))
        results.append((out, *grads))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_fresh_offsets_lie_on_the_grid():
    """The last offset conv starts at zero, so every point starts on the k_u x k_u grid."""
    module = LDAAQU(16, 2).double()
    query = torch.randn(2, module.hidden_channels, 6, 8, dtype=torch.float64)
    offsets = module.offsets(query)
    grid = module.point_grid(torch.float64, 'cpu').view(1, 1, 9, 2, 1, 1)
    torch.testing.assert_close(offsets, grid.expand_as(offsets), atol=0, rtol=0)


def test_init_statistics():
    """The authors' init_weights (their neck calls it; our constructor does): xavier-uniform
    convs (U(-a, a), a = sqrt(6 / (fan_in + fan_out)): std a / sqrt(3) within 5 %, bound
    respected), LayerNorm (1, 0), last offset conv exactly 0, key bias trunc-normal std 0.02;
    at the detector's 256 channels."""
    torch.manual_seed(0)
    module = LDAAQU(256, 2)
    for conv in (module.query, module.key, module.offset_depthwise):
        weight = conv.weight
        receptive = weight[0, 0].numel()
        bound = (6 / ((weight.shape[1] + weight.shape[0]) * receptive)) ** 0.5
        assert weight.abs().max().item() <= bound
        assert weight.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.05)
        assert abs(weight.mean().item()) < 4 * bound / (3 * weight.numel()) ** 0.5
    assert not module.offset_project.weight.any() and not module.offset_project.bias.any()
    for norm in (module.norm, module.offset_norm):
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert not norm.bias.any()
    table = module.relative_position_bias
    assert table.shape == (1, 1, 1, 9, 64)
    assert table.std().item() == pytest.approx(0.02, rel=0.1)
    assert abs(table.mean().item()) < 4 * 0.02 / table.numel() ** 0.5


def test_parameter_count_of_the_papers_module():
    """The detector's module (FPN_LAU at 256 channels, all defaults)."""
    module = build_upsampler(dict(type='LDAAQU', in_channels=256, scale_factor=2,
                                  guide_channels=256))
    # 2 x 256 x 64 (q, k) + 32 x 9 (depthwise) + 2 x 32 (norm) + 18 x 32 x 9 + 18 + 2 x 256
    # + 9 x 64 (key bias)
    assert sum(p.numel() for p in module.parameters()) == 32768 + 288 + 64 + 5202 + 512 + 576


def test_official_arguments_are_all_mapped_and_unknown_ones_refused():
    state = LDAAQU(16, 3.0, reduction_factor=2, num_heads=2, encoder_kernel=1, up_kernel=5,
                   offset_groups=4, offset_range=4.0, key_bias=True).state_dict()
    official = {'relative_position_bias_table': state['relative_position_bias'],
                'proj_q.weight': state['query.weight'], 'proj_k.weight': state['key.weight'],
                'conv_offset.0.weight': state['offset_depthwise.weight'],
                'conv_offset.1.norm.weight': state['offset_norm.weight'],
                'conv_offset.1.norm.bias': state['offset_norm.bias'],
                'conv_offset.3.weight': state['offset_project.weight'],
                'conv_offset.3.bias': state['offset_project.bias'],
                'layer_norm.norm.weight': state['norm.weight'],
                'layer_norm.norm.bias': state['norm.bias']}
    kwargs = dict(in_channels=16, reduction_factor=2, nh=2, scale_factor=3.0, k_e=1, k_u=5,
                  n_groups=4, range_factor=4.0, rpb=True)
    module = convert_official('fpn_lau.LDA_AQU', kwargs, official).module
    assert (module.scale_factor, module.num_heads, module.encoder_kernel, module.up_kernel,
            module.offset_groups, module.offset_range) == (3, 2, 1, 5, 4, 4.0)
    with pytest.raises(TypeError, match='n_heads'):
        convert_official('fpn_lau.LDA_AQU', dict(kwargs, n_heads=2), official)


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(scale_factor=0.5), ValueError, 'scale_factor must be a finite number >= 1, got 0.5'),
    (dict(scale_factor='2'), TypeError, "scale_factor must be a number >= 1 such as 1.5 or 2"),
    (dict(up_kernel=4), ValueError, 'up_kernel must be odd'),
    (dict(encoder_kernel=2), ValueError, 'encoder_kernel must be odd'),
    (dict(in_channels=24, num_heads=4), ValueError,
     r'in_channels=24 must be divisible by reduction_factor \* num_heads=16'),
    (dict(in_channels=20, offset_groups=2), ValueError,
     r'in_channels=20 must be divisible by reduction_factor \* offset_groups=8'),
    (dict(offset_range=-1.0), ValueError, 'offset_range must be a number >= 0'),
    (dict(key_bias=1), TypeError, 'key_bias must be True or False'),
])
def test_bad_arguments_are_named(kwargs, error, match):
    arguments = dict(in_channels=16)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        LDAAQU(**arguments)


def test_memory_format_and_dtype_conversions_keep_the_official_key_bias():
    """``module.to(memory_format=torch.channels_last)`` works despite the official 5-D table,
    which keeps its shape, values and identity through conversions."""
    module = LDAAQU(16, 2)
    table = module.relative_position_bias
    values = table.detach().clone()
    module.to(memory_format=torch.channels_last)
    module.double()
    assert module.relative_position_bias is table
    assert table.shape == (1, 1, 1, 9, 4) and table.dtype == torch.float64
    torch.testing.assert_close(table.detach(), values.double())


@pytest.mark.parametrize('upsampler_init', ['own', 'neck'])
def test_fpn_carafe_neck_initialisation(upsampler_init):
    """In the authors' FPN_LAU topology, 'own' keeps LDA-AQU's zero last offset conv after the
    neck's Xavier (what FPN_LAU.init_weights leaves); 'neck' re-draws it like every conv."""
    pytest.importorskip('mmdet')
    from mmdynup.det import FPNCARAFEWithUpsampler
    torch.manual_seed(0)
    neck = FPNCARAFEWithUpsampler([8, 16, 32, 64], 16, 5, upsampler_init=upsampler_init,
                                  upsample_cfg=dict(type='LDAAQU', reduction_factor=2))
    neck.init_weights()
    assert len(neck.upsamplers) == 4
    zero = [not up.offset_project.weight.any() for up in neck.upsamplers]
    assert zero == [upsampler_init == 'own'] * 4
    features = tuple(torch.randn(1, c, s, s + 1) for c, s in zip([8, 16, 32, 64], [25, 13, 7, 4]))
    assert [tuple(out.shape[-2:]) for out in neck(features)] == [
        (25, 26), (13, 14), (7, 8), (4, 5), (2, 3)]
