"""tools/analysis/params_flops.py: parameter and FLOP counts checked against hand-counted
multiply-adds (mmengine's rules: a conv costs C_in * C_out * k * k per output pixel, bias free; a
bilinear grid sample 4 per output element; einsum its multiply-adds)."""
import pytest

from .conftest import load_tool
from .tiny_seg import IMAGE_SIZE, write_tiny_seg

pytest.importorskip('mmseg', reason='the configs are mmseg / mmdet models')


@pytest.fixture(scope='module')
def tool():
    return load_tool('analysis/params_flops.py')


def carafe_flops(channels, compressed, height, width, scale=2, up_kernel=5, encoder_kernel=3):
    compressor = channels * compressed * height * width
    encoder = compressed * encoder_kernel ** 2 * scale ** 2 * up_kernel ** 2 * height * width
    reassembly = channels * up_kernel ** 2 * scale ** 2 * height * width
    return compressor + encoder + reassembly


def dysample_flops(channels, height, width, scale=2, groups=4):
    offsets = channels * 2 * groups * scale ** 2 * height * width
    sampling = 4 * channels * scale ** 2 * height * width
    return offsets + sampling


def test_help(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(['--help'])
    assert exit_info.value.code == 0
    assert '--upsampler' in capsys.readouterr().out


def test_one_upsampler_matches_hand_count(tool, capsys):
    result = tool.main(['--upsampler', 'CARAFE', '--channels', '16', '--size', '8', '6',
                        '--option', 'compressed_channels=8'])
    assert result.flops == carafe_flops(16, 8, 8, 6)
    assert result.parameters == (16 * 8 + 8) + (8 * 9 * 100 + 100)
    printed = capsys.readouterr().out
    assert '| CARAFE | 1x16x8x6 | 7.44K |' in printed
    assert 'aten::softmax x1' in printed  # listed as not counted, never silently


def test_segmentation_config_counts_its_upsamplers(tool, tmp_path, capsys):
    config = write_tiny_seg(tmp_path, decode_head_extra="type='UPerHeadWithUpsampler', "
                                                        "upsample_cfg=dict(type='CARAFE', "
                                                        "compressed_channels=8)")
    result = tool.main([str(config), '--shape', str(IMAGE_SIZE), str(IMAGE_SIZE)])
    printed = capsys.readouterr().out
    # Top-down steps upsample the stride-8, 16 and 32 levels (8, 4, 2 px at 64 px) of width 8.
    for step, side in enumerate((IMAGE_SIZE // 8, IMAGE_SIZE // 16, IMAGE_SIZE // 32)):
        flops = carafe_flops(8, 8, side, side)
        assert result.flops_by_module[f'model.decode_head.upsamplers.{step}'] == flops
    assert result.flops > sum(carafe_flops(8, 8, side, side) for side in (8, 4, 2))
    assert '| all upsamplers |' in printed
    assert printed.count('| decode_head.upsamplers.') == 3 and printed.count(' | CARAFE | ') == 3


def test_detection_config(tool, tmp_path):
    config = tmp_path / 'tiny_det.py'
    config.write_text(
        "_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py']\n"
        "custom_imports = dict(imports=['mmdynup'], allow_failed_imports=False)\n"
        "model = dict(\n"
        "    backbone=dict(depth=18, base_channels=8, init_cfg=None),\n"
        "    neck=dict(type='FPNWithUpsampler', in_channels=[8, 16, 32, 64], out_channels=8,\n"
        "              upsample_cfg=dict(type='DySample')),\n"
        "    rpn_head=dict(in_channels=8, feat_channels=8),\n"
        "    roi_head=dict(bbox_roi_extractor=dict(out_channels=8),\n"
        "                  bbox_head=dict(in_channels=8, fc_out_channels=16)))\n")
    result = tool.main([str(config), '--shape', '64', '96'])
    from mmengine.config import Config
    model, _ = tool.build_model(Config.fromfile(str(config)))
    assert result.parameters == sum(parameter.numel() for parameter in model.parameters())
    for step, (height, width) in enumerate(((8, 12), (4, 6), (2, 3))):
        assert result.flops_by_module[f'model.neck.upsamplers.{step}'] == \
            dysample_flops(8, height, width)


def test_config_without_host_scope_is_refused(tool, tmp_path):
    config = tmp_path / 'plain.py'
    config.write_text("model = dict(type='Linear')\n")
    with pytest.raises(ValueError, match=r"default_scope=None; params_flops.py analyses mmseg "
                                         r"or mmdet"):
        tool.main([str(config)])
