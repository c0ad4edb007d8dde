"""tools/gpu_check.py and tools/authors_cuda_ops.py: the parts that run without a GPU (arguments,
the table and its targets, the no-CUDA and no-sources paths, the extension specs, and every op
of the table on tiny CPU tensors through Triton's interpreter)."""
import os
import sys
import tarfile
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available() and 'triton' not in sys.modules:
    os.environ.setdefault('TRITON_INTERPRET', '1')

from .conftest import load_tool  # noqa: E402

authors_cuda_ops = load_tool('authors_cuda_ops.py')
gpu_check = load_tool('gpu_check.py')
Measurement = gpu_check.Measurement


def test_cases_are_parsed_and_bad_ones_named(capsys):
    args = gpu_check.parse_args(['--cases', '1x256x120x120', '2x8x5x7', '--dtypes', 'float32'])
    assert args.cases == [(1, 256, 120, 120), (2, 8, 5, 7)] and args.dtypes == ['float32']
    assert gpu_check.parse_args([]).cases == [(1, 256, 120, 120), (2, 256, 128, 128)]
    for bad in (['--cases', '1x256x120'], ['--cases', '0x1x2x3'], ['--repeats', '0']):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)
        error = capsys.readouterr().err
        assert ('--cases expects BxCxHxW' in error and repr(bad[1]) in error) or \
            '--repeats must be >= 1, got 0' in error


@pytest.mark.skipif(torch.cuda.is_available(), reason='the no-CUDA path')
def test_without_cuda_it_says_so_and_fails(capsys):
    assert gpu_check.check(gpu_check.parse_args(['--skip-tests'])) == 1
    assert 'no CUDA device' in capsys.readouterr().out


def measurement(fwd_bwd_ms, peak_mib):
    return Measurement(fwd_bwd_ms / 3, fwd_bwd_ms, peak_mib, 'SomeBackward', None)


def test_table_checks_the_targets_and_marks_missing_rows():
    authors = measurement(2.0, 100)
    rows = [dict(op='bilinear interpolation', impl='F.interpolate', result=measurement(1.0, 80)),
            dict(op='fast op', impl='ours', result=measurement(1.5, 110), parity=1e-6,
                 authors=authors),
            dict(op='fast op', impl='mmcv carafe', result=authors),
            dict(op='slow op', impl='ours', result=measurement(9.0, 130), parity=None,
                 authors='build failed: nvcc error'),
            dict(op='slow op', impl='sapa qk', result='build failed: nvcc error')]
    table = gpu_check.format_table(rows, 'title')
    lines = table.splitlines()
    assert lines[0] == '**title**' and len(lines) == 4 + len(rows)
    assert all(line.count('|') == lines[2].count('|') for line in lines[2:])
    fast, _, slow, missing = lines[5:]
    assert '| 1.50x | 0.75x | 110 | 1.38x | 1e-06 | SomeBackward | all met |' in fast
    assert 'missed: <= 8x bilinear time, <= 1.5x bilinear memory' in slow
    assert '| not measured: build failed: nvcc error |' in missing


def test_a_bilinear_row_without_measurable_memory_leaves_the_ratio_out():
    """Tiny CPU cases may not raise the resident set: no ratio, rather than a division error."""
    rows = [dict(op='bilinear interpolation', impl='F.interpolate', result=measurement(1.0, 0)),
            dict(op='fast op', impl='ours', result=measurement(1.5, 0), parity=None)]
    fast = gpu_check.format_table(rows, 'title').splitlines()[-1]
    assert '| 1.50x | - | 0 | - |' in fast


def test_authors_ops_without_cuda_or_sources_are_reasons(tmp_path):
    assert set(authors_cuda_ops.missing_sources(tmp_path)) >= {
        'mmcv-2.1.0.tar.gz', 'sapa/sapa/sapa/sapa_func.py',
        'sapa/deformsapa/deformsapa/src/cuda/deform_av_cuda_kernel.cu'}
    results = authors_cuda_ops.build(tmp_path / 'absent')
    assert set(results) == {'carafe', 'sapa_qk', 'sapa_av', 'deform_qk', 'deform_av'}
    expected = 'no CUDA device' if not torch.cuda.is_available() else 'no authors\' sources'
    assert all(isinstance(reason, str) and reason.startswith(expected)
               for reason in results.values())
    specs = gpu_check.op_specs(results)
    assert [spec.authors for spec in specs[:4]] == [results[name] for name in (
        'carafe', 'sapa_qk', 'sapa_av', 'deform_qk')]


