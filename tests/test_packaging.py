"""Packaging: requirement pins vs the installed stack, setup.py helpers, the mim extension,
the shell entry points, the README's two commands, and the editable install."""
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conftest import REPO, load_module

SHARED = Path(os.environ.get('TINYVIM_SHARED', REPO.parent / 'shared'))
REQ_FILES = sorted((REPO / 'requirements').glob('*.txt')) + [REPO / 'requirements.txt']
STACK = {  # the CPU stack proven together (DESIGN.md, README)
    'torch': '2.14.1',
    'torchvision': '0.29.1',
    'mmengine': '0.10.7',
    'mmcv': '2.1.0',
    'mmdet': '3.3.0',
    'mmsegmentation': '1.2.2',
    'mmpretrain': '1.2.0',
}
SCRIPTS = ['tools/install.sh', 'tools/run_tests.sh', '.ci/run']
MIM_ITEMS = ('configs', 'tools', 'model-index.yml', 'requirements')
REQUIRE_INSTALLED = os.environ.get('TINYVIM_REQUIRE_INSTALLED') == '1'


def _norm(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def read_requirements(path, _seen=None):
    """Independent reader (not setup.py's): Requirement objects, ``-r`` expanded."""
    out = []
    for raw in Path(path).read_text(encoding='utf-8').splitlines():
        line = raw.split(' #', 1)[0].strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('-r '):
            out += read_requirements(Path(path).parent / line[3:].strip())
        elif not line.startswith('-'):
            out.append(Requirement(line))
    return out


def installed_version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


@pytest.fixture(scope='module')
def setup_module_():
    """setup.py imported as a module (its ``setup()`` call is under ``__main__``)."""
    return load_module(REPO / 'setup.py', 'tinyvim_setup')


def shell_var(path, name):
    m = re.search(rf'^{name}=([^\s#]+)', (REPO / path).read_text(), re.M)
    assert m, f'{name}= not found in {path}'
    return m.group(1).strip('"\'')


# ---------------------------------------------------------------------------------------
# Requirement files


def test_requirement_files_parse():
    for path in REQ_FILES:
        read_requirements(path)  # raises on a malformed line
    names = {_norm(r.name) for r in read_requirements(REPO / 'requirements.txt')}
    for must in list(STACK) + ['timm', 'setuptools', 'pytest', 'onnx', 'onnxruntime']:
        assert _norm(must) in names, f'{must} missing from requirements.txt (recursively)'
    cuda = {_norm(r.name) for r in read_requirements(REPO / 'requirements/cuda.txt')}
    assert {'mamba-ssm', 'causal-conv1d'} <= cuda
    assert not cuda & names, 'GPU-only packages must stay out of the CPU stack'
    # openmim is installed with --no-deps by tools/install.sh, never through a requirements
    # file (its requirements pull openxlab), and transformers is never wanted.
    for path in REQ_FILES:
        bad = {_norm(r.name) for r in read_requirements(path)} & {'openmim', 'transformers'}
        assert not bad, f'{path.name} lists {bad}'


def test_stack_pinned_consistently():
    """Each stack package pinned ``==`` to one version, the same in every file."""
    pins = {}
    for path in REQ_FILES:
        for req in read_requirements(path):
            for spec in req.specifier:
                if spec.operator == '==':
                    pins.setdefault(_norm(req.name), set()).add(spec.version)
    for name, version in STACK.items():
        assert pins.get(_norm(name)) == {version}, f'{name}: pinned {pins.get(_norm(name))}'
    assert all(len(v) == 1 for v in pins.values()), pins
    # setuptools < 81 (pkg_resources) everywhere setuptools is named
    for path in REQ_FILES:
        for req in read_requirements(path):
            if _norm(req.name) == 'setuptools':
                assert not req.specifier.contains('81.0'), f'{path.name}: {req}'
    # install.sh's own constants agree with the requirement files
    assert shell_var('tools/install.sh', 'MMCV_VERSION') == STACK['mmcv']


def test_pins_match_installed():
    """Every requirement of the CPU stack that is installed satisfies its specifier."""
    missing, wrong = [], []
    for req in read_requirements(REPO / 'requirements.txt'):
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = installed_version(req.name)
        if version is None:
            missing.append(str(req))
        elif req.specifier and not req.specifier.contains(version, prereleases=True):
            wrong.append(f'{req.name} {version} (wanted {req})')
    assert not wrong, wrong
    stack_missing = [m for m in missing if _norm(Requirement(m).name) in map(_norm, STACK)]
    assert not stack_missing, stack_missing
    if REQUIRE_INSTALLED:
        assert not missing, f'not installed: {missing} (run tools/install.sh)'
    assert not (installed_version('transformers') or '0').startswith('5'), \
        'transformers 5.x breaks mmpretrain 1.2.0 multimodal imports'


def test_pins_match_shared_wheels_and_gpu_requirements():
    wheels = sorted((SHARED / 'wheels' / 'cpu-cp311').glob('mmcv-*.whl'))
    if not wheels:
        pytest.skip(f'no prebuilt mmcv wheel under {SHARED}')
    assert all(w.name.startswith(f'mmcv-{STACK["mmcv"]}-') for w in wheels), wheels
    gpu_req = SHARED / 'gpu' / 'gpu-requirements.txt'
    if gpu_req.is_file():
        gpu = {_norm(r.name): r for r in read_requirements(gpu_req)}
        for name in ('mmengine', 'mmdet', 'mmsegmentation', 'mmpretrain'):
            if _norm(name) in gpu:
                assert gpu[_norm(name)].specifier.contains(STACK[name]), name
        if 'openmim' in gpu:
            assert gpu['openmim'].specifier.contains(shell_var('tools/install.sh', 'OPENMIM_VERSION'))
    cuda = {_norm(r.name): r for r in read_requirements(REPO / 'requirements/cuda.txt')}
    for whl in (SHARED / 'wheels' / 'gpu-cp312-cu130').glob('*.whl'):
        name, version = whl.name.split('-')[:2]
        if _norm(name) in cuda:
            assert cuda[_norm(name)].specifier.contains(version), whl.name


def test_openmim_version_installed():
    version = installed_version('openmim')
    if version is None:
        if REQUIRE_INSTALLED:
            pytest.fail('openmim not installed (tools/install.sh installs it)')
        pytest.skip('openmim not installed')
    assert version == shell_var('tools/install.sh', 'OPENMIM_VERSION')


# ---------------------------------------------------------------------------------------
# setup.py


def test_parse_requirements_roundtrip(setup_module_):
    """setup.py's parser gives the same requirements as packaging does, file by file."""
    parse = setup_module_.parse_requirements
    for path in REQ_FILES:
        expected = read_requirements(path)
        got = [Requirement(s) for s in parse(str(path))]
        assert [(_norm(r.name), r.specifier, str(r.marker)) for r in got] == \
            [(_norm(r.name), r.specifier, str(r.marker)) for r in expected], path.name
        names = parse(str(path), with_version=False)
        assert [_norm(Requirement(n).name) for n in names] == [_norm(r.name) for r in expected]
        assert all(not Requirement(n).specifier for n in names)
    # relative names resolve against the repository, not the cwd
    assert parse('requirements/mminstall.txt') == parse(str(REPO / 'requirements/mminstall.txt'))
    assert parse('does/not/exist.txt') == []


def test_parse_requirements_edge_cases(setup_module_, tmp_path):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'inner.txt').write_text('inner-pkg>=1.0\n')
    (tmp_path / 'outer.txt').write_text(
        '# comment\n'
        '\n'
        '--find-links /somewhere\n'
        '-r sub/inner.txt\n'
        'a==1.2.3  # inline comment\n'
        'b>=1.0,<2.0\n'
        'c~=3.1\n'
        'd!=0.5\n'
        'e\n'
        'setuptools<81\n'
        'f>=2; python_version < "3.12"\n')
    got = setup_module_.parse_requirements(str(tmp_path / 'outer.txt'))
    reqs = [Requirement(s) for s in got]
    assert [r.name for r in reqs] == ['inner-pkg', 'a', 'b', 'c', 'd', 'e', 'setuptools', 'f']
    spec = {r.name: str(r.specifier) for r in reqs}
    assert spec['a'] == '==1.2.3' and Requirement('b>=1.0,<2.0').specifier == reqs[2].specifier
    assert spec['c'] == '~=3.1' and spec['d'] == '!=0.5' and spec['e'] == ''
    assert spec['setuptools'] == '<81'
    assert str(reqs[-1].marker) == 'python_version < "3.12"'
    bare = setup_module_.parse_requirements(str(tmp_path / 'outer.txt'), with_version=False)
    assert bare[1:6] == ['a', 'b', 'c', 'd', 'e']
    assert bare[-1] == 'f; python_version < "3.12"'


