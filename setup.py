#!/usr/bin/env python
"""Packaging of ``tinyvim_mm`` in the OpenMMLab style (mmdet / mmpretrain setup.py).

* version from ``tinyvim_mm/version.py``;
* ``install_requires`` / ``extras_require`` parsed from ``requirements/*.txt``;
* the *mim extension*: on install, ``tinyvim_mm/.mim/`` receives ``configs/``, ``tools/``,
  ``requirements/`` and ``model-index.yml`` -- symbolic links for an editable install
  (``pip install -e .``), copies for a wheel / sdist / plain install -- so that
  ``mim`` and MMEngine's ``_base_ = 'tinyvim_mm::dir/file.py'`` find them.

pip name: ``tinyvim_mm`` (pip normalises it to ``tinyvim-mm``; both spellings work).
"""
import os
import os.path as osp
import platform
import re
import shutil
import sys
import warnings

PACKAGE = 'tinyvim_mm'
REPO = osp.dirname(osp.abspath(__file__))
# What the mim extension puts into tinyvim_mm/.mim (missing entries are skipped).
MIM_FILES = ('configs', 'tools', 'requirements', 'model-index.yml')
# Never copied into .mim (copy mode): caches and editor / build droppings.
MIM_IGNORE = ('__pycache__', '*.pyc', '*.pyo', '.pytest_cache', '*.egg-info', '.ipynb_checkpoints')
# Commands that ask for links (editable) or copies (anything that builds an artifact).
_LINK_COMMANDS = ('develop', 'editable_wheel')
_COPY_COMMANDS = ('sdist', 'bdist_wheel', 'install', 'build', 'build_py', 'bdist_egg')


def readme():
    path = osp.join(REPO, 'README.md')
    if not osp.isfile(path):
        return ''
    with open(path, encoding='utf-8') as f:
        return f.read()


def get_version():
    version_file = osp.join(REPO, PACKAGE, 'version.py')
    namespace = {}
    with open(version_file, encoding='utf-8') as f:
        exec(compile(f.read(), version_file, 'exec'), namespace)
    return namespace['__version__']


_SPEC_OPS = re.compile(r'(===|==|>=|<=|~=|!=|>|<)')


def parse_requirements(fname='requirements.txt', with_version=True):
    """Parse a requirements file into requirement strings for setuptools.

    OpenMMLab's helper, made a little stricter:

    * ``-r other.txt`` is resolved relative to the file that contains it (not the cwd);
    * comments (whole-line and inline ``  # ...``) and pip options (``--find-links`` ...)
      are dropped;
    * environment markers (``; python_version < "3.12"``) are kept;
    * ``with_version=False`` strips the version specifiers (names only, markers kept).

    Args:
        fname (str): path of the requirements file, relative to this ``setup.py``'s folder
            when not absolute.
        with_version (bool): keep the version specifiers.

    Returns:
        list[str]: e.g. ``['mmengine==0.10.7', 'timm>=0.9']``.
    """
    if not osp.isabs(fname):
        fname = osp.join(REPO, fname)

    def parse_line(line, base_dir):
        if line.startswith(('-r ', '--requirement ')):
            target = line.split(None, 1)[1].strip()
            if not osp.isabs(target):
                target = osp.join(base_dir, target)
            yield from parse_file(target)
            return
        if line.startswith('-'):  # other pip options: -c, --find-links, --index-url ...
            return
        info = {'line': line}
        if line.startswith('-e ') or '#egg=' in line:
            info['package'] = line.split('#egg=')[1]
        elif '@' in line and ('git+' in line or '://' in line):
            info['package'] = line  # direct reference, keep as is
        else:
            req, _, marker = line.partition(';')
            req = req.strip()
            parts = _SPEC_OPS.split(req, maxsplit=1)
            info['package'] = parts[0].strip()
            if len(parts) > 1:
                info['version'] = (parts[1], ''.join(parts[2:]).replace(' ', ''))
            if marker.strip():
                info['platform_deps'] = marker.strip()
        yield info

    def parse_file(path):
        base_dir = osp.dirname(path)
        with open(path, encoding='utf-8') as f:
            for raw in f:
                line = raw.split(' #', 1)[0].strip()  # inline comment
                if line and not line.startswith('#'):
                    yield from parse_line(line, base_dir)

    def gen_items():
        if not osp.exists(fname):
            return
        for info in parse_file(fname):
            parts = [info['package']]
            if with_version and 'version' in info:
                parts.extend(info['version'])
            if info.get('platform_deps'):
                parts.append('; ' + info['platform_deps'])
            yield ''.join(parts)

    return list(gen_items())


