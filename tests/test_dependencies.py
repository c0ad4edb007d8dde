"""pyproject.toml states ranges and installs beside an existing OpenMMLab stack without changing
it; requirements/lock.txt holds the exact versions CI installs, inside those ranges."""
import json
import subprocess
import sys
import tomllib
import venv

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / 'pyproject.toml').read_text())['project']
LOCK = REPO_ROOT / 'requirements' / 'lock.txt'
# Never moved by installing mmdynup into an environment that has them.
HOST_STACK = ('torch', 'mmcv', 'mmengine', 'mmsegmentation', 'mmdet', 'numpy')
# A common OpenMMLab environment: torch 2.1 with CUDA, mmcv 2.1.0 built for it, mmseg 1.2.2,
# mmdet 3.3.0, and older versions of the plain dependencies than our lock has.
EXISTING_ENVIRONMENT = {
    'torch': '2.1.2+cu121', 'mmcv': '2.1.0', 'mmengine': '0.10.3', 'mmsegmentation': '1.2.2',
    'mmdet': '3.3.0', 'numpy': '1.24.4', 'ftfy': '6.1.1', 'regex': '2023.10.3',
    'pycocotools': '2.0.7', 'scipy': '1.10.1', 'shapely': '2.0.2', 'terminaltables': '3.1.10',
    'prettytable': '3.9.0', 'matplotlib': '3.7.4', 'tqdm': '4.66.1', 'setuptools': '69.0.2',
    # Not part of a usual stack: mmdynup brings it. Present here only so that pip can resolve
    # offline (--no-index); the point is that nothing already installed changes.
    'panopticapi-lite': '0.2.0',
}


def locked_versions() -> dict:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith('#'):
            name, version = line.split('==')
            pins[name.lower()] = Version(version)
    return pins


def requirements(extra=None) -> list:
    texts = PYPROJECT['dependencies'] + (PYPROJECT['optional-dependencies'][extra]
                                         if extra else [])
    return [Requirement(text) for text in texts]


@pytest.mark.parametrize('extra', [None, 'test'])
def test_lock_pins_every_requirement_inside_its_range(extra):
    pins = locked_versions()
    for requirement in requirements(extra):
        name = requirement.name.lower()
        assert name in pins, f'{name} is a dependency but has no pin in {LOCK.name}'
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f'{LOCK.name} pins {name}=={pins[name]}, outside pyproject.toml\'s {requirement}'


def test_dependencies_are_ranges_not_pins():
    pinned = [str(r) for r in requirements() + requirements('test')
              if any(spec.operator == '==' for spec in r.specifier)]
    assert not pinned, f'exact pins belong in {LOCK.name}, not pyproject.toml: {pinned}'


def _dry_run(python, arguments, tmp_path) -> list:
    """What ``pip install --dry-run --no-index`` would install into ``python``'s environment."""
    report = tmp_path / 'report.json'
    result = subprocess.run(
        [sys.executable, '-m', 'pip', '--python', str(python), 'install', '--dry-run',
         '--no-index', '--quiet', '--report', str(report), *arguments],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, \
        f'pip could not satisfy the requirements from the installed packages:\n{result.stderr}'
    return [item['metadata']['name'].lower() for item in json.loads(report.read_text())['install']]


def test_installs_beside_a_common_openmmlab_environment(tmp_path):
    """A fresh environment holding the distributions of EXISTING_ENVIRONMENT (metadata only):
    pip resolves every dependency of mmdynup from what is there and would install nothing."""
    environment = tmp_path / 'env'
    venv.EnvBuilder(with_pip=False).create(environment)
    site = next((environment / 'lib').glob('python*/site-packages'))
    for name, version in EXISTING_ENVIRONMENT.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\n'
                                       f'Version: {version}\n')
    python = environment / 'bin' / 'python'
    assert _dry_run(python, [str(r) for r in requirements()], tmp_path) == []


def test_editable_install_into_this_environment_changes_nothing_else(tmp_path):
    """The real package (metadata built from pyproject.toml) into the environment the tests run
    in: only mmdynup itself would be (re)installed; torch, mmcv, mmseg, mmdet stay."""
    installs = _dry_run(sys.executable, ['--no-build-isolation', '--editable',
                                         f'{REPO_ROOT}[test]'], tmp_path)
    assert installs == ['mmdynup'], f'installing mmdynup would also install {installs}'
    assert not set(installs) & set(HOST_STACK)
