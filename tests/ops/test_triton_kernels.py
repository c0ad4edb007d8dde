"""Triton kernels (reassembly, SAPA similarity, point sampling) against the references.

Without a CUDA device they run through Triton's interpreter: this file sets
``TRITON_INTERPRET=1`` before anything imports ``triton`` (Triton reads it when its own and our
kernels are defined). Shapes are tiny because the interpreter is slow, and there the channel
chunk is cut to a few channels so that chunk edges are crossed. On a CUDA machine the same tests
run the compiled kernels with the shipped tile sizes (``tools/gpu_check.sh``).
"""
import os
import sys

import pytest
import torch

if not torch.cuda.is_available() and 'triton' not in sys.modules:
    os.environ.setdefault('TRITON_INTERPRET', '1')

from mmdynup.ops.dispatch import resolve_implementation, triton_available  # noqa: E402
from mmdynup.ops.local_similarity import local_similarity_reference  # noqa: E402
from mmdynup.ops.point_sampling import point_sample_reference  # noqa: E402
from mmdynup.ops.reassembly import Reassembly, reassemble, reassemble_reference  # noqa: E402
from mmdynup.ops.similarity_kernels import LocalSimilarity, fast_local_similarity  # noqa: E402

from .test_point_sampling import random_positions  # noqa: E402

pytestmark = pytest.mark.skipif(not triton_available(), reason='triton is not installed')

if triton_available():
    import triton
    import triton.language as tl

    from mmdynup.ops.triton_kernels import _round_to

    @triton.jit
    def cast_kernel(source_ptr, target_ptr, size, BLOCK: tl.constexpr):
        """Stores ``source`` in ``target``'s dtype through :func:`_round_to`."""
        index = tl.arange(0, BLOCK)
        value = tl.load(source_ptr + index, mask=index < size)
        tl.store(target_ptr + index, _round_to(value, target_ptr.dtype.element_ty),
                 mask=index < size)


def interpreter_active() -> bool:
    """Whether Triton itself was imported in interpreter mode (its ``tl`` helpers are
    interpreted), not merely whether the variable is set now."""
    import triton.language as tl
    return type(tl.zeros).__name__ == 'InterpretedFunction'


def kernels_module():
    import mmdynup.ops.triton_kernels as triton_kernels
    return triton_kernels


@pytest.fixture(params=['interpreter', 'cuda'])
def device(request, monkeypatch):
    if request.param == 'interpreter' and not interpreter_active():
        pytest.skip('CUDA machine: the compiled kernels are tested' if torch.cuda.is_available()
                    else 'triton was imported before TRITON_INTERPRET=1 could be set: run this '
                         'file on its own')
    if request.param == 'cuda' and (interpreter_active() or not torch.cuda.is_available()):
        pytest.skip('needs a CUDA device and compiled (not interpreted) Triton')
    if request.param == 'interpreter':
        monkeypatch.setattr(kernels_module(), 'CHANNELS_PER_PROGRAM', 4)
    return torch.device('cpu' if request.param == 'interpreter' else 'cuda')


# (batch, channels, groups, low-res (H, W), output (oH, oW), kernel_size, scale_factor)
CASES = [
    (2, 6, 2, (3, 4), (6, 7), 3, 2),     # odd output, two groups, a partial channel chunk
    (1, 9, 1, (2, 3), (4, 6), 5, 2),     # k = 5: taps padded 25 -> 32
    (3, 2, 2, (2, 2), (7, 8), 3, 4),     # scale 4 (window 144 -> 256), batch 3
    (1, 3, 1, (3, 4), (3, 4), 3, 1),     # scale 1: the local filter (ops/local_filter.py)
]
# (batch, channels, groups, (H, W), points, padding_mode)
POINT_CASES = [
    (2, 6, 2, (4, 5), (3, 7), 'zeros'),
    (1, 5, 1, (3, 2), (2, 2, 5), 'border'),  # several points dimensions
]


def make_inputs(case, device, dtype=torch.float64):
    batch, channels, groups, low, out, kernel_size, _ = case
    generator = torch.Generator().manual_seed(0)
    tensors = dict(
        x=torch.randn(batch, channels, *low, generator=generator, dtype=torch.float64),
        kernels=torch.randn(batch, groups, kernel_size ** 2, *out, generator=generator,
                            dtype=torch.float64).softmax(2),
        grad=torch.randn(batch, channels, *out, generator=generator, dtype=torch.float64),
        logit_grad=torch.randn(batch, kernel_size ** 2, *out, generator=generator,
                               dtype=torch.float64))
    return {name: value.to(device, dtype) for name, value in tensors.items()}


