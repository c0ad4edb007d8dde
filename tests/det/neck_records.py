"""Shared by the neck record tests: an integration record of a neck (inputs a list of backbone
maps, output a tuple of levels) reproduced through ``convert_official(...).official_forward``."""
import torch

from mmdynup.converters import convert_official
from tests.official_harness import ATOL, RTOL, assert_official_names_cover


def assert_neck_reproduces_record(record: dict, neck_class: type):
    """Every output level, the input gradients and every parameter gradient (official names) in
    float64 within ATOL / RTOL; our parameters are exactly those that the official forward uses.
    Returns the conversion."""
    conversion = convert_official(record['official'], record['kwargs'], record['state_dict'])
    neck = conversion.module
    assert isinstance(neck, neck_class) and next(neck.parameters()).dtype == torch.float64
    inputs = [tensor.detach().clone().requires_grad_(True) for tensor in record['inputs']]
    outputs = conversion.official_forward(inputs=inputs)
    assert isinstance(outputs, tuple) and len(outputs) == len(record['output'])
    for level, (output, expected) in enumerate(zip(outputs, record['output'])):
        torch.testing.assert_close(output, expected, atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f'output level {level}: {m}')
    torch.autograd.backward(list(outputs), list(record['grad_output']))
    for index, (tensor, expected) in enumerate(zip(inputs, record['grads'])):
        torch.testing.assert_close(tensor.grad, expected, atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f'input gradient {index}: {m}')
    assert_official_names_cover(
        conversion.official_names, {key: value for key, value in record['state_dict'].items()
         if key not in record.get('spare_upsampler_keys', ())})
    ours = {conversion.official_names[name]: p.grad for name, p in neck.named_parameters()}
    assert set(ours) == set(record['param_grads']), \
        'our parameters must be exactly the official parameters that forward uses'
    for name, expected in record['param_grads'].items():
        assert ours[name] is not None, f'{name} received no gradient'
        torch.testing.assert_close(ours[name], expected, atol=ATOL, rtol=RTOL,
                                   msg=lambda m: f'parameter gradient {name}: {m}')
    return conversion
