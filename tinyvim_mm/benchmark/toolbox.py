"""Toolbox configs for benchmarks: loading (files, repository-relative paths and
``pkg::path`` of installed toolboxes), random weights without any download, and the
model a config describes."""
import contextlib
import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any, Iterator, Optional

import torch.nn as nn

REPO = Path(__file__).resolve().parents[2]
#: Where repository-relative config paths (``configs/...``) are found: the checkout, or
#: the installed package's copy.
CONFIG_ROOTS = (REPO, Path(__file__).resolve().parents[1] / '.mim')
SCOPES = ('mmpretrain', 'mmdet', 'mmseg')


def load_config(path: str, cfg_options: Optional[dict] = None):
    """The config at ``path`` with ``cfg_options`` (``--cfg-options`` style keys) merged
    in: a file, a path relative to the repository or to the installed package's
    ``.mim``, or ``'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'`` of an installed
    toolbox.

    Raises:
        FileNotFoundError: no such config; ``pkg::`` of a package that is not installed.
    """
    from mmengine.config import Config
    if '::' in path:
        package = path.split('::', 1)[0]
        if importlib.util.find_spec(package) is None:
            raise FileNotFoundError(f'config {path!r}: package {package!r} is not installed')
        from mmengine.hub import get_config
        cfg = get_config(path)
    else:
        file = next((f for f in [Path(path)] + [root / path for root in CONFIG_ROOTS]
                     if f.is_file()), None)
        if file is None:
            raise FileNotFoundError(f'config {path!r} not found (nor under {REPO})')
        cfg = Config.fromfile(str(file))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    return cfg


def scope_of(cfg) -> str:
    """The config's toolbox (its ``default_scope``)."""
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'default_scope {scope!r}: expected one of {SCOPES}')
    return scope


def strip_pretrained(node: Any) -> Any:
    """Remove every weight download from a model config, in place: ``init_cfg`` of type
    ``'Pretrained'`` and ``pretrained`` paths become ``None``, ``pretrained=True`` (timm
    models) ``False``."""
    if isinstance(node, dict):
        init_cfg = node.get('init_cfg')
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            node['init_cfg'] = None
        elif isinstance(init_cfg, list):
            node['init_cfg'] = [c for c in init_cfg if c.get('type') != 'Pretrained'] or None
        if isinstance(node.get('pretrained'), str):
            node['pretrained'] = None
        elif node.get('pretrained') is True:
            node['pretrained'] = False
        for value in node.values():
            strip_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            strip_pretrained(value)
    return node


@contextlib.contextmanager
def quiet_logs(level: int = logging.WARNING) -> Iterator[None]:
    """MMEngine's current logger at ``level`` or above (``init_weights`` logs every
    parameter at INFO)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    previous = logger.level
    logger.setLevel(max(level, previous))
    try:
        yield
    finally:
        logger.setLevel(previous)


def build_model(cfg) -> nn.Module:
    """The config's model (without a distillation teacher) with random weights: its own
    initialisation, nothing downloaded."""
    from mmengine.registry import init_default_scope
    scope = scope_of(cfg)
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry')
    from tinyvim_mm.models.backbones import check_in_channels
    check_in_channels(cfg.model)
    model_cfg = strip_pretrained(cfg.model.copy())
    if 'teacher' in model_cfg:
        model_cfg.update(teacher=None, teacher_checkpoint=None)
    with quiet_logs():
        model = registry.MODELS.build(model_cfg)
        model.init_weights()
    return model


def find_value(node: Any, key: str) -> Any:
    """The first value of ``key`` in a nested config (depth first), or ``None``."""
    if isinstance(node, dict):
        if key in node:
            return node[key]
        values = node.values()
    elif isinstance(node, (list, tuple)):
        values = node
    else:
        return None
    for value in values:
        found = find_value(value, key)
        if found is not None:
            return found
    return None
