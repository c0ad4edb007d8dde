"""Every segmentation config in configs/ builds through mmengine's Config and mmseg's registry and
runs loss and predict on a CPU; the added parameters match the authors' designs and the papers;
the README recipe turns an mmseg config we did not write into one with an upsampler."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.conftest import REPO_ROOT
from tests.seg.helpers import packed_batch

CONFIGS = sorted((REPO_ROOT / 'configs' / 'segformer').glob('*.py')) + \
    sorted((REPO_ROOT / 'configs' / 'upernet').glob('*.py'))
OUR_HEADS = ('SegformerHeadWithUpsampler', 'UPerHeadWithUpsampler')


def _upsampler_name(path) -> str:
    """The upsampler component of an OpenMMLab config name (``<model>_<backbone>_<upsampler>_``)."""
    return path.name.split('_')[2]


def _load(path) -> Config:
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    return cfg


def _build(model_cfg):
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(model_cfg)


def _batch(height, width, num_classes, batch=2):
    """A packed batch with random labels in [0, num_classes)."""
    return packed_batch(height, width, lambda generator: (
        'gt_sem_seg', torch.randint(0, num_classes, (1, height, width), generator=generator)),
        batch)


def test_every_upsampler_has_a_snippet_and_the_lists_are_complete():
    import mmdynup
    snippets = {}
    for path in sorted((REPO_ROOT / 'configs/_base_/upsamplers').glob('*.py')):
        snippets[Config.fromfile(str(path)).upsample_cfg['type']] = path.name
    assert sorted(snippets) == mmdynup.list_upsamplers()
    assert {'bilinear', 'carafe', 'fade', 'fade-lite', 'sapa-i', 'sapa-b', 'sapa-g', 'dysample',
            'dysample-plus', 'dysample-s', 'dysample-s-plus'} <= {
                _upsampler_name(path) for path in CONFIGS if path.name.startswith('segformer')}
    assert {'bilinear', 'carafe', 'fade-without-gating', 'fade-gated', 'sapa-b', 'dysample',
            'dysample-plus'} <= {
        _upsampler_name(path) for path in CONFIGS if path.name.startswith('upernet')}


@pytest.mark.parametrize('path', CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_builds_and_runs_loss_and_predict(path):
    cfg = _load(path)
    assert cfg.custom_imports == dict(imports=['mmdynup'], allow_failed_imports=False)
    head = cfg.model.decode_head
    assert head.type in OUR_HEADS
    # Tiny override: 64x64 crops; UPerNet's head at 64 channels instead of 512 (its cost).
    cfg.model.data_preprocessor.size = (64, 64)
    if head.type == 'UPerHeadWithUpsampler':
        head.channels = 64
    model = _build(cfg.model)
    model.train()
    data = model.data_preprocessor(_batch(64, 64, head.num_classes), training=True)
    losses = model(**data, mode='loss')
    loss = sum(value for key, value in losses.items() if 'loss' in key)
    assert torch.isfinite(loss)
    loss.backward()
    upsamplers = [name for name, _ in model.decode_head.named_parameters()
                  if name.startswith(('upsamplers.', 'pyramid_upsampler.'))]
    if head.get('upsample_cfg') is not None and upsamplers:
        grads = [p.grad for n, p in model.decode_head.named_parameters() if n in upsamplers]
        assert all(g is not None for g in grads), 'an upsampler parameter got no gradient'
    # Whole-image inference at a size that is not a multiple of 32.
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(_batch(72, 88, head.num_classes, batch=1))
        prediction, = model(**data, mode='predict')
    assert prediction.pred_sem_seg.data.shape == (1, 72, 88)


#: SegFormer-B1 rows of the FADE / SAPA tables (NVlabs' code, the authors' head) and the DySample
#: configs built the same way: the authors' head form, tests at multiples of 32, best of ten kept.
SEGFORMER_PAPER_CONFIGS = [REPO_ROOT / 'configs' / 'segformer' /
                           f'segformer_mit-b1_{name}_8xb2-160k_ade20k-512x512.py'
                           for name in ('bilinear', 'carafe', 'fade', 'fade-lite', 'sapa-i',
                                        'sapa-b', 'sapa-g', 'dysample', 'dysample-plus',
                                        'dysample-s', 'dysample-s-plus')]
#: UPerNet rows of tiny-smart/sapa (the fork's recipe) and the configs built the same way.
UPERNET_CONFIGS = [REPO_ROOT / 'configs' / 'upernet' /
                   f'upernet_r50_{name}_4xb4-80k_ade20k-512x512.py'
                   for name in ('bilinear', 'carafe', 'fade-without-gating', 'fade-gated',
                                'sapa-b', 'dysample', 'dysample-plus')]
SIZE_DIVISOR_32 = dict(type='ResizeToMultiple', size_divisor=32)


def _assert_tests_at_multiples_of_32(cfg):
    for pipeline in (cfg.test_pipeline, cfg.val_dataloader.dataset.pipeline,
                     cfg.test_dataloader.dataset.pipeline):
        types = [step['type'] for step in pipeline]
        # After the keep-ratio resize, before the annotations (which stay at full size).
        assert types.index('Resize') < types.index('ResizeToMultiple') < \
            types.index('LoadAnnotations'), types
        assert pipeline[types.index('ResizeToMultiple')] == SIZE_DIVISOR_32


@pytest.mark.parametrize('path', SEGFORMER_PAPER_CONFIGS, ids=_upsampler_name)
def test_segformer_paper_config_is_the_authors_recipe(path):
    cfg = _load(path)
    assert cfg.model.decode_head.head_form == 'authors'
    head = _build(cfg.model.decode_head)
    assert head.head_form == 'authors'
    assert all(type(conv) is torch.nn.Conv2d and conv.bias is not None for conv in head.convs)
    assert head.conv_seg.in_channels == head.channels == 256
    _assert_tests_at_multiples_of_32(cfg)
    checkpoint = cfg.default_hooks.checkpoint
    assert (checkpoint.save_best, checkpoint.rule, checkpoint.interval) == ('mIoU', 'greater',
                                                                            16000)
    assert cfg.train_cfg.val_interval == 16000 and cfg.train_cfg.max_iters == 160000  # ten evals


@pytest.mark.parametrize('path', UPERNET_CONFIGS, ids=_upsampler_name)
def test_upernet_config_tests_at_multiples_of_32(path):
    _assert_tests_at_multiples_of_32(_load(path))


@pytest.mark.parametrize('name, gate', [('fade-without-gating', False), ('fade-gated', True)])
def test_upernet_fade_configs_build_what_their_names_say(name, gate):
    cfg = _load(REPO_ROOT / 'configs' / 'upernet' /
                f'upernet_r50_{name}_4xb4-80k_ade20k-512x512.py')
    head = _build(cfg.model.decode_head)
    assert len(head.upsamplers) == 3
    assert all(any(key.startswith('gate_generator.') for key in up.state_dict()) == gate
               for up in head.upsamplers)


def _authors_added_parameters(name, width=256, kernel=5, embedding=32, groups=4, scale=2):
    """Parameters of six upsamplers at the SegFormer-B1 decoder width, from the layer shapes of
    the authors' modules (FADE_L2H, CARAFEPack, SAPA's logged LCAExp, DySample)."""
    taps = kernel ** 2
    conv1x1 = lambda cin, cout, bias=True: cin * cout + (cout if bias else 0)  # noqa: E731
    layer_norms = 2 * 2 * width
    if name == 'frfu':  # frfu.FRFU, defaults, at the authors' decoder width 128 (its run log)
        return 6 * (2 * conv1x1(128, 2 * groups * scale ** 2) + 2 * conv1x1(128, 3 ** 2))
    if name == 'freqfusion':  # three steps of 256, 512, 768 input channels (concatenating form)
        return sum(_freqfusion_parameters(k * width, width, (k + 1) * width // 4)
                   for k in (1, 2, 3))
    per_upsampler = {
        'bilinear': 0,
        'carafe': conv1x1(width, 64) + 64 * taps * scale ** 2 * 9 + taps * scale ** 2,
        'fade': conv1x1(width, 1) + conv1x1(width, 64) + conv1x1(width, 64, bias=False)
        + 64 * taps * 9 + taps,
        'fade-lite': conv1x1(width, 1) + conv1x1(width, taps) + conv1x1(width, taps, bias=False)
        + taps * 9 + taps,
        'sapa-i': layer_norms,
        'sapa-b': layer_norms + 2 * conv1x1(width, embedding),
        'sapa-g': layer_norms + 3 * conv1x1(width, embedding) + conv1x1(width, 1),
        'dysample': conv1x1(width, 2 * groups * scale ** 2),
        'dysample-plus': 2 * conv1x1(width, 2 * groups * scale ** 2),
        'dysample-s': conv1x1(width // scale ** 2, 2 * groups),
        'dysample-s-plus': 2 * conv1x1(width // scale ** 2, 2 * groups),
        # hlindex.DepthwiseM2OIndexBlock, linear, 2 x 2: four bias-free convs (FADE's run log)
        'indexnet': 4 * width * width * scale * scale,
        # InterChannelUp, adobe.yaml (up kernel 3, shared filters), without the unused out_d conv
        'a2u': 2 * 2 * width + conv1x1(width, (2 * 3) ** 2) + 2 * conv1x1(width, 1),
    }[name]
    return 6 * per_upsampler


def _freqfusion_parameters(lr, hr, compressed, low=5, high=3, groups=4, neighbours=8):
    """FreqFusion.FreqFusion with the SegNeXt head's resampler ('sim' direction features,
    GroupNorm), 3x3 encoders: the layer shapes of the authors' module."""
    conv = lambda cin, cout, k=1: cin * cout * k * k + cout  # noqa: E731
    sampler = (conv(neighbours, 8 * groups, 3) + conv(compressed, 8 * groups, 3)
               + conv(neighbours, 2 * groups, 3) + conv(compressed, 2 * groups, 3)
               + 2 * 2 * compressed)
    return (conv(hr, compressed) + conv(lr, compressed) + conv(compressed, low ** 2, 3)
            + conv(compressed, high ** 2, 3) + sampler)


