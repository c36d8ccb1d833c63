"""Params and GMACs of TinyViM classifiers (the paper's Table 1 columns).

Examples:
    python tools/get_flops.py                       # S, B, L at 224x224
    python tools/get_flops.py --arch b --shape 512 --deploy
"""
import argparse

from tinyvim_mm.analysis import classifier_complexity

PAPER = {'s': (5.6, 0.9), 'b': (11.0, 1.5), 'l': (31.7, 4.7)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', nargs='+', default=['s', 'b', 'l'], choices=sorted(PAPER))
    parser.add_argument('--shape', type=int, default=224, help='square input size')
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--deploy', action='store_true', help='count the folded model')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f'input 3x{args.shape}x{args.shape}, {"deploy" if args.deploy else "training"} form, '
          'params without dist_head, scan counted analytically')
    print(f'{"arch":<10}{"params (M)":>12}{"paper":>8}{"GMACs":>9}{"paper":>8}')
    for arch in args.arch:
        result = classifier_complexity(arch, args.shape, args.num_classes, args.deploy)
        paper_params, paper_macs = PAPER[arch]
        print(f'TinyViM-{arch.upper():<3}{result["params_m"]:>12.2f}{paper_params:>8.1f}'
              f'{result["gmacs"]:>9.3f}{paper_macs:>8.1f}')


if __name__ == '__main__':
    main()
