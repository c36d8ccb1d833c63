"""ONNX export of TinyViM models, and the check of an exported file against PyTorch."""
import warnings
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from tinyvim_mm.models import TinyViMClassifier
from tinyvim_mm.models.layers import AxialRepDW, LaplaceMixer
from tinyvim_mm.ops.onnx_shapes import MIN_OPSET
from .optimize import optimize_for_inference


class FoldedHead(nn.Module):
    """``(head(pool(bn(x))) + dist_head(pool(bn(x)))) / 2`` as one Linear on ``pool(x)``
    (the inference of :class:`TinyViMClassifier`, with its last BatchNorm folded in):
    ``(B, C, H, W) -> (B, num_classes)``."""

    def __init__(self, norm: nn.BatchNorm2d, head: nn.Linear, dist_head: nn.Linear) -> None:
        super().__init__()
        with torch.no_grad():
            scale = norm.weight / (norm.running_var + norm.eps).sqrt()
            shift = norm.bias - norm.running_mean * scale
            weight = (head.weight + dist_head.weight) / 2
            bias = (head.bias + dist_head.bias) / 2
            self.fc = nn.Linear(weight.shape[1], weight.shape[0]).to(weight)
            self.fc.weight.copy_(weight * scale)
            self.fc.bias.copy_(bias + weight @ shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


class ExportClassifier(nn.Module):
    """Inference-only form of a folded :class:`TinyViMClassifier` for export: the
    backbone's blocks, then a :class:`FoldedHead`."""

    def __init__(self, model: TinyViMClassifier) -> None:
        super().__init__()
        backbone = model.backbone
        self.patch_embed, self.network = backbone.patch_embed, backbone.network
        norm = getattr(backbone, f'norm{2 * (backbone.num_stages - 1)}')
        self.head = FoldedHead(norm, model.head.head, model.head.dist_head)
        self.num_classes = model.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.network:
            x = layer(x)
        return self.head(x)


def export_onnx(model: nn.Module, path: str, img_size: int = 224, opset: int = 17,
                dynamic_hw: bool = True) -> nn.Module:
    """Fold ``model`` (no fused kernels: ONNX gets plain ops, the mixers' 7x1 / 1x7 pair
    as a 7x1 then a 1x7 depth-wise conv over all channels (:meth:`AxialRepDW.to_sequential`),
    their high-frequency conv over all channels (:meth:`LaplaceMixer.widen_local_conv`), the
    ``torch`` scan's loop-free chunked form; a :class:`TinyViMClassifier` with its head
    folded, :class:`ExportClassifier`) and write it to ``path`` with a dynamic batch (and
    ``H``, ``W``). Input ``input`` ``(B, 3, H, W)``, output ``logits``. Returns the model
    that was exported."""
    if opset < MIN_OPSET:
        raise ValueError(f'opset {opset}: the export form needs opset >= {MIN_OPSET} (Shape '
                         'with start / end, tinyvim_mm.ops.onnx_shapes)')
    optimize_for_inference(model, fuse_blocks=False, fuse_mixers=False, scan_backend='torch',
                           channels_last=False)
    for mixer in [m for m in model.modules() if isinstance(m, LaplaceMixer)]:
        if isinstance(mixer.conv2d, AxialRepDW):
            mixer.conv2d = mixer.conv2d.to_sequential()
        mixer.widen_local_conv()
    if isinstance(model, TinyViMClassifier):
        model = ExportClassifier(model).eval()
    axes = {0: 'batch', 2: 'height', 3: 'width'} if dynamic_hw else {0: 'batch'}
    x = torch.randn(1, 3, img_size, img_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)  # shape checks, constant here
        torch.onnx.export(model, (x, ), path, opset_version=opset, input_names=['input'],
                          output_names=['logits'], dynamo=False,
                          dynamic_axes={'input': axes, 'logits': {0: 'batch'}})
    return model


def onnx_errors(model: nn.Module, path: str, shapes: Sequence[Tuple[int, ...]]) -> List[float]:
    """Max abs difference of onnxruntime's outputs from PyTorch's, one per input shape."""
    import onnx
    import onnxruntime as ort
    onnx.checker.check_model(onnx.load(path))
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    errors = []
    for shape in shapes:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {'input': x.numpy()})[0]
        errors.append(float(np.abs(got - expected).max()))
    return errors
