"""Parameter and MAC counts, with the selective scan counted analytically: TinyViM
classifiers (the paper's columns) and whole models of any toolbox config."""
import importlib
from typing import Callable, Dict, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer

from tinyvim_mm.models.layers import SelectiveScan
from tinyvim_mm.ops import selective_scan_flops


def count_macs(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224)) -> int:
    """Multiply-accumulates of one forward pass ``model(x)`` of a zero input of
    ``input_shape`` (mmengine's ``FlopAnalyzer`` convention: one MAC per multiply-add).

    The traced ops of each :class:`SelectiveScan` depend on the scan backend,
    so they are replaced by the reference recurrence's count
    (:func:`~tinyvim_mm.ops.selective_scan_flops`, VMamba's convention).
    """
    scans = {name: m for name, m in model.named_modules() if isinstance(m, SelectiveScan)}
    analytic = []

    def record(module, args, output):
        u, _, a = args[:3]
        analytic.append(selective_scan_flops(u.shape[0], u.shape[2], u.shape[1], a.shape[1]))

    handles = [m.register_forward_hook(record) for m in scans.values()]
    try:
        with torch.no_grad():
            x = torch.zeros(*input_shape, device=next(model.parameters()).device)
            analyzer = FlopAnalyzer(model, (x, ))
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            by_module = analyzer.by_module()
            traced_scan = sum(by_module.get(name, 0) for name in scans)
            total = analyzer.total()
            analytic.clear()
            model(x)  # the hooks record each scan once
    finally:
        for handle in handles:
            handle.remove()
    if len(analytic) < len(scans):
        raise ValueError(f'{len(scans) - len(analytic)} of {len(scans)} selective scans ran '
                         'without their SelectiveScan module (the \'triton\' backend calls its '
                         'fused cross-scan kernels directly), so the count would miss them: '
                         "count with every SelectiveScan's backend set to 'torch'")
    return int(total - traced_scan + sum(analytic))


def count_params(model: nn.Module, exclude: Sequence[str] = ()) -> int:
    """Parameters of ``model`` whose names don't start with any of ``exclude``."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith(tuple(exclude)))


def classifier_complexity(arch: str, img_size: int = 224, num_classes: int = 1000,
                          deploy: bool = False) -> Dict[str, float]:
    """Params (one classification head, no ``dist_head``, as the paper counts)
    and GMACs of a TinyViM ImageNet classifier."""
    from tinyvim_mm.models import TinyViM
    backbone = TinyViM(arch, out_indices=(3, ), scan_backend='torch').eval()
    if deploy:
        backbone.switch_to_deploy()
    width = backbone.out_channels[-1]
    head_params = width * num_classes + num_classes
    macs = count_macs(backbone, (1, 3, img_size, img_size)) + width * num_classes
    return dict(params_m=(count_params(backbone) + head_params) / 1e6, gmacs=macs / 1e9)


class _TensorForward(nn.Module):
    """``model(x, data_samples, mode='tensor')`` as a one-argument module, for tracing."""

    def __init__(self, model: nn.Module, make_samples: Callable[[torch.Tensor], list]) -> None:
        super().__init__()
        self.model = model
        self.make_samples = make_samples

    def forward(self, x: torch.Tensor):
        return self.model(x, self.make_samples(x), mode='tensor')


def _samples(scope: str, height: int, width: int) -> Callable[[torch.Tensor], list]:
    """Data samples with the image metadata the toolbox's ``tensor`` forward reads."""
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        meta = dict(img_shape=(height, width), ori_shape=(height, width),
                    pad_shape=(height, width), scale_factor=(1.0, 1.0),
                    batch_input_shape=(height, width))
        return lambda x: [DetDataSample(metainfo=meta) for _ in range(x.shape[0])]
    return lambda x: None


def config_complexity(cfg, shape: Tuple[int, int] = (224, 224)) -> Dict[str, float]:
    """Params (millions, every parameter; a distillation teacher excluded) and GMACs of
    the model of an mmpretrain / mmdet / mmseg config for one ``3 x H x W`` input, the
    selective scan counted analytically. Detectors are counted as their ``tensor``
    forward runs (RPN proposals included), as mmdet's ``get_flops`` does."""
    from mmengine.registry import init_default_scope
    scope = cfg.get('default_scope', 'mmpretrain')
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry')
    from tinyvim_mm.models.backbones import check_in_channels
    check_in_channels(cfg.model)
    model_cfg = cfg.model.copy()
    if 'teacher' in model_cfg:
        model_cfg.update(teacher=None, teacher_checkpoint=None)
    model = registry.MODELS.build(model_cfg).eval()
    for scan in model.modules():
        if isinstance(scan, SelectiveScan):
            scan.backend = 'torch'
    height, width = shape
    wrapper = _TensorForward(model, _samples(scope, height, width))
    return dict(params_m=count_params(model) / 1e6,
                gmacs=count_macs(wrapper, (1, 3, height, width)) / 1e9)
