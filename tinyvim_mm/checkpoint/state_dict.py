"""Released-checkpoint conversion and pretrained loading for TinyViM."""
import os
import re
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log
from mmengine.runner.checkpoint import CheckpointLoader

StateDict = Dict[str, torch.Tensor]

#: Keys of the released classifier that a dense backbone has no use for.
CLASSIFIER_ONLY = re.compile(r'^(norm|head|dist_head)\.')
#: Output norms of the dense backbone (``norm0``, ``norm2``, ...).
DENSE_NORM = re.compile(r'^norm\d+\.')


def extract_state_dict(checkpoint: dict) -> StateDict:
    """The weights of a checkpoint: under ``state_dict``, ``model`` or bare;
    a DataParallel ``module.`` prefix is removed."""
    if not isinstance(checkpoint, dict):
        raise TypeError(f'A checkpoint must be a dict, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model'):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
            break
    state_dict = OrderedDict()
    for key, value in checkpoint.items():
        if not torch.is_tensor(value):
            raise TypeError(f'Checkpoint entry {key!r} is a {type(value).__name__}, '
                            'not a tensor: this is not a state dict')
        state_dict[re.sub(r'^module\.', '', key)] = value
    return state_dict


def state_dict_problems(own: StateDict, state_dict: StateDict,
                        allowed_missing: Optional[re.Pattern] = None) -> List[str]:
    """How ``state_dict`` differs from a model's own ``own``: entries
    ``'missing keys: [...]'``, ``'unexpected keys: [...]'`` and ``'shape mismatches:
    [...]'`` (empty when it fits exactly). Missing keys matching
    ``allowed_missing`` are not reported."""
    missing = [k for k in own if k not in state_dict
               and not (allowed_missing and allowed_missing.match(k))]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
              for k, v in state_dict.items()
              if k in own and hasattr(v, 'shape') and v.shape != own[k].shape]
    problems = []
    for what, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                       ('shape mismatches', shapes)):
        if keys:
            more = f' ... ({len(keys)} in all)' if len(keys) > 8 else ''
            problems.append(f'{what}: {keys[:8]}{more}')
    return problems


def is_released_layout(state_dict: StateDict) -> bool:
    """Whether keys follow the released TinyViM implementation (no model prefix)."""
    return any(k.startswith('patch_embed.') for k in state_dict)


def convert_official(state_dict: StateDict, target: str = 'classifier') -> StateDict:
    """Map a released TinyViM state dict to this project's layouts.

    Args:
        state_dict: released weights (classifier or dense layout).
        target: ``'classifier'`` -> an mmpretrain ``ImageClassifier`` with a
            ``TinyViM(out_indices=(3,))`` backbone and a distillation head
            (``backbone.*``, ``backbone.norm6.*``, ``head.head.*``,
            ``head.dist_head.*``); ``'backbone'`` -> a bare dense
            :class:`~tinyvim_mm.models.TinyViM` (classifier-only keys dropped).
    """
    if not is_released_layout(state_dict):
        raise ValueError('Not a released TinyViM state dict: no "patch_embed." keys '
                         f'(first keys: {list(state_dict)[:3]})')
    converted = OrderedDict()
    if target == 'backbone':
        for key, value in state_dict.items():
            if not CLASSIFIER_ONLY.match(key):
                converted[key] = value
        return converted
    if target != 'classifier':
        raise ValueError(f"target must be 'classifier' or 'backbone', got {target!r}")
    last_norm = f'norm{2 * (_num_stages(state_dict) - 1)}'
    for key, value in state_dict.items():
        if key.startswith(('head.', 'dist_head.')):
            converted[f'head.{key}'] = value
        elif key.startswith('norm.'):
            converted[f'backbone.{last_norm}.{key[5:]}'] = value
        elif DENSE_NORM.match(key):
            continue  # dense output norms have no place in a classifier
        else:
            converted[f'backbone.{key}'] = value
    return converted


def _num_stages(state_dict: StateDict) -> int:
    indices = {int(m.group(1)) for k in state_dict if (m := re.match(r'network\.(\d+)\.', k))}
    return max(indices) // 2 + 1


def backbone_state_dict(state_dict: StateDict, prefix: Optional[str] = None) -> StateDict:
    """Select the backbone weights out of any supported checkpoint.

    Released layouts are used as they are; checkpoints of whole models
    (mmpretrain / mmdet / mmseg) are cut to keys under ``prefix`` (default
    ``backbone.``). Classifier-only keys are dropped.
    """
    if prefix is None and not is_released_layout(state_dict):
        prefix = 'backbone.'
    if prefix:
        selected = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                               if k.startswith(prefix))
        if not selected:
            raise KeyError(f'No key of the checkpoint starts with {prefix!r} '
                           f'(first keys: {list(state_dict)[:3]})')
        state_dict = selected
    return OrderedDict((k, v) for k, v in state_dict.items() if not CLASSIFIER_ONLY.match(k))


def load_pretrained_backbone(model: nn.Module, checkpoint: str,
                             prefix: Optional[str] = None,
                             map_location: str = 'cpu') -> List[str]:
    """Load pretrained weights into a TinyViM backbone, strictly.

    Classifier-only keys are skipped and the dense output norms absent from a
    classification checkpoint keep their initialisation; both are logged. Any
    other missing or unexpected key, or a shape mismatch, raises a
    ``RuntimeError`` naming them.

    Returns:
        The keys of ``model`` left at their initialisation.
    """
    logger = MMLogger.get_current_instance()
    if '://' not in checkpoint and not os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f'Pretrained TinyViM checkpoint {checkpoint!r} not found (working directory '
            f'{os.getcwd()}). Download a released checkpoint (or convert it with '
            'tools/convert_official.py) to that path, point init_cfg.checkpoint at it, or '
            'train from scratch with --cfg-options model.backbone.init_cfg=None')
    raw = extract_state_dict(CheckpointLoader.load_checkpoint(checkpoint, map_location))
    state_dict = backbone_state_dict(raw, prefix)
    skipped = sorted({k.split('.')[0] for k in raw if CLASSIFIER_ONLY.match(k)
                      and not k.startswith(('backbone.', 'module.'))})
    own = model.state_dict()
    fresh = [k for k in own if k not in state_dict and DENSE_NORM.match(k)]
    problems = state_dict_problems(own, state_dict, allowed_missing=DENSE_NORM)
    if problems:
        raise RuntimeError(
            f'Checkpoint {checkpoint!r} does not fit {type(model).__name__}'
            f'(arch widths {getattr(model, "arch", {}).get("widths")}, '
            f'deploy={getattr(model, "deploy", False)}): ' + '; '.join(problems))
    model.load_state_dict(state_dict, strict=False)
    print_log(f'Loaded {len(state_dict)} backbone tensors from {checkpoint}'
              + (f'; skipped classifier-only weights {skipped}' if skipped else '')
              + (f'; dense output norms kept at init: {sorted({k.split(".")[0] for k in fresh})}'
                 if fresh else ''), logger=logger)
    return fresh
