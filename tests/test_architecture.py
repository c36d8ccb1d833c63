"""The package's layout holds: dependencies between subpackages point one way
(``ops`` <- ``models`` <- ``deploy`` <- ``benchmark``; ``checkpoint``, ``datasets`` beside),
no import cycle, every subpackage imports on its own, tools are thin command lines."""
import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

import pytest

from conftest import REPO

PACKAGE = REPO / 'tinyvim_mm'
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / '__init__.py').is_file())
#: What each subpackage may import from the others (imports inside functions included).
ALLOWED: Dict[str, Set[str]] = {
    'ops': set(),
    'datasets': set(),
    'checkpoint': set(),
    'models': {'ops', 'checkpoint'},
    'engine': {'checkpoint', 'models', 'deploy'},
    'deploy': {'models', 'ops'},
    'analysis': {'models', 'ops'},
    'apis': {'models', 'checkpoint', 'engine'},
    'benchmark': {'models', 'ops', 'deploy', 'checkpoint', 'engine', 'datasets'},
}


def imported_subpackages(path: Path) -> Set[str]:
    """The ``tinyvim_mm`` subpackages a module imports (absolute or relative)."""
    module = path.relative_to(REPO).with_suffix('').parts  # ('tinyvim_mm', 'ops', ...)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(module[:-1] if path.name != '__init__.py' else module[:-1])
                base = base[:len(base) - node.level + 1]
                names = ['.'.join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or '']
        else:
            continue
        for name in names:
            parts = name.split('.')
            if parts[0] == 'tinyvim_mm' and len(parts) > 1 and parts[1] in SUBPACKAGES:
                found.add(parts[1])
    return found


def dependency_graph() -> Dict[str, Set[str]]:
    graph = {name: set() for name in SUBPACKAGES}
    for name in SUBPACKAGES:
        for path in (PACKAGE / name).rglob('*.py'):
            graph[name] |= imported_subpackages(path) - {name}
    return graph


def test_every_subpackage_is_known():
    assert set(SUBPACKAGES) == set(ALLOWED), 'add the new subpackage to ALLOWED'


@pytest.mark.parametrize('name', sorted(ALLOWED))
def test_dependencies_point_one_way(name):
    extra = dependency_graph()[name] - ALLOWED[name]
    assert not extra, f'tinyvim_mm.{name} imports {sorted(extra)}'


def test_no_import_cycle():
    graph = dependency_graph()
    state: Dict[str, int] = {}

    def visit(node: str, path: tuple) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, f'import cycle: {" -> ".join(path + (nxt, ))}'
            if nxt not in state:
                visit(nxt, path + (nxt, ))
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, (node, ))


def test_each_subpackage_imports_alone():
    code = ';'.join(f'import tinyvim_mm.{name}' for name in SUBPACKAGES)
    for name in SUBPACKAGES:
        subprocess.run([sys.executable, '-c', f'import tinyvim_mm.{name}'], cwd=REPO,
                       check=True, capture_output=True)
    subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True, capture_output=True)


def test_import_registers_without_mmpretrain():
    """Detection / segmentation users never import mmpretrain through tinyvim_mm."""
    out = subprocess.run([sys.executable, '-c', 'import sys, tinyvim_mm; '
                          "print('mmpretrain' in sys.modules)"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[-1] == 'False'


def test_tools_are_thin_command_lines():
    for tool in (REPO / 'tools').rglob('*.py'):
        text = tool.read_text(encoding='utf-8')
        assert 'sys.path.insert' not in text and 'sys.path.append' not in text, tool
        tree = ast.parse(text)
        local = {p.stem for p in tool.parent.glob('*.py')} - {tool.stem}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                    else [node.module or '']
                assert not {n.split('.')[0] for n in names} & local, \
                    f'{tool.name} imports another tool'


def test_no_oversized_file():
    for path in list(PACKAGE.rglob('*.py')) + list((REPO / 'tools').rglob('*.py')):
        lines = path.read_text(encoding='utf-8').count('\n')
        assert lines <= 500, f'{path.relative_to(REPO)}: {lines} lines'
