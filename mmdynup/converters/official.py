"""``build_from_official``: the authors' operator modules -> mmdynup modules.

Each source (one per ``official`` string, as in ``shared/reference``) is a pure function
``(kwargs, state_dict) -> OfficialConversion`` registered with :func:`register_official` in the
converter file of its family. A conversion maps the official constructor arguments to ours, renames
the state_dict keys (an ordered table that reads like a diff of the two layouts), loads strictly,
and records how to map names back (parameter names, forward-argument roles) so that tests can
compare gradients under the official names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

#: ``official_call(module, inputs)``: our module computing the official forward's output structure
#: from the official forward's inputs (keyed by the official argument names).
OfficialCall = Callable[[nn.Module, Mapping[str, Tensor]], Any]


@dataclass
class OfficialConversion:
    """Result of converting one official module.

    Attributes:
        module: our module, loaded, in our calling convention ``module(x, guide=None)``.
        official_names: our parameter/buffer name -> the official key.
        input_roles: official forward argument name -> ``'x'`` (low-res input) or ``'guide'``.
        official_call: how our module computes the official forward (its inputs by official
            argument name -> the official output: a tensor or the same tuple). ``None``: the
            official forward is an upsampler call, ``module(x, guide)`` by ``input_roles``.
    """

    module: nn.Module
    official_names: Dict[str, str]
    input_roles: Dict[str, str] = field(default_factory=lambda: {'x': 'x'})
    official_call: Optional[OfficialCall] = None

    def official_forward(self, **inputs: Tensor) -> Any:
        """The official module's forward, computed by our module.

        Takes the official forward's inputs under the official argument names (a reference
        record's ``inputs``) and returns the official output structure (a tensor, or a tuple in
        the official order).
        """
        expected, given = set(self.input_roles), set(inputs)
        if given != expected:
            raise TypeError(f'official_forward takes the official inputs {sorted(expected)}, got '
                            f'{sorted(given)}; pass them by their official argument names')
        if self.official_call is not None:
            return self.official_call(self.module, inputs)
        by_role = {self.input_roles[name]: tensor for name, tensor in inputs.items()}
        return self.module(by_role['x'], by_role.get('guide'))


ConverterFn = Callable[[dict, Mapping[str, Tensor]], OfficialConversion]
_SOURCES: Dict[str, ConverterFn] = {}


def register_official(*officials: str) -> Callable[[ConverterFn], ConverterFn]:
    """Register a converter for one or more ``official`` strings."""
    def decorator(function: ConverterFn) -> ConverterFn:
        for official in officials:
            if official in _SOURCES:
                raise KeyError(f'a converter for {official!r} is already registered')
            _SOURCES[official] = function
        return function
    return decorator


def official_sources() -> Tuple[str, ...]:
    _load_families()
    return tuple(sorted(_SOURCES))


def rename_keys(state_dict: Mapping[str, Tensor],
                renames: Sequence[Tuple[str, str]]) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """Apply ordered ``(official_prefix, our_prefix)`` renames; the first match wins.

    Keys that match no rule keep their name. Returns the renamed dict and ``ours -> official``.
    """
    renamed, official_names = {}, {}
    for key, value in state_dict.items():
        new_key = key
        for old, new in renames:
            if key == old or key.startswith(old + '.'):
                new_key = new + key[len(old):]
                break
        if new_key in renamed:
            raise KeyError(f'two official keys map to {new_key!r}; check the rename table')
        renamed[new_key] = value
        official_names[new_key] = key
    return renamed, official_names


def load_converted(module: nn.Module, state_dict: Mapping[str, Tensor], official: str) -> None:
    """Strict load with an error that names what is missing or unexpected, and the source.

    A state_dict of one floating dtype (float64 reference files) moves the module to that dtype
    first, so that loading never rounds the weights.
    """
    dtypes = {t.dtype for t in state_dict.values() if t.is_floating_point()}
    if len(dtypes) > 1:
        raise TypeError(f'state_dict mixes floating dtypes {sorted(map(str, dtypes))}; cast it to '
                        f'one dtype first')
    if dtypes:
        module.to(dtypes.pop())
    result = module.load_state_dict(dict(state_dict), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f'the state_dict does not fit a {official!r} module built from these kwargs: '
            f'missing {sorted(result.missing_keys)}, unexpected {sorted(result.unexpected_keys)}; '
            f'check that the checkpoint comes from {official!r} and that kwargs match it')


def refuse_unknown_arguments(official: str, kwargs: Mapping, accepted) -> None:
    """TypeError naming the official constructor arguments in ``kwargs`` not in ``accepted``."""
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f'{official} got unexpected arguments {unknown}; it accepts '
                        f'{sorted(accepted)}')


def convert_same_layout(module: nn.Module, state_dict: Mapping[str, Tensor], official: str,
                        input_roles: Mapping[str, str], **extra) -> OfficialConversion:
    """Load ``state_dict`` into ``module`` whose parameter names are the official ones (no
    renames) and return the conversion; ``extra`` goes to :class:`OfficialConversion`."""
    renamed, official_names = rename_keys(state_dict, [])
    load_converted(module, renamed, official)
    return OfficialConversion(module, official_names, input_roles=dict(input_roles), **extra)


def source_key(official: Union[str, Mapping]) -> str:
    """The registry key of an ``official`` field: the string itself for operator records; the
    class name for integration records, whose ``official`` is a dict (repo, commit, file, cls)."""
    if isinstance(official, Mapping):
        if 'cls' not in official:
            raise KeyError(f'official={dict(official)!r} has no "cls" entry naming the class')
        return str(official['cls'])
    if not isinstance(official, str):
        raise TypeError(f'official must be a string or a dict with "cls", got '
                        f'{type(official).__name__}')
    return official


def convert_official(official: Union[str, Mapping], kwargs: dict,
                     state_dict: Mapping[str, Tensor]) -> OfficialConversion:
    """Convert and return the module with its name maps (see :class:`OfficialConversion`)."""
    _load_families()
    key = source_key(official)
    if key not in _SOURCES:
        raise KeyError(f'no converter for official={official!r}; known: {sorted(_SOURCES)}')
    return _SOURCES[key](dict(kwargs), state_dict)


def build_from_official(official: Union[str, Mapping], kwargs: dict,
                        state_dict: Mapping[str, Tensor]) -> nn.Module:
    """Our equivalent of an official operator module, loaded with its (renamed) state_dict.

    Args:
        official: the official class, e.g. ``'dysample.DySample'`` (a reference file's field),
            or for the authors' seg/det forks a dict with ``cls`` (``'UPerHead_Upsample'``,
            ``'FPN_UPSAMPLE'``).
        kwargs: the official constructor arguments.
        state_dict: the official module's parameters and buffers under official key names.

    Returns:
        The mmdynup module, called as ``module(x, guide)`` (low-resolution input first).
    """
    return convert_official(official, kwargs, state_dict).module


def _load_families() -> None:
    # The converters register themselves on import; the fork ones need their host installed.
    import importlib.util

    from . import operators  # noqa: F401
    if importlib.util.find_spec('mmseg') is not None:
        from . import segmentation_fork  # noqa: F401
        from . import segformer_authors  # noqa: F401
    if importlib.util.find_spec('mmdet') is not None:
        from . import detection_fork  # noqa: F401
        from . import mmdet_carafe  # noqa: F401
