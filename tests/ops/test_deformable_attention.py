"""Local deformable attention: the reference against a per-pixel brute force, the fast paths
(point by point; fused, one head per group; the C++ CPU kernel) against the reference (output
and every gradient), the kernel's determinism and fallback, and the op's argument checks.

Tolerances: float64 1e-10 (only summation orders differ); float32 / bfloat16 by the ratio rule
err(fast) <= 2 * err(reference in the same precision) against the float64 reference.
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mmdynup.ops.deformable_attention as deformable_attention
import mmdynup.ops.native as native
from mmdynup.ops.deformable_attention import (FusedDeformableAttention,
                                              LocalDeformableAttention,
                                              NativeDeformableAttention,
                                              local_deformable_attention,
                                              local_deformable_attention_reference)
from mmdynup.ops.dispatch import resolve_implementation, use_implementation
from tests.ops.test_point_sampling import bilinear_brute_force, random_positions

# (batch, D, C, heads, groups, points, low-res (H, W), output (oH, oW), key bias)
CASES = [
    (2, 4, 6, 1, 2, 9, (3, 4), (5, 7), True),
    (1, 8, 8, 2, 4, 4, (4, 3), (6, 6), True),   # heads and groups split the channels differently
    (2, 6, 4, 2, 1, 5, (2, 5), (4, 9), False),
    (1, 2, 2, 1, 1, 3, (1, 1), (1, 2), True),   # a single input pixel: most corners are outside
]
# One head per group: the fused path (SAPA-deform's case).
FUSED_CASES = [
    (2, 4, 6, 2, 2, 9, (3, 4), (5, 7), True),
    (1, 6, 3, 1, 1, 4, (4, 3), (6, 7), False),
    CASES[3],
    (2, 8, 8, 2, 2, 9, (6, 7), (11, 13), True),  # enough pixels for stable maximum errors
]
NAMES = ('output', 'grad query', 'grad key', 'grad value', 'grad positions', 'grad key bias')
#: The fast implementations on CPU: pure PyTorch, and the C++ kernel (built on first use; the
#: development environment has a compiler, so a failing build fails these tests).
FAST = ('tiled', 'native')


def make_inputs(case, dtype=torch.float64, seed=0):
    batch, dim, channels, heads, groups, points, low, out, with_bias = case
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    torch.manual_seed(seed)
    positions = random_positions(batch, groups, (points, *out), *low).to(
        torch.promote_types(dtype, torch.float32))
    bias = randn(heads, points, dim // heads) if with_bias else None
    return dict(query=randn(batch, dim, *out), key=randn(batch, dim, *low),
                value=randn(batch, channels, *low), positions=positions, key_bias=bias,
                num_heads=heads, scale=(dim // heads) ** -0.5), randn(batch, channels, *out)


def run(impl, inputs, grad):
    """Output and every input gradient of one implementation, on clones of the inputs."""
    tensors = {name: value.clone().requires_grad_() for name, value in inputs.items()
               if isinstance(value, torch.Tensor)}
    others = {name: value for name, value in inputs.items() if name not in tensors}
    out = local_deformable_attention(**tensors, **others, impl=impl)
    out.backward(grad)
    order = ('query', 'key', 'value', 'positions', 'key_bias')
    return (out.detach(), *(tensors[name].grad if name in tensors else None for name in order))


def brute_force(query, key, value, positions, num_heads, scale, key_bias=None):
    """Every output pixel from the module docstring's formulas, one pixel and point at a time."""
    batch, dim, out_h, out_w = query.shape
    channels = value.shape[1]
    groups, points = positions.shape[1:3]
    key_group, value_group = dim // groups, channels // groups
    key_head, value_head = dim // num_heads, channels // num_heads
    out = value.new_zeros(batch, channels, out_h, out_w)
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                keys, values = [], []
                for p in range(points):
                    keys.append(torch.cat([bilinear_brute_force(
                        key[b, g * key_group:(g + 1) * key_group], *positions[b, g, p, i, j],
                        'zeros') for g in range(groups)]))
                    values.append(torch.cat([bilinear_brute_force(
                        value[b, g * value_group:(g + 1) * value_group], *positions[b, g, p, i, j],
                        'zeros') for g in range(groups)]))
                for h in range(num_heads):
                    q = query[b, h * key_head:(h + 1) * key_head, i, j]
                    logits = []
                    for p in range(points):
                        k = keys[p][h * key_head:(h + 1) * key_head]
                        if key_bias is not None:
                            k = k + key_bias[h, p]
                        logits.append(scale * (q * k).sum())
                    weights = torch.stack(logits).softmax(0)
                    pixel = sum(weights[p] * values[p][h * value_head:(h + 1) * value_head]
                                for p in range(points))
                    out[b, h * value_head:(h + 1) * value_head, i, j] = pixel
    return out


