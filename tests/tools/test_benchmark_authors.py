"""tools/benchmark.py: ``--authors DIR`` measures the authors' modules found there beside ours,
``--plot`` draws ours, our reference and theirs, and the targets are checked per row.

The authors' repositories are not available to the tests: a stand-in authors' folder holds a
module with the expected file and class name (``dysample.py``, ``DySample``), which records how
it was built and called, so the test sees that the benchmark found, built and timed it.
"""
import json
import re
import textwrap

import pytest

from .conftest import load_tool

STAND_IN = '''
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

LOG = Path(__file__).with_name('calls.jsonl')


class DySample(torch.nn.Module):
    """Stand-in with the authors' constructor; bilinear plus a 1x1 conv, and 20 ms of sleep."""

    def __init__(self, in_channels, scale=2, style='lp', groups=4, dyscope=False):
        super().__init__()
        self.scale = scale
        self.offset = torch.nn.Conv2d(in_channels, 2 * groups * scale ** 2, 1)
        with LOG.open('a') as log:
            log.write(json.dumps(dict(in_channels=in_channels, scale=scale, style=style,
                                      groups=groups, dyscope=dyscope)) + '\\n')

    def forward(self, x):
        time.sleep(0.02)
        with LOG.open('a') as log:
            log.write(json.dumps(dict(forward=list(x.shape))) + '\\n')
        up = F.interpolate(x, scale_factor=self.scale, mode='bilinear', align_corners=False)
        return up + 0 * self.offset(x).mean()
'''


@pytest.fixture(scope='module')
def benchmark():
    return load_tool('benchmark.py')


@pytest.fixture
def authors_folder(tmp_path):
    folder = tmp_path / 'dysample-main'
    (folder / 'nested').mkdir(parents=True)
    (folder / 'dysample.py').write_text(textwrap.dedent(STAND_IN))
    return folder


def table_rows(text):
    """{(name, path): cells} of the printed Markdown table."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if len(cells) == 12 and cells[0] not in ('upsampler', '---'):
            rows[cells[0], cells[1]] = cells
    return rows


def test_authors_module_is_found_built_timed_and_compared(benchmark, authors_folder, tmp_path,
                                                          capsys):
    plot = tmp_path / 'bench.png'
    benchmark.main(['--authors', str(authors_folder), '--upsamplers', 'DySample', 'DySampleS',
                    '--sizes', '8', '--channels', '16', '--batch', '1', '--repeats', '2',
                    '--isolation', 'none', '--plot', str(plot)])
    out = capsys.readouterr().out
    rows = table_rows(out)
    # Our path runs the C++ sampling kernel on the CPU (built on first use).
    ours, authors = rows['DySample', 'native'], rows['DySample', 'authors']
    log = [json.loads(line) for line in (authors_folder / 'calls.jsonl').read_text().splitlines()]
    # Built once per authors' row with our configuration (style 'pl' for DySample-S) ...
    built = [entry for entry in log if 'in_channels' in entry]
    assert built == [dict(in_channels=16, scale=2, style='lp', groups=4, dyscope=False),
                     dict(in_channels=16, scale=2, style='pl', groups=4, dyscope=False)]
    # ... and called on our input: a warm-up and 2 timed runs each of the forward and of
    # forward + backward, then a warm-up step and the memory run.
    calls = [entry['forward'] for entry in log if 'forward' in entry]
    assert calls == [[1, 16, 8, 8]] * 2 * 8
    # Its time is measured (it sleeps 20 ms a call), and the ratio column is ours / theirs.
    authors_ms, ours_ms = float(authors[5]), float(ours[5])
    assert authors_ms >= 20
    assert ours[10] == benchmark.format_ratio(ours_ms / authors_ms)
    assert ours[11].startswith(('met', 'missed'))
    assert authors[11] == '-' and rows['DySample', 'reference'][10] == '-'
    assert plot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_modules_are_discovered_by_file_name_in_subfolders(benchmark, tmp_path):
    (tmp_path / 'repo' / 'pytorch_implementation').mkdir(parents=True)
    (tmp_path / 'repo' / 'pytorch_implementation' / 'FADE_L2H.py').write_text('')
    (tmp_path / 'repo' / 'FADE_H2L.py').write_text('')
    found = {spec.ours: source for spec, source in benchmark.discover_authors_modules(
        tmp_path, ['FADE', 'FADEECCV', 'DySample', 'SAPADeform'])}
    assert set(found) == {'FADE', 'FADEECCV'}
    assert found['FADE'].endswith('pytorch_implementation/FADE_L2H.py')


def test_a_module_that_cannot_run_here_is_reported(benchmark, tmp_path, capsys):
    (tmp_path / 'sapa_deform.py').write_text('from deformsapa import deform_qk  # CUDA only\n')
    benchmark.main(['--authors', str(tmp_path), '--upsamplers', 'SAPADeform', 'DySample',
                    '--sizes', '4', '--channels', '32', '--batch', '1', '--repeats', '1',
                    '--isolation', 'none', '--reference-for'])
    out = capsys.readouterr().out
    assert re.search(r"SAPADeform \(authors, .*sapa_deform.py\): not measured here: "
                     r"No module named 'deformsapa'", out)
    assert f'DySample (authors): dysample.py not found under {tmp_path}' in out
    assert ('SAPADeform', 'authors') not in table_rows(out)


def test_authors_must_be_a_folder(benchmark, tmp_path, capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--authors', str(tmp_path / 'missing')])
    assert '--authors must be a folder' in capsys.readouterr().err


@pytest.mark.parametrize('ratios,verdict', [
    (dict(time_vs_authors=0.7, memory_vs_bilinear=1.2), 'met'),
    (dict(time_vs_authors=0.9, memory_vs_bilinear=1.2), 'missed (time / authors 0.90x > 0.8x)'),
    (dict(memory_vs_bilinear=1.2), 'not measured (time / authors)'),
])
def test_target_verdicts(benchmark, ratios, verdict):
    assert benchmark.target_verdict('DySample', ratios) == verdict
    assert benchmark.target_verdict('nearest', ratios) == '-'
