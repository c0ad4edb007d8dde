"""What dynamic upsampling buys: FADE's toy study for every upsampler, on embedded data.

    python tools/demo.py                         # (make demo) default upsamplers, both toy tasks
    python tools/demo.py --all                   # every upsampler of configs/_base_/upsamplers
    python tools/demo.py --upsamplers bilinear fade --seeds 0 1 2
    python tools/demo.py --tasks segformer       # the SegFormer comparison of earlier releases

FADE (Lu et al., ECCV 2022, Sec. 4) compares upsamplers on two toy tasks with one small
encoder-decoder whose decoder does nothing but x2 upsampling steps (mmdynup/toy/network.py: no
skip connections; guided operators are guided by the encoder feature of each resolution):

* ``segmentation`` (region-sensitive): the synthetic 64 x 64 scenes of
  :mod:`mmdynup.datasets.synthetic_ade` (wires, discs, lattices); mIoU from mmseg's IoUMetric and
  boundary IoU (band of 2 px);
* ``reconstruction`` (detail-sensitive): 32 x 32 grey patches of the photographs matplotlib ships,
  through a 4-channel bottleneck at stride 8; PSNR, SSIM, MAE on held-out rows;
* ``segformer`` (not in the default): the small SegFormer of configs/demo on the 128 x 128
  scenes, mmseg's stock head (the ``bilinear`` row) vs its x2 cascades through each upsampler.

Every run trains with mmengine's Runner from the task's config in configs/demo with the upsampler's
snippet from configs/_base_/upsamplers as ``upsample_cfg``, then tests once. The console shows one
line per run; each run's full log is in its work directory. At the end: one Markdown table per
task (metrics, mean +- standard deviation over the seeds when there are several, parameters the
upsamplers add, training time), written to ``<work-dir>/results.md``, and a figure with the
predictions of every upsampler on the same inputs, their error maps and bar charts of the metrics.
"""
from __future__ import annotations

import argparse
import logging
import os
import os.path as osp
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmdynup  # noqa: E402,F401
from mmdynup.datasets.synthetic_ade import CLASSES, PALETTE, write_synthetic_ade  # noqa: E402
from mmdynup.toy import upsampler_parameters  # noqa: E402

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'demo')
SNIPPET_DIR = osp.join(REPO_ROOT, 'configs', '_base_', 'upsamplers')
#: Upsamplers of a plain ``make demo`` (snippet names): the interpolation and learned static
#: baselines, and one operator of each dynamic family, unguided and guided.
DEFAULT_UPSAMPLERS = ('nearest', 'bilinear', 'pixel-shuffle', 'carafe', 'fade',
                      'fade-without-gating', 'sapa-b', 'dysample')
#: Snippets that ``--all`` skips: InterpolateUpsample is F.interpolate in any form (an adapter
#: for mmdet's upsample_cfg), bilinear with aligned corners here, no operator of its own.
NOT_AN_OPERATOR = ('interpolate',)
DEFAULT_TASKS = ('segmentation', 'reconstruction')


@dataclass(frozen=True)
class Metric:
    key: str           # name in the Runner's test results
    label: str         # column header
    higher_is_better: bool = True
    digits: int = 2


@dataclass(frozen=True)
class Task:
    name: str
    config: str
    metrics: Tuple[Metric, ...]
    kind: str                                 # 'segmentation' or 'reconstruction' (figure panels)
    #: Where the upsampler's config sits in ``cfg.model``.
    upsampler_key: str = 'decode_head.upsample_cfg'
    #: The argument that names the data root of the task's data sets (None: built in memory).
    data_root_argument: Optional[str] = None
    #: Replaces the config's ``test_evaluator`` (None: the config's own).
    test_evaluator: Optional[list] = None
    #: The snippet whose row is the unchanged config (None: every row sets upsample_cfg).
    stock_upsampler: Optional[str] = None
    prepare: Callable[[argparse.Namespace], str] = field(default=lambda args: '')


def _write_toy_scenes(args) -> str:
    counts = write_synthetic_ade(args.toy_data_root, num_train=args.num_train,
                                 num_val=args.num_val, size=64)
    return (f'{counts["training"]} training / {counts["validation"]} validation 64 x 64 scenes '
            f'in {args.toy_data_root}')


