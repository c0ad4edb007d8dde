"""The Adobe Composition-1K data set (Xu et al., "Deep Image Matting", CVPR 2017) in mmengine.

Two layouts, chosen by the keys of ``data_prefix`` (folders relative to ``data_root``):

* training, ``dict(fg=..., alpha=..., bg=...)``: foregrounds and their alpha mattes with the same
  file names, and a folder of backgrounds (Composition-1K takes them from COCO). Sample ``i`` pairs
  foreground ``i mod F`` with background ``i mod B``; there are ``max(F, B)`` samples (the
  authors' epoch is one pass over the backgrounds) and the pipeline composites them on the fly.
* test, ``dict(merged=..., alpha=..., trimap=...)``: the composited test images with one alpha
  and one trimap each. Composition-1K names the 20 composites of foreground ``x`` ``x_0`` ..
  ``x_19``; an alpha or trimap is looked up under the merged image's own name first, then under
  that name without its ``_<digits>`` suffix (the alpha of the foreground).

Files are matched by name without extension (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``).
A missing folder or partner file raises ``FileNotFoundError`` naming it.
"""
from __future__ import annotations

import os.path as osp
import re
from pathlib import Path
from typing import Dict, List, Mapping

from mmengine.dataset import BaseDataset
from mmseg.registry import DATASETS

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
TRAIN_KEYS = ('fg', 'alpha', 'bg')
TEST_KEYS = ('merged', 'alpha', 'trimap')
COMPOSITE_SUFFIX = re.compile(r'_\d+$')


def images_by_stem(folder: Path, key: str) -> Dict[str, str]:
    """File stem -> path of every image in ``folder`` (sorted)."""
    if not folder.is_dir():
        raise FileNotFoundError(f'data_prefix.{key}: the folder {str(folder)!r} does not exist; '
                                f'check data_root and the Composition-1K layout '
                                f'(configs/matting/README.md)')
    found = {path.stem: str(path) for path in sorted(folder.iterdir())
             if path.suffix.lower() in IMAGE_SUFFIXES}
    if not found:
        raise FileNotFoundError(f'data_prefix.{key}: the folder {str(folder)!r} holds no images '
                                f'({", ".join(IMAGE_SUFFIXES)})')
    return found


def partner(files: Dict[str, str], stem: str, key: str, folder: Path, owner: str) -> str:
    """The file of ``files`` for image ``stem``: same stem, else without the composite suffix."""
    foreground = COMPOSITE_SUFFIX.sub('', stem)
    for candidate in (stem, foreground):
        if candidate in files:
            return files[candidate]
    also = f' or {foreground}.png (its foreground\'s)' if foreground != stem else ''
    raise FileNotFoundError(f'{owner} has no {key}: expected {str(folder / stem)}.png{also} in '
                            f'data_prefix.{key}')


@DATASETS.register_module()
class CompositionMattingDataset(BaseDataset):
    """Composition-1K training or test data (module docstring: the two layouts).

    Args:
        data_root: the data set folder.
        data_prefix: ``dict(fg=, alpha=, bg=)`` (training) or ``dict(merged=, alpha=, trimap=)``
            (test), folders relative to ``data_root``.
        pipeline: the transforms (:mod:`mmdynup.matting.transforms`).
        **kwargs: ``BaseDataset`` arguments (``test_mode``, ``indices``, ``serialize_data``...).

    Each data info holds ``<key>_path`` for the keys of its layout and ``sample_idx``.
    """

    def __init__(self, data_root: str, data_prefix: Mapping[str, str], pipeline=(),
                 **kwargs) -> None:
        keys = set(data_prefix or {})
        if keys not in (set(TRAIN_KEYS), set(TEST_KEYS)):
            raise KeyError(f'data_prefix must have the keys {TRAIN_KEYS} (training) or '
                           f'{TEST_KEYS} (test), got {sorted(keys)}')
        super().__init__(data_root=data_root, data_prefix=dict(data_prefix),
                         pipeline=list(pipeline), **kwargs)

    def load_data_list(self) -> List[dict]:
        folders = {key: Path(path) for key, path in self.data_prefix.items()}
        if not osp.isdir(self.data_root):
            raise FileNotFoundError(f'data_root {self.data_root!r} does not exist')
        files = {key: images_by_stem(folder, key) for key, folder in folders.items()}
        if 'bg' in files:
            foregrounds, backgrounds = list(files['fg']), list(files['bg'].values())
            infos = [dict(fg_path=files['fg'][stem],
                          alpha_path=partner(files['alpha'], stem, 'alpha', folders['alpha'],
                                             f'foreground {files["fg"][stem]!r}'))
                     for stem in foregrounds]
            count = max(len(infos), len(backgrounds))
            return [dict(infos[i % len(infos)], bg_path=backgrounds[i % len(backgrounds)],
                         sample_idx=i) for i in range(count)]
        data_list = []
        for index, (stem, path) in enumerate(files['merged'].items()):
            owner = f'merged image {path!r}'
            data_list.append(dict(
                merged_path=path, sample_idx=index,
                alpha_path=partner(files['alpha'], stem, 'alpha', folders['alpha'], owner),
                trimap_path=partner(files['trimap'], stem, 'trimap', folders['trimap'], owner)))
        return data_list