def assert_close_with_gradients(out, expected, leaves, names=None):
    """Same values (1e-12) and, for one random upstream gradient, the same gradients (1e-11)
    of every leaf."""
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    grad = torch.randn_like(out)
    pairs = zip(torch.autograd.grad(out, leaves, grad), torch.autograd.grad(expected, leaves, grad))
    for index, (got, want) in enumerate(pairs):
        name = names[index] if names else f'leaf {index}'
        torch.testing.assert_close(got, want, atol=1e-11, rtol=0, msg=lambda m: f'{name}: {m}')


@pytest.mark.parametrize('case', CASES)
def test_reference_equals_brute_force_with_gradients(case):
    inputs, _ = make_inputs(case)
    tensors = {name: value.clone().requires_grad_() for name, value in inputs.items()
               if isinstance(value, torch.Tensor)}
    others = {name: value for name, value in inputs.items() if name not in tensors}
    assert_close_with_gradients(local_deformable_attention_reference(**tensors, **others),
                                brute_force(**tensors, **others), tuple(tensors.values()),
                                list(tensors))


@pytest.fixture(params=['one tile', 'one row per tile'])
def fused_tiles(request, monkeypatch):
    """Run a test once with the fused path's default tiles and once with one output row each."""
    if request.param == 'one row per tile':
        monkeypatch.setattr(deformable_attention, 'BAG_TILE_ELEMENTS', 1)
    return request.param


@pytest.mark.parametrize('impl', FAST)
@pytest.mark.parametrize('case', CASES + FUSED_CASES[:2])
def test_fast_equals_reference_float64(case, impl, fused_tiles):
    inputs, grad = make_inputs(case)
    expected = run('reference', inputs, grad)
    result = run(impl, inputs, grad)
    for name, got, want in zip(NAMES, result, expected):
        if want is None:
            assert got is None, name
            continue
        assert got.shape == want.shape and got.dtype == want.dtype, name
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0, msg=name)


def test_fused_gradcheck(monkeypatch):
    """The fused Function's backward is the derivative of its forward (float64, tiny, two tiles
    per group)."""
    monkeypatch.setattr(deformable_attention, 'BAG_TILE_ELEMENTS', 1)
    inputs, _ = make_inputs((1, 4, 2, 2, 2, 3, (3, 3), (3, 4), True))
    tensors = [inputs[name].clone().requires_grad_() for name in
               ('query', 'key', 'value', 'positions', 'key_bias')]
    assert torch.autograd.gradcheck(
        lambda *args: FusedDeformableAttention.apply(*args, inputs['scale']), tensors)


def test_native_gradcheck():
    """The C++ kernel's backward is the derivative of its forward (float64; heads and groups
    split the channels differently; positions reach outside the image)."""
    inputs, _ = make_inputs((1, 4, 6, 2, 1, 3, (3, 3), (3, 4), True))
    tensors = [inputs[name].clone().requires_grad_() for name in
               ('query', 'key', 'value', 'positions', 'key_bias')]
    assert torch.autograd.gradcheck(
        lambda *args: NativeDeformableAttention.apply(*args, 2, inputs['scale']), tensors)


def test_native_is_bit_identical_across_runs_and_thread_counts():
    inputs, grad = make_inputs(FUSED_CASES[3], torch.float32)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 1):
            torch.set_num_threads(count)
            results.append(run('native', inputs, grad))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for name, got, want in zip(NAMES, other, results[0]):
            assert torch.equal(got, want), name


def test_native_falls_back_or_raises_when_disabled(monkeypatch):
    """``MMDYNUP_NATIVE=0``: 'auto' runs the PyTorch fast path; an explicit 'native' raises with
    the reason and the fix."""
    inputs, _ = make_inputs(FUSED_CASES[0])
    monkeypatch.setenv('MMDYNUP_NATIVE', '0')
    assert resolve_implementation(None, inputs['query'], native=True) == 'tiled'
    with pytest.raises(RuntimeError, match='MMDYNUP_NATIVE=0 is set.*impl=.auto'):
        local_deformable_attention(**inputs, impl='native')
    monkeypatch.delenv('MMDYNUP_NATIVE')
    assert resolve_implementation(None, inputs['query'], native=True) == 'native'
    # Ops without a kernel, and 'native' on an op without one, mean 'tiled'.
    assert resolve_implementation('native', inputs['query']) == 'tiled'
    assert resolve_implementation(None, inputs['query']) == 'tiled'


