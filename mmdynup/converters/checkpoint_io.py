"""Whole-checkpoint conversion: the registry behind ``tools/convert_checkpoint.py``, safe loading,
the key-mapping report, and atomic writing.

A *checkpoint source* is one layout of released weights (the authors' segmentation fork, their
detection fork, MIRL's backbones, or one record of an operator module). Each is registered once,
in the converter file of its family, with :func:`register_checkpoint_source`::

    @register_checkpoint_source(
        'detection-fork',
        expects='an mmdet detector of tiny-smart/detection-with-upsamplers (FPN_UPSAMPLE neck: '
                'keys neck.lateral_convs.*, neck.fpn_convs.*, neck.upsample_modules.<i>.*)',
        detect=lambda state_dict: ... a sentence naming the evidence, or None ...,
        options=('meta', 'upsample_cfg'))
    def convert_detection_fork(state_dict, meta=None, upsample_cfg=None):
        ...
        return converted_state_dict, ConversionReport.from_renames(ours_to_source,
                                                                   dropped={key: reason})

Protocol:

* ``detect(state_dict) -> Optional[str]``: looks only at the keys (and shapes); returns the
  evidence ("found 3 keys neck.upsample_modules.<i>.*") when the checkpoint is of this source,
  else None. The CLI shows the evidence, refuses a checkpoint that no detector (or more than one)
  claims, and refuses ``--source NAME`` when NAME's detector says no.
* ``convert(state_dict, **options) -> (state_dict, ConversionReport)``: a pure function. It
  receives the unwrapped state dict (no ``state_dict`` / ``model`` container, no ``module.``
  prefix) and only the options it declares: ``'meta'`` and ``'kwargs'`` are taken from the file
  (mmengine's ``meta`` with the training config text; an operator record's constructor
  arguments), any other from ``--option NAME=VALUE``. It raises ValueError / KeyError /
  TypeError for a checkpoint it cannot convert; the CLI adds what was expected and found.
* The report accounts for every key: each output key names its source key (or None when the
  converter creates it), each source key not used is listed in ``dropped`` with the reason.
  :func:`check_report` refuses a report that leaves a key unaccounted (no silent drops).

Operator modules (``register_official`` in :mod:`.official`) need no extra code: every official
string is also a source that converts a *record* ``{'official': ..., 'kwargs': ...,
'state_dict': ...}`` (the layout of ``shared/reference``) into our module's state dict; the record's
``official`` field is the detection.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import os
import os.path as osp
import pickle
import pkgutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .official import OfficialConversion, convert_official, official_sources, source_key

ConvertFn = Callable[..., Tuple[Dict[str, Tensor], 'ConversionReport']]
DetectFn = Callable[[Mapping[str, Tensor]], Optional[str]]

#: Options that the CLI fills from the loaded file rather than from ``--option``.
FILE_OPTIONS = ('meta', 'kwargs')
#: Containers that hold the state dict in the checkpoints we read.
STATE_DICT_CONTAINERS = ('state_dict', 'model')


class CheckpointMismatchError(ValueError):
    """The checkpoint is not of the source that was asked for (or detected)."""


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The file pickles an object outside the allow-list; nothing from it was executed."""


# --------------------------------------------------------------------------- report
@dataclass
class ConversionReport:
    """What a conversion did to every key.

    Attributes:
        sources: output key -> source key it came from (None: created by the converter).
        dropped: source key -> why it is not in the output.
        notes: output key -> what changed in the value besides the name (e.g. ``'transposed'``).
        remarks: lines shown above the mapping table (e.g. a detected layout).
    """

    sources: Dict[str, Optional[str]] = field(default_factory=dict)
    dropped: Dict[str, str] = field(default_factory=dict)
    notes: Dict[str, str] = field(default_factory=dict)
    remarks: List[str] = field(default_factory=list)

    @classmethod
    def from_renames(cls, ours_to_source: Mapping[str, Optional[str]],
                     dropped: Optional[Mapping[str, str]] = None,
                     notes: Optional[Mapping[str, str]] = None,
                     remarks: Iterable[str] = ()) -> 'ConversionReport':
        """From an ``our key -> source key`` map such as ``OfficialConversion.official_names``."""
        return cls(dict(ours_to_source), dict(dropped or {}), dict(notes or {}), list(remarks))


