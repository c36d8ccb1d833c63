"""Model entries of a benchmark and their builders.

An entry is a string or a dict (``name`` plus options):

- ``'tinyvim-s'`` (``b``, ``l``): :class:`~tinyvim_mm.models.TinyViMClassifier`, folded
  when the treatment reparameterizes, like every model;
- ``'tinyvim-s:fast'``: its inference form, :func:`~tinyvim_mm.deploy.optimize_for_inference`
  (options: ``dict(name='tinyvim-s:fast', optimize=dict(fuse_blocks=..., ...))``);
- ``'timm:NAME'``: a timm model, ``pretrained=False``;
- a config path (``configs/x.py`` or ``'mmdet::...'``): the toolbox model it describes
  (``optimize`` applies to a TinyViM backbone in it; ``cfg_options`` are merged in;
  ``cuda_graphs=['backbone', ...]`` replays those submodules from CUDA graphs in
  end-to-end measurements, :func:`~tinyvim_mm.deploy.enable_cuda_graphs`, as ``tools/test.py
  --deploy`` does for a TinyViM backbone).

Weights are random and deterministic (``seed``); TinyViM's BatchNorm statistics are
randomised so that folding is really exercised.
"""
import dataclasses
import difflib
import functools
import re
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from tinyvim_mm.deploy import optimize_for_inference
from tinyvim_mm.models import TinyViM, TinyViMClassifier, switch_to_deploy

from .toolbox import build_model, load_config

TINYVIM = re.compile(r'^tinyvim-([sbl])(:fast)?$')
#: ``optimize_for_inference`` options of ``tinyvim-X:fast`` (the fastest measured on H100).
FAST_DEFAULTS = dict(fuse_blocks=True, fold_axial=True, scan_backend='triton')
OPTIMIZE_KEYS = ('fuse_blocks', 'max_fused_channels', 'fuse_mixers', 'fold_axial',
                 'scan_backend', 'channels_last')


def zoo_key(name: str) -> str:
    """Key of a model's ImageNet top-1: every TinyViM form shares its arch's."""
    return name[:-len(':fast')] if TINYVIM.match(name) and name.endswith(':fast') else name


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A parsed model entry. ``kind``: ``'tinyvim'``, ``'timm'`` or ``'config'``;
    ``target``: the arch, timm name or config path; ``optimize``: options of
    ``optimize_for_inference`` or ``None``; ``cuda_graphs``: the names of a config
    model's submodules that replay CUDA graphs."""
    name: str
    kind: str
    target: str
    label: str
    optimize: Optional[Dict[str, Any]] = None
    cfg_options: Optional[Dict[str, Any]] = None
    cuda_graphs: Optional[Tuple[str, ...]] = None

    @property
    def zoo_key(self) -> str:
        return zoo_key(self.name)

    def as_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@functools.lru_cache(maxsize=None)
def _check_config(path: str) -> None:
    """Raise where ``path`` is no config (once per path and process)."""
    load_config(path)


def _check_timm(name: str) -> None:
    import timm
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise ValueError(f'unknown timm model {name!r}' + (f'; close: {close}' if close else ''))


