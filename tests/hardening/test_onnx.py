"""ONNX: every upsampler and a full segmentation model with a dynamic upsampler export (torch's
``dynamo=True`` exporter) and run in onnxruntime within 1e-4 of PyTorch; the export takes the
plain-PyTorch reference path, never a fast path's autograd Function."""
import warnings

import pytest
import torch
from torch import nn

from mmdynup.ops.dispatch import resolve_implementation

from ..tools.conftest import load_tool
from ..tools.tiny_seg import write_tiny_seg
from .upsampler_inputs import UPSAMPLERS, build, make_inputs

onnx = pytest.importorskip('onnx', reason='ONNX tests need the test extra (onnx)')
onnxruntime = pytest.importorskip('onnxruntime',
                                  reason='ONNX tests need the test extra (onnxruntime)')

PARITY = 1e-4
# torch.export deep-copies its own LeafSpec objects and warns about it (torch 2.13 internals, not
# our code); nothing in mmdynup can change that.
TORCH_EXPORT_LEAFSPEC = 'ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning'
pytestmark = pytest.mark.filterwarnings(TORCH_EXPORT_LEAFSPEC)


@pytest.fixture(scope='module')
def export_onnx():
    """``tools/export_onnx.py`` as a module, once torch's exporter is known to run here."""
    tool = load_tool('export_onnx.py')
    probe = nn.Conv2d(2, 2, 1).eval()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', category=FutureWarning, message='.*LeafSpec')
            torch.onnx.export(probe, (torch.randn(1, 2, 3, 3),), dynamo=True, verbose=False)
    except ModuleNotFoundError as error:
        pytest.skip(tool.exporter_problem(error))
    return tool


def standard_ops_only(path):
    """Node types of the ONNX file, after checking that all are in the standard domain (a
    custom autograd Function would export as a foreign op or fail)."""
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert {node.domain for node in model.graph.node} <= {'', 'ai.onnx'}
    return {node.op_type for node in model.graph.node}


@pytest.mark.parametrize('name', UPSAMPLERS)
def test_every_upsampler_exports_with_onnxruntime_parity(name, export_onnx, tmp_path):
    """Dynamic height and width: parity at the export size and at another one."""
    path = str(tmp_path / f'{name}.onnx')
    parities = export_onnx.export_upsampler(name, path, in_channels=32, input_size=(7, 9),
                                            batch=2)
    assert [parity.shapes['x'] for parity in parities] == [(2, 32, 7, 9), (2, 32, 10, 14)]
    for parity in parities:
        assert parity.max_abs_error <= PARITY, parity.describe()
    standard_ops_only(path)


@pytest.mark.parametrize('name', ['DySample', 'SAPADeform'])
def test_grid_sample_upsamplers_export_at_opset_16(name, export_onnx, tmp_path):
    path = str(tmp_path / f'{name}.onnx')
    (parity,) = export_onnx.export_upsampler(name, path, in_channels=32, opset=16,
                                             dynamic_sizes=False)
    assert parity.max_abs_error <= PARITY
    assert [entry.version for entry in onnx.load(path).opset_import if entry.domain == ''] == [16]
    assert 'GridSample' in standard_ops_only(path)


def test_export_runs_the_reference_implementation(export_onnx, tmp_path):
    """With no ``use_implementation`` block, dispatch picks the reference while exporting, so
    a plain ``torch.onnx.export`` of a reassembly-based upsampler works too."""
    chosen = []

    class Probe(nn.Module):
        def forward(self, x):
            chosen.append(resolve_implementation(None, x))
            return x * 2

    torch.onnx.export(Probe().eval(), (torch.randn(1, 2, 3, 3),), str(tmp_path / 'probe.onnx'),
                      dynamo=True, verbose=False)
    assert chosen and set(chosen) == {'reference'}

    carafe = build('CARAFE').eval()
    x, _ = make_inputs(carafe)
    path = str(tmp_path / 'carafe.onnx')
    torch.onnx.export(carafe, (x,), path, dynamo=True, opset_version=18, input_names=['x'],
                      verbose=False)
    (actual,) = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider']).run(
        None, {'x': x.numpy()})
    with torch.no_grad():
        assert (torch.from_numpy(actual) - carafe(x)).abs().max().item() <= PARITY


def test_segmentation_model_with_fade_exports_with_parity(export_onnx, tmp_path, capsys):
    """``tools/export_onnx.py model``: a small UPerNet (ResNet-18 at 8 base channels) whose
    top-down path upsamples with FADE, 64 x 64 input, logits at the input size."""
    pytest.importorskip('mmseg', reason='the model is an mmseg segmentor')
    config = write_tiny_seg(tmp_path, decode_head_extra=(
        "type='UPerHeadWithUpsampler', upsample_cfg=dict(type='FADE')"))
    path = tmp_path / 'upernet_fade.onnx'
    status = export_onnx.main(['model', str(config), str(path), '--input-size', '64', '72'])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert 'parity at inputs 1x3x64x72' in printed and printed.rstrip().endswith('ok')
    model = onnx.load(str(path))
    assert [tensor.name for tensor in model.graph.input] == ['inputs']
    output_shape = [dim.dim_value for dim in model.graph.output[0].type.tensor_type.shape.dim]
    assert output_shape == [1, 4, 64, 72]
    assert 'Softmax' in standard_ops_only(str(path))  # FADE's kernel normalisation


def test_upsampler_command_line(export_onnx, tmp_path, capsys):
    path = tmp_path / 'dysample.onnx'
    status = export_onnx.main(['upsampler', 'DySample', str(path), '--in-channels', '16',
                               '--arg', 'groups=2', '--arg', 'dyscope=True',
                               '--input-size', '5', '6'])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert 'exported DySample (dynamic height and width)' in printed
    assert printed.count(' ok') == 2
    # dyscope=True reached the constructor: the dynamic scope is 0.5 * sigmoid(scope conv), and
    # DySample without it has no Sigmoid (the 1x1 convs export as one MatMul, so no weight name).
    op_types = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert 'Sigmoid' in op_types, sorted(op_types)


def test_parity_failure_sets_the_exit_status(export_onnx, tmp_path, capsys):
    status = export_onnx.main(['upsampler', 'BilinearUpsample', str(tmp_path / 'b.onnx'),
                               '--in-channels', '4', '--atol', '-1'])
    assert status == 1
    assert 'FAILED (> -1)' in capsys.readouterr().out
