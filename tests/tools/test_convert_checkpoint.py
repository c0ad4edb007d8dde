"""tools/convert_checkpoint.py and mmdynup.converters.checkpoint_io: detection, the mapping table,
refusals, safe loading, never overwriting the input, atomic writes."""
import hashlib
import os
import pickle

import numpy as np
import pytest
import torch

from mmdynup.converters import checkpoint_io, convert_official
from mmdynup.converters.checkpoint_io import (CheckpointMismatchError, ConversionReport,
                                              UnsafeCheckpointError, atomic_save, check_report,
                                              load_checkpoint, register_checkpoint_source,
                                              unregister_checkpoint_source)
from mmdynup.converters.fade import ECCV_RENAMES
from mmdynup.upsamplers.carafe import CARAFE
from mmdynup.upsamplers.fade import FADEECCV

from ..conftest import reference_dir, skip_without_reference
from .conftest import load_tool


@pytest.fixture(scope='module')
def tool():
    return load_tool('convert_checkpoint.py')


def _digest(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def _eccv_fade_record(path):
    """A record in the authors' FADE_H2L layout (kernel_generator.conv1_en, ...), written from our
    module by renaming our keys back; returns our module for comparison."""
    ours = FADEECCV(8, scale_factor=2, guide_channels=8)
    for parameter in ours.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    official_state = {}
    for key, value in ours.state_dict().items():
        for official, our_prefix in ECCV_RENAMES:
            if key == our_prefix or key.startswith(our_prefix + '.'):
                key = official + key[len(our_prefix):]
                break
        official_state[key] = value.clone()
    torch.save(dict(official='FADE_H2L.FADE',
                    kwargs=dict(in_channels_en=8, scale=2), state_dict=official_state), path)
    return ours


def test_help(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(['--help'])
    assert exit_info.value.code == 0
    assert '--dry-run' in capsys.readouterr().out


def test_list_sources_names_every_operator(tool, capsys):
    assert tool.main(['--list-sources']) == 0
    listed = capsys.readouterr().out
    for official in ('dysample.DySample', 'mmcv.ops.CARAFEPack', 'FADE_L2H.FADE', 'sapa.SAPA',
                     'sapa_deform.SAPADeform'):
        assert official in listed


def test_dry_run_prints_mapping_and_writes_nothing(tool, tmp_path, capsys):
    record = tmp_path / 'fade_eccv.pth'
    _eccv_fade_record(record)
    before = set(os.listdir(tmp_path))
    assert tool.main([str(record), '--dry-run']) == 0
    table = capsys.readouterr().out
    assert set(os.listdir(tmp_path)) == before
    row = next(line for line in table.splitlines()
               if line.startswith('kernel_generator.conv2_kernels'))
    assert row.split()[2] == 'ker_generator.content_encoder.weight'
    assert row.split()[-1] == 'renamed'
    assert '5 renamed, 2 unchanged' in table


def test_convert_renamed_record_loads_into_our_module(tool, tmp_path):
    record, output = tmp_path / 'fade_eccv.pth', tmp_path / 'converted.pth'
    ours = _eccv_fade_record(record)
    assert tool.main([str(record), str(output)]) == 0
    converted = torch.load(output, weights_only=True)
    assert converted['meta']['source'] == 'FADE_H2L.FADE'
    assert 'official' in converted['meta']['detection']
    fresh = FADEECCV(8, scale_factor=2, guide_channels=8)
    fresh.load_state_dict(converted['state_dict'], strict=True)
    x, guide = torch.randn(2, 8, 5, 7), torch.randn(2, 8, 10, 14)
    torch.testing.assert_close(fresh(x, guide), ours(x, guide), rtol=0, atol=0)


@skip_without_reference()
def test_converted_reference_reproduces_the_authors_output(tool, tmp_path):
    source = reference_dir() / 'dysample_lp_g4_dyscope.pt'
    output = tmp_path / 'dysample.pth'
    assert tool.main([str(source), str(output)]) == 0
    record = torch.load(source, weights_only=True)
    # The architecture from the record; every tensor zeroed, then filled from the written file.
    module = convert_official(record['official'], record['kwargs'], record['state_dict']).module
    with torch.no_grad():
        for tensor in module.state_dict().values():
            tensor.zero_()
    module.load_state_dict(torch.load(output, weights_only=True)['state_dict'], strict=True)
    torch.testing.assert_close(module(record['inputs']['x']), record['output'],
                               rtol=1e-8, atol=1e-10)


def test_bare_operator_state_dict_with_kwargs(tool, tmp_path):
    carafe = CARAFE(16, scale_factor=2, compressed_channels=8)
    bare, output = tmp_path / 'bare.pth', tmp_path / 'out.pth'
    torch.save(carafe.state_dict(), bare)
    with pytest.raises(CheckpointMismatchError, match='no converter recognises'):
        tool.main([str(bare), str(output)])
    with pytest.raises(CheckpointMismatchError, match='needs its constructor arguments'):
        tool.main([str(bare), str(output), '--source', 'mmcv.ops.CARAFEPack'])
    assert tool.main([str(bare), str(output), '--source', 'mmcv.ops.CARAFEPack', '--kwargs',
                      '{"channels": 16, "scale_factor": 2, "compressed_channels": 8}']) == 0
    state = torch.load(output, weights_only=True)['state_dict']
    assert state.keys() == carafe.state_dict().keys()


def test_refuses_a_checkpoint_of_another_model(tool, tmp_path):
    record = tmp_path / 'fade.pth'
    _eccv_fade_record(record)
    with pytest.raises(CheckpointMismatchError) as error:
        tool.main([str(record), str(tmp_path / 'out.pth'), '--source', 'dysample.DySample'])
    message = str(error.value)
    assert "expects a record {\"official\": 'dysample.DySample'" in message
    assert "found a record of 'FADE_H2L.FADE'" in message
    assert not (tmp_path / 'out.pth').exists()


def test_operator_keys_that_do_not_fit_are_refused(tool, tmp_path):
    carafe, bare = CARAFE(16, compressed_channels=8), tmp_path / 'carafe.pth'
    torch.save(carafe.state_dict(), bare)
    with pytest.raises(CheckpointMismatchError) as error:
        tool.main([str(bare), str(tmp_path / 'out.pth'), '--source', 'dysample.DySample',
                   '--kwargs', '{"in_channels": 16}'])
    message = str(error.value)
    assert 'missing' in message and 'channel_compressor.weight' in message
    assert message.endswith('found 4 keys: channel_compressor.* (2), content_encoder.* (2)')


def _toy_detect(state_dict):
    hits = [key for key in state_dict if key.startswith('toy_head.')]
    return f'found {len(hits)} keys toy_head.*' if hits else None


@pytest.fixture
def toy_source():
    @register_checkpoint_source('toy-fork', expects='a toy model with keys toy_head.*',
                                detect=_toy_detect, options=('meta', 'drop_extra'))
    def convert(state_dict, meta=None, drop_extra=False):
        converted, sources, dropped = {}, {}, {}
        for key, value in state_dict.items():
            if drop_extra and key.startswith('extra.'):
                dropped[key] = 'not part of the model'
                continue
            new_key = key.replace('toy_head.', 'head.', 1)
            converted[new_key], sources[new_key] = value, key
        return converted, ConversionReport.from_renames(
            sources, dropped, remarks=[f'epoch {meta["epoch"]}' if meta else 'no meta'])
    yield convert
    unregister_checkpoint_source('toy-fork')


def test_detection_from_keys_is_shown(tool, toy_source, tmp_path, caplog, capsys):
    checkpoint = tmp_path / 'toy.pth'
    torch.save({'state_dict': {'toy_head.weight': torch.ones(2), 'extra.bias': torch.zeros(1)},
                'meta': {'epoch': 3}}, checkpoint)
    loaded = load_checkpoint(str(checkpoint))
    source, how = checkpoint_io.choose_source(loaded)
    assert source.name == 'toy-fork'
    assert how == "source 'toy-fork' (detected: found 1 keys toy_head.*)"
    converted, report = checkpoint_io.convert_checkpoint(loaded, source, {'drop_extra': True})
    assert set(converted) == {'head.weight'}
    assert report.remarks == ['epoch 3']  # meta comes from the file
    assert tool.main([str(checkpoint), '--dry-run', '--option', 'drop_extra=True']) == 0
    table = capsys.readouterr().out
    assert 'extra.bias' in table and '(dropped)' in table and 'not part of the model' in table


def test_explicit_source_that_does_not_match_the_keys(tool, toy_source, tmp_path):
    checkpoint = tmp_path / 'other.pth'
    torch.save({'state_dict': {'backbone.conv.weight': torch.ones(1)}}, checkpoint)
    with pytest.raises(CheckpointMismatchError) as error:
        tool.main([str(checkpoint), '--dry-run', '--source', 'toy-fork'])
    assert str(error.value) == ("--source 'toy-fork' expects a toy model with keys toy_head.*; "
                                'found 1 keys: backbone.conv.weight')


def test_unknown_option_is_refused(tool, toy_source, tmp_path):
    checkpoint = tmp_path / 'toy.pth'
    torch.save({'toy_head.weight': torch.ones(2)}, checkpoint)
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['depth'\]"):
        tool.main([str(checkpoint), '--dry-run', '--option', 'depth=3'])


def test_incomplete_report_is_a_converter_bug(toy_source):
    original = {'toy_head.weight': torch.ones(1), 'extra.bias': torch.ones(1)}
    converted = {'head.weight': torch.ones(1)}
    report = ConversionReport.from_renames({'head.weight': 'toy_head.weight'})
    with pytest.raises(RuntimeError, match=r"neither converted nor listed as dropped: "
                                           r"\['extra.bias'\]"):
        check_report('toy-fork', report, original, converted)


def test_never_overwrites_the_input(tool, tmp_path):
    record = tmp_path / 'fade.pth'
    _eccv_fade_record(record)
    digest = _digest(record)
    with pytest.raises(ValueError, match='never overwrites its input'):
        tool.main([str(record), str(record)])
    with pytest.raises(ValueError, match='never overwrites its input'):
        tool.main([str(record), str(record), '--overwrite'])
    link = tmp_path / 'link.pth'
    os.symlink(record, link)
    with pytest.raises(ValueError, match='never overwrites its input'):
        tool.main([str(record), str(link), '--overwrite'])
    assert _digest(record) == digest


def test_existing_output_needs_overwrite(tool, tmp_path):
    record, output = tmp_path / 'fade.pth', tmp_path / 'out.pth'
    _eccv_fade_record(record)
    output.write_bytes(b'keep me')
    with pytest.raises(FileExistsError, match='--overwrite'):
        tool.main([str(record), str(output)])
    assert output.read_bytes() == b'keep me'
    assert tool.main([str(record), str(output), '--overwrite']) == 0
    assert 'state_dict' in torch.load(output, weights_only=True)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    output = tmp_path / 'out.pth'
    output.write_bytes(b'previous')

    def failing_save(obj, handle):
        handle.write(b'half a checkpoint')
        raise OSError('disk full')

    monkeypatch.setattr(checkpoint_io.torch, 'save', failing_save)
    with pytest.raises(OSError, match='disk full'):
        atomic_save({'state_dict': {}}, str(output))
    assert output.read_bytes() == b'previous'
    assert os.listdir(tmp_path) == ['out.pth']


class _Payload:
    """Pickles as a call to os.mkdir(marker): loading it must never run that call."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize('file_format', ['zip', 'legacy', 'pdparams'])
def test_malicious_pickle_is_refused_and_never_executed(tool, tmp_path, file_format):
    marker = tmp_path / 'pwned'
    payload = {'state_dict': {'toy_head.weight': torch.ones(1)}, 'meta': _Payload(str(marker))}
    if file_format == 'pdparams':  # Paddle checkpoints are plain pickles of numpy arrays
        evil = tmp_path / 'evil.pdparams'
        evil.write_bytes(pickle.dumps({'model': {'toy_head.weight': np.ones(1)},
                                       'meta': _Payload(str(marker))}))
    else:  # torch's zip format and the pre-1.6 format share the weights-only unpickler
        evil = tmp_path / 'evil.pth'
        torch.save(payload, evil, _use_new_zipfile_serialization=file_format == 'zip')
    with pytest.raises(UnsafeCheckpointError, match='mkdir'):
        tool.main([str(evil), str(tmp_path / 'out.pth')])
    assert isinstance(UnsafeCheckpointError('x'), pickle.UnpicklingError)
    assert not marker.exists()
    assert not (tmp_path / 'out.pth').exists()


def test_mmengine_checkpoint_metadata_is_allowed(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer
    history = HistoryBuffer()
    history.update(1.5)
    path = tmp_path / 'runner.pth'
    torch.save({'state_dict': {'module.toy_head.weight': torch.ones(1)},
                'message_hub': {'log_scalars': {'loss': history}}, 'meta': {'iter': 2}}, path)
    loaded = load_checkpoint(str(path))
    assert list(loaded.state_dict) == ['toy_head.weight']  # DDP prefix removed
    assert loaded.container == 'state_dict' and loaded.record['meta'] == {'iter': 2}


def test_value_changes_are_named():
    weight = torch.arange(6.).reshape(2, 3)
    assert checkpoint_io.value_change(weight, weight.clone()) is None
    assert checkpoint_io.value_change(weight, weight.t().contiguous()) == 'transposed'
    assert checkpoint_io.value_change(weight, weight.reshape(6)) == 'reshaped 2x3 -> 6'
    assert checkpoint_io.value_change(weight, weight.double()) == \
        'cast torch.float32 -> torch.float64'
    assert checkpoint_io.value_change(weight, weight + 1) == 'values changed'


def test_options_are_literals_never_code(tmp_path):
    marker = tmp_path / 'ran'
    assert checkpoint_io.parse_option('groups=4') == ('groups', 4)
    assert checkpoint_io.parse_option("cfg={'type': 'fade', 'guided': True}") == \
        ('cfg', {'type': 'fade', 'guided': True})
    name, value = checkpoint_io.parse_option(f"x=__import__('os').mkdir({str(marker)!r})")
    assert name == 'x' and isinstance(value, str) and not marker.exists()
    with pytest.raises(ValueError, match='NAME=VALUE'):
        checkpoint_io.parse_option('groups')


def test_command_line_refusal_is_one_line_and_exit_status_1(tmp_path):
    import subprocess
    import sys

    from .conftest import TOOLS
    record = tmp_path / 'fade.pth'
    _eccv_fade_record(record)
    result = subprocess.run([sys.executable, str(TOOLS / 'convert_checkpoint.py'), str(record),
                             str(tmp_path / 'out.pth'), '--source', 'sapa.SAPA'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("convert_checkpoint.py: error: --source 'sapa.SAPA' expects")
    assert 'Traceback' not in result.stderr