def _write_segformer_scenes(args) -> str:
    counts = write_synthetic_ade(args.data_root, num_train=96, num_val=24)
    return (f'{counts["training"]} training / {counts["validation"]} validation 128 x 128 scenes '
            f'in {args.data_root}')


SEGMENTATION_METRICS = (Metric('segmentation/mIoU', 'mIoU'),
                        Metric('boundary/bIoU', 'boundary IoU'))
#: The toy segmentation config's evaluator, also given to the SegFormer task.
SEGMENTATION_EVALUATOR = [dict(type='IoUMetric', iou_metrics=['mIoU'], prefix='segmentation'),
                          dict(type='BoundaryIoUMetric', num_classes=len(CLASSES), width=2)]
TASKS: Dict[str, Task] = {task.name: task for task in (
    Task('segmentation',
         osp.join(CONFIG_DIR, 'toy-encoder-decoder_bilinear_1xb4-200it_synthetic-ade-64x64.py'),
         SEGMENTATION_METRICS, 'segmentation', data_root_argument='toy_data_root',
         prepare=_write_toy_scenes),
    Task('reconstruction',
         osp.join(CONFIG_DIR, 'toy-encoder-decoder_bilinear_1xb16-200it_photo-patches-32x32.py'),
         (Metric('reconstruction/PSNR', 'PSNR (dB)'), Metric('reconstruction/SSIM', 'SSIM',
                                                             digits=4),
          Metric('reconstruction/MAE', 'MAE', higher_is_better=False, digits=4)),
         'reconstruction', upsampler_key='upsample_cfg'),
    Task('segformer',
         osp.join(CONFIG_DIR, 'segformer_mit-tiny_bilinear_1xb8-1200it_synthetic-ade-128x128.py'),
         SEGMENTATION_METRICS, 'segmentation', stock_upsampler='bilinear',
         data_root_argument='data_root', test_evaluator=SEGMENTATION_EVALUATOR,
         prepare=_write_segformer_scenes),
)}


def available_upsamplers() -> List[str]:
    """Snippet names of configs/_base_/upsamplers (one per registered upsampler)."""
    return sorted(name[:-3] for name in os.listdir(SNIPPET_DIR) if name.endswith('.py'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--upsamplers', nargs='+', default=None, metavar='NAME',
                        help=f'snippet names of configs/_base_/upsamplers (default: '
                             f'{" ".join(DEFAULT_UPSAMPLERS)})')
    parser.add_argument('--all', action='store_true', help='every upsampler snippet')
    parser.add_argument('--tasks', nargs='+', default=list(DEFAULT_TASKS), metavar='TASK',
                        help=f'of {sorted(TASKS)} (default: {" ".join(DEFAULT_TASKS)})')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0],
                        help='one run per seed; the table shows mean +- std over them')
    parser.add_argument('--iters', type=int, default=None,
                        help='training iterations of every run (default: the configs\')')
    parser.add_argument('--toy-data-root', default='data/synthetic_ade_64')
    parser.add_argument('--num-train', type=int, default=256, help='toy segmentation scenes')
    parser.add_argument('--num-val', type=int, default=64, help='toy segmentation scenes')
    parser.add_argument('--data-root', default='data/synthetic_ade',
                        help='128 x 128 scenes of the segformer task')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--figure', default=None, help='PNG path (default: <work-dir>/demo.png)')
    parser.add_argument('--samples', type=int, default=2,
                        help='inputs per task shown in the figure')
    args = parser.parse_args(argv)
    if args.all and args.upsamplers:
        parser.error('give either --all or --upsamplers, not both')
    choices = available_upsamplers()
    if args.all:
        args.upsamplers = [name for name in choices if name not in NOT_AN_OPERATOR]
    args.upsamplers = list(args.upsamplers or DEFAULT_UPSAMPLERS)
    unknown = [name for name in args.upsamplers if name not in choices]
    if unknown:
        parser.error(f'--upsamplers {" ".join(unknown)}: not a snippet of '
                     f'configs/_base_/upsamplers; choose from {" ".join(choices)}')
    unknown = [name for name in args.tasks if name not in TASKS]
    if unknown:
        parser.error(f'--tasks {" ".join(unknown)}: unknown; choose from {" ".join(TASKS)}')
    if args.iters is not None and args.iters < 1:
        parser.error(f'--iters must be >= 1, got {args.iters}')
    if args.samples < 1:
        parser.error(f'--samples must be >= 1, got {args.samples}')
    return args