def test_setup_metadata(setup_module_):
    from tinyvim_mm.version import __version__
    assert setup_module_.get_version() == __version__
    extras = setup_module_.get_extras_require()
    assert {'all', 'tests', 'mim', 'cuda', 'optional', 'build'} <= set(extras)
    all_names = {_norm(Requirement(r).name) for r in extras['all']}
    assert {'mmcv', 'mmdet', 'pytest'} <= all_names and 'mamba-ssm' not in all_names
    out = subprocess.run([sys.executable, 'setup.py', '--name', '--version'], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[-2:] == ['tinyvim_mm', __version__]


@pytest.mark.parametrize('argv,mode', [
    (['setup.py', 'develop', '--no-deps'], 'symlink'),
    (['setup.py', 'editable_wheel', '--dist-dir', 'x'], 'symlink'),
    (['setup.py', 'bdist_wheel'], 'copy'),
    (['setup.py', 'sdist'], 'copy'),
    (['setup.py', 'install'], 'copy'),
    (['setup.py', 'egg_info'], None),
    (['setup.py', 'dist_info'], None),
    (['setup.py', '--version'], None),
])
def test_install_mode(setup_module_, argv, mode, monkeypatch):
    monkeypatch.setattr(setup_module_.platform, 'system', lambda: 'Linux')
    assert setup_module_._install_mode(argv) == mode


def _fake_repo(root, with_index=True):
    (root / 'tinyvim_mm').mkdir(parents=True)
    (root / 'configs' / '_base_').mkdir(parents=True)
    (root / 'configs' / 'a.py').write_text('x = 1\n')
    (root / 'configs' / '_base_' / 'b.py').write_text('y = 2\n')
    (root / 'tools' / '__pycache__').mkdir(parents=True)
    (root / 'tools' / 'train.py').write_text('')
    (root / 'tools' / '__pycache__' / 'train.cpython-311.pyc').write_bytes(b'')
    (root / 'requirements').mkdir()
    (root / 'requirements' / 'runtime.txt').write_text('torch\n')
    if with_index:
        (root / 'model-index.yml').write_text('Import: []\n')


def test_add_mim_extension_modes(setup_module_, tmp_path):
    add = setup_module_.add_mim_extension
    _fake_repo(tmp_path)
    mim = tmp_path / 'tinyvim_mm' / '.mim'
    for _ in range(2):  # idempotent
        assert add('symlink', repo_path=str(tmp_path)) == 'symlink'
        for item in MIM_ITEMS:
            assert (mim / item).is_symlink(), item
            assert not os.path.isabs(os.readlink(mim / item)), 'links must be relative'
            assert (mim / item).resolve() == (tmp_path / item).resolve()
    (tmp_path / 'configs' / 'new.py').write_text('')
    assert (mim / 'configs' / 'new.py').is_file(), 'links show edits at once'

    assert add('copy', repo_path=str(tmp_path)) == 'copy'  # replaces the links
    for item in MIM_ITEMS:
        assert not (mim / item).is_symlink() and (mim / item).exists(), item
    assert (mim / 'configs' / '_base_' / 'b.py').read_text() == 'y = 2\n'
    assert not (mim / 'tools' / '__pycache__').exists()

    add('symlink', repo_path=str(tmp_path))  # and back
    assert all((mim / item).is_symlink() for item in MIM_ITEMS)
    assert add(None, repo_path=str(tmp_path)) in (None, 'symlink', 'copy')
    with pytest.raises(ValueError):
        add('hardlink', repo_path=str(tmp_path))


def test_add_mim_extension_missing_items(setup_module_, tmp_path):
    """No model-index.yml (or an empty one) must not break the install."""
    _fake_repo(tmp_path, with_index=False)
    shutil.rmtree(tmp_path / 'tools')
    setup_module_.add_mim_extension('copy', repo_path=str(tmp_path))
    mim = tmp_path / 'tinyvim_mm' / '.mim'
    assert sorted(p.name for p in mim.iterdir()) == ['configs', 'requirements']


def test_model_index_placeholder():
    yaml = pytest.importorskip('yaml')
    index = yaml.safe_load((REPO / 'model-index.yml').read_text())
    assert isinstance(index, dict) and isinstance(index.get('Import'), list)
    for meta in index['Import']:
        assert (REPO / meta).is_file(), f'model-index.yml imports missing {meta}'


def test_wheel_ships_mim(tmp_path):
    """A wheel built from (a copy of) the checkout carries .mim/configs, tools, ... ."""
    src = tmp_path / 'src'
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '.mim', '*.egg-info', 'build')
    for item in ('tinyvim_mm', 'configs', 'tools', 'requirements'):
        shutil.copytree(REPO / item, src / item, ignore=ignore, symlinks=False)
    for item in ('setup.py', 'setup.cfg', 'MANIFEST.in', 'README.md', 'requirements.txt',
                 'model-index.yml'):
        if (REPO / item).is_file():
            shutil.copy(REPO / item, src / item)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '--no-index', '-q', '-w', str(tmp_path / 'dist'), str(src)],
                   check=True, capture_output=True, text=True)
    (whl,) = (tmp_path / 'dist').glob('tinyvim_mm-*.whl')
    names = set(zipfile.ZipFile(whl).namelist())
    assert 'tinyvim_mm/.mim/model-index.yml' in names
    assert 'tinyvim_mm/.mim/requirements/runtime.txt' in names
    for cfg in (REPO / 'configs').rglob('*.py'):
        assert f'tinyvim_mm/.mim/configs/{cfg.relative_to(REPO / "configs").as_posix()}' in names
    assert 'tinyvim_mm/.mim/tools/install.sh' in names
    assert not [n for n in names if '__pycache__' in n or n.endswith('.pyc')]
    assert not [n for n in names if n.startswith(('tests/', 'configs/', 'tools/'))]


