"""tools/train.py, tools/test.py, and their launchers: dist_train.sh / dist_test.sh (torchrun, two
gloo processes on the CPU) and slurm_train.sh (against a stand-in srun)."""
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import REPO_ROOT, TOOLS, load_tool
from .tiny_seg import write_tiny_seg

pytest.importorskip('mmseg', reason='the tiny config is an mmseg model')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def _launcher_env(**extra) -> dict:
    # One thread per process: two ranks share the machine's cores.
    return dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1',
                MKL_NUM_THREADS='1', **extra)


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_python_tools_help(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_tool(tool).parse_args(['--help'])
    assert exit_info.value.code == 0
    assert '--launcher' in capsys.readouterr().out


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh', 'slurm_train.sh'])
def test_shell_tools_help_and_usage(script):
    shown = subprocess.run(['bash', str(TOOLS / script), '--help'], capture_output=True,
                           text=True, check=True)
    assert f'tools/{script}' in shown.stdout
    missing = subprocess.run(['bash', str(TOOLS / script)], capture_output=True, text=True)
    assert missing.returncode == 2 and f'tools/{script}' in missing.stderr


@pytest.fixture(scope='module')
def two_process_training(tmp_path_factory):
    """Train the tiny config for 2 iterations in 2 torchrun processes (gloo on the CPU)."""
    root = tmp_path_factory.mktemp('dist')
    config = write_tiny_seg(root, max_iters=2)
    work_dir = root / 'work'
    result = subprocess.run(['bash', str(TOOLS / 'dist_train.sh'), str(config), '2',
                             '--work-dir', str(work_dir)], cwd=root, env=_launcher_env(),
                            capture_output=True, text=True, timeout=240)
    return config, work_dir, result


def test_dist_train_two_gloo_processes(two_process_training):
    config, work_dir, result = two_process_training
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    finished = sorted(re.findall(r'rank (\d) of 2: training finished at iteration 2',
                                 result.stdout))
    assert finished == ['0', '1'], result.stdout[-2000:]
    assert sorted(path.name for path in work_dir.glob('*.pth')) == ['iter_2.pth']
    checkpoint = torch.load(work_dir / 'iter_2.pth', weights_only=True)
    assert checkpoint['meta']['iter'] == 2
    assert not any(key.startswith('module.') for key in checkpoint['state_dict'])


def test_dist_test_two_gloo_processes(two_process_training):
    config, work_dir, training = two_process_training
    assert training.returncode == 0, 'training failed; see test_dist_train_two_gloo_processes'
    result = subprocess.run(['bash', str(TOOLS / 'dist_test.sh'), str(config),
                             str(work_dir / 'iter_2.pth'), '2', '--work-dir',
                             str(work_dir / 'eval'), '--out', str(work_dir / 'predictions.pkl')],
                            cwd=work_dir, env=_launcher_env(),
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    finished = sorted(re.findall(r'rank (\d) of 2: evaluation finished', result.stdout))
    assert finished == ['0', '1']
    assert re.search(r'mIoU: \d+\.\d+', result.stdout + result.stderr)
    assert (work_dir / 'predictions.pkl').is_file()  # --out, written by rank 0


def test_slurm_train_command(tmp_path):
    fake_bin = tmp_path / 'bin'
    fake_bin.mkdir()
    record = tmp_path / 'srun_call.txt'
    (fake_bin / 'srun').write_text(
        '#!/usr/bin/env bash\n'
        f'{{ printf "%s\\n" "$@"; echo "MASTER_PORT=$MASTER_PORT"; '
        f'echo "PYTHONPATH=$PYTHONPATH"; }} > {record}\n')
    (fake_bin / 'srun').chmod(0o755)
    env = dict(os.environ, PATH=f'{fake_bin}:{os.environ["PATH"]}', GPUS='16', GPUS_PER_NODE='8',
               SRUN_ARGS='--quotatype=auto --time=10', PORT='29777', PYTHON='python3')
    subprocess.run(['bash', str(TOOLS / 'slurm_train.sh'), 'gpu', 'upernet', 'cfg.py',
                    '--work-dir', 'out dir', '--amp'], env=env, check=True)
    arguments = record.read_text().splitlines()
    assert arguments[:9] == ['-p', 'gpu', '--job-name=upernet', '--gres=gpu:8', '--ntasks=16',
                             '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1',
                             '--quotatype=auto']
    assert arguments[9:18] == ['--time=10', 'python3', '-u', str(TOOLS / 'train.py'), 'cfg.py',
                               '--launcher', 'slurm', '--work-dir', 'out dir']
    assert arguments[18:] == ['--amp', 'MASTER_PORT=29777',
                              f'PYTHONPATH={TOOLS}/..' + (f':{os.environ["PYTHONPATH"]}'
                                                          if os.environ.get('PYTHONPATH') else '')]


def test_cpu_launchers_other_than_torchrun_are_refused():
    from mmengine.config import Config

    from mmdynup.distributed import setup_cpu_distributed
    if torch.cuda.is_available():
        pytest.skip('the refusal applies to machines without CUDA')
    with pytest.raises(ValueError, match="--launcher 'slurm' needs CUDA"):
        setup_cpu_distributed(Config(dict(launcher='slurm')))
    unchanged = setup_cpu_distributed(Config(dict(launcher='none')))
    assert 'model_wrapper_cfg' not in unchanged