class FileLoggedRunner(Runner):
    """mmengine's Runner whose console shows only warnings and errors; the full log (INFO:
    environment, config, per-parameter optimiser options, losses) goes to the log file under
    ``work_dir/<timestamp>/`` as usual."""

    def build_logger(self, log_level='INFO', log_file=None, **kwargs) -> MMLogger:
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:  # the console (FileHandler subclasses it)
                handler.setLevel(logging.WARNING)
        return logger


def set_iterations(cfg: Config, iters: int) -> None:
    """Train ``iters`` iterations: the schedulers' ``begin`` / ``end`` scale with them."""
    scale = iters / cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    if cfg.train_cfg.get('val_interval') is not None:
        cfg.train_cfg.val_interval = iters
    if cfg.default_hooks.get('checkpoint') is not None:
        cfg.default_hooks.checkpoint.interval = iters
    for scheduler in cfg.param_scheduler:
        scheduler.begin = min(int(round(scheduler.get('begin', 0) * scale)), iters - 1)
        scheduler.end = max(min(int(round(scheduler.end * scale)), iters), scheduler.begin + 1)


@dataclass
class RunResult:
    metrics: Dict[str, float]
    added_parameters: int
    train_seconds: float
    samples: list


def run_config(task: Task, upsampler: str, seed: int, args) -> RunResult:
    """Train and test one (task, upsampler, seed); return metrics and the figure's samples."""
    cfg = Config.fromfile(task.config)
    cfg.work_dir = osp.join(args.work_dir, task.name, f'{upsampler}_seed{seed}')
    # mmengine names the run's logger and message hub after it: runs in the same second of the
    # same config would otherwise share them.
    cfg.experiment_name = f'demo_{task.name}_{upsampler}_seed{seed}'
    cfg.visualizer.name = cfg.experiment_name
    # One test at the end, no validation during training (the SegFormer config has one).
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.default_hooks.checkpoint = None  # the demo keeps no checkpoints
    cfg.default_hooks.pop('visualization', None)  # it draws its own figure (mmseg's hook warns)
    if task.test_evaluator is not None:
        cfg.test_evaluator = task.test_evaluator
    if upsampler != task.stock_upsampler:
        *path, key = task.upsampler_key.split('.')
        owner = cfg.model
        for name in path:
            owner = owner[name]
        owner[key] = Config.fromfile(osp.join(SNIPPET_DIR, f'{upsampler}.py')).upsample_cfg
    if task.data_root_argument is not None:
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if cfg.get(loader) is not None:
                cfg[loader].dataset.data_root = getattr(args, task.data_root_argument)
    cfg.randomness = dict(seed=seed, deterministic=False)
    if args.iters is not None:
        set_iterations(cfg, args.iters)
    runner = FileLoggedRunner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    train_seconds = time.perf_counter() - start
    metrics = runner.test()
    samples = collect_samples(task, runner, args.samples)
    return RunResult(metrics=metrics, added_parameters=upsampler_parameters(runner.model),
                     train_seconds=train_seconds, samples=samples)


def collect_samples(task: Task, runner: Runner, count: int) -> list:
    """The predictions on ``count`` test inputs spread over the test set (the same for every
    upsampler): segmentation (image RGB, truth, prediction); reconstruction (target, prediction)."""
    dataset = runner.test_dataloader.dataset
    wanted = set(np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist())
    model = runner.model.eval()
    samples, index = [], 0
    with torch.no_grad():
        for batch in runner.test_dataloader:
            outputs = model.test_step(batch)
            for output in outputs:
                if index in wanted:
                    if task.kind == 'segmentation':
                        image = cv2.cvtColor(cv2.imread(output.img_path), cv2.COLOR_BGR2RGB)
                        samples.append((image, output.gt_sem_seg.data[0].numpy(),
                                        output.pred_sem_seg.data[0].numpy()))
                    else:
                        samples.append((output['target'][0].numpy(),
                                        output['prediction'][0].clamp(0, 1).numpy()))
                index += 1
            if index > max(wanted):
                break
    return samples


