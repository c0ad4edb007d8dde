"""Fixtures shared by the fast-path tests of tests/ops."""
import pytest

import mmdynup.ops.reassembly as reassembly


@pytest.fixture(params=['one tile', 'one row per tile'])
def tile_budget(request, monkeypatch):
    """Run a test once with the default tile budget and once with one low-res row per tile."""
    if request.param == 'one row per tile':
        monkeypatch.setattr(reassembly, 'CPU_TILE_ELEMENTS', 1)
    return request.param