# ---------------------------------------------------------------------------------------
# Shell entry points and the README


@pytest.mark.parametrize('script', SCRIPTS + ['tools/quickstart.sh'])
def test_shell_syntax(script):
    path = REPO / script
    if not path.is_file():
        assert script == 'tools/quickstart.sh', f'{script} missing'
        pytest.skip(f'{script} not written yet')
    subprocess.run(['bash', '-n', str(path)], check=True)
    text = path.read_text()
    if script in SCRIPTS:
        assert 'set -euo pipefail' in text, script


def readme_two_commands():
    text = (REPO / 'README.md').read_text(encoding='utf-8')
    m = re.search(r'^## Install[^\n]*\n(.*?)(?=^## )', text, re.S | re.M)
    assert m, 'README has no "## Install ..." section'
    block = re.search(r'```(?:bash|sh)?\n(.*?)```', m.group(1), re.S)
    assert block, 'no command block in the install section'
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_two_commands_and_ci():
    commands = readme_two_commands()
    assert commands == ['bash tools/quickstart.sh', 'bash tools/run_tests.sh'], commands
    test_command = commands[1]
    ci_lines = [line.strip() for line in (REPO / '.ci' / 'run').read_text().splitlines()
                if line.strip() and not line.strip().startswith('#')]
    assert test_command in ci_lines, '.ci/run must run the README test command'
    for command in commands:
        assert (REPO / command.split()[-1]).is_file(), f'README command {command!r}: no such script'


