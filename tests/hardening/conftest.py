"""Hardening tests: the ``slow`` marker (cold ``torch.compile`` runs) is opt-in.

Tests marked ``slow`` in this folder are skipped unless ``MMDYNUP_SLOW_TESTS=1``: a cold inductor
compile of one upsampler takes 10-30 s on a 2-core machine, and the default suite covers one
upsampler per op family.
"""
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SLOW_TESTS_VARIABLE = 'MMDYNUP_SLOW_TESTS'


def pytest_configure(config):
    config.addinivalue_line('markers', f'slow: skipped unless {SLOW_TESTS_VARIABLE}=1')


def pytest_collection_modifyitems(config, items):
    if os.environ.get(SLOW_TESTS_VARIABLE) == '1':
        return
    skip = pytest.mark.skip(reason=f'slow (a cold torch.compile); set {SLOW_TESTS_VARIABLE}=1 '
                                   f'to run it')
    for item in items:
        if 'slow' in item.keywords and HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)