def summarise(values: Sequence[float], digits: int) -> str:
    if len(values) == 1:
        return f'{values[0]:.{digits}f}'
    return f'{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}'


def results_table(task: Task, results: Dict[str, List[RunResult]]) -> str:
    """One Markdown table: per upsampler the task's metrics, added parameters, training time."""
    header = ['upsampler', 'guided', *[metric.label for metric in task.metrics],
              'added params', 'train time']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for upsampler, runs in results.items():
        guided = 'yes' if upsampler_is_guided(upsampler) else 'no'
        cells = [summarise([run.metrics[metric.key] for run in runs], metric.digits)
                 for metric in task.metrics]
        seconds = np.mean([run.train_seconds for run in runs])
        lines.append('| ' + ' | '.join([upsampler, guided, *cells,
                                        f'{runs[0].added_parameters:,d}',
                                        f'{seconds:.0f} s']) + ' |')
    return '\n'.join(lines)


def upsampler_is_guided(snippet: str) -> bool:
    cfg = Config.fromfile(osp.join(SNIPPET_DIR, f'{snippet}.py')).upsample_cfg
    return mmdynup.registry.upsampler_classes()[cfg['type']].requires_guide


def colourise(labels: np.ndarray) -> np.ndarray:
    palette = np.array(list(PALETTE) + [(0, 0, 0)], np.uint8)  # ignore -> black
    return palette[np.where(labels == 255, len(PALETTE), labels)]