def _install_mode(argv):
    """'symlink' / 'copy' / None from the setup.py command line (as mmdet's setup.py)."""
    if any(cmd in argv for cmd in _LINK_COMMANDS):
        # pip install -e .  (legacy `develop`, or PEP 660 `editable_wheel`)
        return 'copy' if platform.system() == 'Windows' else 'symlink'
    if any(cmd in argv for cmd in _COPY_COMMANDS):
        # pip install . / pip wheel . / python -m build / python setup.py sdist
        return 'copy'
    return None


def add_mim_extension(mode=None, repo_path=REPO):
    """Add the files that MIM and ``pkg::`` config bases need into ``tinyvim_mm/.mim``.

    Editable installs get relative symbolic links to the originals (so edits show up at
    once); anything else gets copies, which ``package_data`` then ships in the wheel.
    Idempotent: an existing entry (link, file or folder) is replaced.

    Args:
        mode (str | None): 'symlink', 'copy' or None to infer it from ``sys.argv``.
        repo_path (str): repository root.

    Returns:
        str | None: the mode used (None when the command needs no .mim).
    """
    mode = mode or _install_mode(sys.argv)
    if mode is None:
        return None
    if mode not in ('symlink', 'copy'):
        raise ValueError(f'Invalid mode {mode}')

    mim_path = osp.join(repo_path, PACKAGE, '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for filename in MIM_FILES:
        src_path = osp.join(repo_path, filename)
        tar_path = osp.join(mim_path, filename)
        if not osp.exists(src_path):
            continue
        if osp.islink(tar_path) or osp.isfile(tar_path):
            os.remove(tar_path)
        elif osp.isdir(tar_path):
            shutil.rmtree(tar_path)

        if mode == 'symlink':
            src_relpath = osp.relpath(src_path, osp.dirname(tar_path))
            try:
                os.symlink(src_relpath, tar_path)
                continue
            except OSError as e:  # e.g. a file system without links
                warnings.warn(f'Cannot link {tar_path} -> {src_relpath} ({e}); copying.')
        if osp.isfile(src_path):
            shutil.copyfile(src_path, tar_path)
        elif osp.isdir(src_path):
            shutil.copytree(src_path, tar_path, ignore=shutil.ignore_patterns(*MIM_IGNORE))
        else:
            warnings.warn(f'Cannot copy file {src_path}.')
    return mode


def get_extras_require():
    tests = parse_requirements('requirements/tests.txt')
    optional = parse_requirements('requirements/optional.txt')
    mim = parse_requirements('requirements/mminstall.txt')
    build = parse_requirements('requirements/build.txt')
    cuda = parse_requirements('requirements/cuda.txt')
    return {
        # everything but the GPU-only and build-only packages
        'all': mim + optional + tests,
        'tests': tests,
        'optional': optional,
        'build': build,
        'mim': mim,
        'cuda': cuda,
    }


# Shipped in wheels (copy mode fills .mim before build_py collects these).
PACKAGE_DATA = {
    PACKAGE: [
        '.mim/model-index.yml',
        '.mim/configs/**/*',
        '.mim/tools/**/*',
        '.mim/requirements/*.txt',
    ]
}


if __name__ == '__main__':
    from setuptools import find_packages, setup

    add_mim_extension()
    setup(
        name=PACKAGE,
        version=get_version(),
        description='TinyViM (conv + Laplace-mixer Mamba hybrid) backbone for '
        'OpenMMLab: mmpretrain, mmdet and mmseg',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='computer vision, mamba, state space model, backbone, openmmlab',
        packages=find_packages(include=(PACKAGE, f'{PACKAGE}.*')),
        include_package_data=True,
        package_data=PACKAGE_DATA,
        exclude_package_data={'': ['__pycache__/*', '*.pyc', '*.pyo']},
        python_requires='>=3.8',
        classifiers=[
            'Development Status :: 4 - Beta',
            'License :: OSI Approved :: Apache Software License',
            'Operating System :: OS Independent',
            'Programming Language :: Python :: 3',
            'Programming Language :: Python :: 3.11',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
        ],
        license='Apache License 2.0',
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require=get_extras_require(),
        zip_safe=False,
    )
