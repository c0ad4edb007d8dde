"""Running configs with mmengine: config preparation shared by the tools, and safe checkpoint loading.

torch >= 2.6 loads checkpoints with ``weights_only=True``. mmengine checkpoints hold a few
non-tensor objects (the message hub's ``HistoryBuffer`` with numpy arrays), so ``resume`` fails
unless exactly those globals are allow-listed. :func:`allow_mmengine_checkpoints` adds that list
(and nothing else); ``weights_only`` stays on everywhere.
"""
from __future__ import annotations

import argparse
import collections
import os
import os.path as osp
from typing import List, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging.history_buffer import HistoryBuffer

from .compat import add_safe_globals


def mmengine_checkpoint_globals() -> List[object]:
    """The exact non-tensor globals an mmengine checkpoint pickles (found by
    ``torch.serialization.get_unsafe_globals_in_checkpoint`` on a Runner checkpoint)."""
    multiarray = np.core.multiarray
    return [
        HistoryBuffer,
        # HistoryBuffer.__getstate__ stores its statistics methods, which pickle as
        # getattr(HistoryBuffer, 'min'). The weights-only unpickler still refuses to *call* any
        # function that is not allow-listed, so getattr can only look attributes up.
        getattr,
        multiarray._reconstruct,
        multiarray.scalar,
        np.ndarray,
        np.dtype,
        collections.Counter,
    ] + [type(np.dtype(code)) for code in ('f4', 'f8', 'i4', 'i8', 'u1', 'b1')]


def allow_mmengine_checkpoints() -> None:
    """Allow-list :func:`mmengine_checkpoint_globals` for ``torch.load(weights_only=True)``."""
    add_safe_globals(mmengine_checkpoint_globals())


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """``--launcher``, torch.distributed.launch's ``--local_rank`` and ``--skip-input-checks``
    (see :mod:`mmdynup.preflight`), shared by the tools."""
    parser.add_argument('--skip-input-checks', action='store_true',
                        help='do not check that the data and weights the config names exist '
                             '(for storage backends the check cannot see)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_tool_arguments(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse ``argv``; export ``LOCAL_RANK`` from ``--local_rank`` unless a launcher set it."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """``Config.fromfile(path)`` with the ``--cfg-options`` overrides merged in."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def default_work_dir(config_path: str) -> str:
    return osp.join('work_dirs', osp.splitext(osp.basename(config_path))[0])


def prepare_config(cfg: Config, config_path: str, work_dir: Optional[str] = None,
                   launcher: str = 'none', amp: bool = False,
                   resume: Optional[str] = None) -> Config:
    """Apply the command-line choices shared by ``tools/train.py`` and ``tools/test.py``.

    Args:
        cfg: the loaded config.
        config_path: its path (names the default work dir ``work_dirs/<config name>``).
        work_dir: overrides ``cfg.work_dir``.
        launcher: ``'none'``, ``'pytorch'`` (torchrun), ``'slurm'`` or ``'mpi'``.
        amp: automatic mixed precision: mmengine's ``AmpOptimWrapper`` on CUDA, bfloat16
            autocast (:class:`mmdynup.optim.CPUAutocastOptimWrapper`) elsewhere.
        resume: ``'auto'`` (latest checkpoint in the work dir), a checkpoint path, or None.
    """
    if 'default_scope' not in cfg or cfg.default_scope not in ('mmseg', 'mmdet'):
        raise ValueError(f'config {config_path} has default_scope='
                         f'{cfg.get("default_scope")!r}; mmdynup tools run mmseg or mmdet configs '
                         f"(inherit one with _base_ = ['mmseg::...'] or ['mmdet::...'])")
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(config_path)
    if amp:
        wrapper = cfg.optim_wrapper
        if wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper',
                                                       'CPUAutocastOptimWrapper'):
            raise ValueError(f'--amp replaces the OptimWrapper; this config uses '
                             f'{wrapper.type}, which --amp cannot wrap')
        wrapper.type = 'AmpOptimWrapper' if torch.cuda.is_available() \
            else 'CPUAutocastOptimWrapper'
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif resume is not None:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume {resume!r}: no such checkpoint file')
        cfg.resume, cfg.load_from = True, resume
    return cfg
