"""Memory of the guided kernel upsamplers (issue 16: peak extra memory of a training step at
most 3x bilinear's). With the guide as wide as the output, the floor is two guide-sized
tensors, the output and the guide's gradient; the fast paths hold no third one at any time
(no normalised or compressed copy of the guide kept for backward, no second guide gradient to
sum), and compute what the reference computes (float64, outputs and every gradient).
"""
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import mmdynup.ops.normalized_projection as normalized_projection
import mmdynup.ops.reassembly as reassembly
from mmdynup import build_upsampler
from mmdynup.ops.dispatch import use_implementation

NAMES = ('FADE', 'FADELite', 'FADEECCV', 'SemiShiftUp', 'SAPAB', 'SAPAG', 'SAPAI', 'SAPABase')
CHANNELS, SIZE = 96, 5  # wider than the embeddings; SAPABase's GroupNorm(32) divides 96


class LiveSameSize(TorchDispatchMode):
    """The most tensors the size of ``existing[0]`` that ATen ops created and that were alive at
    once (storages counted once, freed when their storage dies; ``existing`` ones not counted)."""

    def __init__(self, *existing: torch.Tensor):
        super().__init__()
        self.numel, self.live, self.most = existing[0].numel(), set(), 0
        self.existing = {tensor.untyped_storage().data_ptr() for tensor in existing}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for value in tree_flatten(result)[0]:
            if not isinstance(value, torch.Tensor):
                continue
            storage = value.untyped_storage()
            key = storage.data_ptr()
            if (storage.nbytes() != self.numel * value.element_size() or key in self.live
                    or key in self.existing):
                continue
            self.live.add(key)
            weakref.finalize(storage, self.live.discard, key)
            self.most = max(self.most, len(self.live))
        return result


def build(name, dtype=torch.float32):
    torch.manual_seed(0)
    module = build_upsampler(dict(type=name, in_channels=CHANNELS, scale_factor=2,
                                  guide_channels=CHANNELS)).to(dtype)
    with torch.no_grad():  # off the initialisation (zero biases, unit norms)
        for parameter in module.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    x = torch.randn(2, CHANNELS, SIZE, SIZE, dtype=dtype, requires_grad=True)
    guide = torch.randn(2, CHANNELS, 2 * SIZE, 2 * SIZE, dtype=dtype, requires_grad=True)
    return module, x, guide, torch.randn_like(guide)


@pytest.mark.parametrize('name', NAMES)
def test_fast_path_equals_the_reference(name):
    module, x, guide, grad = build(name, torch.float64)
    results = []
    for impl in ('auto', 'reference'):
        for tensor in (x, guide, *module.parameters()):
            tensor.grad = None
        with use_implementation(impl):
            out = module(x, guide)
            out.backward(grad)
        results.append([out.detach(), x.grad, guide.grad,
                        *(parameter.grad for parameter in module.parameters())])
    for index, (fast, reference) in enumerate(zip(*results)):
        torch.testing.assert_close(fast, reference, atol=1e-10, rtol=1e-10, msg=str(index))


@pytest.mark.parametrize('name', NAMES)
def test_no_third_guide_sized_tensor(name, monkeypatch):
    # Tiles and pixel chunks a fraction of the guide, as they are at a real guide's size.
    monkeypatch.setattr(reassembly, 'CPU_TILE_ELEMENTS', 1)
    monkeypatch.setattr(normalized_projection, 'CHUNK_ELEMENTS', 1)
    module, x, guide, grad = build(name)
    module(x, guide).backward(grad)  # warm-up
    x.grad = guide.grad = None
    with LiveSameSize(guide, grad) as recorder:
        module(x, guide).backward(grad)
    assert guide.grad is not None
    assert recorder.most <= 2, f'{name}: {recorder.most} guide-sized tensors alive at once'
