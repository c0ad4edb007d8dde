"""tools/train.py -> checkpoint -> tools/test.py on the synthetic Composition-1K-layout set with
the demo config (narrow A2U network, FADE): the test run reports SAD, MSE, Grad and Conn."""
import pytest

from mmdynup.datasets.synthetic_matting import write_synthetic_matting
from tests.conftest import REPO_ROOT
from tests.tools.conftest import load_tool

pytest.importorskip('mmseg')

CONFIG = REPO_ROOT / 'configs/matting/a2u_r34-narrow_fade_1xb4-40it_synthetic-matting-64x64.py'
ITERS = 3


def test_train_then_test_prints_the_four_errors(tmp_path):
    data_root = tmp_path / 'data'
    write_synthetic_matting(data_root, num_train=4, num_test=2, num_backgrounds=4, height=64,
                            width=64)
    options = [f'{loader}.dataset.data_root={data_root}'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    options += [f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
                f'default_hooks.checkpoint.interval={ITERS}']
    work_dir = tmp_path / 'work'
    load_tool('train.py').main([str(CONFIG), '--work-dir', str(work_dir),
                                '--cfg-options', *options])
    checkpoint = work_dir / f'iter_{ITERS}.pth'
    assert checkpoint.is_file()
    assert (work_dir / f'best_SAD_iter_{ITERS}.pth').is_file()  # save_best='SAD', rule='less'
    test_dir = tmp_path / 'test'
    # A second Runner in this process needs a visualizer of its own name.
    metrics = load_tool('test.py').main([str(CONFIG), str(checkpoint), '--work-dir',
                                         str(test_dir), '--cfg-options', *options,
                                         'visualizer.name=matting_test'])
    assert set(metrics) == {'SAD', 'MSE', 'Grad', 'Conn'}
    assert all(value >= 0 for value in metrics.values()) and metrics['SAD'] > 0
    log = next(test_dir.glob('*/*.log')).read_text()
    for name in metrics:
        assert f'{name}: ' in log, log[-2000:]
