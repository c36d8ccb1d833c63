"""MMEngine and mim find ``tinyvim_mm``'s configs and tools, editable installs included.

``import tinyvim_mm`` imports this module, which patches MMEngine (0.10.x) in place:

1. ``'tinyvim_mm'`` becomes a key of ``mmengine.config.utils.MODULE2PACKAGE``, so that
   ``_base_ = 'tinyvim_mm::...'`` and ``mmengine.hub.get_config('tinyvim_mm::...')`` are
   accepted;
2. ``get_installed_path`` falls back to the imported package's folder when the path it
   computes does not exist: with a PEP 660 editable install (``pip install -e .``,
   setuptools >= 64) it joins the dist-info location (site-packages) with the package
   name, a folder that does not exist;
3. ``tinyvim_mm::NAME.py`` (no sub-folder: our configs are flat) is accepted as well as
   ``tinyvim_mm::DIR/NAME.py`` (mmengine requires ``\\w*::\\w*/\\w*``), and both resolve
   to ``<package>/.mim/configs/...`` like a plain file path: they keep the scopes of the
   mmdet / mmseg / mmpretrain bases they inherit (``tinyvim_mm`` has no registry scope
   of its own, which mmengine would otherwise stamp on every inherited ``type``).

All of this must happen before a config naming ``tinyvim_mm::`` is parsed
(``custom_imports`` are imported only after ``_base_`` is resolved): ``tools/train.py``
and ``tools/test.py`` import ``tinyvim_mm`` first; a script of one's own does the same.

The ``mim`` command runs in a process that never imports ``tinyvim_mm``; with an editable
install its ``get_installed_path`` is wrong in the same way. ``python -m
tinyvim_mm.utils.mim_compat ARGS`` runs mim's command line (``train``, ``test``,
``search``, ...) with the fallback of 2. applied to mim as well.
"""
import importlib.util
import os.path as osp
import sys
from typing import Callable, List, Optional, Tuple

PACKAGE = 'tinyvim_mm'
PREFIX = f'{PACKAGE}::'


def package_dir(package: str) -> Optional[str]:
    """The folder of an importable (regular) package, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return osp.dirname(spec.origin)


def with_import_fallback(get_installed_path: Callable[[str], str]) -> Callable[[str], str]:
    """Wrap a ``get_installed_path(package)`` so that a path that does not exist is
    replaced by the package's import location (idempotent)."""
    if getattr(get_installed_path, '_tinyvim_fallback', False):
        return get_installed_path

    def wrapper(package: str) -> str:
        path = get_installed_path(package)
        if not osp.isdir(path):
            path = package_dir(package) or path
        return path

    wrapper.__doc__ = get_installed_path.__doc__
    wrapper._tinyvim_fallback = True  # type: ignore[attr-defined]
    return wrapper


def config_path(name: str) -> str:
    """``tinyvim_mm::NAME.py`` or ``tinyvim_mm::DIR/NAME.py`` -> the file under
    ``<package>/.mim/configs`` (``FileNotFoundError`` naming it when missing)."""
    rel = name[len(PREFIX):]
    root = package_dir(PACKAGE)
    if root is None:
        raise ModuleNotFoundError(f'{PACKAGE} is not installed: cannot resolve {name!r}')
    path = osp.join(root, '.mim', 'configs', rel)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{name!r}: no such config ({path}). {PACKAGE}::NAME.py names a file of the '
            f"repository's configs/ folder, which `pip install [-e] .` links or copies to "
            f'{PACKAGE}/.mim/configs')
    return path


def _patch_mmengine() -> None:
    import mmengine.config.config as config_mod
    import mmengine.config.utils as config_utils
    import mmengine.utils as mmengine_utils
    import mmengine.utils.package_utils as package_utils

    config_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)

    patched = with_import_fallback(package_utils.get_installed_path)
    for module in (package_utils, mmengine_utils, config_mod, sys.modules.get('mmengine.hub.hub')):
        if module is not None and hasattr(module, 'get_installed_path'):
            module.get_installed_path = patched

    split = config_utils._get_package_and_cfg_path
    if not getattr(split, '_tinyvim_flat', False):

        def get_package_and_cfg_path(cfg_path: str) -> Tuple[str, str]:
            if cfg_path.startswith(PREFIX) and '::' not in cfg_path[len(PREFIX):]:
                return PACKAGE, cfg_path[len(PREFIX):]
            return split(cfg_path)

        get_package_and_cfg_path._tinyvim_flat = True  # type: ignore[attr-defined]
        for module in (config_utils, config_mod, sys.modules.get('mmengine.hub.hub')):
            if module is not None:
                module._get_package_and_cfg_path = get_package_and_cfg_path

    get_cfg_path = config_mod.Config._get_cfg_path
    if not getattr(get_cfg_path, '_tinyvim_local', False):

        def _get_cfg_path(cfg_path: str, filename: str) -> Tuple[str, Optional[str]]:
            if cfg_path.startswith(PREFIX):
                return config_path(cfg_path), None
            return get_cfg_path(cfg_path, filename)

        _get_cfg_path._tinyvim_local = True  # type: ignore[attr-defined]
        config_mod.Config._get_cfg_path = staticmethod(_get_cfg_path)


def patch_mim() -> None:
    """Apply the editable-install fallback to mim's own ``get_installed_path`` (in every
    mim module imported so far; mim compiles its commands later, from ``mim.utils``)."""
    import mim.utils  # noqa: F401  (imports mim.utils.utils)

    patched = with_import_fallback(sys.modules['mim.utils.utils'].get_installed_path)
    for name, module in list(sys.modules.items()):
        if name.startswith('mim.') and hasattr(module, 'get_installed_path'):
            module.get_installed_path = patched


def main(argv: Optional[List[str]] = None) -> None:
    """``mim`` with the fallback: ``python -m tinyvim_mm.utils.mim_compat train ...``."""
    from mim.cli import cli

    patch_mim()
    cli.main(args=sys.argv[1:] if argv is None else argv, prog_name='mim')


_patch_mmengine()

if __name__ == '__main__':
    main()
