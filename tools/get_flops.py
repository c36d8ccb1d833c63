"""Params and GMACs of TinyViM models, the selective scan counted analytically.

Examples::

    python tools/get_flops.py                                  # S, B, L classifiers, 224x224
    python tools/get_flops.py --arch b --shape 512 --deploy
    python tools/get_flops.py configs/mask_rcnn_tinyvim_b.py --shape 800 1333
    python tools/get_flops.py configs/fpn_tinyvim_b_ade20k_40k.py --shape 512 512

Without a config: the paper's columns (params without ``dist_head``) of the classifiers.
With a config (mmpretrain, mmdet or mmseg): the whole model for one ``3 x H x W`` input.
"""
import argparse

from mmengine.config import Config, DictAction

from tinyvim_mm.analysis import classifier_complexity, config_complexity

PAPER = {'s': (5.6, 0.9), 'b': (11.0, 1.5), 'l': (31.7, 4.7)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', help='a classification, detection or '
                        'segmentation config (default: the bare classifiers)')
    parser.add_argument('--arch', nargs='+', default=['s', 'b', 'l'], choices=sorted(PAPER))
    parser.add_argument('--shape', type=int, nargs='+', default=[224],
                        help='input size: H (square) or H W')
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--deploy', action='store_true', help='count the folded classifier')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args()
    if len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H or H W, got {args.shape}')
    return args


def main() -> None:
    args = parse_args()
    height, width = args.shape * 2 if len(args.shape) == 1 else args.shape
    if args.config:
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        result = config_complexity(cfg, (height, width))
        print(f'{args.config}: input 3x{height}x{width}, params {result["params_m"]:.2f} M, '
              f'{result["gmacs"]:.2f} GMACs (scan counted analytically)')
        return
    if height != width:
        raise SystemExit('the bare classifiers take a square --shape')
    print(f'input 3x{height}x{width}, {"deploy" if args.deploy else "training"} form, '
          'params without dist_head, scan counted analytically')
    print(f'{"arch":<10}{"params (M)":>12}{"paper":>8}{"GMACs":>9}{"paper":>8}')
    for arch in args.arch:
        result = classifier_complexity(arch, height, args.num_classes, args.deploy)
        paper_params, paper_macs = PAPER[arch]
        print(f'TinyViM-{arch.upper():<3}{result["params_m"]:>12.2f}{paper_params:>8.1f}'
              f'{result["gmacs"]:>9.3f}{paper_macs:>8.1f}')


if __name__ == '__main__':
    main()