def parse_model(entry: Union[str, Mapping[str, Any]]) -> ModelSpec:
    """Check a model entry (see the module docstring) and parse it.

    Raises:
        ValueError: unknown name, option or timm model; FileNotFoundError: no such config.
    """
    options = dict(entry) if isinstance(entry, Mapping) else dict(name=entry)
    name = options.pop('name', None) or options.pop('config', None)
    if not isinstance(name, str):
        raise ValueError(f'model entry {entry!r} has no name')
    label = options.pop('label', None)
    optimize = options.pop('optimize', None)
    cfg_options = options.pop('cfg_options', None)
    graphs = options.pop('cuda_graphs', None)
    if options:
        raise ValueError(f'model {name!r}: unknown option(s) {sorted(options)}; valid: '
                         'name, label, optimize, cfg_options, cuda_graphs')
    if graphs is not None and not (
            isinstance(graphs, (list, tuple)) and graphs and name.endswith('.py')
            and all(isinstance(g, str) and g for g in graphs)):
        raise ValueError(f'model {name!r}: cuda_graphs takes a list of submodule names '
                         f'(e.g. [\'backbone\', \'neck\']) and applies to config models only, '
                         f'got {graphs!r}')
    if optimize is not None and set(optimize) - set(OPTIMIZE_KEYS):
        raise ValueError(f'model {name!r}: unknown optimize option(s) '
                         f'{sorted(set(optimize) - set(OPTIMIZE_KEYS))}; valid: {OPTIMIZE_KEYS}')
    match = TINYVIM.match(name)
    if match:
        fast = bool(match.group(2))
        if optimize is not None and not fast:
            raise ValueError(f'{name!r}: optimize options need the fast form ({name}:fast)')
        return ModelSpec(name, 'tinyvim', match.group(1), label or (
            f'TinyViM-{match.group(1).upper()}' + (' fast' if fast else '')),
            dict(FAST_DEFAULTS, **(optimize or {})) if fast else None)
    if name.startswith('timm:'):
        _check_timm(name[5:])
        if optimize is not None:
            raise ValueError(f'{name!r}: optimize options apply to TinyViM models only')
        return ModelSpec(name, 'timm', name[5:], label or name[5:])
    if name.endswith('.py'):
        _check_config(name)
        stem = name.rsplit('/', 1)[-1][:-3] + (' fast' if optimize is not None else '')
        return ModelSpec(name, 'config', name, label or stem, optimize, cfg_options,
                         tuple(graphs) if graphs else None)
    raise ValueError(f'unknown model {name!r}: expected tinyvim-{{s,b,l}}[:fast], timm:NAME '
                     'or a config file (.py, or pkg::path.py)')


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model


def fold(model: nn.Module, kind: str) -> nn.Module:
    """Reparameterize ``model`` in place where it can be: timm models by
    ``timm.utils.reparameterize_model``, TinyViM and toolbox models by their layers'
    ``switch_to_deploy``."""
    if kind == 'timm':
        from timm.utils import reparameterize_model
        return reparameterize_model(model, inplace=True)
    return switch_to_deploy(model)


def optimize_tinyvim(model: nn.Module, options: Dict[str, Any]) -> nn.Module:
    """``optimize_for_inference`` on the TinyViM backbone(s) in ``model``."""
    backbones = [m for m in model.modules() if isinstance(m, TinyViM)]
    if not backbones:
        raise ValueError(f'optimize options given, but {type(model).__name__} has no TinyViM')
    for backbone in backbones:
        optimize_for_inference(backbone, **options)
    return model.eval()


class ConfigClassifier(nn.Module):
    """An mmpretrain classifier called on image tensors (``mode='tensor'``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, mode='tensor')


def build_classifier(spec: ModelSpec, reparameterize: bool, seed: int = 0,
                     train: bool = False) -> nn.Module:
    """The image classifier of ``spec`` on the CPU: training form in train mode if
    ``train``, else in eval mode, folded if ``reparameterize`` (the fast form always)."""
    torch.manual_seed(seed)
    if spec.kind == 'tinyvim':
        model = randomise_bn(TinyViMClassifier(spec.target), seed)
    elif spec.kind == 'timm':
        import timm
        model = timm.create_model(spec.target, pretrained=False)
    else:
        cfg = load_config(spec.target, spec.cfg_options)
        if cfg.get('default_scope') != 'mmpretrain':
            raise ValueError(f'{spec.name}: not an image classifier config '
                             f'(default_scope {cfg.get("default_scope")!r})')
        model = ConfigClassifier(build_model(cfg))
    if train:
        if spec.optimize is not None:
            raise ValueError(f'{spec.name}: the fast form is for inference only')
        return model.train()
    model.eval()
    if spec.optimize is not None:
        return optimize_tinyvim(model, spec.optimize)
    return fold(model, spec.kind) if reparameterize else model