def test_native_build_key_follows_the_sources(monkeypatch, tmp_path):
    """A changed source (or flag) gets another build folder: no stale binary is loaded."""
    key = native.build_key()
    changed = tmp_path / 'deformable_attention.cpp'
    changed.write_bytes(native.SOURCES[0].read_bytes() + b'\n// changed\n')
    monkeypatch.setattr(native, 'SOURCES', (changed,))
    assert native.build_key() != key


@pytest.mark.parametrize('impl', FAST)
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('case', CASES[:2] + FUSED_CASES[3:])
def test_low_precision_ratio_rule(case, dtype, impl):
    inputs, grad = make_inputs(case, dtype)
    exact = run('reference', {name: value.double() if isinstance(value, torch.Tensor) else value
                              for name, value in inputs.items()}, grad.double())
    reference = run('reference', inputs, grad)
    fast = run(impl, inputs, grad)
    for name, fast_value, reference_value, exact_value in zip(NAMES, fast, reference, exact):
        assert fast_value.dtype == reference_value.dtype, name
        fast_error = (fast_value.double() - exact_value).abs().max()
        reference_error = (reference_value.double() - exact_value).abs().max()
        assert fast_error <= 2 * reference_error, (name, fast_error, reference_error)


@pytest.mark.parametrize('impl', FAST)
@pytest.mark.parametrize('needed', [('value',), ('query', 'key_bias'), ('positions',)])
def test_partial_gradients(needed, impl):
    """Only the requested gradients are computed, and they equal the reference's."""
    inputs, grad = make_inputs(CASES[0])
    results = []
    for impl in ('reference', impl):
        tensors = {name: value.clone().requires_grad_(name in needed)
                   for name, value in inputs.items() if isinstance(value, torch.Tensor)}
        out = local_deformable_attention(**tensors, num_heads=1, scale=0.5, impl=impl)
        results.append(torch.autograd.grad(out, [tensors[name] for name in needed], grad))
    for got, want in zip(*results[::-1]):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


@pytest.mark.parametrize('case,function,impl', [
    (CASES[0], LocalDeformableAttention, 'tiled'),
    (FUSED_CASES[0], FusedDeformableAttention, 'tiled'),
    (CASES[0], NativeDeformableAttention, 'auto'),  # the CPU default: the C++ kernel
    (FUSED_CASES[0], NativeDeformableAttention, 'auto'),
])
def test_switch_selects_the_fast_path(case, function, impl, monkeypatch):
    inputs, _ = make_inputs(case)
    calls = []
    apply = function.apply
    monkeypatch.setattr(function, 'apply', lambda *args: calls.append(1) or apply(*args))
    with use_implementation(impl):
        local_deformable_attention(**inputs)
    with use_implementation('reference'):
        local_deformable_attention(**inputs)
    assert calls == [1]


@pytest.mark.parametrize('groups', [2, 1])  # heads != groups: point by point; else fused
def test_fast_path_never_holds_all_points(groups, monkeypatch):
    """The fast forward's largest intermediate is one sampled map (point by point) or the
    output (fused, one output row per tile), not the P-point stack."""
    monkeypatch.setattr(deformable_attention, 'BAG_TILE_ELEMENTS', 1)
    inputs, _ = make_inputs((1, 4, 16, 1, groups, 9, (6, 6), (12, 12), True))
    sizes = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and not func.is_view:  # views allocate nothing
                sizes.append(out.numel())
            return out

    with torch.no_grad(), Watch():
        local_deformable_attention(**inputs, impl='tiled')
    assert max(sizes) == 16 * 12 * 12  # one (C, oH, oW) map; the reference's stack is 9 times it


@pytest.mark.parametrize('change,match', [
    (dict(key=torch.zeros(2, 5, 3, 4)), 'key must be'),
    (dict(value=torch.zeros(2, 6, 3, 3)), 'value must be'),
    (dict(positions=torch.zeros(2, 2, 9, 5, 7)), 'positions must be'),
    (dict(num_heads=4), 'divisible'),
    (dict(key_bias=torch.zeros(1, 8, 4)), 'key_bias must be'),
])
def test_bad_arguments_are_named(change, match):
    inputs, _ = make_inputs(CASES[0])
    inputs.update(change)
    with pytest.raises(ValueError, match=match):
        local_deformable_attention(**inputs)
