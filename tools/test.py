"""Evaluate a checkpoint of a segmentation or detection config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...]
                         [--launcher none|pytorch|slurm|mpi] [--out results.pkl]
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
    parser = argparse.ArgumentParser(description='Evaluate an mmseg / mmdet checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (ours, or converted first with '
                                           'tools/convert_checkpoint.py)')
    parser.add_argument('--work-dir', help='where the evaluation logs go')
    parser.add_argument('--out', help='also dump the raw predictions to this pickle file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. test_dataloader.dataset.data_root=...')
    add_launcher_arguments(parser)
    return parse_tool_arguments(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not exist')
    cfg = load_config(args.config, args.cfg_options)
    cfg = prepare_config(cfg, config_path=args.config, work_dir=args.work_dir,
                         launcher=args.launcher)
    cfg = setup_cpu_distributed(cfg)
    cfg.load_from = args.checkpoint
    if not args.skip_input_checks:
        exit_if_inputs_missing(cfg, args.config, 'test')
    if args.out:
        cfg.test_evaluator = [cfg.test_evaluator] if isinstance(cfg.test_evaluator, dict) \
            else list(cfg.test_evaluator)
        cfg.test_evaluator.append(dict(type='DumpResults', out_file_path=args.out))
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    # Every rank reports (the logger speaks for rank 0 only), so a launcher log shows all of them.
    print(f'rank {runner.rank} of {runner.world_size}: evaluation finished', flush=True)
    return metrics


if __name__ == '__main__':
    main()
