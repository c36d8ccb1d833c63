"""ONNX export of TinyViM models, and the check of an exported file against PyTorch."""
import warnings
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .optimize import optimize_for_inference


def export_onnx(model: nn.Module, path: str, img_size: int = 224, opset: int = 17,
                dynamic_hw: bool = True) -> nn.Module:
    """Fold ``model`` (no fused kernels: ONNX gets plain ops and the ``torch`` scan's
    loop-free form) and write it to ``path`` with a dynamic batch (and ``H``, ``W``).
    Input ``input`` ``(B, 3, H, W)``, output ``logits``. Returns the folded model."""
    optimize_for_inference(model, fuse_blocks=False, scan_backend='torch')
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
