"""FADE family against short references written from the authors' formulas (FADE_L2H / FADE_H2L)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from mmdynup import build_upsampler
from mmdynup.converters import official_sources
from mmdynup.converters.fade import ECCV_RENAMES, convert_fade, convert_semi_shift_up
from mmdynup.converters.official import rename_keys
from mmdynup.upsamplers.fade import FADE, FADEECCV, FADELite, SemiShiftUp
from tests.conftest import reference_dir, skip_without_reference

CLASSES = [FADE, FADELite, SemiShiftUp, FADEECCV]


def nearest_up(tensor, scale_factor, size):
    return F.interpolate(tensor, scale_factor=scale_factor, mode='nearest')[..., :size[0], :size[1]]


def reassemble_repeated(x, kernels, kernel_size, scale_factor):
    """The authors' pure-PyTorch CARAFE: unfold the k x k windows, repeat them s x s times,
    weight them with the kernels (group 1); cropped to the kernels' size."""
    batch, channels, height, width = x.shape
    out_h, out_w = kernels.shape[-2:]
    windows = F.unfold(x, kernel_size, padding=kernel_size // 2)
    windows = windows.view(batch, channels, kernel_size ** 2, height, width)
    windows = windows.repeat_interleave(scale_factor, -2).repeat_interleave(scale_factor, -1)
    return torch.einsum('bcthw,bthw->bchw', windows[..., :out_h, :out_w], kernels)


def eccv_encoder_scores(generator, compressed_guide, low_res_size):
    """The authors' FADE_H2L encoder branch: four copies of the compressed guide, zero-padded by one
    pixel top-left / top-right / bottom-left / bottom-right, concatenated and cut back into four
    groups of E channels; a stride-2 3x3 conv of copy q fills sub-pixel phase q, pixels
    (2i + q // 2, 2j + q % 2). The guide is zero-extended to 2H x 2W first (a smaller output)."""
    height, width = low_res_size
    batch, embedding = compressed_guide.shape[:2]
    compressed_guide = F.pad(compressed_guide, [0, 2 * width - compressed_guide.shape[-1],
                                                0, 2 * height - compressed_guide.shape[-2]])
    copies = torch.cat([F.pad(compressed_guide, padding) for padding in
                        ([1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1], [0, 1, 0, 1])], dim=1)
    copies = copies.view(batch * 4, embedding, 2 * height + 1, 2 * width + 1)
    weight, bias = generator.content_encoder.weight, generator.content_encoder.bias
    phases = F.conv2d(copies, weight, bias, stride=2).view(batch, 4, -1, height, width)
    scores = compressed_guide.new_zeros(batch, weight.shape[0], 2 * height, 2 * width)
    for phase in range(4):
        scores[:, :, phase // 2::2, phase % 2::2] = phases[:, phase]
    return scores


def fade_reference(module, x, guide):
    """The authors' forward: semi-shift kernels, softmax, reassembly, optional gate."""
    s, k, size = module.scale_factor, module.up_kernel_size, guide.shape[-2:]
    generator = module.ker_generator
    compressed_guide = generator.compressor_en(guide)
    if isinstance(module, FADEECCV):
        encoder_part = eccv_encoder_scores(generator, compressed_guide, x.shape[-2:])
        encoder_part = encoder_part[..., :size[0], :size[1]]
    else:
        encoder_part = generator.content_encoder(compressed_guide)
    decoder_part = generator.content_encoder(generator.compressor_de(x))
    kernels = (encoder_part + nearest_up(decoder_part, s, size)).softmax(dim=1)
    upsampled = reassemble_repeated(x, kernels, k, s)
    if not module.gating:
        return upsampled
    gate = torch.sigmoid(nearest_up(module.gate_generator.conv(x), s, size))
    return gate * guide + (1 - gate) * upsampled


def randomise(module):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.3)
    return module


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('case', [
    dict(scale_factor=2, size=None, up_kernel_size=5),
    dict(scale_factor=2, size=(9, 11), up_kernel_size=3),
    dict(scale_factor=3, size=(14, 16), up_kernel_size=3),
])
def test_matches_reference_with_gradients(cls, case):
    if cls is FADEECCV and case['scale_factor'] != 2:
        pytest.skip('the conference form is defined for scale_factor=2 only')
    s, size = case['scale_factor'], case['size'] or (5 * case['scale_factor'],
                                                        6 * case['scale_factor'])
    extra = {} if cls is FADELite else dict(embedding_dim=6)
    module = randomise(cls(4, scale_factor=s, up_kernel_size=case['up_kernel_size'],
                           **extra)).double()
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    guide = torch.randn(2, 4, *size, dtype=torch.float64, requires_grad=True)
    output = module(x, guide)
    grad_output = torch.randn_like(output)
    output.backward(grad_output)
    ours = [x.grad.clone(), guide.grad.clone()] + [p.grad.clone() for p in module.parameters()]
    x.grad = guide.grad = None
    module.zero_grad()
    expected = fade_reference(module, x, guide)
    expected.backward(grad_output)
    torch.testing.assert_close(output, expected)
    references = [x.grad, guide.grad] + [p.grad for p in module.parameters()]
    for mine, reference in zip(ours, references):
        torch.testing.assert_close(mine, reference)


def test_unequal_channels_without_gate():
    module = randomise(SemiShiftUp(4, guide_channels=6, embedding_dim=5)).double()
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    guide = torch.randn(2, 6, 6, 10, dtype=torch.float64)
    output = module(x, guide)
    assert output.shape == (2, 4, 6, 10)
    torch.testing.assert_close(output, fade_reference(module, x, guide))


def test_fade_without_gating_is_semi_shift_up():
    fade = randomise(FADE(4, gating=False, embedding_dim=6)).double()
    semi_shift_up = SemiShiftUp(4, embedding_dim=6).double()
    semi_shift_up.load_state_dict(fade.state_dict())
    assert 'gate_generator.conv.weight' not in fade.state_dict()
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    guide = torch.randn(2, 4, 6, 10, dtype=torch.float64)
    torch.testing.assert_close(fade(x, guide), semi_shift_up(x, guide))


def test_eccv_is_the_journal_function_with_its_own_initialisation():
    """FADE_H2L's four-phase encoder branch is the journal 3x3 convolution (the reference above
    computes it phase by phase); the classes differ in the content encoder's initialisation."""
    eccv = randomise(FADEECCV(4, embedding_dim=6)).double()
    journal = FADE(4, embedding_dim=6).double()
    journal.load_state_dict(eccv.state_dict())
    x = torch.randn(1, 4, 3, 4, dtype=torch.float64)
    guide = torch.randn(1, 4, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(eccv(x, guide), journal(x, guide), rtol=0, atol=0)
    torch.testing.assert_close(journal(x, guide), fade_reference(eccv, x, guide))
    assert type(eccv.ker_generator) is not type(journal.ker_generator)


def test_only_the_authors_eccv_form_converts():
    """The third-party port (pytorch_implementation/FADE_H2L.py) computes another function: no
    converter accepts its records."""
    sources = official_sources()
    assert 'FADE_H2L.FADE' in sources
    assert 'FADE_H2L.FADE (pure PyTorch)' not in sources


@skip_without_reference('fade_eccv')
def test_authors_eccv_record_is_the_journal_fade_under_a_key_rename():
    """The statement of fade_eccv/README.md: the conference record through FADE_L2H.FADE."""
    record = torch.load(reference_dir() / 'fade_eccv' / 'fade_eccv_authors.pt', weights_only=True)
    state_dict, _ = rename_keys(record['state_dict'], ECCV_RENAMES)
    journal = convert_fade(record['kwargs'], state_dict).module.double()
    output = journal(record['inputs']['de'].double(), record['inputs']['en'].double())
    torch.testing.assert_close(output, record['output'].double(), atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('scale_factor', [2, 4])
@pytest.mark.parametrize('size', [None, 'odd'])
def test_forward_backward_non_square_batch_two(cls, scale_factor, size):
    if cls is FADEECCV and scale_factor != 2:
        pytest.skip('the conference form is defined for scale_factor=2 only')
    out_size = (2 * scale_factor + 1, 3 * scale_factor - 1) if size else (3 * scale_factor,
                                                                          4 * scale_factor)
    module = cls(8, scale_factor=scale_factor)
    x = torch.randn(2, 8, 3, 4, requires_grad=True)
    guide = torch.randn(2, 8, *out_size, requires_grad=True)
    output = module(x, guide)
    assert output.shape == (2, 8) + out_size
    output.square().sum().backward()
    assert x.grad.abs().sum() > 0 and guide.grad.abs().sum() > 0
    assert all(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize('cls', CLASSES)
def test_output_size_9x11_from_5x6(cls):
    module = cls(4)
    output = module(torch.randn(2, 4, 5, 6), torch.randn(2, 4, 9, 11))
    assert output.shape == (2, 4, 9, 11)


@pytest.mark.parametrize('cls', CLASSES)
def test_gradcheck(cls):
    extra = {} if cls is FADELite else dict(embedding_dim=3)
    module = randomise(cls(2, up_kernel_size=3, **extra)).double()
    x = torch.randn(2, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    guide = torch.randn(2, 2, 3, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(module, (x, guide))


@pytest.mark.parametrize('cls, gate', [(FADE, 1 + 256), (FADELite, 1 + 256),
                                       (SemiShiftUp, 0), (FADEECCV, 1 + 256)])
def test_parameter_count_at_256_channels_scale_2(cls, gate):
    module = build_upsampler(dict(type=cls.__name__, in_channels=256, scale_factor=2,
                                  guide_channels=256))
    embedding = 25 if cls is FADELite else 64
    # FADELite's content encoder is depth-wise: one 3x3 filter per tap.
    encoder = (1 if cls is FADELite else embedding) * 25 * 9 + 25
    compressors = (256 * embedding + embedding) + 256 * embedding
    assert sum(p.numel() for p in module.parameters()) == gate + compressors + encoder
    assert module.requires_guide


def test_initialisation():
    journal = FADE(256)
    for conv in (journal.ker_generator.compressor_en, journal.ker_generator.content_encoder,
                 journal.gate_generator.conv):
        fan_in = conv.weight[0].numel()
        fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert 0.9 * bound < conv.weight.abs().max() <= bound
        assert not conv.bias.any()
    eccv = FADEECCV(256).ker_generator
    weight = eccv.content_encoder.weight
    expected_std = math.sqrt(2 / (64 * 9 + 25 * 9))
    assert abs(weight.std().item() - expected_std) < 0.1 * expected_std
    assert not eccv.content_encoder.bias.any()
    # mmcv's xavier_init (uniform) for the ECCV compressors, as in FADE_H2L.
    for compressor in (eccv.compressor_en, eccv.compressor_de):
        bound = math.sqrt(6 / (256 + 64))
        assert 0.9 * bound < compressor.weight.abs().max() <= bound
    assert not eccv.compressor_en.bias.any()


@pytest.mark.parametrize('cls, arguments, error, names', [
    (FADE, dict(up_kernel_size=4), ValueError, 'up_kernel_size'),
    (FADELite, dict(up_kernel_size=0), ValueError, 'up_kernel_size'),
    (FADE, dict(guide_channels=6), ValueError, 'guide_channels'),
    (FADELite, dict(guide_channels=6), ValueError, 'gating'),
    (FADEECCV, dict(guide_channels=6), ValueError, 'guide_channels'),
    (FADE, dict(gating='yes'), TypeError, 'gating'),
    (FADE, dict(embedding_dim=0), ValueError, 'embedding_dim'),
    (SemiShiftUp, dict(scale_factor=1), ValueError, 'scale_factor'),
    (FADE, dict(scale_factor=1.5), ValueError, 'scale_factor'),
    (FADEECCV, dict(scale_factor=4), ValueError, 'scale_factor'),
    (FADEECCV, dict(scale_factor=2.5), ValueError, 'scale_factor'),
])
def test_bad_arguments_name_the_argument(cls, arguments, error, names):
    with pytest.raises(error, match=names):
        cls(**dict(dict(in_channels=4), **arguments))


@pytest.mark.parametrize('cls', CLASSES)
@pytest.mark.parametrize('x, guide, error, names', [
    (torch.randn(2, 3, 3, 4), torch.randn(2, 4, 6, 8), ValueError, 'in_channels'),
    (torch.randn(2, 4, 3, 4), torch.randn(2, 3, 6, 8), ValueError, 'guide_channels'),
    (torch.randn(2, 4, 3, 4), None, ValueError, 'guide'),
    (torch.randn(2, 4, 3, 4), torch.randn(2, 4, 7, 8), ValueError, 'size'),
    (torch.randn(2, 4, 3, 4), torch.randn(2, 4, 6, 8).double(), TypeError, 'dtype'),
    (torch.randn(2, 4, 3, 4), torch.randn(1, 4, 6, 8), ValueError, 'batch'),
])
def test_bad_inputs_name_the_argument(cls, x, guide, error, names):
    with pytest.raises(error, match=names):
        cls(4)(x, guide)


@pytest.mark.parametrize('cls', CLASSES)
def test_guide_of_another_size_than_the_requested_size(cls):
    with pytest.raises(ValueError, match='guide'):
        cls(4)(torch.randn(1, 4, 3, 4), torch.randn(1, 4, 6, 8), size=(5, 8))


def test_official_kwargs_map_to_ours():
    """``in_channels_en`` is the guide, ``in_channels_de`` (default: en) the input, ``scale``."""
    source = randomise(SemiShiftUp(4, guide_channels=6, up_kernel_size=3))
    conversion = convert_semi_shift_up(
        dict(in_channels_en=6, in_channels_de=4, scale=2, up_kernel_size=3), source.state_dict())
    module = conversion.module
    assert (module.in_channels, module.guide_channels, module.up_kernel_size) == (4, 6, 3)
    assert conversion.input_roles == {'en': 'guide', 'de': 'x'}
    for name, tensor in source.state_dict().items():
        torch.testing.assert_close(module.state_dict()[name], tensor)
    default_de = convert_fade(dict(in_channels_en=8), FADE(8).state_dict()).module
    assert default_de.in_channels == 8 and default_de.gating


def test_official_converter_rejects_arguments_the_official_class_lacks():
    with pytest.raises(TypeError, match='gating'):
        convert_fade(dict(in_channels_en=8, gating=False), FADE(8).state_dict())
