"""Checks ``tools/train.py`` and ``tools/test.py`` run before building anything.

A config that names a data set or a pretrained checkpoint that is not there would otherwise fail
deep inside pycocotools, mmengine's dataset or its checkpoint loader, after minutes of building,
with a 40-line traceback. :func:`find_missing_inputs` walks the config instead and reports each
missing input as one :class:`MissingInput`: the config key, the path or URL, and the fix.

What is checked, for the phases a tool runs (``train``: train and val; ``test``: test):
- every ``<phase>_dataloader.dataset`` (wrappers such as ``ConcatDataset`` / ``RepeatDataset``
  followed): ``data_root``, ``ann_file`` and each ``data_prefix`` entry, joined as mmengine joins
  them (relative to ``data_root``);
- every ``<phase>_evaluator`` ``ann_file`` (mmdet's ``CocoMetric`` reads it by full path);
- pretrained weights: ``model.pretrained``, every ``init_cfg`` with ``type='Pretrained'`` inside
  ``model`` and ``load_from``. A local path must exist; a URL (or ``torchvision://``,
  ``open-mmlab://``, ...) must be in mmengine's checkpoint cache or reachable. The reachability
  probe (one HEAD request) is skipped where ``MMDYNUP_OFFLINE=1``; then only the cache counts.
"""
from __future__ import annotations

import os
import os.path as osp
import urllib.request
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

#: The dataloader phases each tool builds.
TOOL_PHASES = {'train': ('train', 'val'), 'test': ('test',)}
GUIDE = 'docs/user_guide.md ("Evaluate" lists the expected data layouts)'


@dataclass(frozen=True)
class MissingInput:
    """One input a config names that is not there."""

    key: str
    path: str
    fix: str
    reason: str = 'no such file or folder'

    def __str__(self) -> str:
        return f'{self.key} = {self.path!r}: {self.reason}; {self.fix}'


def _dataset_configs(dataset, key: str) -> Iterator[Tuple[str, Mapping]]:
    """The leaf dataset configs of ``dataset`` with their config keys (wrappers unwrapped)."""
    if not isinstance(dataset, Mapping):
        return
    if isinstance(dataset.get('datasets'), (list, tuple)):  # ConcatDataset
        for index, inner in enumerate(dataset['datasets']):
            yield from _dataset_configs(inner, f'{key}.datasets.{index}')
    elif isinstance(dataset.get('dataset'), Mapping):  # RepeatDataset, ClassBalancedDataset
        yield from _dataset_configs(dataset['dataset'], f'{key}.dataset')
    else:
        yield key, dataset


def _joined(data_root: str, path: str) -> str:
    return path if not data_root or osp.isabs(path) else osp.join(data_root, path)


def _missing_data(cfg: Mapping, phase: str) -> List[MissingInput]:
    loader = cfg.get(f'{phase}_dataloader')
    if not isinstance(loader, Mapping):
        return []
    missing = []
    for key, dataset in _dataset_configs(loader.get('dataset'), f'{phase}_dataloader.dataset'):
        data_root = dataset.get('data_root') or ''
        fix_root = (f'put the data set there (layout: {GUIDE}) or point the config at your copy '
                    f'with --cfg-options {key}.data_root=/path/to/your/copy')
        if data_root and not osp.isdir(data_root):
            missing.append(MissingInput(f'{key}.data_root', data_root, fix_root))
            continue  # everything below is relative to it
        ann_file = dataset.get('ann_file')
        if ann_file and not osp.exists(_joined(data_root, ann_file)):
            missing.append(MissingInput(
                f'{key}.ann_file', _joined(data_root, ann_file),
                f'check the layout ({GUIDE}) or set --cfg-options {key}.ann_file=...'))
        prefixes = dataset.get('data_prefix') or {}
        if isinstance(prefixes, Mapping):
            for name, prefix in prefixes.items():
                if prefix and not osp.exists(_joined(data_root, prefix)):
                    missing.append(MissingInput(
                        f'{key}.data_prefix.{name}', _joined(data_root, prefix),
                        f'check the layout ({GUIDE}) or set --cfg-options '
                        f'{key}.data_prefix.{name}=...'))
    return missing


def _missing_annotations(cfg: Mapping, phase: str) -> List[MissingInput]:
    evaluators = cfg.get(f'{phase}_evaluator')
    if evaluators is None:
        return []
    if isinstance(evaluators, Mapping):
        evaluators = [evaluators]
    missing = []
    for index, evaluator in enumerate(evaluators):
        ann_file = evaluator.get('ann_file') if isinstance(evaluator, Mapping) else None
        if ann_file and not osp.exists(ann_file):
            key = f'{phase}_evaluator' + ('' if len(evaluators) == 1 else f'.{index}')
            missing.append(MissingInput(
                f'{key}.ann_file', ann_file,
                f'the evaluator reads it by full path: set --cfg-options {key}.ann_file='
                f'/path/to/your/copy (layout: {GUIDE})'))
    return missing


