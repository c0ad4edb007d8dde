"""Fast local similarity (SAPA) against ``local_similarity_reference``, forward and gradients.

Tolerances as in ``test_reassembly_fast``: float64 to 1e-10, float32 / bfloat16 by the ratio
rule err(fast) <= 2 * err(reference in the same precision) against float64.
"""
import pytest
import torch

from torch.autograd.graph import saved_tensors_hooks

import mmdynup.ops.normalized_projection as normalized_projection
import mmdynup.ops.reassembly as reassembly
from mmdynup.ops.dispatch import use_implementation
from mmdynup.ops.local_similarity import (local_attention, local_similarity_reference,
                                          normalized_local_similarity)
from mmdynup.ops.reassembly import TiledPrimitives
from mmdynup.ops.similarity_kernels import (LocalSimilarity, NormalizedQuerySimilarity,
                                            fast_local_similarity)

from .test_reassembly_fast import LargestAllocation, assert_ratio_rule

# (batch, embedding d, low-res (H, W), output (oH, oW), kernel_size, scale_factor)
CASES = [
    (2, 5, (5, 7), (10, 14), 5, 2),
    (1, 3, (4, 3), (7, 5), 3, 2),   # odd output
    (3, 4, (3, 5), (12, 20), 5, 4),
    (1, 6, (1, 2), (2, 3), 5, 2),   # most taps read padding
]


def make_inputs(case, dtype=torch.float64, seed=0):
    batch, dim, low, out, kernel_size, _ = case
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, dim, *out, generator=generator, dtype=torch.float64)
    key = torch.randn(batch, dim, *low, generator=generator, dtype=torch.float64)
    grad = torch.randn(batch, kernel_size ** 2, *out, generator=generator, dtype=torch.float64)
    return query.to(dtype), key.to(dtype), grad.to(dtype)


def run(impl, query, key, grad, kernel_size, scale_factor):
    query, key = query.clone().requires_grad_(), key.clone().requires_grad_()
    if impl == 'reference':
        logits = local_similarity_reference(query, key, kernel_size, scale_factor)
    else:
        logits = fast_local_similarity(query, key, kernel_size, scale_factor, impl)
    logits.backward(grad)
    return logits.detach(), query.grad, key.grad


@pytest.mark.parametrize('case', CASES)
def test_float64_matches_reference(case, tile_budget):  # noqa: F811
    query, key, grad = make_inputs(case)
    expected = run('reference', query, key, grad, *case[-2:])
    result = run('tiled', query, key, grad, *case[-2:])
    for name, got, want in zip(('logits', 'grad query', 'grad key'), result, expected):
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0, msg=name)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('case', CASES[:3])
def test_low_precision_ratio_rule(case, dtype):
    query, key, grad = make_inputs(case, dtype)
    exact = run('reference', query.double(), key.double(), grad.double(), *case[-2:])
    reference = run('reference', query, key, grad, *case[-2:])
    fast = run('tiled', query, key, grad, *case[-2:])
    assert_ratio_rule(fast, reference, exact, ('logits', 'grad query', 'grad key'), dtype)


def test_gradcheck_tiled_function(monkeypatch):
    monkeypatch.setattr(reassembly, 'CPU_TILE_ELEMENTS', 1)
    query, key, _ = make_inputs((2, 3, (3, 4), (5, 8), 3, 2))
    assert torch.autograd.gradcheck(
        lambda q, k: LocalSimilarity.apply(q, k, 3, 2, TiledPrimitives),
        (query.requires_grad_(), key.requires_grad_()))


def test_reference_choice_returns_none_for_the_caller():
    query, key, _ = make_inputs(CASES[0])
    assert fast_local_similarity(query, key, 5, 2, 'reference') is None
    with use_implementation('reference'):
        assert fast_local_similarity(query, key, 5, 2) is None


