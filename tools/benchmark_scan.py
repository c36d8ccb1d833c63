"""Time the selective-scan backends side by side (tinyvim_mm.benchmark.scan).

Examples::

    python tools/benchmark_scan.py                       # CPU: ref and torch
    python tools/benchmark_scan.py --chunk-size 16 32 64 --json scan.json
    python tools/benchmark_scan.py --device cuda --dtype float16
    # whole TinyViM-B training steps by backend, interleaved rounds
    python tools/benchmark_scan.py --device cuda --model b --batch 2 --img-size 512
    python tools/benchmark_scan.py --device cuda --model s --batch 256 --img-size 224 --amp
    python tools/benchmark_scan.py --device cuda --model b --batch 2 --img-size 512 --compile

Table 1, the ``selective_scan`` interface on the same inputs, ``(b, K*d, L)`` with
``L = H*W`` of ``--grid``: ``ref`` (per-step loop), ``torch`` (chunked), and on a GPU
``cuda`` (mamba-ssm's kernel, where its extension imports) and ``triton`` (forward only).
Forward under ``no_grad``, forward + backward with gradients of every input; backends
timed in turns within each repeat (load changes hit all alike), median and p90.
Table 2 (GPU): the Laplace mixer's whole cross scan, the fused Triton op (forward and
backward) against gather + scan + merge with the other backends
(``tinyvim_mm.ops.scan.cross_triton_bench``).
With ``--model``: instead, training steps (forward, backward, AdamW) of one TinyViM
classifier whose scan backend is switched between interleaved rounds
(``tinyvim_mm.benchmark.scan.model_steps_by_backend``; speed relative to the first
backend as the median of per-round ratios).
"""
import argparse
import json
from pathlib import Path

import torch

from tinyvim_mm.benchmark.scan import (compare_scans, cross_scan, model_steps_by_backend,
                                       model_steps_table, scan_backends, scan_inputs, scan_table)
from tinyvim_mm.ops import available_backends


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
    model = parser.add_argument_group('whole-model training steps (--model)')
    model.add_argument('--model', choices=['s', 'b', 'l'], default=None,
                       help='time training steps of this TinyViM classifier by backend')
    model.add_argument('--img-size', type=int, default=224)
    model.add_argument('--amp', action='store_true',
                       help='fp16 autocast and channels-last (default: float32, NCHW)')
    model.add_argument('--backends', nargs='+', default=None,
                       help="default: this device's backends but 'ref', best first")
    model.add_argument('--compile', action='store_true',
                       help="the backbone compiled into CUDA graphs (torch.compile "
                       "mode='reduce-overhead', the ImageNet configs' training form)")
    model.add_argument('--rounds', type=int, default=12)
    model.add_argument('--steps', type=int, default=10, help='steps per backend and round')
    args = parser.parse_args()
    if args.model is None and (args.amp or args.backends or args.compile):
        parser.error('--amp, --backends and --compile go with --model')
    return args


def model_steps(args: argparse.Namespace, device: torch.device) -> None:
    """The ``--model`` comparison: print the table, write the JSON."""
    backends = args.backends or [b for b in available_backends() if b != 'ref']
    results = model_steps_by_backend(args.model, args.batch, args.img_size, backends, device,
                                     args.amp, args.rounds, args.steps, args.warmup + 3,
                                     args.seed,
                                     dict(mode='reduce-overhead') if args.compile else None)
    form = 'fp16 AMP, channels-last' if args.amp else 'float32, NCHW'
    form += ', backbone compiled into CUDA graphs' if args.compile else ', eager'
    print(f'TinyViM-{args.model.upper()} training steps, batch {args.batch}, '
          f'{args.img_size}x{args.img_size}, {form}, on {device}: {args.rounds} interleaved '
          f'rounds of {args.steps} steps per backend\n')
    print(model_steps_table(results))
    if args.json:
        args.json.write_text(json.dumps(dict(config=_config(args), model_steps=results),
                                        indent=2))


def _config(args: argparse.Namespace) -> dict:
    """The command line as JSON."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.model:
        return model_steps(args, device)
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
        args.json.write_text(json.dumps(dict(config=_config(args), results=results,
                                             unavailable=missing, cross_scan=cross_rows
                                             or cross_text), indent=2, default=str))


if __name__ == '__main__':
    main()
