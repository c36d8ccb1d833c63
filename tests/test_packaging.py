"""Packaging: the requirement files against the installed stack, setup.py and the wheel it
builds (``.mim`` copies, the start-up ``.pth``), the installed package, and the README's
two commands as CI runs them."""
import importlib.metadata as md
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
REQUIRE_INSTALLED = os.environ.get('TINYVIM_REQUIRE_INSTALLED') == '1'


def norm(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def read_requirements(path: Path) -> list:
    """Requirement objects of a file, ``-r`` expanded (independent of setup.py's parser)."""
    out = []
    for raw in path.read_text(encoding='utf-8').splitlines():
        line = raw.split(' #', 1)[0].strip()
        if line.startswith('-r '):
            out += read_requirements(path.parent / line[3:].strip())
        elif line and not line.startswith(('#', '-')):
            out.append(Requirement(line))
    return out


def pins() -> dict:
    """``{name: version}`` of every ``==`` pin in the requirement files (one each)."""
    found = {}
    for path in REQ_FILES:
        for req in read_requirements(path):
            for spec in req.specifier:
                if spec.operator == '==':
                    found.setdefault(norm(req.name), set()).add(spec.version)
    assert all(len(v) == 1 for v in found.values()), f'conflicting pins: {found}'
    return {name: versions.pop() for name, versions in found.items()}


def test_stack_pins_consistent_and_installed():
    """One version per pinned package, every requirement of the CPU stack satisfied by
    what is installed (all of them where tools/install.sh ran)."""
    pinned = pins()
    for name in ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation',
                 'mmpretrain'):
        assert name in pinned, f'{name} is not pinned'
    missing, wrong = [], []
    for req in read_requirements(REPO / 'requirements.txt'):
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            missing.append(str(req))
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            wrong.append(f'{req.name} {version} (wanted {req})')
    assert not wrong, wrong
    if REQUIRE_INSTALLED:
        assert not missing, f'not installed: {missing} (tools/install.sh installs them)'


def test_gpu_only_packages_stay_out_of_the_cpu_stack():
    cpu = {norm(r.name) for r in read_requirements(REPO / 'requirements.txt')}
    cuda = {norm(r.name) for r in read_requirements(REPO / 'requirements/cuda.txt')}
    assert {'mamba-ssm', 'causal-conv1d'} <= cuda and not cuda & cpu
    assert not cpu & {'openmim', 'transformers'}, 'openmim is installed with --no-deps'


def test_shared_wheels_match_the_pins():
    wheels = sorted((SHARED / 'wheels' / 'cpu-cp311').glob('mmcv-*.whl'))
    if not wheels:
        pytest.skip(f'no prebuilt mmcv wheel under {SHARED}')
    assert all(w.name.startswith(f'mmcv-{pins()["mmcv"]}-') for w in wheels), wheels


def test_setup_parses_requirements_like_pip():
    setup = load_module(REPO / 'setup.py', 'tinyvim_setup')
    for path in REQ_FILES:
        got = [Requirement(s) for s in setup.parse_requirements(str(path))]
        want = read_requirements(path)
        assert [(norm(r.name), r.specifier, r.marker) for r in got] == \
            [(norm(r.name), r.specifier, r.marker) for r in want], path.name


def test_wheel_ships_mim_files_and_startup_hook(tmp_path):
    """A wheel built from a copy of the checkout carries ``.mim`` copies of configs,
    tools, requirements and model-index.yml, the ``tinyvim_mm::`` start-up ``.pth`` and
    its module; the build writes nothing into the source tree's package."""
    src = tmp_path / 'src'
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        '.git', '__pycache__', '*.pyc', 'build', '*.egg-info', 'data', 'work_dirs', '.whl'))
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '--no-index', '-q', '-w', str(tmp_path / 'dist'), str(src)],
                   check=True, capture_output=True, text=True)
    (whl, ) = (tmp_path / 'dist').glob('tinyvim_mm-*.whl')
    names = set(zipfile.ZipFile(whl).namelist())
    for cfg in (REPO / 'configs').rglob('*.py'):
        assert f'tinyvim_mm/.mim/configs/{cfg.relative_to(REPO / "configs").as_posix()}' in names
    for name in ('tinyvim_mm/.mim/model-index.yml', 'tinyvim_mm/.mim/tools/train.py',
                 'tinyvim_mm/.mim/requirements/runtime.txt', 'tinyvim_mm-mmengine.pth',
                 'tinyvim_mm_compat.py'):
        assert name in names, name
    assert not [n for n in names if '__pycache__' in n or n.startswith(('tests/', 'configs/'))]
    assert not (src / 'tinyvim_mm' / '.mim').exists(), 'the build wrote into the checkout'


@pytest.mark.skipif(not REQUIRE_INSTALLED, reason='run after tools/install.sh')
def test_installed_package_is_this_checkout():
    """tools/install.sh's own check: a regular install equal to this checkout."""
    out = subprocess.run(['bash', 'tools/install.sh'], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, TINYVIM_CHECK_ONLY='1'))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(not REQUIRE_INSTALLED, reason='run after tools/install.sh')
def test_tinyvim_bases_resolve_without_importing_tinyvim(tmp_path):
    """A fresh interpreter outside the checkout parses ``_base_ = 'tinyvim_mm::...'`` with
    nothing imported first (the toolboxes' own tools do exactly that)."""
    (tmp_path / 'my.py').write_text("_base_ = 'tinyvim_mm::mask_rcnn_tinyvim_b.py'\n"
                                    'model = dict(roi_head=dict(bbox_head=dict(num_classes=3)))\n')
    code = ('import sys\nfrom mmengine.config import Config\n'
            "cfg = Config.fromfile('my.py', import_custom_modules=False)\n"
            "assert 'tinyvim_mm' not in sys.modules\n"
            'print(cfg.model.backbone.type, cfg.model.roi_head.bbox_head.num_classes)\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    out = subprocess.run([sys.executable, '-W', 'ignore', '-c', code], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['TinyViM', '3']


@pytest.mark.parametrize('script', ['tools/install.sh', 'tools/run_tests.sh', '.ci/run',
                                    'tools/quickstart.sh'])
def test_shell_scripts_parse(script):
    subprocess.run(['bash', '-n', str(REPO / script)], check=True)


def test_ci_runs_the_readme_test_command_in_a_new_virtualenv():
    text = (REPO / 'README.md').read_text(encoding='utf-8')
    block = re.search(r'```bash\n(bash tools/quickstart.sh\nbash tools/run_tests.sh)\n```', text)
    assert block, 'README must show the two commands in one bash block'
    ci = [line.strip() for line in (REPO / '.ci' / 'run').read_text().splitlines()
          if line.strip() and not line.lstrip().startswith('#')]
    venv = next(i for i, line in enumerate(ci) if '-m venv' in line)
    test = ci.index('bash tools/run_tests.sh')
    activate = next(i for i, line in enumerate(ci) if 'bin/activate' in line)
    assert venv < activate < test
