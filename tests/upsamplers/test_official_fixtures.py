"""Every operator file of the authors' reference outputs, reproduced through build_from_official.

Forward, input gradients and parameter gradients (mapped back to official names) in float64.
"""
import pytest
import torch

from mmdynup.converters import build_from_official, convert_official
from tests.conftest import reference_dir, reference_files, skip_without_reference

FILES = reference_files()
ATOL, RTOL = 1e-10, 1e-8


def _load(path):
    return torch.load(path, weights_only=True)


@skip_without_reference()
@pytest.mark.parametrize('path', FILES, ids=[p.stem for p in FILES])
def test_reproduces_official_operator(path):
    record = _load(path)
    conversion = convert_official(record['official'], record['kwargs'], record['state_dict'])
    module = conversion.module.double()
    inputs = {name: tensor.detach().clone().double().requires_grad_(True)
              for name, tensor in record['inputs'].items()}
    by_role = {conversion.input_roles[name]: tensor for name, tensor in inputs.items()}
    output = module(by_role['x'], by_role.get('guide'))
    torch.testing.assert_close(output, record['output'].double(), atol=ATOL, rtol=RTOL)

    output.backward(record['grad_output'].double())
    for name, expected in record['grads'].items():
        torch.testing.assert_close(inputs[name].grad, expected.double(), atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f'input gradient {name}: {m}')
    ours = {conversion.official_names[n]: p.grad for n, p in module.named_parameters()}
    assert set(record['param_grads']) <= set(ours), \
        f'parameters missing: {sorted(set(record["param_grads"]) - set(ours))}'
    for name, expected in record['param_grads'].items():
        assert ours[name] is not None, f'{name} received no gradient'
        torch.testing.assert_close(ours[name], expected.double(), atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f'parameter gradient {name}: {m}')


@skip_without_reference()
@pytest.mark.parametrize('path', FILES, ids=[p.stem for p in FILES])
def test_public_build_from_official_is_loaded(path):
    record = _load(path)
    module = build_from_official(record['official'], record['kwargs'], record['state_dict'])
    conversion = convert_official(record['official'], record['kwargs'], record['state_dict'])
    for name, tensor in module.state_dict().items():
        torch.testing.assert_close(tensor, conversion.module.state_dict()[name])
        official = conversion.official_names[name]
        torch.testing.assert_close(tensor.double(), record['state_dict'][official].double())


