"""mmdynup.visualization (recording and geometry) and tools/visualize_upsampler.py (PNG files)."""
import matplotlib.image
import numpy as np
import pytest
import torch
from torch import nn

import mmdynup
from mmdynup.ops import point_sampling, reassembly
from mmdynup.ops.reassembly import reassemble_reference
from mmdynup.visualization import (RECORDED_OPS, kernel_window, offset_arrows, pca_rgb,
                                   record_upsampling)

from .conftest import load_tool
from .tiny_seg import write_tiny_seg


@pytest.fixture(scope='module')
def tool():
    return load_tool('visualize_upsampler.py')


@pytest.fixture(scope='module')
def image_path(tmp_path_factory):
    from mmdynup.datasets import write_synthetic_ade
    root = tmp_path_factory.mktemp('image')
    write_synthetic_ade(root, num_train=1, num_val=1, size=64)
    return str(root / 'images' / 'validation' / 'ADE_val_00000001.jpg')


def _build(kind, channels=8, **options):
    return mmdynup.build_upsampler(dict(type=kind, in_channels=channels, scale_factor=2,
                                        guide_channels=channels, **options)).eval()


def test_dysample_positions_at_bilinear_init_are_the_pixels_own_positions():
    up = _build('DySample')
    nn.init.zeros_(up.offset.weight)  # zero offsets: bilinear sampling
    x = torch.randn(2, 8, 3, 5)
    with record_upsampling(up) as calls:
        output = up(x)
    (call,) = calls
    assert call.upsampler == 'DySample' and call.name == '' and call.scale_factor == 2
    torch.testing.assert_close(call.output, output.detach())
    assert call.positions.shape == (2, 4, 6, 10, 2)
    starts, vectors = offset_arrows(call.positions[0, 1], 2, image_size=(24, 40),
                                    low_res_size=(3, 5))
    np.testing.assert_allclose(vectors, 0, atol=1e-6)
    # High-res pixel (i, j) centre in image pixels: 8 image px per low-res px, 4 per high-res.
    assert starts[0].tolist() == [2.0, 2.0] and starts[11].tolist() == [6.0, 6.0]


def test_offset_arrows_in_image_pixels():
    rows = (torch.arange(4.) + 0.5) / 2
    cols = (torch.arange(6.) + 0.5) / 2
    own = torch.stack(torch.broadcast_tensors(cols[None, :], rows[:, None]), dim=-1)
    positions = own + torch.tensor([0.5, -0.25])
    starts, vectors = offset_arrows(positions, 2, image_size=(20, 30), low_res_size=(2, 3),
                                    step=2)
    assert starts.shape == (6, 2)  # every other pixel of a 4 x 6 grid
    np.testing.assert_allclose(vectors, np.tile([[5.0, -2.5]], (6, 1)), rtol=1e-6)
    np.testing.assert_allclose(starts[1], [12.5, 2.5], rtol=1e-6)


@pytest.mark.parametrize('kind,options', [('CARAFE', dict(compressed_channels=4)),
                                          ('FADE', dict(gating=False)),
                                          ('SAPAB', {})])
def test_recorded_kernels_are_the_ones_applied(kind, options):
    up = _build(kind, **options)
    for parameter in up.parameters():
        nn.init.normal_(parameter, std=0.3)
    x, guide = torch.randn(1, 8, 5, 4), torch.randn(1, 8, 10, 8)
    with torch.no_grad(), record_upsampling(up) as calls:
        output = up(x, guide)
    (call,) = calls
    k = call.kernel_size
    assert call.kernels.shape[2:] == (k * k, 10, 8)
    torch.testing.assert_close(call.kernels.sum(2), torch.ones(1, call.kernels.shape[1], 10, 8))
    torch.testing.assert_close(reassemble_reference(x, call.kernels, k, 2), output)
    if up.requires_guide:
        torch.testing.assert_close(call.guide, guide)
    window, parent = kernel_window(call.kernels[0, 0], k, 2, (7, 3))
    assert parent == (3, 1)
    assert window[0, 1] == call.kernels[0, 0, 1, 7, 3]  # tap 1: row -k//2, column 1 - k//2


