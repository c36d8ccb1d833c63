"""Parameter and MAC counts, with the selective scan counted analytically."""
from typing import Dict, Sequence

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer

from tinyvim_mm.models.layers import SelectiveScan
from tinyvim_mm.ops import selective_scan_flops


def count_macs(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224)) -> int:
    """Multiply-accumulates of one forward pass (mmengine's ``FlopAnalyzer``
    convention: one MAC per multiply-add).

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
