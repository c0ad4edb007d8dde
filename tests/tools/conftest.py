"""Helpers for the tool tests: import a script under ``tools/`` as a module."""
import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'


def load_tool(relative_path: str):
    """Import ``tools/<relative_path>`` (e.g. ``'convert_checkpoint.py'``) as a fresh module."""
    path = TOOLS / relative_path
    name = 'tool_' + relative_path.replace('/', '_').removesuffix('.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
