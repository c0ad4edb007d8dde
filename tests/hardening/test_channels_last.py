"""channels_last: every upsampler gives the same outputs and gradients for NHWC inputs (and an NHWC
module), and its output is dense in the memory format of ``x`` (docs/hardening.md)."""
import pytest
import torch

from mmdynup.upsamplers.base import memory_format_of

from .upsampler_inputs import UPSAMPLERS, build, make_inputs, run

CHANNELS_LAST = torch.channels_last


def output_and_gradients(upsampler, x, guide):
    upsampler.zero_grad()
    x = x.detach().clone().requires_grad_()
    out = run(upsampler, x, guide)
    (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
    return out, [x.grad] + [parameter.grad.clone() for parameter in upsampler.parameters()]


@pytest.mark.parametrize('module_format', [torch.contiguous_format, CHANNELS_LAST],
                         ids=['nchw-module', 'nhwc-module'])
@pytest.mark.parametrize('name', UPSAMPLERS)
def test_channels_last_inputs_give_the_same_results(name, module_format):
    upsampler = build(name)
    x, guide = make_inputs(upsampler)
    expected, expected_grads = output_and_gradients(upsampler, x, guide)
    upsampler.to(memory_format=module_format)
    out, grads = output_and_gradients(
        upsampler, x.to(memory_format=CHANNELS_LAST),
        None if guide is None else guide.to(memory_format=CHANNELS_LAST))
    assert out.is_contiguous(memory_format=CHANNELS_LAST) and not out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', UPSAMPLERS)
def test_output_is_dense_in_the_memory_format_of_x(name):
    """Also for a cropped output (odd target size) and a guide in the other format."""
    upsampler = build(name)
    x, guide = make_inputs(upsampler, height=5, width=6)
    size = (9, 11)
    if guide is not None:
        guide = guide[..., :size[0], :size[1]]
    out = upsampler(x, guide, size=size)
    assert out.shape[-2:] == size and out.is_contiguous()
    out_nhwc = upsampler(x.to(memory_format=CHANNELS_LAST), guide, size=size)
    assert out_nhwc.is_contiguous(memory_format=CHANNELS_LAST) and not out_nhwc.is_contiguous()
    torch.testing.assert_close(out_nhwc, out, rtol=1e-5, atol=1e-5)
    if guide is not None:
        out_guide_nhwc = upsampler(x, guide.to(memory_format=CHANNELS_LAST), size=size)
        assert out_guide_nhwc.is_contiguous()
        torch.testing.assert_close(out_guide_nhwc, out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('shape, memory_format, expected', [
    ((2, 8, 5, 6), torch.contiguous_format, torch.contiguous_format),
    ((2, 8, 5, 6), CHANNELS_LAST, CHANNELS_LAST),
    ((2, 1, 5, 6), CHANNELS_LAST, torch.contiguous_format),  # C = 1: both layouts at once
    ((2, 8, 1, 1), CHANNELS_LAST, torch.contiguous_format),  # H * W = 1: both layouts at once
])
def test_memory_format_of(shape, memory_format, expected):
    assert memory_format_of(torch.randn(shape).to(memory_format=memory_format)) == expected


def test_memory_format_of_a_strided_view_is_contiguous_format():
    """A view that is dense in neither layout (a crop of an NHWC tensor) gets a plain
    contiguous output."""
    view = torch.randn(2, 8, 10, 12).to(memory_format=CHANNELS_LAST)[..., 1:6, 2:9]
    assert memory_format_of(view) == torch.contiguous_format