def check_report(source: str, report: ConversionReport, original: Mapping[str, Tensor],
                 converted: Mapping[str, Tensor]) -> None:
    """Refuse a report that does not account for every key (a converter bug, not a user error)."""
    problems = []
    unexplained_outputs = sorted(set(converted) - set(report.sources))
    if unexplained_outputs:
        problems.append(f'output keys without a source entry: {unexplained_outputs}')
    missing_outputs = sorted(set(report.sources) - set(converted))
    if missing_outputs:
        problems.append(f'report entries for keys not in the output: {missing_outputs}')
    used = {key for key in report.sources.values() if key is not None}
    unknown = sorted((used | set(report.dropped)) - set(original))
    if unknown:
        problems.append(f'source keys that the checkpoint does not have: {unknown}')
    silent = sorted(set(original) - used - set(report.dropped))
    if silent:
        problems.append(f'source keys neither converted nor listed as dropped: {silent}')
    if problems:
        raise RuntimeError(f'the converter of {source!r} returned an incomplete report: '
                           + '; '.join(problems))


def _shape(tensor: Optional[Tensor]) -> str:
    return 'x'.join(map(str, tensor.shape)) if tensor is not None and tensor.dim() else \
        ('scalar' if tensor is not None else '')


def mapping_table(report: ConversionReport, original: Mapping[str, Tensor],
                  converted: Mapping[str, Tensor]) -> str:
    """The dry-run table: one row per source key (in file order), then the created keys.

    Columns: source key, its shape, output key (``(dropped)`` with the reason as note), its shape,
    note (``renamed`` / ``unchanged`` / the converter's note).
    """
    by_source: Dict[str, List[str]] = {}
    created = []
    for ours, source in report.sources.items():
        if source is None:
            created.append(ours)
        else:
            by_source.setdefault(source, []).append(ours)
    rows = [('source key', 'shape', 'mmdynup key', 'shape', 'note')]
    for source in original:
        if source in report.dropped:
            rows.append((source, _shape(original[source]), '(dropped)', '',
                         report.dropped[source]))
        for ours in by_source.get(source, []):
            note = report.notes.get(ours, 'unchanged' if ours == source else 'renamed')
            rows.append((source, _shape(original[source]), ours, _shape(converted[ours]), note))
    for ours in created:
        rows.append(('(new)', '', ours, _shape(converted[ours]),
                     report.notes.get(ours, 'created by the converter')))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths)]
        lines.append('  '.join(cells + [row[4]]).rstrip())
        if index == 0:
            lines.append('  '.join('-' * width for width in widths) + '  ----')
    counts = Counter('dropped' if row[2] == '(dropped)' else row[4] for row in rows[1:])
    summary = ', '.join(f'{count} {kind}' for kind, count in sorted(counts.items()))
    return '\n'.join(lines + [f'{len(original)} source keys -> {len(converted)} keys ({summary})'])


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class CheckpointSource:
    """One registered checkpoint layout (see the module docstring for the protocol)."""

    name: str
    expects: str
    convert: ConvertFn
    detect: Optional[DetectFn] = None
    options: Tuple[str, ...] = ()


_SOURCES: Dict[str, CheckpointSource] = {}


