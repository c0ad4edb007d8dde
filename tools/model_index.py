"""Write the OpenMMLab model index: ``configs/<folder>/metafile.yaml`` and ``model-index.yml``.

    python tools/model_index.py            # (re)write them from the configs and README tables
    python tools/model_index.py --check    # exit 1 if the files on disk are not what it writes

The README tables are the source of the numbers (each row that links a config gives its
published metrics and our parameter count); the metafiles are the machine-readable copy that
OpenMMLab tools and users read (schema of mmseg / mmdet: Collections, then Models with Name,
In Collection, Config, Metadata, Results, Paper, Code: the upsampler's paper and its authors'
code). ``tests/test_model_index.py`` checks that
every config is listed once, that every entry's config exists and that the files are current.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / 'configs'

#: Config folders with a model zoo: task, data set and host collection.
FOLDERS = {
    'segformer': ('Semantic Segmentation', 'ADE20K', 'SegFormer'),
    'upernet': ('Semantic Segmentation', 'ADE20K', 'UPerNet'),
    'faster-rcnn': ('Object Detection', 'COCO', 'Faster R-CNN'),
    'mask-rcnn': ('Instance Segmentation', 'COCO', 'Mask R-CNN'),
    'panoptic-fpn': ('Panoptic Segmentation', 'COCO', 'Panoptic FPN'),
    'depth': ('Depth Estimation', 'NYU Depth V2', 'Depth'),
    'pafpn': ('Object Detection', 'COCO', 'PAFPN'),
    'yolox': ('Object Detection', 'COCO', 'YOLOX'),
    'rtmdet': ('Object Detection', 'COCO', 'RTMDet'),
    'mirl': ('Semantic Segmentation', 'ADE20K', 'MIRL'),
    'matting': ('Image Matting', 'Adobe Composition-1K', 'A2U Matting'),
}

#: Configs of a folder whose task or data set is not the folder's, by the end of the file name
#: (the data-set component of OpenMMLab's naming scheme): (pattern, task, data set).
NAME_TASKS = {
    'mirl': [(re.compile(r'_ft-.*_synthetic-in1k-\d+x\d+$'), 'Image Classification',
              'synthetic ImageNet layout (generated)'),
             (re.compile(r'_synthetic-in1k-\d+x\d+$'), 'Self-Supervised Pretraining',
              'synthetic ImageNet layout (generated)'),
             (re.compile(r'_synthetic-\d+x\d+$'), 'Self-Supervised Pretraining',
              'synthetic images (generated)'),
             (re.compile(r'_ft-.*_in1k$'), 'Image Classification', 'ImageNet-1k'),
             (re.compile(r'_in1k$'), 'Self-Supervised Pretraining', 'ImageNet-1k')],
}
#: Any folder: configs on data the tests generate.
SYNTHETIC = re.compile(r'_synthetic-([a-z0-9]+-)*\d+x\d+$')

#: README column header (lower case) -> metric name in the metafile.
METRIC_COLUMNS = {
    'published miou': 'mIoU', 'miou (published)': 'mIoU', 'miou': 'mIoU',
    'ap (published)': 'box AP', 'box ap': 'box AP', 'mask ap': 'mask AP',
    'pq': 'PQ', 'pq things': 'PQ_th', 'pq stuff': 'PQ_st',
    'd<1.25': 'd1', 'absrel': 'abs_rel', 'rms': 'rmse',
    'sad (published)': 'SAD', 'mse (published)': 'MSE', 'grad (published)': 'Grad',
    'conn (published)': 'Conn',
    'top-1 (published, 300-epoch pretraining)': 'Top 1 Accuracy (300-epoch pretraining)',
    'top-1 (published, 800-epoch pretraining)': 'Top 1 Accuracy (800-epoch pretraining)',
}
#: README column header -> metadata key (our measured counts).
METADATA_COLUMNS = {'params (ours)': 'Parameters', 'added (ours)': 'Added Parameters',
                    'added params (ours)': 'Added Parameters',
                    'added params (ours / published)': 'Added Parameters', 'gflops': 'GFLOPs'}

#: Upsampler (as named in config file names) -> (paper, the authors' code).
PAPERS = {
    'carafe': ('CARAFE: Content-Aware ReAssembly of FEatures (ICCV 2019)',
               'https://github.com/open-mmlab/mmcv'),
    'fade': ('FADE: Fusing the Assets of Decoder and Encoder for Task-Agnostic Upsampling '
             '(ECCV 2022)', 'https://github.com/poppinace/fade'),
    'sapa': ('SAPA: Similarity-Aware Point Affiliation for Feature Upsampling (NeurIPS 2022)',
             'https://github.com/poppinace/sapa'),
    'dysample': ('Learning to Upsample by Learning to Sample (ICCV 2023)',
                 'https://github.com/tiny-smart/dysample'),
    'indexnet': ('Indices Matter: Learning to Index for Deep Image Matting (ICCV 2019)',
                 'https://github.com/poppinace/indexnet_matting'),
    'a2u': ('Learning Affinity-Aware Upsampling for Deep Image Matting (CVPR 2021)',
            'https://github.com/dongdong93/a2u_matting'),
    'freqfusion': ('Frequency-aware Feature Fusion for Dense Image Prediction (TPAMI 2024)',
                   'https://github.com/Linwei-Chen/FreqFusion'),
    'lda-aqu': ('LDA-AQU: Adaptive Query-guided Upsampling via Local Deformable Attention '
                '(ACM MM 2024)', 'https://github.com/duzw9311/LDA-AQU'),
    'frfu': ('FRFU (RRFU): Flexible / Relaxed Receptive Field Upsampling (2025)',
             'https://github.com/yisi-xj/Relaxed-Receptive-Field-for-Adaptive-Upsampling'),
}
LINK = re.compile(r'\]\(([^)]+\.py)\)')
# A number, optionally followed by a note: '41.09', '46,836,640', '+271,596 / +0.3M',
# '41.83 (see below)'; not '46.8M' or '-'.
NUMBER = re.compile(r'^[+]?(\d[\d,]*(?:\.\d+)?)(?:\s*(?:/|\().*)?$')


def _number(text: str) -> Optional[float]:
    """A plain number of a table cell ('41.09', '46,836,640'), else None ('-', '46.8M')."""
    match = NUMBER.match(text.strip().strip('*'))
    if not match:
        return None
    digits = match.group(1)
    return float(digits.replace(',', '')) if '.' in digits else int(digits.replace(',', ''))


def readme_rows(readme: Path) -> Dict[str, Dict[str, str]]:
    """Config file name -> {column header: cell} for every table row that links a config
    (the first row per config wins)."""
    rows: Dict[str, Dict[str, str]] = {}
    header: Optional[List[str]] = None
    for line in readme.read_text().splitlines():
        if not line.startswith('|'):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if header is None:
            header = [cell.lower() for cell in cells]
            continue
        if set(''.join(cells)) <= set('-: '):
            continue
        for cell in cells:
            for target in LINK.findall(cell):
                name = Path(target).name
                rows.setdefault(name, dict(zip(header, cells)))
    return rows


def paper_of(config_name: str) -> Optional[tuple]:
    for key in sorted(PAPERS, key=len, reverse=True):
        if re.search(rf'[_-]{re.escape(key)}([_-]|$)', config_name):
            return PAPERS[key]
    return None


def task_of(folder: str, config_name: str) -> tuple:
    """(task, data set) of ``configs/<folder>/<config_name>.py``."""
    task, dataset, _ = FOLDERS[folder]
    for pattern, name_task, name_dataset in NAME_TASKS.get(folder, []):
        if pattern.search(config_name):
            return name_task, name_dataset
    if SYNTHETIC.search(config_name):
        return task, 'synthetic (generated)'
    return task, dataset


def folder_metafile(folder: str) -> dict:
    _, folder_dataset, collection = FOLDERS[folder]
    directory = CONFIGS / folder
    readme = directory / 'README.md'
    rows = readme_rows(readme) if readme.exists() else {}
    models = []
    for config in sorted(directory.glob('*.py')):
        row = rows.get(config.name, {})
        task, dataset = task_of(folder, config.stem)
        metrics = {METRIC_COLUMNS[column]: _number(cell) for column, cell in row.items()
                   if column in METRIC_COLUMNS and _number(cell) is not None}
        metadata = {'Training Data': dataset}
        metadata.update({METADATA_COLUMNS[column]: _number(cell) for column, cell in row.items()
                         if column in METADATA_COLUMNS and _number(cell) is not None})
        model = {'Name': config.stem, 'In Collection': collection,
                 'Config': f'configs/{folder}/{config.name}', 'Metadata': metadata}
        if metrics:
            model['Results'] = [{'Task': task, 'Dataset': dataset, 'Metrics': metrics}]
        paper = paper_of(config.stem)
        if paper:
            model['Paper'], model['Code'] = {'Title': paper[0]}, {'URL': paper[1]}
        models.append(model)
    return {'Collections': [{'Name': collection, 'Metadata': {'Training Data': folder_dataset},
                             'README': f'configs/{folder}/README.md'}],
            'Models': models}


def rendered() -> Dict[Path, str]:
    """Every file this tool writes, with its text."""
    files = {}
    imports = []
    for folder in FOLDERS:
        if not (CONFIGS / folder).is_dir() or not any((CONFIGS / folder).glob('*.py')):
            continue
        path = CONFIGS / folder / 'metafile.yaml'
        files[path] = yaml.safe_dump(folder_metafile(folder), sort_keys=False, width=100)
        imports.append(f'configs/{folder}/metafile.yaml')
    files[REPO_ROOT / 'model-index.yml'] = yaml.safe_dump({'Import': imports}, sort_keys=False)
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='only compare; exit 1 when a file differs from what it would write')
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path.relative_to(REPO_ROOT))
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        print(f'stale: {", ".join(map(str, stale))}; run python tools/model_index.py',
              file=sys.stderr)
        return 1
    print(f'{"checked" if args.check else "wrote"} {len(rendered())} files'
          + (f' ({len(stale)} changed)' if stale and not args.check else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