def test_local_attention_fast_equals_reference():
    """SAPA's whole step (similarity, softmax, reassembly) on both paths."""
    query, key, _ = make_inputs(CASES[2])
    value = torch.randn(3, 7, *key.shape[-2:], dtype=torch.float64)
    outputs = {}
    for impl in ('reference', 'tiled'):
        inputs = [t.clone().requires_grad_() for t in (query, key, value)]
        out = local_attention(*inputs, 5, 4, impl=impl)
        out.backward(torch.ones_like(out))
        outputs[impl] = [out] + [t.grad for t in inputs]
    for got, want in zip(outputs['tiled'], outputs['reference']):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_no_tensor_larger_than_its_operands(tile_budget):  # noqa: F811
    """No (B, d, k*k, oH, oW) tensor: the largest allocation stays within 2x the largest
    operand (logits, query or key), forward and backward."""
    query, key, grad = make_inputs((2, 16, (12, 12), (24, 24), 5, 2), torch.float32)
    with LargestAllocation() as recorder:
        fast_local_similarity(query.requires_grad_(), key.requires_grad_(), 5, 2,
                              'tiled').backward(grad)
    assert recorder.largest <= 2 * max(query.numel(), key.numel(), grad.numel())


# --- LayerNorm'd query (SAPA-I) ------------------------------------------------------------------

def normalized_run(impl, query, key, grad, affine, case):
    """Logits and the gradients of query, key and the LayerNorm affine parameters."""
    kernel_size, scale_factor = case[-2:]
    generator = torch.Generator().manual_seed(1)
    leaves = [query, key] + ([torch.randn(query.shape[1], generator=generator,
                                          dtype=query.dtype) for _ in range(2)]
                             if affine else [])
    leaves = [leaf.clone().requires_grad_() for leaf in leaves]
    weight, bias = leaves[2:] if affine else (None, None)
    logits = normalized_local_similarity(leaves[0], weight, bias, 1e-5, leaves[1], kernel_size,
                                         scale_factor, impl)
    logits.backward(grad)
    return [logits.detach()] + [leaf.grad for leaf in leaves]


@pytest.mark.parametrize('chunks', ['one chunk', 'one pixel per chunk'])
@pytest.mark.parametrize('affine', [True, False])
@pytest.mark.parametrize('case', CASES[:3])
def test_normalized_query_float64_matches_reference(case, affine, chunks, monkeypatch):
    if chunks == 'one pixel per chunk':
        monkeypatch.setattr(normalized_projection, 'CHUNK_ELEMENTS', 1)
    query, key, grad = make_inputs(case)
    query = 3 * query + 1  # off-centre: the statistics matter
    for index, (got, want) in enumerate(zip(
            normalized_run('tiled', query, key, grad, affine, case),
            normalized_run('reference', query, key, grad, affine, case))):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0, msg=str(index))


def test_normalized_query_gradcheck():
    query, key, _ = make_inputs(CASES[1])
    weight, bias = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    leaves = [tensor.requires_grad_() for tensor in (query, weight, bias, key)]
    assert torch.autograd.gradcheck(
        lambda q, w, b, k: NormalizedQuerySimilarity.apply(q, w, b, 1e-5, k, 3, 2,
                                                           TiledPrimitives), leaves)


@pytest.mark.parametrize('impl,normed_saved', [('tiled', False), ('reference', True)])
def test_normalized_query_saves_no_normalised_copy(impl, normed_saved):
    """Every query-sized tensor the fused path saves is the raw query itself; the reference
    keeps the normalised copy too."""
    query, key, _ = make_inputs(CASES[0])
    query.requires_grad_(), key.requires_grad_()
    saved = []
    with saved_tensors_hooks(lambda tensor: saved.append(tensor) or tensor, lambda t: t):
        normalized_local_similarity(query, None, None, 1e-5, key, 5, 2, impl)
    copies = [tensor for tensor in saved if tensor.numel() == query.numel()
              and tensor.untyped_storage().data_ptr() != query.untyped_storage().data_ptr()]
    assert bool(copies) is normed_saved
