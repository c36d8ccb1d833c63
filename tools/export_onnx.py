"""Export a TinyViM classifier to ONNX and check it against PyTorch with onnxruntime.

Examples::

    python tools/export_onnx.py --arch s --output tinyvim_s.onnx
    python tools/export_onnx.py --checkpoint tinyvim_s.pth --output tinyvim_s.onnx

With ``--checkpoint`` (released or mmpretrain layout) the class count and the arch come
from the checkpoint. The folded model is exported with the ``torch`` scan's loop-free
form, a dynamic batch and, unless ``--static-hw``, dynamic height and width.
"""
import argparse
import sys
from typing import List, Optional

from tinyvim_mm.deploy import export_onnx, onnx_errors
from tinyvim_mm.models import TinyViMClassifier


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', choices=['s', 'b', 'l'],
                        help='arch (default: from --checkpoint, else s)')
    parser.add_argument('--checkpoint', help='released or mmpretrain classifier checkpoint')
    parser.add_argument('--num-classes', type=int, default=1000,
                        help='classes of a model without --checkpoint')
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
    if args.checkpoint:
        model = TinyViMClassifier.from_checkpoint(args.checkpoint, args.arch, 'torch')
    else:
        model = TinyViMClassifier(args.arch or 's', args.num_classes, 'torch').eval()
    model = export_onnx(model, args.output, args.img_size, args.opset, not args.static_hw)
    print(f'wrote {args.output} (TinyViM classifier, {model.num_classes} classes)')
    if args.check_shapes:
        shapes = [tuple(int(v) for v in s.split('x')) for s in args.check_shapes]
        for shape, err in zip(shapes, onnx_errors(model, args.output, shapes)):
            print(f'onnxruntime vs PyTorch, input {shape}: max abs diff {err:.2e}')
            if err > args.tolerance:
                sys.exit(f'max abs diff {err:.2e} > {args.tolerance:.0e}')


if __name__ == '__main__':
    main()
