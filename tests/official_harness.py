"""One harness for every operator record of the authors' code (``shared/reference``): our module,
through ``convert_official(...).official_forward``, must give the official output structure, the
input gradients and every parameter gradient (mapped back to official names) in float64."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from mmdynup.converters import convert_official

ATOL, RTOL = 1e-10, 1e-8


def as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def assert_reproduces_record(record: dict) -> None:
    """Output(s), input gradients and parameter gradients of one record, within ATOL / RTOL."""
    conversion = convert_official(record['official'], record['kwargs'], record['state_dict'])
    module = conversion.module.double()
    inputs = {name: tensor.detach().clone().double().requires_grad_(True)
              for name, tensor in record['inputs'].items()}
    outputs = as_tuple(conversion.official_forward(**inputs))
    expected_outputs = as_tuple(record['output'])
    assert len(outputs) == len(expected_outputs), \
        f'official_forward returned {len(outputs)} tensors, the record has {len(expected_outputs)}'
    for index, (output, expected) in enumerate(zip(outputs, expected_outputs)):
        torch.testing.assert_close(output, expected.double(), atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f'output {index}: {m}')

    gradients = [gradient.double() for gradient in as_tuple(record['grad_output'])]
    used = [(output, gradient) for output, gradient in zip(outputs, gradients)
            if output.requires_grad]
    torch.autograd.backward([output for output, _ in used], [gradient for _, gradient in used])
    for name, expected in record['grads'].items():
        torch.testing.assert_close(inputs[name].grad, expected.double(), atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f'input gradient {name}: {m}')
    assert_official_names_cover(conversion.official_names, record['state_dict'])
    ours = {conversion.official_names[n]: p.grad for n, p in module.named_parameters()}
    assert set(record['param_grads']) <= set(ours), \
        f'parameters missing: {sorted(set(record["param_grads"]) - set(ours))}'
    for name, expected in record['param_grads'].items():
        assert ours[name] is not None, f'{name} received no gradient'
        torch.testing.assert_close(ours[name], expected.double(), atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f'parameter gradient {name}: {m}')


def assert_official_names_cover(official_names: dict, state_dict: dict) -> None:
    """Every official key (parameters and persistent buffers) has one of ours mapped to it."""
    missing = sorted(set(state_dict) - set(official_names.values()))
    assert not missing, f'official keys with no counterpart in our module: {missing}'


def reference_records(folders: Sequence[str]) -> list:
    from tests.conftest import reference_files
    return [path for folder in folders for path in reference_files(folder)]