def make_point_inputs(case, device, dtype=torch.float64):
    """x and the upstream gradient in ``dtype``; positions in at least float32 (as
    :func:`mmdynup.ops.point_sampling.subpixel_positions` makes them)."""
    batch, channels, groups, (height, width), points, _ = case
    torch.manual_seed(0)
    positions = random_positions(batch, groups, points, height, width)
    x = torch.randn(batch, channels, height, width, dtype=torch.float64)
    grad = torch.randn(batch, groups, channels // groups, *points, dtype=torch.float64)
    return dict(x=x.to(device, dtype), grad=grad.to(device, dtype),
                positions=positions.to(device, torch.promote_types(dtype, torch.float32)))


def reassembly_results(impl, inputs, case):
    x = inputs['x'].clone().requires_grad_()
    kernels = inputs['kernels'].clone().requires_grad_()
    out = reassemble(x, kernels, *case[-2:], impl=impl)
    out.backward(inputs['grad'])
    return out.detach(), x.grad, kernels.grad


def similarity_results(impl, inputs, case):
    query = inputs['grad'].clone().requires_grad_()  # (B, d, oH, oW) with d = channels
    key = inputs['x'].clone().requires_grad_()
    if impl == 'reference':
        logits = local_similarity_reference(query, key, *case[-2:])
    else:
        logits = fast_local_similarity(query, key, *case[-2:], impl)
    logits.backward(inputs['logit_grad'])
    return logits.detach(), query.grad, key.grad


def point_sampling_results(impl, inputs, case):
    groups, padding_mode = case[2], case[-1]
    if impl == 'reference':
        x = inputs['x'].clone().requires_grad_()
        positions = inputs['positions'].clone().requires_grad_()
        out = point_sample_reference(x, positions, groups, padding_mode)
        out.backward(inputs['grad'])
        return out.detach(), x.grad, positions.grad
    sampling = kernels_module().TritonPointSampling
    out = sampling.sample(inputs['x'], inputs['positions'], groups, padding_mode)
    return (out, *sampling.gradients(inputs['grad'], inputs['x'], inputs['positions'], groups,
                                     padding_mode))


OPS = [(reassembly_results, make_inputs, CASES), (similarity_results, make_inputs, CASES),
       (point_sampling_results, make_point_inputs, POINT_CASES)]
FLOAT64_CASES = [pytest.param(results, make, case, id=f'{results.__name__}-{index}')
                 for results, make, cases in OPS for index, case in enumerate(cases)]


@pytest.mark.parametrize('results,make,case', FLOAT64_CASES)
def test_float64_matches_reference(results, make, case, device):
    inputs = make(case, device)
    expected = results('reference', inputs, case)
    for got, want in zip(results('triton', inputs, case), expected):
        assert got.shape == want.shape and got.dtype == want.dtype
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('results,make,case', [(results, make, cases[0])
                                               for results, make, cases in OPS],
                         ids=[results.__name__ for results, _, _ in OPS])
def test_low_precision_ratio_rule(results, make, case, dtype, device):
    """err(Triton) <= 2 err(reference in the same precision), outputs and every gradient."""
    inputs = make(case, device, dtype)
    exact = results('reference', {name: value.double() for name, value in inputs.items()}, case)
    reference = results('reference', inputs, case)
    for fast_value, reference_value, exact_value in zip(
            results('triton', inputs, case), reference, exact):
        assert fast_value.dtype == reference_value.dtype
        fast_error = (fast_value.double() - exact_value).abs().max()
        reference_error = (reference_value.double() - exact_value).abs().max()
        assert fast_error <= 2 * reference_error, (fast_error, reference_error)


@pytest.mark.parametrize('splits', [2, 3])
def test_kernel_grad_channel_splits(splits, device):
    """Split channel sums (the GPU fills its multiprocessors this way) give the same gradient;
    3 splits of 6 channels in 2 groups leave one channel per split."""
    from mmdynup.ops.triton_kernels import reassemble_kernel_grad
    case = CASES[0]
    inputs = make_inputs(case, device)
    expected = reassemble_kernel_grad(inputs['x'], inputs['grad'], *case[-2:], case[2], splits=1)
    got = reassemble_kernel_grad(inputs['x'], inputs['grad'], *case[-2:], case[2], splits=splits)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_bfloat16_rounding_is_to_nearest_even(device):
    """:func:`_round_to` against torch's float32 -> bfloat16 cast: ties, carries into the
    exponent, overflow to infinity, subnormals, infinities and NaN."""
    bits = torch.tensor([0x3F808000, 0x3F818000, 0x3F80FFFF, 0x3FFFFFFF, 0x7F7FFFFF, 0x00018000,
                         0xBF808001, 0x7F800000, 0xFF800000, 0x7FC00000, 0x00000000, 0x80000000],
                        dtype=torch.int64).to(torch.int32)
    source = bits.view(torch.float32).to(device)
    target = torch.empty(source.shape, dtype=torch.bfloat16, device=device)
    cast_kernel[(1,)](source, target, source.numel(), BLOCK=16)
    expected = source.to(torch.bfloat16)
    assert torch.equal(target.isnan(), expected.isnan())
    finite = ~expected.isnan()
    assert torch.equal(target[finite].view(torch.int16), expected[finite].view(torch.int16))


def test_gradcheck(device):
    """Fast-mode gradcheck (a few random directions) keeps the interpreter quick."""
    primitives = kernels_module().TritonPrimitives
    inputs = make_inputs((1, 3, 1, (2, 3), (4, 5), 3, 2), device)
    x = inputs['x'].requires_grad_()
    kernels = inputs['kernels'].requires_grad_()
    query = inputs['grad'].requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: Reassembly.apply(a, b, 3, 2, primitives), (x, kernels), fast_mode=True)
    assert torch.autograd.gradcheck(
        lambda q, k: LocalSimilarity.apply(q, k, 3, 2, primitives), (query, x), fast_mode=True)


