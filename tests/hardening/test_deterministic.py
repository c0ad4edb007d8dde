"""Deterministic mode: under ``torch.use_deterministic_algorithms(True)`` every registered
upsampler runs, and two runs give bit-identical outputs and gradients.

On CUDA ``grid_sample``'s backward has no deterministic kernel (pytorch issue 68959), so the
point-sampling operators (DySample, SAPA-deform, LDA-AQU, FRFU, FreqFusion) switch to our own
backward there (:func:`mmdynup.ops.point_sampling.sampling_backward`). On the CPU that switch is
exercised by making ``sampling_backward`` answer as it does on CUDA in deterministic mode.
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmdynup.ops import point_sampling

from .upsampler_inputs import UPSAMPLERS, build, make_inputs, run

#: The operators that read their input by bilinear point sampling, with the arguments that make
#: them sample (FreqFusion only with its resampler).
POINT_SAMPLING = {'DySample': {}, 'DySamplePlus': {}, 'DySampleS': {}, 'DySampleSPlus': {},
                  'SAPADeform': {}, 'LDAAQU': {}, 'FRFU': {}, 'FreqFusion': {'feature_resample': True}}
#: Those whose sampling goes through point_sampling (SAPA-deform's fused deformable attention
#: samples by its own gathers, see mmdynup.ops.deformable_attention).
THROUGH_POINT_SAMPLE = ['DySample', 'DySamplePlus', 'DySampleS', 'DySampleSPlus', 'LDAAQU',
                        'FRFU', 'FreqFusion']


class AtenCalls(TorchDispatchMode):
    """Names of the ATen ops run inside the block (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.__name__.split('.')[0])
        return func(*args, **(kwargs or {}))


@pytest.fixture
def deterministic_mode():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def output_and_gradients(name, **arguments):
    """Output and gradients (input, guide, every parameter) of a fixed loss, from a fresh
    module with seeded perturbed parameters (so that zero-initialised offset layers matter)."""
    torch.manual_seed(0)
    upsampler = build(name, **arguments)
    with torch.no_grad():
        for parameter in upsampler.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    x, guide = make_inputs(upsampler)
    leaves = [x.requires_grad_()] + ([guide.requires_grad_()] if guide is not None else [])
    out = run(upsampler, x, guide)
    weights = torch.linspace(-1, 1, out.numel()).view(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), leaves + list(upsampler.parameters()),
                                allow_unused=True)
    return [out, *[grad for grad in grads if grad is not None]]


def assert_bit_identical(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize('name', UPSAMPLERS)
def test_two_runs_are_bit_identical(name, deterministic_mode):
    assert_bit_identical(output_and_gradients(name), output_and_gradients(name))


def test_every_point_sampling_operator_is_listed():
    assert set(POINT_SAMPLING) <= set(UPSAMPLERS)
    assert set(THROUGH_POINT_SAMPLE) <= set(POINT_SAMPLING)


@pytest.mark.parametrize('name', list(POINT_SAMPLING))
def test_point_sampling_switches_to_our_backward(name, deterministic_mode, monkeypatch):
    """With the switch answering as on CUDA in deterministic mode, no grid-sampler or bilinear
    interpolation backward runs (ours does, for the operators that sample through
    point_sampling), two runs are bit-identical and the gradients are those of ATen's kernels."""
    arguments = POINT_SAMPLING[name]
    fused = output_and_gradients(name, **arguments)
    calls = []
    ours = point_sampling.deterministic_sampling_backward

    def recorded(*args, **kwargs):
        calls.append(args[1].shape)
        return ours(*args, **kwargs)

    # As on CUDA: no C++ CPU kernel (those are deterministic themselves, see
    # test_two_runs_are_bit_identical), the PyTorch fast paths.
    monkeypatch.setenv('MMDYNUP_NATIVE', '0')
    monkeypatch.setattr(point_sampling, 'sampling_backward', lambda device: 'deterministic')
    monkeypatch.setattr(point_sampling, 'deterministic_sampling_backward', recorded)
    with AtenCalls() as aten:
        first = output_and_gradients(name, **arguments)
    # Neither backward raises on CUDA in deterministic mode (pytorch issue 68959).
    assert not aten.names & {'grid_sampler_2d_backward', 'upsample_bilinear2d_backward'}
    assert bool(calls) == (name in THROUGH_POINT_SAMPLE)
    assert_bit_identical(first, output_and_gradients(name, **arguments))
    for switched, reference in zip(first, fused):  # float32: other sum orders and positions
        assert (switched - reference).norm() <= 1e-4 * reference.norm() + 1e-6


#: Backward ops with no deterministic CUDA kernel (they raise there in deterministic mode), as
#: listed by ``torch.use_deterministic_algorithms``' documentation.
CUDA_NONDETERMINISTIC_BACKWARDS = {
    'grid_sampler_2d_backward', 'upsample_bilinear2d_backward', 'upsample_bicubic2d_backward',
    'upsample_linear1d_backward', '_adaptive_avg_pool2d_backward', 'adaptive_max_pool2d_backward',
    'reflection_pad1d_backward', 'reflection_pad2d_backward', 'replication_pad2d_backward',
    'avg_pool3d_backward', 'max_unpool2d'}
@pytest.mark.parametrize('name', UPSAMPLERS)
def test_no_backward_that_raises_on_cuda_in_deterministic_mode(name, monkeypatch):
    """What runs on CUDA in deterministic mode, seen on the CPU: with the point-sampling switch
    answering as there, no op of CUDA_NONDETERMINISTIC_BACKWARDS runs."""
    monkeypatch.setattr(point_sampling, 'sampling_backward', lambda device: 'deterministic')
    with AtenCalls() as aten:
        output_and_gradients(name)
    assert not aten.names & CUDA_NONDETERMINISTIC_BACKWARDS
