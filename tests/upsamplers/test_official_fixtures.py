"""Every operator file of the authors' reference outputs, reproduced through build_from_official.

Forward, input gradients and parameter gradients (mapped back to official names) in float64.
"""
import pytest
import torch

from mmdynup.converters import build_from_official, convert_official, official_sources
from mmdynup.converters.official import source_key
from tests.conftest import skip_without_reference
from tests.official_harness import assert_reproduces_record, reference_records

# The operator records: shared/reference itself, the zoo (next/) and the authors' ECCV FADE.
FOLDERS = ('', 'next', 'fade_eccv')
# fade_eccv.pt: a third-party port of FADE_H2L computing no paper's operator (fade_eccv/README.md).
FILES = [path for path in reference_records(FOLDERS) if path.name != 'fade_eccv.pt']


def _load(path):
    return torch.load(path, weights_only=True)


def _skip_unconverted(record):
    # A zoo family lands with its converter; until then its records are reported as skipped.
    if source_key(record['official']) not in official_sources():
        pytest.skip(f'no converter registered for {record["official"]!r} yet')


@skip_without_reference()
@pytest.mark.parametrize('path', FILES, ids=[p.stem for p in FILES])
def test_reproduces_official_operator(path):
    record = _load(path)
    _skip_unconverted(record)
    assert_reproduces_record(record)


@skip_without_reference()
@pytest.mark.parametrize('path', FILES, ids=[p.stem for p in FILES])
def test_public_build_from_official_is_loaded(path):
    record = _load(path)
    _skip_unconverted(record)
    module = build_from_official(record['official'], record['kwargs'], record['state_dict'])
    conversion = convert_official(record['official'], record['kwargs'], record['state_dict'])
    for name, tensor in module.state_dict().items():
        torch.testing.assert_close(tensor, conversion.module.state_dict()[name])
        official = conversion.official_names[name]
        torch.testing.assert_close(tensor.double(), record['state_dict'][official].double())




@skip_without_reference()
def test_official_forward_names_the_official_inputs():
    record = _load(FILES[0])
    conversion = convert_official(record['official'], record['kwargs'], record['state_dict'])
    with pytest.raises(TypeError, match='official inputs'):
        conversion.official_forward(wrong=next(iter(record['inputs'].values())))