def _pretrained_entries(node, key: str) -> Iterator[Tuple[str, str]]:
    """``(config key, checkpoint)`` of every ``Pretrained`` init_cfg / ``pretrained`` below."""
    if isinstance(node, Mapping):
        if node.get('type') == 'Pretrained' and isinstance(node.get('checkpoint'), str):
            yield f'{key}.checkpoint', node['checkpoint']
        for name, value in node.items():
            if name == 'pretrained' and isinstance(value, str):
                yield f'{key}.pretrained', value
            else:
                yield from _pretrained_entries(value, f'{key}.{name}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _pretrained_entries(value, f'{key}.{index}')


def checkpoint_url(checkpoint: str) -> Optional[str]:
    """The download URL mmengine resolves ``checkpoint`` to, or None for a local path or a
    storage scheme of the user's own (``s3://``, ``pavi://``)."""
    if checkpoint.startswith(('http://', 'https://')):
        return checkpoint
    if '://' not in checkpoint:
        return None
    import mmengine
    scheme, name = checkpoint.split('://', 1)
    # The model tables mmengine's CheckpointLoader reads (mmengine/hub/*.json); for torchvision
    # names the table of torchvision 0.12 names, read here without importing torchvision.
    tables = {'torchvision': ['torchvision_0.12.json'],
              'open-mmlab': ['openmmlab.json', 'deprecated.json'],
              'openmmlab': ['openmmlab.json', 'deprecated.json'], 'mmcls': ['mmcls.json']}
    if scheme not in tables:
        return None
    urls = {}
    for table in tables[scheme]:
        urls.update(mmengine.load(osp.join(mmengine.__path__[0], 'hub', table)))
    # deprecated.json maps old names to new names of openmmlab.json
    url = urls.get(urls.get(name, name), urls.get(name))
    return url if isinstance(url, str) and url.startswith(('http://', 'https://')) else None


def cached_checkpoint_path(url: str) -> str:
    """Where mmengine's ``load_from_http`` keeps a downloaded ``url``."""
    from torch.hub import get_dir
    return osp.join(get_dir(), 'checkpoints', osp.basename(url.split('?')[0]))


def url_reachable(url: str, timeout: float = 5.0) -> bool:
    """One HEAD request; False on any network error. Never called where MMDYNUP_OFFLINE=1."""
    try:
        request = urllib.request.Request(url, method='HEAD')
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status < 400
    except (OSError, ValueError):
        return False


def _missing_weights(cfg: Mapping) -> List[MissingInput]:
    entries = list(_pretrained_entries(cfg.get('model'), 'model'))
    if isinstance(cfg.get('load_from'), str):
        entries.append(('load_from', cfg['load_from']))
    offline = os.environ.get('MMDYNUP_OFFLINE') == '1'
    missing = []
    for key, checkpoint in entries:
        if '://' not in checkpoint:
            if not osp.exists(checkpoint):
                missing.append(MissingInput(key, checkpoint, f'give the path of an existing '
                                            f'checkpoint with --cfg-options {key}=...'))
            continue
        url = checkpoint_url(checkpoint)
        if checkpoint.startswith('torchvision://') and find_spec('torchvision') is None:
            local = cached_checkpoint_path(url) if url else '/path/to/checkpoint.pth'
            missing.append(MissingInput(
                key, checkpoint,
                f'download {url or "the checkpoint"} and pass its local path with '
                f'--cfg-options {key}={local}',
                reason='mmengine resolves torchvision:// names only where torchvision is '
                       'installed, and it is not'))
            continue
        if url is None or osp.exists(cached_checkpoint_path(url)):
            continue
        if not offline and url_reachable(url):
            continue
        missing.append(MissingInput(
            key, checkpoint,
            f'download it elsewhere and put it at {cached_checkpoint_path(url)}, or pass its '
            f'local path with --cfg-options {key}=/path/to/checkpoint.pth',
            reason=f'not in the checkpoint cache, and {url} cannot be reached from here'
                   + (' (MMDYNUP_OFFLINE=1)' if offline else '')))
    return missing


def find_missing_inputs(cfg: Mapping, phases: Sequence[str],
                        check_weights: bool = True) -> List[MissingInput]:
    """Every data path and checkpoint the config names for ``phases`` that is not there."""
    missing = []
    for phase in phases:
        missing += _missing_data(cfg, phase) + _missing_annotations(cfg, phase)
    if check_weights:
        missing += _missing_weights(cfg)
    return missing


def report_missing_inputs(missing: Sequence[MissingInput], config_path: str) -> str:
    """The message the tools print (one line per missing input)."""
    lines = [f'{config_path}: {len(missing)} input(s) the config names are missing:']
    lines += [f'  - {item}' for item in missing]
    return '\n'.join(lines)




def exit_if_inputs_missing(cfg: Mapping, config_path: str, tool: str) -> None:
    """Print :func:`report_missing_inputs` to stderr and exit with status 2 when anything the
    ``tool`` (``'train'`` or ``'test'``) would read is missing. Training also needs the
    pretrained weights; evaluation loads its checkpoint instead (the tool checks it)."""
    import sys
    missing = find_missing_inputs(cfg, TOOL_PHASES[tool], check_weights=tool == 'train')
    if missing:
        print(report_missing_inputs(missing, config_path), file=sys.stderr, flush=True)
        raise SystemExit(2)


__all__ = ['MissingInput', 'TOOL_PHASES', 'exit_if_inputs_missing', 'find_missing_inputs',
           'report_missing_inputs',
           'checkpoint_url', 'cached_checkpoint_path', 'url_reachable']
