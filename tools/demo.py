"""Draw a TinyViM model's prediction on an image, with the toolbox's visualizer.

The task follows the config's ``default_scope``: classification (mmpretrain) draws the
top-k classes, Mask R-CNN (mmdet) boxes and masks, Semantic FPN (mmseg) the class map.
The checkpoint must fit the config's model exactly (missing, unexpected or mis-shaped
keys are an error naming them); without one the model keeps its random initialisation
(to check the plumbing only). Library code: :mod:`tinyvim_mm.apis.inference`.

Examples::

    python tools/demo.py data/toy/coco/val2017/000000000001.jpg \\
        configs/mask_rcnn_tinyvim_s_toy_coco.py \\
        "$(cat work_dirs/quickstart/det/last_checkpoint)" --out demo_det.png
    python tools/demo.py demo.JPEG configs/tinyvim_s_8xb128_in1k.py \\
        checkpoints/tinyvim-s_in1k.pth --out cls.png
"""
import argparse
import sys
from typing import List, Optional

from tinyvim_mm.apis import CheckpointMismatchError, draw
from tinyvim_mm.checkpoint import UnsafeCheckpointError


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='input image')
    parser.add_argument('config', help='a classification, Mask R-CNN or Semantic FPN config')
    parser.add_argument('checkpoint', nargs='?', help='weights (default: random init)')
    parser.add_argument('--out', default='demo.png', help='output PNG')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: smallest score drawn')
    parser.add_argument('--topk', type=int, default=5, help='classification: classes shown')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    try:
        task = draw(args.image, args.config, args.checkpoint, args.out, args.device,
                    args.score_thr, args.topk)
    except (FileNotFoundError, ValueError, CheckpointMismatchError,
            UnsafeCheckpointError) as err:
        sys.exit(f'demo.py: error: {err}')
    print(f'{task}: {args.out}')


if __name__ == '__main__':
    main()