def register_checkpoint_source(name: str, *, expects: str, detect: Optional[DetectFn] = None,
                               options: Iterable[str] = ()) -> Callable[[ConvertFn], ConvertFn]:
    """Decorator registering ``convert`` as the converter of source ``name``.

    Args:
        name: the ``--source`` value, e.g. ``'segmentation-fork'``.
        expects: one sentence saying which checkpoints this converts and which keys they have
            (shown when a checkpoint is refused).
        detect: ``state_dict -> evidence or None``; without one the source is only used when
            named explicitly.
        options: keyword arguments ``convert`` accepts (``'meta'``, ``'kwargs'`` or any other
            name that ``--option NAME=VALUE`` may set).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f'name must be a non-empty string, got {name!r}')

    def decorator(convert: ConvertFn) -> ConvertFn:
        if name in _SOURCES and _SOURCES[name].convert is not convert:
            raise KeyError(f'checkpoint source {name!r} is already registered by '
                           f'{_SOURCES[name].convert.__module__}; pick another name')
        _SOURCES[name] = CheckpointSource(name, expects, convert, detect, tuple(options))
        return convert
    return decorator


def unregister_checkpoint_source(name: str) -> None:
    """Remove a source (for tests that register temporary ones)."""
    _SOURCES.pop(name, None)


def _import_converter_modules() -> None:
    """Import every module of this package so that each registers its sources; a module whose
    host library (mmseg / mmdet) is not installed is skipped, any other import error raised."""
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        try:
            importlib.import_module(f'{__package__}.{module.name}')
        except ModuleNotFoundError as error:
            if error.name is None or error.name.split('.')[0] not in ('mmseg', 'mmdet'):
                raise


def value_change(before: Tensor, after: Tensor) -> Optional[str]:
    """How a converted tensor differs from its source besides the name (None: identical)."""
    if before.dim() == 2 and after.shape == before.shape[::-1] and torch.equal(before.t(), after):
        return 'transposed'
    if before.shape != after.shape:
        return f'reshaped {_shape(before)} -> {_shape(after)}'
    if before.dtype != after.dtype:
        return f'cast {before.dtype} -> {after.dtype}'
    return None if torch.equal(before, after) else 'values changed'


def _operator_record_source(official: str) -> CheckpointSource:
    def convert(state_dict: Mapping[str, Tensor], kwargs: Optional[Mapping] = None):
        if kwargs is None:
            raise ValueError(f'converting {official!r} needs its constructor arguments: use a '
                             f'record with a "kwargs" entry, or pass --kwargs \'{{...}}\'')
        conversion: OfficialConversion = convert_official(official, dict(kwargs), state_dict)
        converted = {key: value.detach().clone()
                     for key, value in conversion.module.state_dict().items()}
        sources = {key: conversion.official_names.get(key) for key in converted}
        used = set(sources.values())
        # The module was strictly loaded, so an unused source key is one the converter discards.
        dropped = {key: f'not used by {type(conversion.module).__name__}'
                   for key in state_dict if key not in used}
        notes = {key: note for key, source in sources.items() if source is not None
                 for note in [value_change(state_dict[source], converted[key])] if note}
        return converted, ConversionReport.from_renames(
            sources, dropped, notes, remarks=[f'module: {type(conversion.module).__name__}'])

    return CheckpointSource(
        official,
        expects=f'a record {{"official": {official!r}, "kwargs": constructor arguments, '
                f'"state_dict": official keys}}, or the bare state_dict with --kwargs',
        convert=convert, detect=None, options=('kwargs',))


def checkpoint_sources() -> Dict[str, CheckpointSource]:
    """Every registered source by name: whole-checkpoint converters and operator records."""
    _import_converter_modules()
    sources = {official: _operator_record_source(official) for official in official_sources()}
    sources.update(_SOURCES)
    return dict(sorted(sources.items()))


# --------------------------------------------------------------------------- loading
@dataclass
class LoadedCheckpoint:
    """A checkpoint file split into its state dict and the rest.

    Attributes:
        path: the file.
        state_dict: the tensors, unwrapped from ``state_dict`` / ``model``, ``module.`` removed.
        record: every other top-level entry (``meta``, ``official``, ``kwargs``, ...).
        container: where the tensors were (``'state_dict'``, ``'model'`` or ``''`` for bare).
    """

    path: str
    state_dict: Dict[str, Tensor]
    record: Dict[str, object]
    container: str


def safe_torch_load(path: str) -> object:
    """``torch.load(weights_only=True)`` with mmengine's checkpoint globals allow-listed (and
    nothing else); ``.pdparams`` pickles go through MIRL's arrays-only unpickler. Raises
    :class:`UnsafeCheckpointError` for a file that pickles anything else: no code runs."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    if path.endswith('.pdparams'):
        from .mirl import load_pdparams
        try:
            return load_pdparams(path)
        except pickle.UnpicklingError as error:
            raise UnsafeCheckpointError(f'refusing to load {path}: {error}') from None
    from ..engine import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        reason = next((line.strip() for line in str(error).splitlines()
                       if 'GLOBAL' in line or 'Unsupported' in line), str(error).splitlines()[0])
        raise UnsafeCheckpointError(
            f'refusing to load {path}: it pickles objects outside the weights-only allow-list '
            f'({reason}); nothing from the file was executed. Re-save it as a plain dict of '
            f'tensors if you trust it') from None


