"""Generate the synthetic toy datasets (ImageNet / COCO / ADE20K layouts).

Example::

    python tools/dataset_converters/make_toy_data.py --out data/toy \\
        --tasks imagenet coco ade --size default --seed 0
"""
import argparse
import logging
import time

from tinyvim_mm.datasets import TOY_SIZES, TOY_TASKS, make_toy_data


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/toy', help='output root')
    parser.add_argument(
        '--tasks', nargs='+', choices=TOY_TASKS, default=list(TOY_TASKS))
    parser.add_argument(
        '--size', choices=tuple(TOY_SIZES), default='default',
        help="'tiny' for unit tests, 'default' for quickstart / training")
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    start = time.perf_counter()
    infos = make_toy_data(args.out, args.tasks, args.size, args.seed)
    for info in infos.values():
        counts = ', '.join(f'{n} {split}' for split, n in
                           info.num_samples.items())
        print(f'{info.name}: {info.root} ({counts})')
        print(f'  classes ({len(info.classes)}): {info.classes}')
    print(f'done in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
