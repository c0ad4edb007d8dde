"""FRFU against a per-pixel brute force of its three steps (gated offsets in output pixels,
border-clamped grouped bilinear resampling, a zero-padded content-aware k x k filter), its init,
its fast path and its argument checks.

Exact agreement with the authors' code is checked by tests/upsamplers/test_official_fixtures.py.
"""
import pytest
import torch
import torch.nn.functional as F

from mmdynup import build_upsampler
from mmdynup.converters import build_from_official, convert_official
from mmdynup.ops.dispatch import use_implementation
from mmdynup.upsamplers.frfu import FRFU
from tests.ops.test_point_sampling import bilinear_brute_force

# (in_channels, scale_factor, groups, sample_k)
SETTINGS = [(8, 2, 4, 3), (4, 3, 1, 5), (6, 1, 2, 3), (4, 2, 2, 1)]


def perturbed(module, std=0.3):
    """Random parameters, so that the gates, offsets, kernels and biases all matter."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(std * torch.randn_like(parameter))
    return module


def frfu_brute_force(module, x):
    """Every output pixel from the formulas of the module docstring, one pixel at a time."""
    batch, channels, height, width = x.shape
    s, groups, k = module.scale_factor, module.groups, module.sample_k
    per_group = channels // groups
    offsets = module.offset(x) * module.offset_mask(x).sigmoid()
    resampled = []
    for b in range(batch):
        pixels = []
        for row in range(s * height):
            for col in range(s * width):
                i, a = divmod(row, s)
                j, c = divmod(col, s)
                values = []
                for g in range(groups):
                    channel = 2 * (g * s * s + a * s + c)
                    px = (col + 0.5 + offsets[b, channel, i, j]) / s
                    py = (row + 0.5 + offsets[b, channel + 1, i, j]) / s
                    values.append(bilinear_brute_force(
                        x[b, g * per_group:(g + 1) * per_group], px, py, 'border'))
                pixels.append(torch.cat(values))
        resampled.append(torch.stack(pixels, dim=1).view(channels, s * height, s * width))
    resampled = torch.stack(resampled)
    logits = module.sample_kernel(resampled) * module.kernel_mask(resampled).sigmoid()
    weights = logits.softmax(dim=1)
    out = torch.zeros_like(resampled)
    radius = k // 2
    for u in range(k):
        for v in range(k):
            shifted = F.pad(resampled, (radius, radius, radius, radius))
            shifted = shifted[..., u:u + s * height, v:v + s * width]
            out = out + weights[:, u * k + v:u * k + v + 1] * shifted
    return out


@pytest.mark.parametrize('channels,scale,groups,sample_k', SETTINGS)
def test_equals_brute_force_with_gradients(channels, scale, groups, sample_k):
    module = perturbed(FRFU(channels, scale, groups=groups, sample_k=sample_k).double())
    x = torch.randn(2, channels, 3, 4, dtype=torch.float64, requires_grad=True)
    out = module(x)
    expected = frfu_brute_force(module, x)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    grad_output = torch.randn_like(out)
    inputs = (x, *module.parameters())
    grads = torch.autograd.grad(out, inputs, grad_output)
    expected_grads = torch.autograd.grad(expected, inputs, grad_output)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=1e-11, rtol=0)


def test_clamped_offset_component_gets_no_gradient():
    """Border mode: a point pushed far outside takes the edge value; its offset gets gradient 0."""
    module = FRFU(4, 2, groups=1, sample_k=1).double()
    with torch.no_grad():
        module.offset.bias.fill_(-50.0)  # every point 25 low-res px up and left of the image
    x = torch.randn(1, 4, 3, 5, dtype=torch.float64)
    out = module(x)
    torch.testing.assert_close(out, x[..., :1, :1].expand_as(out))
    out.sum().backward()
    assert not module.offset.bias.grad.any() and not module.offset.weight.grad.any()


@pytest.mark.parametrize('scale', [1, 2, 3, 4])
def test_zero_offsets_equal_bilinear_interpolation(scale):
    """Zero offsets are bilinear upsampling (align_corners=False); k = 1 makes the filter the
    identity, whatever its (random) kernel convs."""
    module = perturbed(FRFU(8, scale, groups=4, sample_k=1).double())
    with torch.no_grad():
        module.offset.weight.zero_()
        module.offset.bias.zero_()
    x = torch.randn(2, 8, 3, 5, dtype=torch.float64)
    expected = F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False)
    torch.testing.assert_close(module(x), expected, atol=1e-12, rtol=0)


def test_fresh_module_is_bilinear_then_box_filter():
    """At init (gates 0.5, kernel logits ~ 0) FRFU is close to bilinear upsampling followed by a
    zero-padded k x k mean."""
    module = FRFU(64, 2).double()
    x = torch.randn(2, 64, 6, 7, dtype=torch.float64)
    bilinear = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)
    box = F.avg_pool2d(bilinear, 3, stride=1, padding=1, count_include_pad=True)
    torch.testing.assert_close(module(x), box, atol=0.05, rtol=0)


def test_init_statistics():
    """The authors' init_weights: offset N(0, 0.001), sample_kernel N(0, 0.005), gate weights
    and every bias exactly 0 (statistics over the 256-channel FPN module's 16,384 + 2,304
    weights: the standard deviation within 5 %, the mean within 4 standard errors)."""
    torch.manual_seed(0)
    module = FRFU(256, 2)
    for name, std in (('offset', 0.001), ('sample_kernel', 0.005)):
        weight = getattr(module, name).weight
        assert weight.std().item() == pytest.approx(std, rel=0.05), name
        assert abs(weight.mean().item()) < 4 * std / weight.numel() ** 0.5, name
    for name in ('offset_mask', 'kernel_mask'):
        assert not getattr(module, name).weight.any(), name
    for conv in (module.offset, module.offset_mask, module.sample_kernel, module.kernel_mask):
        assert not conv.bias.any()


def test_parameter_counts_of_the_papers_modules():
    """SegFormer head: six modules at 128 channels; FPN_CARAFE neck: four at 256."""
    counts = {channels: sum(p.numel() for p in build_upsampler(dict(
        type='FRFU', in_channels=channels, scale_factor=2, guide_channels=channels)).parameters())
        for channels in (128, 256)}
    assert counts == {128: 10578, 256: 21074}


@pytest.mark.parametrize('scale,size', [(1, (4, 2)), (2, (9, 5)), (3, (14, 7))])
def test_size_keeps_top_left_window_of_the_full_output(scale, size):
    """A smaller ``size`` is the top-left window of the s x output, gradients included (the
    filter still reads the resampled pixels just outside the window)."""
    module = perturbed(FRFU(8, scale, groups=2, sample_k=3).double())
    x = torch.randn(2, 8, 5, 3, dtype=torch.float64, requires_grad=True)
    full = module(x)
    assert full.shape == (2, 8, 5 * scale, 3 * scale)
    cropped = module(x, size=size)
    torch.testing.assert_close(cropped, full[..., :size[0], :size[1]])
    # an unguided upsampler takes only the size of a guide
    torch.testing.assert_close(module(x, torch.zeros(2, 7, *size, dtype=torch.float64)), cropped)
    grad = torch.randn_like(cropped)
    padded_grad = F.pad(grad, (0, full.shape[-1] - size[1], 0, full.shape[-2] - size[0]))
    inputs = (x, *module.parameters())
    for ours, expected in zip(torch.autograd.grad(cropped, inputs, grad),
                              torch.autograd.grad(full, inputs, padded_grad)):
        torch.testing.assert_close(ours, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize('scale,size', [(2, (14, 10)), (2, (13, 9)), (1, (7, 5)), (3, (20, 13))])
def test_fast_filter_equals_reference(scale, size):
    """The whole module on the fast paths (the tap-loop local filter) equals it on the
    references (the unfold): outputs and every gradient, float64, full and cropped sizes."""
    module = perturbed(FRFU(8, scale, groups=2, sample_k=5).double())
    x = torch.randn(2, 8, 7, 5, dtype=torch.float64)
    results = []
    for impl in ('reference', 'tiled'):
        inputs = x.clone().requires_grad_(True)
        with use_implementation(impl):
            out = module(inputs, size=size)
        grad_output = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)
        grads = torch.autograd.grad(out, (inputs, *module.parameters()), grad_output)
        results.append((out, *grads))
    for fast, reference in zip(*results):
        torch.testing.assert_close(fast, reference, atol=1e-12, rtol=0)


def test_gradcheck():
    module = perturbed(FRFU(4, 2, groups=2, sample_k=3).double())
    x = torch.randn(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


def test_bfloat16_module_keeps_its_dtype():
    module = perturbed(FRFU(16, groups=4), std=0.05)
    x = torch.randn(2, 16, 3, 5)
    out = module.bfloat16()(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), module.float()(x), atol=0.05, rtol=0.05)


@pytest.mark.parametrize('kwargs,error,names', [
    (dict(in_channels=6, groups=4), ValueError, ['in_channels=6', 'groups=4']),
    (dict(in_channels=8, sample_k=4), ValueError, ['sample_k', 'odd', 'got 4']),
    (dict(in_channels=8, sample_k=0), ValueError, ['sample_k']),
    (dict(in_channels=8, scale_factor=1.5), ValueError, ['scale_factor', '1.5']),
    (dict(in_channels=8, scale_factor=0), ValueError, ['scale_factor', '>= 1']),
    (dict(in_channels=8, groups='2'), TypeError, ['groups', "'2'"]),
])
def test_bad_construction_names_the_argument(kwargs, error, names):
    with pytest.raises(error) as raised:
        FRFU(**kwargs)
    for name in names:
        assert name in str(raised.value)


def test_converter_maps_every_argument_and_refuses_unknown_ones():
    reference = perturbed(FRFU(12, 3, groups=3, sample_k=5))
    state = {name: tensor.double() for name, tensor in reference.state_dict().items()}
    kwargs = dict(in_channels=12, scale_factor=3, groups=3, sample_k=5)
    conversion = convert_official('frfu.FRFU', kwargs, state)
    module = conversion.module
    assert (module.in_channels, module.scale_factor, module.groups, module.sample_k) == (12, 3,
                                                                                         3, 5)
    assert sorted(conversion.official_names.values()) == sorted(state)
    x = torch.randn(1, 12, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(conversion.official_forward(x=x), reference.double()(x))
    with pytest.raises(TypeError, match='guided'):  # the experiments' config key, not FRFU's
        build_from_official('frfu.FRFU', dict(kwargs, guided=False), state)
    # kwargs that contradict the state_dict: torch's size-mismatch error names the conv.
    with pytest.raises((ValueError, RuntimeError), match='sample_kernel'):
        build_from_official('frfu.FRFU', dict(kwargs, sample_k=3), state)