def test_auto_picks_triton_on_cuda_only(device):
    inputs = make_inputs(CASES[0], device)
    out = reassemble(inputs['x'], inputs['kernels'].requires_grad_(), 3, 2)
    assert type(out.grad_fn).__name__ == 'ReassemblyBackward'
    torch.testing.assert_close(out, reassemble_reference(inputs['x'], inputs['kernels'], 3, 2),
                               atol=1e-10, rtol=0)
    expected = 'triton' if device.type == 'cuda' else 'tiled'
    assert resolve_implementation(None, inputs['x']) == expected


@pytest.mark.parametrize('padding_mode', ['zeros', 'border'])
def test_point_sample_dispatches_triton_when_named(padding_mode, device):
    """point_sample / subpixel_point_sample with impl='triton' run PointSample on the Triton
    kernels (outputs and both gradients equal the reference's); 'auto' keeps ATen's kernels on
    CUDA (the Triton ones are not yet measured on a GPU)."""
    from mmdynup.ops import point_sampling
    from mmdynup.ops.point_sampling import point_sample, subpixel_point_sample
    calls = []
    sampling = kernels_module().TritonPointSampling
    original = sampling.sample

    def recorded(*args):
        calls.append(1)
        return original(*args)

    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 4, dtype=torch.float64, device=device)
    positions = random_positions(2, 2, (3, 5), 3, 4).to(device)
    offsets = 1.5 * torch.randn(2, 2, 3, 2, 4, 2, 2, dtype=torch.float64, device=device)
    cases = [(lambda a, b, impl: point_sample(a, b, 2, padding_mode, impl=impl), positions),
             (lambda a, b, impl: subpixel_point_sample(a, b, 2, (5, 7), 2, padding_mode,
                                                       impl=impl), offsets)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sampling, 'sample', staticmethod(recorded))
        for function, where in cases:
            results = []
            for impl in ('reference', 'triton'):
                leaves = (x.clone().requires_grad_(), where.clone().requires_grad_())
                out = function(*leaves, impl)
                grad = torch.linspace(-1, 1, out.numel(), dtype=out.dtype,
                                      device=device).view_as(out)
                results.append((out, *torch.autograd.grad(out, leaves, grad)))
            for got, want in zip(*results[::-1]):
                torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    assert len(calls) == 2
    expected = 'tiled' if device.type == 'cuda' else 'native'
    assert point_sampling.point_sample_implementation(None, x, positions) == expected
