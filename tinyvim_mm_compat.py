"""``_base_ = 'tinyvim_mm::NAME.py'`` for MMEngine 0.10, in every process.

MMEngine resolves ``pkg::dir/file.py`` config bases only for packages named in its
hard-coded ``mmengine.config.utils.MODULE2PACKAGE``, and only for paths with a
sub-folder (``\\w*::\\w*/\\w*``); it also stamps ``_scope_='pkg'`` on every ``type`` the
base defines. ``tinyvim_mm`` has flat configs and no registry scope of its own (its
modules live in MMEngine's root registries, reachable from every toolbox), so
:func:`install` teaches ``mmengine.config`` one more rule:

* ``tinyvim_mm::NAME.py`` and ``tinyvim_mm::DIR/NAME.py`` name
  ``<tinyvim_mm>/.mim/configs/...`` of the installed package (``configs/...`` of a source
  checkout that is not installed), parsed like a local base file: the scopes of the
  mmdet / mmseg / mmpretrain bases it inherits stay as they are.

Nothing else changes; other ``pkg::`` paths go to MMEngine's own code. And when
``mmpretrain.apis`` is imported, :func:`register_with_mmpretrain` adds our ImageNet models to
mmpretrain's ``ModelHub``, so that ``mmpretrain.list_models('*tinyvim*')``,
``get_model('tinyvim_s_8xb128_in1k')``, ``inference_model`` and
``ImageClassificationInferencer`` know them by name.

Who calls :func:`install`: ``tinyvim_mm-mmengine.pth``, which ``pip install .`` puts into
site-packages, at interpreter start (so that the toolboxes' own tools, e.g.
``mim run mmdet get_flops my_config.py``, parse configs inheriting ``tinyvim_mm::``
without importing anything first), and ``import tinyvim_mm`` (for editable installs and
source checkouts, which get no ``.pth``). Start-up cost: this module alone (no torch, no
mmengine); the patch itself runs when ``mmengine.config`` is first imported. Versions other
than MMEngine 0.10.x are left untouched, with one warning when such a base is parsed.
"""
import importlib.abc
import importlib.util
import os.path as osp
import sys
import warnings
from types import ModuleType
from typing import Optional, Tuple

PACKAGE = 'tinyvim_mm'
PREFIX = f'{PACKAGE}::'
#: MMEngine versions whose private config functions this module wraps.
SUPPORTED_MMENGINE = '0.10.'
#: Our classification models, for mmpretrain's ModelHub (relative to the package's .mim).
CLASSIFICATION_METAFILE = 'configs/metafiles/classification.yml'


def package_dir() -> Optional[str]:
    """Folder of the ``tinyvim_mm`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    return None if spec is None or spec.origin is None else osp.dirname(spec.origin)


def config_path(name: str) -> str:
    """``tinyvim_mm::[DIR/]NAME.py`` -> the config file it names.

    Raises:
        ModuleNotFoundError: ``tinyvim_mm`` is not importable.
        FileNotFoundError: no such config (the message names where it looked).
    """
    rel = name[len(PREFIX):]
    root = package_dir()
    if root is None:
        raise ModuleNotFoundError(f'{PACKAGE} is not installed: cannot resolve {name!r}')
    candidates = [osp.join(root, '.mim', 'configs', rel),  # installed package
                  osp.join(osp.dirname(root), 'configs', rel)]  # source checkout
    for path in candidates:
        if osp.isfile(path):
            return path
    raise FileNotFoundError(f'{name!r}: no such config (looked for {" and ".join(candidates)})')


def _mim_root() -> Optional[str]:
    """``<tinyvim_mm>/.mim`` of an installed package, the checkout root of a source tree."""
    root = package_dir()
    if root is None:
        return None
    mim = osp.join(root, '.mim')
    return mim if osp.isdir(mim) else osp.dirname(root)


def register_with_mmpretrain(model_module: ModuleType) -> None:
    """Add the models of :data:`CLASSIFICATION_METAFILE` to ``mmpretrain.apis.model.ModelHub``
    (idempotent)."""
    hub = model_module.ModelHub
    root = _mim_root()
    if root is None or hub.has('tinyvim_s_8xb128_in1k'):
        return
    hub.register_model_index(osp.join(root, CLASSIFICATION_METAFILE), config_prefix=root)


def _patch_config(config_pkg: ModuleType) -> None:
    """Wrap ``Config._get_cfg_path`` and register the package (idempotent)."""
    from mmengine.config import config as config_mod
    from mmengine.config import utils as config_utils
    from mmengine.version import __version__ as mmengine_version

    Config = config_mod.Config
    original = Config.__dict__['_get_cfg_path'].__func__
    if getattr(original, '_tinyvim_mm', False):
        return
    if not mmengine_version.startswith(SUPPORTED_MMENGINE):
        def _get_cfg_path(cfg_path: str, filename: str) -> Tuple[str, Optional[str]]:
            if cfg_path.startswith(PREFIX):
                warnings.warn(f'{PACKAGE}:: config bases are supported with MMEngine '
                              f'{SUPPORTED_MMENGINE}x; this is {mmengine_version}')
            return original(cfg_path, filename)
    else:
        config_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)

        def _get_cfg_path(cfg_path: str, filename: str) -> Tuple[str, Optional[str]]:
            if cfg_path.startswith(PREFIX):
                return config_path(cfg_path), None
            return original(cfg_path, filename)

    _get_cfg_path._tinyvim_mm = True  # type: ignore[attr-defined]
    _get_cfg_path.__doc__ = original.__doc__
    Config._get_cfg_path = staticmethod(_get_cfg_path)


#: Module -> what to run on it right after it has been imported.
_HOOKS = {'mmengine.config': _patch_config, 'mmpretrain.apis.model': register_with_mmpretrain}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Runs the :data:`_HOOKS` right after their modules have been imported."""

    def find_spec(self, name: str, path=None, target=None):
        if name not in _HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            _HOOKS[name](module)

        spec.loader.exec_module = exec_and_patch
        return spec


def install() -> None:
    """Apply the :data:`_HOOKS` to their modules: now to those already imported, the others
    as soon as they are (idempotent, cheap)."""
    for name, hook in _HOOKS.items():
        if name in sys.modules:
            hook(sys.modules[name])
    if not any(isinstance(f, _PatchAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport())
