"""Distributed runs without CUDA: torchrun + gloo on CPUs, with mmengine's Runner unchanged.

mmengine's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` (which fails on a CPU build of
torch) and its default model wrapper passes ``device_ids=[LOCAL_RANK]``, which
``DistributedDataParallel`` refuses for a CPU module. :func:`setup_cpu_distributed` therefore
opens the gloo process group itself (the Runner then skips ``init_dist``) and selects
:class:`CPUDistributedDataParallel`. With CUDA, or without a launcher, it changes nothing.
"""
from __future__ import annotations

import datetime

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for modules on the CPU: the Runner's ``device_ids`` (a GPU
    index) is dropped, because DDP accepts ``device_ids`` only for single-GPU modules."""

    def __init__(self, module: torch.nn.Module, device_ids=None, **kwargs) -> None:
        super().__init__(module=module, device_ids=None, **kwargs)


def setup_cpu_distributed(cfg: Config) -> Config:
    """For ``cfg.launcher == 'pytorch'`` on a machine without CUDA: open the process group
    (backend gloo; the config's ``env_cfg.dist_cfg.timeout`` is kept) from torchrun's environment
    and wrap the model with :class:`CPUDistributedDataParallel`.

    Raises:
        ValueError: for the ``slurm`` / ``mpi`` launchers without CUDA (mmengine binds each of
            their ranks to a GPU), or an explicit backend other than gloo.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return cfg
    if launcher != 'pytorch':
        raise ValueError(f"--launcher {launcher!r} needs CUDA (mmengine binds each rank to a "
                         f"GPU); on CPUs use --launcher pytorch with tools/dist_train.sh")
    dist_cfg = dict((cfg.get('env_cfg') or {}).get('dist_cfg') or {})
    backend = dist_cfg.pop('backend', 'nccl')
    if backend not in ('nccl', 'gloo'):
        raise ValueError(f'env_cfg.dist_cfg.backend={backend!r} cannot run without CUDA; use '
                         f"'gloo' (the default 'nccl' is replaced by 'gloo' automatically)")
    if 'timeout' in dist_cfg:
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo', **dist_cfg)
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    if wrapper.get('type', 'MMDistributedDataParallel') != 'MMDistributedDataParallel':
        raise ValueError(f'model_wrapper_cfg.type={wrapper["type"]!r}: on CPUs mmdynup wraps '
                         f'with CPUDistributedDataParallel and cannot wrap another type')
    wrapper['type'] = 'CPUDistributedDataParallel'
    if 'broadcast_buffers' not in wrapper:
        # The Runner's default (broadcast_buffers=False) under torch's new name: buffers stay
        # rank-local after the initial sync.
        wrapper.setdefault('forward_sync_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    return cfg
