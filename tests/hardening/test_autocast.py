"""Mixed precision: every upsampler under ``torch.autocast`` (bfloat16 on the CPU, float16 on CUDA)
is finite and close to float32; kernels are normalised in float32; a full model trains with
``tools/train.py --amp``.

Tolerances (docs/hardening.md), the same for bfloat16 on the CPU and float16 on CUDA: outputs
``max|amp - fp32| <= 2**-5 * max|fp32|`` (8 bfloat16 unit roundoffs; worst measured 0.023,
SAPA-I); gradients, the input's and every parameter's as one vector,
``||amp - fp32|| <= 2**-5 * ||fp32||`` (worst measured 0.016), SAPA-deform ``2**-3`` (worst
measured 0.059: its offsets' gradient is the difference of bilinear corner weights times
bfloat16-rounded upstream gradients). Gradients are compared as one vector because some tensors'
true gradients are sums of nearly cancelling terms (SAPA-I's key LayerNorm bias: 2 % of the
gradient norm, 20 % relative error in bfloat16).
"""
import math
from pathlib import Path

import pytest
import torch

import mmdynup.upsamplers.a2u as a2u_module
import mmdynup.upsamplers.carafe as carafe_module
import mmdynup.upsamplers.fade as fade_module
from mmdynup.upsamplers.carafe import normalise_kernels

from .upsampler_inputs import UPSAMPLERS, build, make_inputs, run

OUTPUT_TOLERANCE = 2 ** -5
GRADIENT_TOLERANCE = 2 ** -5
LOOSER_GRADIENT_TOLERANCE = {'SAPADeform': 2 ** -3}
REPO_ROOT = Path(__file__).resolve().parents[2]
GUIDED = [name for name in UPSAMPLERS if build(name).requires_guide]


def relative_max_error(actual, expected):
    return ((actual.float() - expected).abs().max() / expected.abs().max()).item()


def forward_and_gradients(upsampler, x, guide, autocast_dtype=None):
    """Output and gradients (x, then every parameter) of a fixed linear loss on the output."""
    upsampler.zero_grad()
    x = x.detach().clone().requires_grad_()
    device = x.device.type
    with torch.autocast(device, dtype=autocast_dtype or torch.bfloat16,
                        enabled=autocast_dtype is not None):
        out = run(upsampler, x, guide)
    weights = torch.linspace(-1, 1, out.numel(), device=x.device).view(out.shape)
    (out.float() * weights).sum().backward()
    return out, [x.grad] + [parameter.grad.clone() for parameter in upsampler.parameters()]


def check_close_to_float32(name, upsampler, x, guide, autocast_dtype):
    reference, reference_grads = forward_and_gradients(upsampler, x.float(),
                                                       None if guide is None else guide.float())
    out, grads = forward_and_gradients(upsampler, x, guide, autocast_dtype)
    assert out.is_floating_point() and torch.isfinite(out).all()
    assert relative_max_error(out, reference) <= OUTPUT_TOLERANCE
    grads = torch.cat([grad.float().flatten() for grad in grads])
    reference_grads = torch.cat([grad.flatten() for grad in reference_grads])
    assert torch.isfinite(grads).all()
    assert ((grads - reference_grads).norm() / reference_grads.norm()).item() <= \
        LOOSER_GRADIENT_TOLERANCE.get(name, GRADIENT_TOLERANCE)


@pytest.mark.parametrize('input_dtype', [torch.float32, torch.bfloat16], ids=['fp32-in', 'bf16-in'])
@pytest.mark.parametrize('name', UPSAMPLERS)
def test_bfloat16_autocast_is_finite_and_close_to_float32(name, input_dtype):
    """fp32 inputs: a model's first layer; bf16 inputs: features made by autocast convolutions
    (compared with float32 on the same rounded inputs)."""
    upsampler = build(name)
    x, guide = make_inputs(upsampler, dtype=input_dtype)
    check_close_to_float32(name, upsampler, x, guide, torch.bfloat16)


@pytest.mark.parametrize('x_dtype, guide_dtype', [(torch.float32, torch.bfloat16),
                                                  (torch.bfloat16, torch.float32)])
@pytest.mark.parametrize('name', GUIDED)
def test_autocast_accepts_a_guide_of_another_dtype(name, x_dtype, guide_dtype):
    upsampler = build(name)
    x, guide = make_inputs(upsampler)
    reference = upsampler(x.to(x_dtype).float(), guide.to(guide_dtype).float())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = upsampler(x.to(x_dtype), guide.to(guide_dtype))
    assert torch.isfinite(out).all()
    assert relative_max_error(out, reference) <= OUTPUT_TOLERANCE


def test_normalise_kernels_accumulates_in_float32():
    scores = (torch.randn(2, 2 * 25, 6, 7) * 8).bfloat16()
    kernels = normalise_kernels(scores, groups=2, dtype=torch.float32)
    assert kernels.dtype == torch.float32
    torch.testing.assert_close(kernels.sum(dim=2), torch.ones(2, 2, 6, 7), rtol=0, atol=1e-6)
    expected = scores.double().view(2, 2, 25, 6, 7).softmax(dim=2)
    torch.testing.assert_close(kernels.double(), expected, rtol=0, atol=1e-6)
    assert normalise_kernels(scores, groups=2).dtype == torch.bfloat16  # default: scores' dtype


