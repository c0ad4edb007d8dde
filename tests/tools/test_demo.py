"""tools/demo.py end to end at a tiny size: both toy tasks train and test through mmengine's
Runner for an unguided and a guided upsampler, the console shows one line a run and the tables,
results.md and the figure are written; bad arguments are refused by name."""
import re

import pytest

from tests.tools.conftest import load_tool

demo = load_tool('demo.py')


def test_demo_prints_one_line_a_run_then_the_tables(tmp_path, capsys):
    figure = tmp_path / 'demo.png'
    results = demo.main(['--iters', '2', '--upsamplers', 'bilinear', 'fade', '--num-train', '8',
                         '--num-val', '4', '--samples', '1',
                         '--toy-data-root', str(tmp_path / 'data'),
                         '--work-dir', str(tmp_path / 'work'), '--figure', str(figure)])
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    progress = [line for line in lines if re.match(r'\[\d/4\] ', line)]
    assert len(progress) == 4, printed
    assert 'paramwise_options' not in printed and ' - mmengine - INFO - ' not in printed
    assert ' - mmengine - WARNING - ' not in printed
    for task, metric in (('segmentation', 'mIoU'), ('reconstruction', 'PSNR (dB)')):
        start = lines.index(f'### {task} (2 iterations, seed 0)')
        header, _, bilinear, fade = lines[start + 2:start + 6]
        assert header.startswith(f'| upsampler | guided | {metric} |')
        assert bilinear.startswith('| bilinear | no |') and fade.startswith('| fade | yes |')
        assert bilinear.split(' | ')[-2] == '0' and fade.split(' | ')[-2] != '0'
    assert (tmp_path / 'work' / 'results.md').read_text().startswith('### segmentation')
    assert figure.is_file() and figure.stat().st_size > 10_000
    runs = results['reconstruction']['fade']
    assert len(runs) == 1 and 0 < runs[0].metrics['reconstruction/SSIM'] <= 1
    logs = list((tmp_path / 'work' / 'reconstruction' / 'fade_seed0').glob('*/*.log'))
    log = logs[0].read_text()  # the INFO lines the console did not show
    assert 'System environment' in log and 'reconstruction/PSNR: ' in log


@pytest.mark.parametrize('argv, message', [
    (['--upsamplers', 'fade', 'bicubic'], '--upsamplers bicubic: not a snippet'),
    (['--tasks', 'matting'], '--tasks matting: unknown'),
    (['--all', '--upsamplers', 'fade'], 'either --all or --upsamplers'),
    (['--iters', '0'], '--iters must be >= 1, got 0'),
])
def test_bad_arguments_are_refused_by_name(argv, message, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(argv)
    assert message in capsys.readouterr().err


def test_all_runs_every_operator_snippet():
    args = demo.parse_args(['--all'])
    assert 'interpolate' not in args.upsamplers
    assert {'nearest', 'carafe', 'fade', 'sapa-b', 'dysample-plus', 'freqfusion'} <= \
        set(args.upsamplers)
    assert set(demo.DEFAULT_UPSAMPLERS) <= set(args.upsamplers)