#: The papers' "+params" over the bilinear SegFormer-B1 (RESULTS.md), where they publish one.
PAPER_ADDED = {'carafe': 0.44e6, 'fade': 0.29e6, 'fade-lite': 80e3}


def _added_parameters(path):
    """Parameters of the config's head minus those of the same head without upsamplers."""
    head = _load(path).model.decode_head
    count = lambda cfg: sum(p.numel() for p in _build(cfg).parameters())  # noqa: E731
    return count(head) - count(dict(head, upsample_cfg=None))


@pytest.mark.parametrize('path', [p for p in CONFIGS if p.name.startswith('segformer')],
                         ids=_upsampler_name)
def test_segformer_added_parameters(path):
    name = _upsampler_name(path)
    added = _added_parameters(path)
    assert added == _authors_added_parameters(name)
    if name in PAPER_ADDED:
        assert abs(added - PAPER_ADDED[name]) <= 0.02 * PAPER_ADDED[name]
    if name == 'sapa-b':
        assert round(added / 1e6, 1) == 0.1  # the paper's "+0.1M"


RECIPE = """_base_ = '{base}'
custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)
model = dict(decode_head=dict(type='{head}', upsample_cfg=dict(type='{upsampler}')))
"""


@pytest.mark.parametrize('base, head, upsampler', [
    ('mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
     'UPerHeadWithUpsampler', 'FADE'),
    ('mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
     'SegformerHeadWithUpsampler', 'DySamplePlus'),
], ids=['swin-upernet', 'segformer-cityscapes'])
def test_three_line_recipe_on_an_mmseg_config(tmp_path, base, head, upsampler):
    path = tmp_path / 'with_upsampler.py'
    path.write_text(RECIPE.format(base=base, head=head, upsampler=upsampler))
    assert len(path.read_text().splitlines()) == 3
    cfg = _load(path)
    cfg.model.data_preprocessor.size = (64, 64)
    model = _build(cfg.model)
    upsamplers = [m for m in model.decode_head.modules() if type(m).__name__ == upsampler]
    assert len(upsamplers) == (3 if head == 'UPerHeadWithUpsampler' else 6)
    data = model.data_preprocessor(_batch(64, 64, cfg.model.decode_head.num_classes),
                                   training=True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for k, v in losses.items() if 'loss' in k)