def test_sapa_deform_records_points():
    up = _build('SAPADeform', num_point=3, groups=2, embedding_dim=4)
    with torch.no_grad(), record_upsampling(up) as calls:
        up(torch.randn(1, 8, 3, 3), torch.randn(1, 8, 6, 6))
    assert calls[0].positions.shape == (1, 2, 3, 6, 6, 2)
    assert calls[0].kernels is None


def test_recording_restores_the_ops_and_needs_an_upsampler():
    up = _build('CARAFE', compressed_channels=4)
    with pytest.raises(RuntimeError, match='inside'):
        with record_upsampling(up):
            assert mmdynup.upsamplers.carafe.reassemble is not RECORDED_OPS['reassemble']
            raise RuntimeError('inside')
    assert mmdynup.upsamplers.carafe.reassemble is reassembly.reassemble
    assert mmdynup.upsamplers.dysample.subpixel_point_sample is \
        point_sampling.subpixel_point_sample
    with pytest.raises(ValueError, match='contains no mmdynup upsampler'):
        with record_upsampling(nn.Conv2d(1, 1, 1)):
            pass


def test_pca_colours_are_shared_between_input_and_output():
    x = torch.randn(6, 4, 5)
    before, basis, value_range = pca_rgb(x)
    after, _, _ = pca_rgb(x.repeat_interleave(2, 1).repeat_interleave(2, 2), basis, value_range)
    np.testing.assert_allclose(after[::2, ::2], before, atol=1e-12)
    assert before.min() == 0 and before.max() == 1


def test_help(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(['--help'])
    assert exit_info.value.code == 0
    assert '--points' in capsys.readouterr().out


@pytest.mark.parametrize('kind,options,expected', [
    ('DySample', [], ['offsets', 'features']),
    ('CARAFE', ['compressed_channels=8'], ['kernels', 'features']),
    ('FADE', [], ['kernels', 'features']),
    ('SAPAB', [], ['similarity', 'features']),
    ('SAPADeform', ['groups=2'], ['offsets', 'features']),
])
def test_renders_each_kind(tool, image_path, tmp_path, kind, options, expected):
    arguments = [image_path, '--upsampler', kind, '--channels', '16', '--out-dir', str(tmp_path),
                 '--points', '20,20', '40,33']
    for option in options:
        arguments += ['--option', option]
    written = tool.main(arguments)
    assert [path.rsplit('_', 1)[1] for path in written] == [f'{name}.png' for name in expected]
    for path in written:
        picture = matplotlib.image.imread(path)
        assert picture.ndim == 3 and min(picture.shape[:2]) > 100
        assert picture[..., :3].std() > 0.05  # not a blank canvas


def test_points_outside_the_image_are_refused(tool, image_path, tmp_path):
    with pytest.raises(ValueError, match=r'point \(100.0, 5.0\) lies outside the 64x64'):
        tool.main([image_path, '--upsampler', 'CARAFE', '--out-dir', str(tmp_path),
                   '--points', '100,5', '--kinds', 'kernels'])


def test_every_upsampler_of_a_config(tool, image_path, tmp_path):
    pytest.importorskip('mmseg', reason='the config is an mmseg model')
    config = write_tiny_seg(tmp_path, decode_head_extra="type='UPerHeadWithUpsampler', "
                                                        "upsample_cfg=dict(type='DySample')")
    written = tool.main([image_path, '--config', str(config), '--out-dir',
                         str(tmp_path / 'out'), '--kinds', 'offsets'])
    names = sorted(path.rsplit('/', 1)[1] for path in written)
    assert names == [f'{index:02d}_DySample_decode_head.upsamplers.{step}_offsets.png'
                     for index, step in enumerate((2, 1, 0))]