def write_figure(path: str, tasks: Sequence[Task],
                 results: Dict[str, Dict[str, List[RunResult]]]) -> None:
    """Rows: the inputs, then one per upsampler (its first seed's predictions and error maps:
    wrong pixels in red, |error| of the reconstruction); last row: bar charts of the metrics."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    upsamplers = list(next(iter(results.values())))
    columns = [(task, sample, part) for task in tasks
               for sample in range(len(results[task.name][upsamplers[0]][0].samples))
               for part in (0, 1)]
    bars = [(task, metric) for task in tasks for metric in task.metrics]
    rows = len(upsamplers) + 1
    width = max(len(columns), 2 * len(bars))
    figure = plt.figure(figsize=(1.25 * width, 1.25 * rows + 2.6))
    grid = figure.add_gridspec(rows + 1, width, height_ratios=[1] * rows + [2.0])
    for column, (task, sample, part) in enumerate(columns):
        reference = results[task.name][upsamplers[0]][0].samples[sample]
        if task.kind == 'segmentation':
            panel = reference[0] if part == 0 else colourise(reference[1])
            title = f'{task.name}\ninput' if part == 0 else 'ground truth\n(below: errors)'
        else:
            panel = reference[0] if part == 0 else None
            title = f'{task.name}\ninput = target' if part == 0 else '\n(below: |error|)'
        _show(figure.add_subplot(grid[0, column]), panel, title, grey=task.kind != 'segmentation')
        for row, upsampler in enumerate(upsamplers, start=1):
            run = results[task.name][upsampler][0]
            first = run.samples[sample]
            axis = figure.add_subplot(grid[row, column])
            if task.kind == 'segmentation':
                image, truth, prediction = first
                if part == 0:
                    _show(axis, colourise(prediction), '')
                else:
                    wrong = (prediction != truth) & (truth != 255)
                    _show(axis, np.where(wrong[..., None], [230, 30, 30], [255, 255, 255])
                          .astype(np.uint8), '')
            else:
                target, prediction = first
                if part == 0:
                    _show(axis, prediction, '', grey=True)
                else:
                    axis.imshow(np.abs(prediction - target), cmap='magma', vmin=0, vmax=0.25,
                                interpolation='nearest')
                    _show(axis, None, '')
            if column == 0:
                axis.set_ylabel(upsampler, fontsize=8, rotation=0, ha='right', va='center')
    span = width // max(len(bars), 1)
    for index, (task, metric) in enumerate(bars):
        axis = figure.add_subplot(grid[rows, index * span:(index + 1) * span])
        runs = [results[task.name][name] for name in upsamplers]
        means = [np.mean([run.metrics[metric.key] for run in r]) for r in runs]
        spreads = [np.std([run.metrics[metric.key] for run in r], ddof=1) if len(r) > 1 else 0
                   for r in runs]
        colours = ['tab:orange' if upsampler_is_guided(name) else 'tab:blue'
                   for name in upsamplers]
        axis.bar(range(len(upsamplers)), means, yerr=spreads, color=colours)
        finite = [value for value in means if np.isfinite(value)] or [0.0]
        low, high = min(finite), max(finite)
        margin = max(high - low, 1e-6) * 0.4
        axis.set_ylim(max(low - margin, 0) if metric.higher_is_better else 0, high + margin)
        axis.set_xticks(range(len(upsamplers)))
        axis.set_xticklabels(upsamplers, rotation=70, fontsize=7)
        arrow = '↑' if metric.higher_is_better else '↓'
        axis.set_title(f'{task.name}: {metric.label} {arrow}', fontsize=8)
        axis.tick_params(axis='y', labelsize=7)
    figure.text(0.01, 0.005, 'bars: orange = guided by the encoder feature, blue = unguided; '
                'error maps: wrong pixels (segmentation), |error| 0-0.25 (reconstruction)',
                fontsize=7)
    figure.tight_layout(rect=(0, 0.02, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _show(axis, panel, title: str, grey: bool = False) -> None:
    if panel is not None:
        axis.imshow(panel, cmap='gray' if grey else None, vmin=0 if grey else None,
                    vmax=1 if grey else None, interpolation='nearest')
    axis.set_xticks([])
    axis.set_yticks([])
    if panel is None and not axis.images:
        axis.axis('off')
    if title:
        axis.set_title(title, fontsize=8)


def main(argv=None) -> Dict[str, Dict[str, List[RunResult]]]:
    args = parse_args(argv)
    tasks = [TASKS[name] for name in args.tasks]
    for task in tasks:
        message = task.prepare(args)
        if message:
            print(f'data: {message}')
    runs = [(task, upsampler, seed) for task in tasks for upsampler in args.upsamplers
            for seed in args.seeds]
    results: Dict[str, Dict[str, List[RunResult]]] = {task.name: {} for task in tasks}
    total_start = time.perf_counter()
    for number, (task, upsampler, seed) in enumerate(runs, start=1):
        print(f'[{number:{len(str(len(runs)))}d}/{len(runs)}] {task.name:<14} {upsampler:<20} '
              f'seed {seed}', end=' ', flush=True)
        result = run_config(task, upsampler, seed, args)
        results[task.name].setdefault(upsampler, []).append(result)
        shown = ', '.join(f'{metric.label} {result.metrics[metric.key]:.{metric.digits}f}'
                          for metric in task.metrics)
        print(f'{shown}  ({result.train_seconds:.0f} s training)', flush=True)

    seeds = ', '.join(str(seed) for seed in args.seeds)
    iters = {task.name: args.iters or Config.fromfile(task.config).train_cfg.max_iters
             for task in tasks}
    report = []
    for task in tasks:
        plural = 's' if len(args.seeds) > 1 else ''
        report.append(f'### {task.name} ({iters[task.name]} iterations, seed{plural} {seeds})'
                      f'\n\n{results_table(task, results[task.name])}\n')
    text = '\n'.join(report)
    print('\n' + text)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as file:
        file.write(text)
    figure = args.figure or osp.join(args.work_dir, 'demo.png')
    os.makedirs(osp.dirname(osp.abspath(figure)), exist_ok=True)
    write_figure(figure, tasks, results)
    print(f'table: {osp.join(args.work_dir, "results.md")}\nfigure: {figure}\n'
          f'total: {time.perf_counter() - total_start:.0f} s; full logs under {args.work_dir}/')
    return results


if __name__ == '__main__':
    main()
