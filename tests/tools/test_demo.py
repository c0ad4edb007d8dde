"""tools/demo.py end to end at a tiny size: both runs train, evaluate, print the table, draw."""
import importlib.util
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def _demo_module():
    spec = importlib.util.spec_from_file_location('mmdynup_demo', REPO_ROOT / 'tools' / 'demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_prints_table_and_writes_figure(tmp_path, capsys):
    demo = _demo_module()
    figure = tmp_path / 'demo.png'
    demo.main(['--iters', '3', '--num-train', '8', '--num-val', '4',
               '--data-root', str(tmp_path / 'data'), '--work-dir', str(tmp_path / 'work'),
               '--figure', str(figure)])
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('| upsampler | mIoU |'))
    rows = lines[start:start + 4]
    assert rows[2].startswith('| bilinear |') and rows[3].startswith('| FADE |')
    assert figure.is_file() and figure.stat().st_size > 10_000


def test_boundary_band_is_the_inner_contour():
    demo = _demo_module()
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    band = demo.boundary_band(mask, 1)
    assert band.sum() == 25 - 9 and not band[4, 4] and band[2, 2]
    scores = demo.SegmentationScores(2, boundary_width=1)
    truth = mask.astype(np.int64)
    scores.add(truth, truth)
    np.testing.assert_allclose(scores.per_class_iou(), [100, 100])
    assert scores.boundary_iou() == 100
