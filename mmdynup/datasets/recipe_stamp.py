"""The stamp file that makes the synthetic data writers idempotent and never overwrite data that
is not theirs: ``<root>/<name>.json`` holds the arguments the set was written with."""
from __future__ import annotations

import json
from pathlib import Path


def already_written(root: Path, name: str, recipe: dict, overwrite: bool) -> bool:
    """True when ``root`` already holds the set of ``recipe``; False when it must be written.

    Raises ``FileExistsError`` for a set written with other arguments (unless ``overwrite``) and
    for a non-empty folder that holds no stamp of ours.
    """
    stamp = root / f'{name}.json'
    if stamp.exists():
        if json.loads(stamp.read_text()) == json.loads(json.dumps(recipe)):
            return True
        if not overwrite:
            raise FileExistsError(f'{root} holds a synthetic set made with other arguments '
                                  f'({stamp.read_text()}); pass overwrite=True or another root')
    elif root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f'{root} exists and is not a synthetic set written by mmdynup; '
                              f'choose an empty folder')
    return False


def write_stamp(root: Path, name: str, recipe: dict) -> None:
    """Record ``recipe`` once the set is complete (an interrupted write leaves no stamp)."""
    (root / f'{name}.json').write_text(json.dumps(recipe))
