"""Local similarity (SAPA's q-k step) and local attention against brute-force loops."""
import math

import pytest
import torch

from mmdynup.ops.local_similarity import (local_attention, local_similarity,
                                          local_similarity_reference)

# (kernel_size, scale_factor, low-res (H, W), output (oH, oW))
CASES = [
    (3, 2, (3, 4), (6, 8)),
    (5, 2, (3, 4), (5, 7)),  # odd output: top-left window of the 2x grid
    (3, 3, (2, 3), (6, 8)),
    (1, 4, (2, 2), (8, 7)),
    (5, 4, (2, 3), (8, 12)),
]


def brute_force_similarity(query, key, kernel_size, scale_factor):
    """One dot product per (pixel, window position); outside neighbours have logit 0."""
    batch, dim, height, width = key.shape
    out_h, out_w = query.shape[-2:]
    radius = kernel_size // 2
    logits = torch.zeros(batch, kernel_size ** 2, out_h, out_w, dtype=query.dtype)
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                for u in range(kernel_size):
                    for v in range(kernel_size):
                        row = i // scale_factor + u - radius
                        col = j // scale_factor + v - radius
                        if 0 <= row < height and 0 <= col < width:
                            logits[b, u * kernel_size + v, i, j] = (
                                query[b, :, i, j] @ key[b, :, row, col])
    return logits


def brute_force_attention(query, key, value, kernel_size, scale_factor):
    """Softmax over all k * k window positions (outside ones too), weighted sum of values that
    are zero outside the image."""
    batch, channels, height, width = value.shape
    logits = brute_force_similarity(query, key, kernel_size, scale_factor)
    out_h, out_w = query.shape[-2:]
    radius = kernel_size // 2
    out = torch.zeros(batch, channels, out_h, out_w, dtype=value.dtype)
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                exps = [math.exp(logits[b, t, i, j].item()) for t in range(kernel_size ** 2)]
                total = sum(exps)
                for u in range(kernel_size):
                    for v in range(kernel_size):
                        row = i // scale_factor + u - radius
                        col = j // scale_factor + v - radius
                        if 0 <= row < height and 0 <= col < width:
                            weight = exps[u * kernel_size + v] / total
                            out[b, :, i, j] += weight * value[b, :, row, col]
    return out


def _inputs(low, out, dim=3, channels=2, batch=2):
    query = torch.randn(batch, dim, *out, dtype=torch.float64)
    key = torch.randn(batch, dim, *low, dtype=torch.float64)
    value = torch.randn(batch, channels, *low, dtype=torch.float64)
    return query, key, value


@pytest.mark.parametrize('kernel_size,scale_factor,low,out', CASES)
def test_reference_matches_brute_force(kernel_size, scale_factor, low, out):
    query, key, _ = _inputs(low, out)
    expected = brute_force_similarity(query, key, kernel_size, scale_factor)
    result = local_similarity_reference(query, key, kernel_size, scale_factor)
    assert result.shape == (2, kernel_size ** 2, *out)
    torch.testing.assert_close(result, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(local_similarity(query, key, kernel_size, scale_factor), expected,
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize('kernel_size,scale_factor,low,out', CASES[:3])
def test_local_attention_matches_brute_force(kernel_size, scale_factor, low, out):
    query, key, value = _inputs(low, out)
    expected = brute_force_attention(query, key, value, kernel_size, scale_factor)
    torch.testing.assert_close(local_attention(query, key, value, kernel_size, scale_factor),
                               expected, atol=1e-12, rtol=0)


def test_border_neighbours_take_softmax_mass():
    # Zero query: every logit is 0, so a corner pixel spreads 1/k^2 over its window, zeros included.
    key = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    value = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    query = torch.zeros(1, 2, 6, 6, dtype=torch.float64)
    out = local_attention(query, key, value, 3, 2)
    assert out[0, 0, 0, 0].item() == pytest.approx(4 / 9)
    assert out[0, 0, 2, 2].item() == pytest.approx(1.0)


def test_gradcheck():
    query, key, value = _inputs((2, 3), (4, 5), dim=2)
    inputs = tuple(t.requires_grad_() for t in (query, key, value))
    assert torch.autograd.gradcheck(lambda q, k, v: local_attention(q, k, v, 3, 2), inputs)


@pytest.mark.parametrize('kwargs,match', [
    (dict(kernel_size=4), 'kernel_size'),
    (dict(kernel_size=0), 'kernel_size'),
    (dict(scale_factor=0), 'scale_factor'),
    (dict(key=torch.randn(2, 4, 3, 4)), 'query'),
    (dict(query=torch.randn(2, 3, 7, 8)), 'query size'),
    (dict(query=torch.randn(2, 3, 6)), 'query'),
    (dict(key=torch.randn(2, 3, 3, 4, dtype=torch.float64)), 'dtype'),
    (dict(key=torch.ones(2, 3, 3, 4, dtype=torch.int64)), 'key'),
])
def test_bad_arguments_are_named(kwargs, match):
    arguments = dict(query=torch.randn(2, 3, 6, 8), key=torch.randn(2, 3, 3, 4), kernel_size=3,
                     scale_factor=2)
    arguments.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        local_similarity(**arguments)


def test_value_must_match_key():
    query, key, _ = _inputs((3, 4), (6, 8))
    with pytest.raises(ValueError, match='value'):
        local_attention(query, key, torch.randn(2, 2, 3, 5, dtype=torch.float64), 3, 2)
