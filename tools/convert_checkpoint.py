"""Convert released checkpoints (the authors' operator repos, their segmentation and detection
forks, MIRL backbones) into mmdynup's layout.

    python tools/convert_checkpoint.py INPUT OUTPUT [--source NAME] [--kwargs JSON]
                                       [--option NAME=VALUE ...] [--overwrite]
    python tools/convert_checkpoint.py INPUT --dry-run        # print the key-mapping table
    python tools/convert_checkpoint.py --list-sources

The source is detected from the keys (or an operator record's ``official`` field) and the
detection is printed; ``--source`` names it explicitly and is checked against the keys. Files are
read with ``torch.load(weights_only=True)`` and an allow-list (no pickled code runs), the input is
never overwritten, and the output is written atomically.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.logging import print_log  # noqa: E402

import mmdynup  # noqa: E402
from mmdynup.converters.checkpoint_io import (UnsafeCheckpointError,  # noqa: E402
                                              atomic_save, check_output_path,
                                              checkpoint_sources, choose_source,
                                              convert_checkpoint, load_checkpoint,
                                              mapping_table, parse_option, sha256)


def log(message: str) -> None:
    print_log(message, logger='current')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a released checkpoint to mmdynup\'s layout',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Sources: run with --list-sources. Example:\n'
               '  python tools/convert_checkpoint.py upernet_dysample_fork.pth '
               'upernet_r50_dysample.pth --dry-run')
    parser.add_argument('input', nargs='?', help='checkpoint to convert (.pth / .pt / .pdparams)')
    parser.add_argument('output', nargs='?', help='where to write the converted checkpoint')
    parser.add_argument('--source', help='the checkpoint\'s layout (default: detected)')
    parser.add_argument('--kwargs', help='JSON constructor arguments of an operator module '
                                         '(for a bare operator state dict)')
    parser.add_argument('--option', action='append', default=[], metavar='NAME=VALUE',
                        help='an option of the source\'s converter (Python literal value); '
                             'repeatable')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the key-mapping table and write nothing')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing OUTPUT (never the input)')
    parser.add_argument('--list-sources', action='store_true',
                        help='list the known sources and what each expects')
    args = parser.parse_args(argv)
    if not args.list_sources:
        if args.input is None:
            parser.error('INPUT is required (or use --list-sources)')
        if args.output is None and not args.dry_run:
            parser.error('OUTPUT is required unless --dry-run')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_sources:
        for name, source in checkpoint_sources().items():
            detection = 'detected from keys' if source.detect else 'named with --source'
            options = f'; options: {", ".join(source.options)}' if source.options else ''
            print(f'{name}\n    {source.expects} ({detection}{options})')
        return 0
    options = dict(parse_option(text) for text in args.option)
    if args.kwargs is not None:
        try:
            options['kwargs'] = json.loads(args.kwargs)
        except json.JSONDecodeError as error:
            raise ValueError(f'--kwargs must be a JSON object, got {args.kwargs!r}: {error}') \
                from None
    if args.output is not None:
        check_output_path(args.input, args.output, args.overwrite)

    started = time.perf_counter()
    checkpoint = load_checkpoint(args.input)
    log(f'[1/3] loaded {args.input}: {len(checkpoint.state_dict)} tensors')
    source, how = choose_source(checkpoint, args.source)
    log(f'[2/3] {how}')
    converted, report = convert_checkpoint(checkpoint, source, options)
    for remark in report.remarks:
        log(f'      {remark}')
    if args.dry_run:
        print(mapping_table(report, checkpoint.state_dict, converted))
        log('dry run: nothing written')
        return 0
    meta = dict(converted_by='mmdynup tools/convert_checkpoint.py',
                mmdynup_version=mmdynup.__version__, source=source.name, detection=how,
                input_file=osp.basename(args.input), input_sha256=sha256(args.input),
                dropped=dict(report.dropped))
    for name in ('official', 'kwargs'):
        if name in checkpoint.record:
            meta[name] = checkpoint.record[name]
    atomic_save({'state_dict': converted, 'meta': meta}, args.output)
    log(f'[3/3] wrote {args.output}: {len(converted)} tensors, '
        f'{len(report.dropped)} dropped ({time.perf_counter() - started:.1f} s)')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (ValueError, FileExistsError, FileNotFoundError, UnsafeCheckpointError) as error:
        # A refusal is an answer, not a crash: one line on stderr, exit status 1.
        sys.exit(f'convert_checkpoint.py: error: {error}')