def test_extension_specs_from_a_prepared_folder(tmp_path):
    """The compile arguments point at the sdist's CARAFE files, our binding and the SAPA
    sources; a torch without THC headers gets the shim."""
    source_tree = tmp_path / 'sdist' / 'mmcv-2.1.0'
    for name in (authors_cuda_ops.MMCV_CARAFE_SOURCE, 'mmcv/ops/csrc/common/cuda/x.cuh',
                 'setup.py'):
        (source_tree / name).parent.mkdir(parents=True, exist_ok=True)
        (source_tree / name).write_text('// test\n')
    folder = tmp_path / 'authors'
    folder.mkdir()
    with tarfile.open(folder / authors_cuda_ops.MMCV_SDIST, 'w:gz') as archive:
        archive.add(source_tree, arcname='mmcv-2.1.0')
    names = ['mmcv_carafe', *authors_cuda_ops.SAPA_EXTENSIONS]
    specs = authors_cuda_ops.extension_specs(folder, tmp_path / 'work', names)
    assert list(specs) == names
    carafe = specs['mmcv_carafe']
    assert Path(carafe['sources'][1]).is_file() and not (tmp_path / 'work' / 'mmcv-2.1.0'
                                                         / 'setup.py').exists()
    assert 'PYBIND11_MODULE' in Path(carafe['sources'][0]).read_text()
    shim = [path for path in carafe['extra_include_paths'] if path.endswith('thc_shim')]
    if shim:
        assert 'ATen/cuda/Atomic.cuh' in (Path(shim[0]) / 'THC' / 'THCAtomics.cuh').read_text()
    assert specs['dqk']['sources'][0] == str(
        folder / 'sapa/deformsapa/deformsapa/src/cuda/deform_qk_cuda.cpp')
    assert all(Path(spec['build_directory']).is_dir() and spec['name'] == name
               for name, spec in specs.items())


def test_tables_run_on_tiny_cpu_tensors():
    """The whole table on a tiny CPU case (Triton interpreted, wall-clock timing, resident-set
    memory), with a stand-in for mmcv's carafe (our reference behind mmcv's signature), so a
    shape slip in any op's wiring shows here and not on the GPU machine."""
    import triton.language as tl

    from mmdynup.ops.reassembly import reassemble_reference
    if type(tl.zeros).__name__ != 'InterpretedFunction':
        pytest.skip('triton was imported before TRITON_INTERPRET=1 could be set: run this file '
                    'on its own')

    def carafe(features, masks, kernel_size, group_size, scale_factor):
        kernels = masks.unflatten(1, (group_size, kernel_size ** 2))
        return reassemble_reference(features, kernels, kernel_size, scale_factor)

    authors = dict(carafe=carafe, sapa_qk='no CUDA device', sapa_av='no CUDA device',
                   deform_qk='no CUDA device', deform_av='no CUDA device')
    rows = gpu_check.run_case(gpu_check.op_specs(authors), (1, 8, 3, 4), 'float32', 1, 'cpu')
    assert [row['impl'] for row in rows[1::2]] == ['ours'] * 5
    for row in rows:
        assert isinstance(row['result'], Measurement) or row['result'] == 'no CUDA device', row
    assert rows[1]['result'].node == 'ReassemblyBackward' and rows[1]['parity'] < 1e-6
    assert rows[-2]['parity'] < 1e-5  # point_sample against grid_sample
    for row in rows[1::2]:
        assert row['result'].output.shape[-2:] == (6, 8), row['op']
    table = gpu_check.format_table(rows, 'cpu')
    assert table.count('not measured: no CUDA device') == 3


def test_sweep_restores_the_shipped_constants(monkeypatch):
    """Every combination is a row with a cell per op, and the module constants come back."""
    import mmdynup.ops.triton_kernels as kernels
    shipped = kernels.TILE_ELEMENTS
    monkeypatch.setattr(gpu_check, 'SWEEP', dict(TILE_ELEMENTS=(64, shipped)))
    specs = gpu_check.op_specs({})[:1]
    lines = gpu_check.sweep(specs, (1, 4, 2, 3), 1, 'cpu').splitlines()
    assert len(lines) == 4 and lines[3].startswith(f'| **{shipped}** | ')
    assert all(float(line.split('|')[2]) > 0 for line in lines[2:])
    assert kernels.TILE_ELEMENTS == shipped
