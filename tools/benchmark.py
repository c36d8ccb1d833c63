"""Benchmark TinyViM and its peers like with like: every model of a table with the same
treatment, in one run (tinyvim_mm.benchmark).

Examples::

    python tools/benchmark.py --list-presets
    # part of a preset: TinyViM-B's rows (and each table's reference row), two columns
    python tools/benchmark.py --preset train_teacher --only tinyvim-b --columns released default
    python tools/benchmark.py --preset readme --json work_dirs/benchmark/readme.json \\
        --plot work_dirs/benchmark/readme.png
    # explicit models: fp16 autocast, channels-last, folded; an eager and a compiled column
    python tools/benchmark.py --models tinyvim-s tinyvim-s:fast timm:repvit_m1_1 \\
        --batch 1024 --dtype fp16 --channels-last --compile
    python tools/benchmark.py --kind latency --models tinyvim-s:fast --batch 1 8 32 --cuda-graphs
    python tools/benchmark.py --kind runner_train --models configs/tinyvim_s_8xb128_in1k.py
    # tables and plot again from a JSON
    python tools/benchmark.py --from-json work_dirs/benchmark/readme.json --plot readme.png

Timing: warm-up, then CUDA events (CPU: perf_counter), medians and p90; each measurement
under a time limit, errors recorded, the JSON rewritten after each one.
"""
import argparse
import sys
from typing import List, Optional

import torch

from tinyvim_mm.benchmark import (Section, Suite, available_presets, load_preset,
                                  load_results, load_top1, markdown, plot, select_sections)
from tinyvim_mm.benchmark.presets import KINDS


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0] + ' The batch, '
                                     'size, treatment and timing options apply to --models '
                                     '(presets carry their own).',
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--preset', help='preset name (configs/benchmark/NAME.py) or file')
    source.add_argument('--models', nargs='+', help='tinyvim-{s,b,l}[:fast], timm:NAME or '
                        'config files, measured in one table')
    source.add_argument('--from-json', help='print the tables (and --plot) of a saved run')
    source.add_argument('--list-presets', action='store_true')
    parser.add_argument('--only', nargs='+', default=[], metavar='PATTERN',
                        help="with --preset: only the rows whose label or model contains a "
                        "PATTERN (case-insensitive; each table's reference row stays)")
    parser.add_argument('--columns', nargs='+', default=[], metavar='NAME',
                        help='with --preset: only the columns of these names')
    parser.add_argument('--kind', default='throughput', choices=KINDS, help='with --models')
    parser.add_argument('--batch', type=int, nargs='+', default=None,
                        help='batch size (latency: several; default 1024, latency 1 8 32, '
                        "runner_train: the config's)")
    parser.add_argument('--img-size', type=int, nargs='+', default=None, help='H [W]')
    parser.add_argument('--dtype', default='fp16', choices=['fp32', 'fp16', 'bf16'])
    parser.add_argument('--half-weights', action='store_true',
                        help='conv / linear weights in --dtype too (else autocast only)')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--no-reparameterize', action='store_true',
                        help='keep the training form (no folding)')
    parser.add_argument('--compile', action='store_true', help='add a torch.compile column '
                        '(runner_train: a column with fast_training.compile=False, the '
                        "eager loop, before the config's own)")
    parser.add_argument('--cuda-graphs', action='store_true', help='add a CUDA-graph column')
    parser.add_argument('--reference', help='row the ratios are over (default: the first)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--min-time', type=float, default=1.0,
                        help='seconds of timed calls per measurement')
    parser.add_argument('--time-budget', type=float, default=None,
                        help='seconds for the whole run; measurements that no longer fit are '
                        "skipped (default: the preset's, else none)")
    parser.add_argument('--item-timeout', type=float, default=300.0,
                        help='seconds one measurement may take')
    parser.add_argument('--json', help='write the results here (after every measurement)')
    parser.add_argument('--plot', help='throughput vs ImageNet top-1 (PNG)')
    return parser.parse_args(argv)


def section_from_args(args: argparse.Namespace) -> Section:
    """One table of ``--models`` under the command line's treatment."""
    entry = dict(kind=args.kind, title=f'{args.kind}, command line', models=args.models)
    if args.reference:
        entry['reference'] = args.reference
    if args.img_size:
        entry['img_size'] = args.img_size[0] if len(args.img_size) == 1 else args.img_size[:2]
    elif args.kind != 'runner_train':
        entry['img_size'] = 224
    if args.kind == 'latency':
        entry['batches'] = args.batch or [1, 8, 32]
    elif args.batch or args.kind != 'runner_train':
        entry['batch'] = (args.batch or [1024])[0]
    if args.kind == 'runner_train':
        if args.compile:  # the eager loop, and the config as is
            entry['columns'] = [dict(name='eager', cfg_options={'fast_training.compile': False}),
                                dict(name='default')]
        return Section.parse(entry)
    entry['treatment'] = dict(dtype=args.dtype, half_weights=args.half_weights,
                              channels_last=args.channels_last,
                              reparameterize=not args.no_reparameterize)
    entry['columns'] = ([dict(name='eager')] + [dict(name='compiled', compile=True)] *
                        args.compile + [dict(name='CUDA graph', cuda_graphs=True)] *
                        args.cuda_graphs)
    entry['timing'] = dict(warmup=args.warmup, repeats=args.repeats, min_time=args.min_time)
    return Section.parse(entry)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.list_presets:
        print('\n'.join(available_presets()))
        return {}
    if args.from_json:
        data = load_results(args.from_json)
    else:
        try:
            if args.preset:
                sections, top1, budget = load_preset(args.preset)
                sections = select_sections(sections, args.only, args.columns)
            elif args.only or args.columns:
                raise ValueError('--only and --columns select from a --preset')
            else:
                sections, top1, budget = [section_from_args(args)], load_top1(), None
        except (ValueError, FileNotFoundError) as exc:
            sys.exit(f'error: {exc}')
        torch.backends.cudnn.benchmark = True
        suite = Suite(torch.device(args.device), args.json, args.time_budget or budget,
                      args.item_timeout, meta=dict(preset=args.preset, only=args.only,
                                                   columns=args.columns, top1=top1),
                      log=lambda line: print(line, flush=True))
        print(suite.env, flush=True)
        suite.run(sections)
        data = dict(env=suite.env, sections=[s.describe() for s in sections],
                    records=suite.records, top1=top1)
    print('\n' + markdown(data), flush=True)
    if args.plot:
        try:
            plot(data, args.plot)
        except ValueError as exc:
            print(f'no plot: {exc}')
    return data


if __name__ == '__main__':
    main()
