"""The main job on an embedded default: bilinear vs a dynamic upsampler, trained and evaluated.

    python tools/demo.py            # (make demo) writes data/synthetic_ade, work_dirs/demo/...

1. writes a small synthetic segmentation set in ADE20K's on-disk layout
   (:mod:`mmdynup.datasets.synthetic_ade`: thin wires, hard-edged discs, a fine lattice);
2. trains the SegFormer config of ``configs/demo`` twice with mmengine's Runner (mmseg's real
   dataset, pipeline, model and IoUMetric): once with the stock bilinear head, once with the
   head's x2 steps done by a dynamic upsampler (FADE by default);
3. evaluates both and prints a table (mIoU from IoUMetric, per-class IoU, boundary IoU, added
   parameters, training time) and writes a PNG with input, ground truth and both predictions.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmdynup  # noqa: E402,F401
from mmdynup.datasets.synthetic_ade import CLASSES, PALETTE, write_synthetic_ade  # noqa: E402

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'demo')
BASELINE = osp.join(CONFIG_DIR, 'segformer_mit-tiny_bilinear_1xb8-1200it_synthetic-ade-128x128.py')
DYNAMIC = osp.join(CONFIG_DIR, 'segformer_mit-tiny_fade_1xb8-1200it_synthetic-ade-128x128.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--baseline-config', default=BASELINE)
    parser.add_argument('--dynamic-config', default=DYNAMIC)
    parser.add_argument('--data-root', default='data/synthetic_ade')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--iters', type=int, default=None, help='override max_iters (both runs)')
    parser.add_argument('--num-train', type=int, default=96)
    parser.add_argument('--num-val', type=int, default=24)
    parser.add_argument('--boundary-width', type=int, default=2,
                        help='pixels from a contour that count as boundary for boundary IoU')
    parser.add_argument('--figure', default=None, help='PNG path (default: <work-dir>/demo.png)')
    return parser.parse_args(argv)


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels of its contour (Boundary IoU, Cheng et al. 2021)."""
    mask = mask.astype(np.uint8)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    padded = cv2.copyMakeBorder(mask, width, width, width, width, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, kernel)[width:-width, width:-width]
    return mask.astype(bool) & ~eroded.astype(bool)


class SegmentationScores:
    """Accumulates per-class IoU and boundary IoU over (prediction, ground truth) label maps."""

    def __init__(self, num_classes: int, boundary_width: int, ignore_index: int = 255):
        self.num_classes, self.width, self.ignore = num_classes, boundary_width, ignore_index
        self.intersection = np.zeros(num_classes)
        self.union = np.zeros(num_classes)
        self.band_intersection = np.zeros(num_classes)
        self.band_union = np.zeros(num_classes)

    def add(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        valid = truth != self.ignore
        for index in range(self.num_classes):
            pred_mask, true_mask = (prediction == index) & valid, (truth == index) & valid
            self.intersection[index] += (pred_mask & true_mask).sum()
            self.union[index] += (pred_mask | true_mask).sum()
            pred_band = boundary_band(pred_mask, self.width)
            true_band = boundary_band(true_mask, self.width)
            self.band_intersection[index] += (pred_band & true_band).sum()
            self.band_union[index] += (pred_band | true_band).sum()

    def per_class_iou(self) -> np.ndarray:
        return 100 * self.intersection / np.maximum(self.union, 1)

    def boundary_iou(self) -> float:
        return float(100 * np.mean(self.band_intersection / np.maximum(self.band_union, 1)))


def train_and_evaluate(config_path: str, args, tag: str) -> dict:
    cfg = Config.fromfile(config_path)
    cfg.work_dir = osp.join(args.work_dir, tag)
    cfg.train_dataloader.dataset.data_root = args.data_root
    cfg.val_dataloader.dataset.data_root = args.data_root
    cfg.test_dataloader.dataset.data_root = args.data_root
    if args.iters is not None:
        cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = args.iters
        cfg.default_hooks.checkpoint.interval = args.iters
        warmup = max(1, min(cfg.param_scheduler[0].end, args.iters // 12))
        cfg.param_scheduler[0].end = cfg.param_scheduler[1].begin = warmup
        cfg.param_scheduler[1].end = args.iters
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    train_seconds = time.perf_counter() - start
    metrics = runner.test()

    model = runner.model.eval()
    scores = SegmentationScores(len(CLASSES), args.boundary_width)
    samples = []
    with torch.no_grad():
        for batch in runner.test_dataloader:
            for sample in model.test_step(batch):
                prediction = sample.pred_sem_seg.data[0].numpy()
                truth = sample.gt_sem_seg.data[0].numpy()
                scores.add(prediction, truth)
                samples.append((sample.img_path, truth, prediction))
    parameters = sum(p.numel() for p in model.parameters())
    return dict(metrics=metrics, scores=scores, samples=samples, parameters=parameters,
                train_seconds=train_seconds, iters=cfg.train_cfg.max_iters,
                upsampler=(cfg.model.decode_head.get('upsample_cfg') or {}).get('type', 'bilinear'))


def colourise(labels: np.ndarray) -> np.ndarray:
    palette = np.array(list(PALETTE) + [(0, 0, 0)], np.uint8)  # ignore -> black
    index = np.where(labels == 255, len(PALETTE), labels)
    return palette[index]


def write_figure(path: str, baseline: dict, dynamic: dict, count: int = 4) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    titles = ['input', 'ground truth', f'bilinear ({baseline["metrics"]["mIoU"]:.1f} mIoU)',
              f'{dynamic["upsampler"]} ({dynamic["metrics"]["mIoU"]:.1f} mIoU)']
    figure, axes = plt.subplots(count, 4, figsize=(10, 2.6 * count))
    for row in range(count):
        image_path, truth, base_pred = baseline['samples'][row]
        _, _, dyn_pred = dynamic['samples'][row]
        image = cv2.cvtColor(cv2.imread(image_path), cv2.COLOR_BGR2RGB)
        panels = [image, colourise(truth), colourise(base_pred), colourise(dyn_pred)]
        for column, panel in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(panel, interpolation='nearest')
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(titles[column], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    write_synthetic_ade(args.data_root, num_train=args.num_train, num_val=args.num_val)
    print(f'data: {args.num_train} training / {args.num_val} validation scenes in {args.data_root}')
    baseline = train_and_evaluate(args.baseline_config, args, 'bilinear')
    dynamic = train_and_evaluate(args.dynamic_config, args, 'dynamic')

    header = ['upsampler', 'mIoU', *[f'IoU {name}' for name in CLASSES],
              f'boundary IoU (d={args.boundary_width})', 'added params', 'train time']
    rows = []
    for run in (baseline, dynamic):
        rows.append([run['upsampler'], f'{run["metrics"]["mIoU"]:.2f}',
                     *[f'{v:.2f}' for v in run['scores'].per_class_iou()],
                     f'{run["scores"].boundary_iou():.2f}',
                     f'{run["parameters"] - baseline["parameters"]:+,d}',
                     f'{run["train_seconds"]:.0f} s ({run["iters"]} it)'])
    print()
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')
    figure = args.figure or osp.join(args.work_dir, 'demo.png')
    write_figure(figure, baseline, dynamic)
    print(f'\nfigure: {figure}')


if __name__ == '__main__':
    main()
