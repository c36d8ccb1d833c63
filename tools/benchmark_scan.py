"""Time the selective-scan backends side by side (tinyvim_mm.benchmark.scan).

Examples::

    python tools/benchmark_scan.py                       # CPU: ref and torch
    python tools/benchmark_scan.py --chunk-size 16 32 64 --json scan.json
    python tools/benchmark_scan.py --device cuda --dtype float16

Table 1, the ``selective_scan`` interface on the same inputs, ``(b, K*d, L)`` with
``L = H*W`` of ``--grid``: ``ref`` (per-step loop), ``torch`` (chunked), and on a GPU
``cuda`` (mamba-ssm's kernel, where its extension imports) and ``triton`` (forward only).
Forward under ``no_grad``, forward + backward with gradients of every input; backends
timed in turns within each repeat (load changes hit all alike), median and p90.
Table 2 (GPU): the Laplace mixer's whole cross scan, the fused Triton op (forward and
backward) against gather + scan + merge with the other backends
(``tinyvim_mm.ops.scan.cross_triton_bench``).
"""
import argparse
import json
from pathlib import Path

import torch

from tinyvim_mm.benchmark.scan import (compare_scans, cross_scan, scan_backends, scan_inputs,
                                       scan_table)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--directions', '-K', type=int, default=4, help='scan directions K')
    parser.add_argument('--d-inner', '-d', type=int, default=96, help='channels per direction')
    parser.add_argument('--d-state', '-N', type=int, default=8)
    parser.add_argument('--grid', type=int, nargs=2, default=[25, 42], metavar=('H', 'W'),
                        help='scanned map (default: 800x1333 detection input after the '
                        '1/32 pooling); L = H*W')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='float32', choices=['float32', 'float16', 'bfloat16'])
    parser.add_argument('--chunk-size', type=int, nargs='+', default=None,
                        help='chunk sizes of the torch backend (default: its own choice)')
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    parser.add_argument('--skip-ref', action='store_true', help='do not time the slow loop')
    parser.add_argument('--skip-cross', action='store_true', help='no fused cross-scan table')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', type=Path, default=None, help='also write the results here')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    length = args.grid[0] * args.grid[1]
    inputs = scan_inputs(args.batch, args.directions, args.d_inner, args.d_state, length,
                         device, dtype, args.seed)
    impls, missing = scan_backends(device, dtype, length, args.chunk_size, not args.skip_ref)
    results = compare_scans(inputs, impls, device, args.repeats, args.warmup)
    print(f'selective scan: b={args.batch} K={args.directions} d={args.d_inner} '
          f'N={args.d_state} L={length} ({args.grid[0]}x{args.grid[1]}), {args.dtype} on '
          f'{device}, {torch.get_num_threads()} CPU threads, {args.repeats} repeats; '
          f'speed-ups and differences relative to {next(iter(results))!r}\n')
    print(scan_table(results, missing))
    cross_rows, cross_text = None, 'skipped (--skip-cross)'
    if not args.skip_cross:
        cross_rows, cross_text = cross_scan(args.batch, args.d_inner, tuple(args.grid), dtype,
                                            args.repeats, device)
    print(f'\nfused Triton cross scan (forward + backward), b={args.batch} d={args.d_inner} '
          f'{args.grid[0]}x{args.grid[1]}:\n{cross_text}')
    if args.json:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps(dict(config=config, results=results,
                                             unavailable=missing, cross_scan=cross_rows
                                             or cross_text), indent=2, default=str))


if __name__ == '__main__':
    main()