def test_run_tests_script_contract():
    text = (REPO / 'tools' / 'run_tests.sh').read_text()
    assert 'bash tools/install.sh' in text
    assert re.search(r'-m pytest tests -q "\$@"', text), 'pytest must get the extra args'


def test_readme_troubleshooting_covers_pitfalls():
    text = (REPO / 'README.md').read_text(encoding='utf-8')
    section = text[text.index('## Troubleshooting'):]
    for needle in ('mmcv < 2.2.0', 'C++20', 'weights_only', 'transformers 5', 'torchvision',
                   'setuptools ≥ 81', 'same pip call', 'openxlab', 'MODULE2PACKAGE',
                   r'\w*::\w*/\w*', '.mim/configs', 'requests', 'pandas'):
        assert needle in section, f'Troubleshooting does not cover {needle!r}'
    for marker in ('model zoo', 'tasks', 'benchmark'):
        assert f'<!-- section: {marker} -->' in text


# ---------------------------------------------------------------------------------------
# The installed package (after tools/install.sh / pip install -e .)


def installed_dist(name='tinyvim_mm'):
    """The distribution pip installed (it has direct_url.json / INSTALLER); the in-tree
    ``tinyvim_mm.egg-info`` that setuptools leaves in the repository root is skipped."""
    for dist in md.distributions(name=name):
        if dist.read_text('direct_url.json') is not None or dist.read_text('INSTALLER'):
            return dist
    raise md.PackageNotFoundError(name)


