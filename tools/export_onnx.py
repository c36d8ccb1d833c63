"""Export a TinyViM classifier, folded (deploy form, ``torch`` scan), to ONNX
and check onnxruntime against PyTorch.

Examples::

    python tools/export_onnx.py --arch s --output tinyvim_s.onnx
    python tools/export_onnx.py --arch b --checkpoint TinyViM-B.pth --output tinyvim_b.onnx \\
        --check-shapes 2x3x224x224 1x3x256x192

The graph has a dynamic batch and, by default, dynamic height and width (the
scan is exported loop-free, see ``selective_scan_torch``; its memory grows with
the square of the number of 1/32-resolution pixels, fine up to ~512x512).
Logits are the average of the two heads (the released evaluation).
"""
import argparse
import sys
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.runner.checkpoint import CheckpointLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark import Classifier  # noqa: E402
from tinyvim_mm.ops import optimize_for_inference  # noqa: E402
from tinyvim_mm.utils import convert_official, extract_state_dict  # noqa: E402
from tinyvim_mm.utils.checkpoint import is_released_layout  # noqa: E402


def load_classifier(arch: str, checkpoint: Optional[str], num_classes: int) -> Classifier:
    """The classifier in eval mode, with released or mmpretrain weights if given."""
    model = Classifier(arch, scan_backend='torch', num_classes=num_classes)
    if checkpoint:
        state_dict = extract_state_dict(CheckpointLoader.load_checkpoint(checkpoint, 'cpu'))
        if is_released_layout(state_dict):
            state_dict = convert_official(state_dict, target='classifier')
        state_dict = {k: v for k, v in state_dict.items() if k.startswith(('backbone.', 'head.'))}
        model.load_state_dict(state_dict, strict=True)
    return model.eval()


def export(model: torch.nn.Module, path: str, img_size: int, opset: int = 17,
           dynamic_hw: bool = True) -> None:
    """Fold ``model`` and write it to ``path`` (dynamic batch, optionally H/W)."""
    optimize_for_inference(model, fuse_blocks=False, scan_backend='torch')
    axes = {0: 'batch', 2: 'height', 3: 'width'} if dynamic_hw else {0: 'batch'}
    x = torch.randn(1, 3, img_size, img_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)  # shape checks, constant here
        torch.onnx.export(model, (x, ), path, opset_version=opset, input_names=['input'],
                          output_names=['logits'], dynamo=False,
                          dynamic_axes={'input': axes, 'logits': {0: 'batch'}})


def check(model: torch.nn.Module, path: str,
          shapes: Sequence[Tuple[int, ...]]) -> List[float]:
    """Max abs difference of onnxruntime's logits from PyTorch's, per shape."""
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


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='s', choices=['s', 'b', 'l'])
    parser.add_argument('--checkpoint', help='released or mmpretrain classifier checkpoint')
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--output', required=True)
    parser.add_argument('--img-size', type=int, default=224, help='size traced at')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--static-hw', action='store_true', help='dynamic batch only')
    parser.add_argument('--check-shapes', nargs='*', default=['2x3x224x224'],
                        help='NxCxHxW inputs to compare onnxruntime with PyTorch on '
                        '(none: no check)')
    parser.add_argument('--tolerance', type=float, default=1e-4)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    model = load_classifier(args.arch, args.checkpoint, args.num_classes)
    export(model, args.output, args.img_size, args.opset, not args.static_hw)
    print(f'wrote {args.output}')
    if args.check_shapes:
        shapes = [tuple(int(v) for v in s.split('x')) for s in args.check_shapes]
        errors = check(model, args.output, shapes)
        for shape, err in zip(shapes, errors):
            print(f'onnxruntime vs PyTorch, input {shape}: max abs diff {err:.2e}')
        if max(errors) > args.tolerance:
            sys.exit(f'max abs diff {max(errors):.2e} > {args.tolerance:.0e}')


if __name__ == '__main__':
    main()
