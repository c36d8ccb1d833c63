#!/usr/bin/env python
"""Packaging of ``tinyvim_mm`` in the OpenMMLab style (mmdet / mmpretrain setup.py).

* version from ``tinyvim_mm/version.py``;
* ``install_requires`` / ``extras_require`` parsed from ``requirements/*.txt``;
* the *mim extension*: every build (``pip install .``, ``pip wheel .``) ships
  ``configs/``, ``tools/``, ``requirements/`` and ``model-index.yml`` as
  ``tinyvim_mm/.mim/...`` inside the built package, where ``mim`` and MMEngine's
  ``_base_ = 'tinyvim_mm::...'`` look for them. The copies are written into the build
  folder, never into the source tree, so a checkout holds no stale ``.mim``.
* ``tinyvim_mm-mmengine.pth``: one line run at interpreter start that makes
  ``tinyvim_mm::`` config bases resolve in every process, the toolboxes' own tools
  included (see ``tinyvim_mm_compat.py``).

pip name: ``tinyvim_mm`` (pip normalises it to ``tinyvim-mm``; both spellings work).
"""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PACKAGE = 'tinyvim_mm'
REPO = osp.dirname(osp.abspath(__file__))
#: What the mim extension puts into ``tinyvim_mm/.mim`` (missing entries are skipped).
MIM_FILES = ('configs', 'tools', 'requirements', 'model-index.yml')
MIM_IGNORE = ('__pycache__', '*.pyc', '*.pyo', '.pytest_cache', '*.egg-info')
#: Installed beside the package; its single ``import`` line runs at interpreter start.
PTH_FILE = f'{PACKAGE}-mmengine.pth'
PTH_LINE = f'import {PACKAGE}_compat; {PACKAGE}_compat.install()\n'


def get_version() -> str:
    namespace: dict = {}
    with open(osp.join(REPO, PACKAGE, 'version.py'), encoding='utf-8') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def parse_requirements(fname: str) -> list:
    """Requirement strings of a requirements file (``-r`` followed relative to the file,
    comments and pip options dropped, environment markers kept)."""
    path = fname if osp.isabs(fname) else osp.join(REPO, fname)
    out = []
    with open(path, encoding='utf-8') as f:
        for raw in f:
            line = raw.split(' #', 1)[0].strip()
            if not line or line.startswith('#'):
                continue
            if line.startswith(('-r ', '--requirement ')):
                out += parse_requirements(osp.join(osp.dirname(path), line.split(None, 1)[1]))
            elif not line.startswith('-'):
                out.append(line)
    return out


def copy_mim_files(repo: str, package_dir: str) -> list:
    """Copy :data:`MIM_FILES` from ``repo`` into ``<package_dir>/.mim`` (replacing what is
    there); returns the copied top-level paths."""
    mim = osp.join(package_dir, '.mim')
    shutil.rmtree(mim, ignore_errors=True)
    os.makedirs(mim)
    copied = []
    for name in MIM_FILES:
        src, dst = osp.join(repo, name), osp.join(mim, name)
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*MIM_IGNORE))
        elif osp.isfile(src):
            shutil.copyfile(src, dst)
        else:
            continue
        copied.append(dst)
    return copied


class BuildPyWithMim(build_py):
    """``build_py`` that also writes ``.mim`` and the start-up ``.pth`` into the build."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # PEP 660 editable: files stay in the checkout
            return
        copy_mim_files(REPO, osp.join(self.build_lib, PACKAGE))
        with open(osp.join(self.build_lib, PTH_FILE), 'w', encoding='utf-8') as f:
            f.write(PTH_LINE)


if __name__ == '__main__':
    setup(
        name=PACKAGE,
        version=get_version(),
        description='TinyViM (conv + Laplace-mixer Mamba hybrid) backbone for '
        'OpenMMLab: mmpretrain, mmdet and mmseg',
        long_description=open(osp.join(REPO, 'README.md'), encoding='utf-8').read(),
        long_description_content_type='text/markdown',
        keywords='computer vision, mamba, state space model, backbone, openmmlab',
        packages=find_packages(include=(PACKAGE, f'{PACKAGE}.*')),
        py_modules=[f'{PACKAGE}_compat'],
        cmdclass={'build_py': BuildPyWithMim},
        python_requires='>=3.8',
        classifiers=[
            'License :: OSI Approved :: Apache Software License',
            'Programming Language :: Python :: 3',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
        ],
        license='Apache License 2.0',
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'mim': parse_requirements('requirements/mminstall.txt'),
            'optional': parse_requirements('requirements/optional.txt'),
            'tests': parse_requirements('requirements/tests.txt'),
            'build': parse_requirements('requirements/build.txt'),
            'cuda': parse_requirements('requirements/cuda.txt'),
        },
        zip_safe=False,
    )