@pytest.fixture(scope='module')
def dist():
    try:
        return installed_dist()
    except md.PackageNotFoundError:
        if REQUIRE_INSTALLED:
            pytest.fail('tinyvim_mm is not installed (tools/install.sh runs pip install -e .)')
        pytest.skip('tinyvim_mm not installed; run: pip install -e . --no-deps')


def test_installed_editable_from_this_checkout(dist):
    import tinyvim_mm
    assert dist.version == tinyvim_mm.__version__
    info = json.loads(dist.read_text('direct_url.json') or '{}')
    assert info.get('dir_info', {}).get('editable'), 'not an editable install'
    assert Path(info['url'].removeprefix('file://')).resolve() == REPO
    assert Path(tinyvim_mm.__file__).resolve().parent == REPO / 'tinyvim_mm'


def test_installed_mim_links(dist):
    mim = REPO / 'tinyvim_mm' / '.mim'
    for item in MIM_ITEMS:
        if not (REPO / item).exists():
            continue
        assert (mim / item).exists(), f'{mim / item} missing: run pip install -e . --no-deps'
        if os.name != 'nt':
            assert (mim / item).is_symlink(), f'{mim / item} is a copy, not a link'
        assert (mim / item).resolve() == (REPO / item).resolve()
    cfgs = sorted(p.name for p in (mim / 'configs').glob('*.py'))
    assert cfgs == sorted(p.name for p in (REPO / 'configs').glob('*.py'))


def test_mmengine_finds_mim_configs(dist):
    """What `_base_ = 'tinyvim_mm::dir/file.py'` uses, from a cwd that is not the repo root."""
    code = ('import os, tinyvim_mm\n'
            'from mmengine.config import config\n'
            "p = config.get_installed_path('tinyvim_mm')\n"
            "assert os.path.isdir(os.path.join(p, '.mim', 'configs')), p\n")
    subprocess.run([sys.executable, '-W', 'ignore', '-c', code], cwd=REPO / 'tools', check=True,
                   capture_output=True)
