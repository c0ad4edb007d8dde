"""Train a segmentation or detection config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

The host (mmseg or mmdet) is taken from the config's ``default_scope``.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmdynup.distributed import setup_cpu_distributed  # noqa: E402
from mmdynup.engine import (add_launcher_arguments, load_config, parse_tool_arguments,  # noqa: E402
                            prepare_config)
from mmdynup.preflight import exit_if_inputs_missing  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train an mmseg / mmdet config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from this checkpoint, or from the latest one in the work dir '
                             'when given without a path')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. train_cfg.max_iters=100')
    add_launcher_arguments(parser)
    return parse_tool_arguments(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg = prepare_config(cfg, config_path=args.config, work_dir=args.work_dir,
                         launcher=args.launcher, amp=args.amp, resume=args.resume)
    if not args.skip_input_checks:
        exit_if_inputs_missing(cfg, args.config, 'train')
    cfg = setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    # Every rank reports (the logger speaks for rank 0 only), so a launcher log shows all of them.
    print(f'rank {runner.rank} of {runner.world_size}: training finished at iteration '
          f'{runner.iter}', flush=True)
    return runner


if __name__ == '__main__':
    main()