def _as_tensor(name: str, value) -> Tensor:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        value = value[1]  # Paddle pickles a parameter as (name, ndarray)
    if isinstance(value, Tensor):
        return value
    if type(value).__module__ == 'numpy' and hasattr(value, 'dtype'):
        return torch.from_numpy(value.copy())
    raise TypeError(f'state_dict entry {name!r} is a {type(value).__name__}, not a tensor; this '
                    f'is not a checkpoint of model weights')


def split_checkpoint(checkpoint: object, path: str = '<memory>') -> LoadedCheckpoint:
    """Unwrap a loaded checkpoint (see :class:`LoadedCheckpoint`)."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'{path}: a checkpoint must be a dict, got {type(checkpoint).__name__}')
    container = next((key for key in STATE_DICT_CONTAINERS
                      if isinstance(checkpoint.get(key), Mapping)), '')
    tensors = checkpoint[container] if container else checkpoint
    record = {key: value for key, value in checkpoint.items() if key != container} \
        if container else {}
    state_dict = {}
    for name, value in tensors.items():
        if name == 'StructuredToParameterName@@':
            continue  # Paddle's own name table, not a tensor
        if name.startswith('module.'):
            name = name[len('module.'):]  # saved from a DistributedDataParallel wrapper
        state_dict[name] = _as_tensor(name, value)
    return LoadedCheckpoint(path, state_dict, record, container)


def load_checkpoint(path: str) -> LoadedCheckpoint:
    """Safely load and unwrap a checkpoint file."""
    return split_checkpoint(safe_torch_load(path), path)


def describe_keys(state_dict: Mapping[str, Tensor], limit: int = 6) -> str:
    """A short description of what a state dict holds, for error messages."""
    if not state_dict:
        return 'an empty state dict'
    prefixes = Counter(key.split('.', 1)[0] for key in state_dict)
    if len(prefixes) > 1 and len(prefixes) < len(state_dict):
        parts = [f'{prefix}.* ({count})' for prefix, count in prefixes.most_common(limit)]
        more = f', and {len(prefixes) - limit} more prefixes' if len(prefixes) > limit else ''
        return f'{len(state_dict)} keys: ' + ', '.join(parts) + more
    keys = list(state_dict)
    more = f', ... ({len(keys) - limit} more)' if len(keys) > limit else ''
    return f'{len(keys)} keys: ' + ', '.join(keys[:limit]) + more


# --------------------------------------------------------------------------- choosing a source
def choose_source(checkpoint: LoadedCheckpoint, source: Optional[str] = None,
                  ) -> Tuple[CheckpointSource, str]:
    """The source to convert with and a sentence saying how it was chosen.

    An explicit ``source`` is checked against the checkpoint (record field or detector); without
    one, the record's ``official`` field decides, else exactly one detector must claim the keys.
    Raises :class:`CheckpointMismatchError` saying what was expected and what was found.
    """
    sources = checkpoint_sources()
    found = describe_keys(checkpoint.state_dict)
    official = checkpoint.record.get('official')
    recorded = source_key(official) if official is not None else None
    claims = {name: evidence for name, entry in sources.items() if entry.detect is not None
              for evidence in [entry.detect(checkpoint.state_dict)] if evidence}
    if source is not None:
        if source not in sources:
            raise ValueError(f'--source {source!r} is not a known checkpoint source; known: '
                             f'{list(sources)}')
        chosen = sources[source]
        # A source with a detector is checked on the keys; an operator source on the record.
        if chosen.detect is None and recorded is not None and recorded != source:
            raise CheckpointMismatchError(
                f'--source {source!r} expects {chosen.expects}; found a record of '
                f'{recorded!r} ({found})')
        if chosen.detect is not None and source not in claims:
            looks_like = (f'; it looks like {", ".join(repr(name) for name in claims)} '
                          f'({"; ".join(claims.values())})' if claims else '')
            raise CheckpointMismatchError(
                f'--source {source!r} expects {chosen.expects}; found {found}{looks_like}')
        how = claims.get(source) or (f'the record\'s "official" field is {recorded!r}'
                                     if recorded else 'given, not checked by a detector')
        return chosen, f'source {source!r} (--source; {how})'
    if recorded is not None:
        if recorded not in sources:
            raise CheckpointMismatchError(
                f'the checkpoint is a record of {recorded!r}, which no converter handles; '
                f'known sources: {list(sources)}')
        return sources[recorded], (f'source {recorded!r} (detected: the record\'s "official" '
                                   f'field)')
    if len(claims) == 1:
        name, evidence = next(iter(claims.items()))
        return sources[name], f'source {name!r} (detected: {evidence})'
    if claims:
        listed = '; '.join(f'{name!r}: {evidence}' for name, evidence in claims.items())
        raise CheckpointMismatchError(f'several sources match ({listed}); pick one with --source')
    expected = '\n'.join(f'  {name}: {entry.expects}' for name, entry in sources.items())
    raise CheckpointMismatchError(
        f'no converter recognises this checkpoint ({found}). Expected one of:\n{expected}\n'
        f'pass --source NAME (with --kwargs for an operator state dict)')


def convert_checkpoint(checkpoint: LoadedCheckpoint, source: CheckpointSource,
                       options: Optional[Mapping[str, object]] = None,
                       ) -> Tuple[Dict[str, Tensor], ConversionReport]:
    """Run ``source``'s converter with the options it declares, then check its report.

    ``meta`` / ``kwargs`` come from the file unless given in ``options``. A converter's
    ValueError / KeyError / TypeError becomes :class:`CheckpointMismatchError` that also says
    what ``source`` expects and what the checkpoint holds.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(source.options))
    if unknown:
        raise ValueError(f'source {source.name!r} takes no option(s) {unknown}; it accepts '
                         f'{list(source.options) or "none"}')
    for name in FILE_OPTIONS:
        if name in source.options and name not in options and name in checkpoint.record:
            options[name] = checkpoint.record[name]
    try:
        converted, report = source.convert(dict(checkpoint.state_dict), **options)
    except (ValueError, KeyError, TypeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise CheckpointMismatchError(
            f'{source.name!r} could not convert {checkpoint.path}: {message}. It expects '
            f'{source.expects}; found {describe_keys(checkpoint.state_dict)}') from error
    check_report(source.name, report, checkpoint.state_dict, converted)
    return converted, report


# --------------------------------------------------------------------------- writing
def sha256(path: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def check_output_path(input_path: str, output_path: str, overwrite: bool = False) -> None:
    """Refuse writing over the input (always) or over an existing file (unless ``overwrite``)."""
    same = osp.realpath(input_path) == osp.realpath(output_path) or (
        osp.exists(output_path) and osp.samefile(input_path, output_path))
    if same:
        raise ValueError(f'output {output_path!r} is the input checkpoint; the converter never '
                         f'overwrites its input: choose another output path')
    if osp.exists(output_path) and not overwrite:
        raise FileExistsError(f'output {output_path!r} exists; pass --overwrite to replace it')
    directory = osp.dirname(osp.abspath(output_path))
    if not osp.isdir(directory):
        raise FileNotFoundError(f'output folder {directory!r} does not exist')


def atomic_save(obj: object, path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed over it:
    readers see the old file or the complete new one, never a partial write."""
    directory = osp.dirname(osp.abspath(path))
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=f'.{osp.basename(path)}.',
                                         suffix='.partial', delete=False)
    try:
        with handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        if osp.exists(handle.name):
            os.remove(handle.name)
        raise


def parse_option(text: str) -> Tuple[str, object]:
    """``NAME=VALUE`` with VALUE a Python literal (``4``, ``True``, ``[1, 2]``, ``{'a': 1}``) or
    else a plain string; parsed with ``ast.literal_eval``, which evaluates no code."""
    if '=' not in text:
        raise ValueError(f'--option must look like NAME=VALUE, got {text!r}')
    name, value = text.split('=', 1)
    try:
        return name.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name.strip(), value