@pytest.mark.parametrize('name, module', [
    ('CARAFE', carafe_module), ('FADE', fade_module), ('FADELite', fade_module),
    ('FADEECCV', fade_module), ('SemiShiftUp', fade_module), ('A2U', a2u_module)])
def test_predicted_kernels_are_float32_normalised_under_autocast(name, module, monkeypatch):
    """Kernel-predicting upsamplers: the kernels reach the reassembly in the input's dtype
    (float32) and sum to one to float32 precision, although autocast computed their scores in
    bfloat16. (SAPA's softmax runs in the logits' dtype: autocast promotes softmax to float32 on
    CUDA, and torch's bfloat16 softmax on the CPU accumulates in float32 and rounds once.)"""
    seen = []

    def spy_on(original):
        def spy(x, kernels, *args, **kwargs):
            seen.append((x.dtype, kernels.detach().clone()))
            return original(x, kernels, *args, **kwargs)
        return spy

    # FADE with its gate reassembles through gated_reassemble.
    for function in ('reassemble', 'gated_reassemble'):
        if hasattr(module, function):
            monkeypatch.setattr(module, function, spy_on(getattr(module, function)))
    upsampler = build(name)
    x, guide = make_inputs(upsampler)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        run(upsampler, x, guide)
    (value_dtype, kernels), = seen
    assert value_dtype == kernels.dtype == torch.float32
    torch.testing.assert_close(kernels.sum(dim=2), torch.ones_like(kernels[:, :, 0]), rtol=0,
                               atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='float16 autocast needs a CUDA device')
@pytest.mark.parametrize('name', UPSAMPLERS)
def test_float16_autocast_on_cuda_is_finite_and_close_to_float32(name):
    upsampler = build(name).cuda()
    x, guide = make_inputs(upsampler)
    x, guide = x.cuda(), None if guide is None else guide.cuda()
    check_close_to_float32(name, upsampler, x, guide, torch.float16)


# --- a full model: tools/train.py --amp -------------------------------------------------------
#: The demo's SegFormer + FADE (its iteration count is in the name and changes with the demo).
DEMO_CONFIGS = sorted((REPO_ROOT / 'configs' / 'demo').glob('segformer_mit-tiny_fade_*.py'))


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='checks the CPU bfloat16 wrapper; on CUDA --amp picks AmpOptimWrapper')
def test_amp_training_of_a_segformer_with_fade(tmp_path):
    """Three iterations of the demo SegFormer + FADE, shrunk to 64 x 64 and batch 2, with --amp:
    the CPU autocast wrapper is used, the upsamplers run under bfloat16 autocast, every logged
    loss and every trained weight is finite."""
    pytest.importorskip('mmseg', reason='the demo config is an mmseg model')
    assert len(DEMO_CONFIGS) == 1, f'expected one demo SegFormer + FADE config, got {DEMO_CONFIGS}'
    from mmdynup.datasets import write_synthetic_ade
    from mmdynup.optim import CPUAutocastOptimWrapper
    from mmdynup.upsamplers.base import Upsampler

    from ..tools.conftest import load_tool

    data_root = tmp_path / 'data'
    write_synthetic_ade(data_root, num_train=4, num_val=1, size=64)
    options = [f'{loader}.dataset.data_root={data_root}'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    options += ['train_dataloader.batch_size=2', 'train_cfg.max_iters=3',
                'train_cfg.val_interval=3', 'model.data_preprocessor.size=[64,64]',
                'default_hooks.logger.interval=1', 'default_hooks.checkpoint.save_last=False']
    runner = load_tool('train.py').main([str(DEMO_CONFIGS[0]), '--amp', '--work-dir',
                                         str(tmp_path / 'work'), '--cfg-options', *options])
    assert runner.iter == 3
    assert isinstance(runner.optim_wrapper, CPUAutocastOptimWrapper)
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    upsamplers = [module for module in runner.model.modules() if isinstance(module, Upsampler)]
    assert upsamplers, 'the FADE demo config has no upsampler'
    for parameter in runner.model.parameters():
        assert torch.isfinite(parameter).all()

    seen = []
    hooks = [module.register_forward_hook(
        lambda module, args, out: seen.append((torch.is_autocast_enabled('cpu'), out.dtype)))
        for module in upsamplers]
    batch = next(iter(runner.train_loop.dataloader))
    runner.model.train()
    with runner.optim_wrapper.optim_context(runner.model):
        data = runner.model.data_preprocessor(batch, True)
        runner.model(**data, mode='loss')
    for hook in hooks:
        hook.remove()
    assert len(seen) == len(upsamplers)
    assert seen == [(True, torch.bfloat16)] * len(upsamplers)
