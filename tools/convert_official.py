"""Convert a released TinyViM checkpoint for tinyvim_mm.

The released classifier checkpoints keep their weights under ``model``; the
output is an mmpretrain checkpoint (``state_dict`` + ``meta``) that
``tools/test.py`` / ``mim test`` evaluate with the ``tinyvim_*_8xb128_in1k`` configs,
or, with ``--target backbone``, a bare dense-backbone state dict.

Example:
    python tools/convert_official.py TinyViM-S.pth checkpoints/tinyvim-s_in1k.pth
"""
import argparse
from pathlib import Path

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from tinyvim_mm.checkpoint import convert_official, extract_state_dict


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='released checkpoint (.pth)')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--target', choices=['classifier', 'backbone'], default='classifier')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    state_dict = extract_state_dict(CheckpointLoader.load_checkpoint(args.src, 'cpu'))
    converted = convert_official(state_dict, args.target)
    Path(args.dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict=converted,
                    meta=dict(converted_from=str(args.src), target=args.target)), args.dst)
    print(f'{len(state_dict)} released tensors -> {len(converted)} {args.target} tensors: '
          f'{args.dst}')


if __name__ == '__main__':
    main()
