"""Time the selective-scan backends against the per-step reference loop.

Example::

    python tools/benchmark_scan.py                       # CPU, b=2, K=4, d=96, N=8, L=1050
    python tools/benchmark_scan.py --chunk-size 16 32 64 --json scan.json
    python tools/benchmark_scan.py --device cuda --dtype float16

Forward runs under ``torch.no_grad()``; forward+backward takes gradients of
every input. Backends are timed in turns within each repeat (so that load
changes hit them alike) and the median is reported.
"""
import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from tinyvim_mm.ops import (available_backends, default_chunk_size, selective_scan,
                            selective_scan_ref, selective_scan_torch)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--directions', '-K', type=int, default=4, help='scan directions K')
    parser.add_argument('--d-inner', '-d', type=int, default=96, help='channels per direction')
    parser.add_argument('--d-state', '-N', type=int, default=8)
    parser.add_argument('--length', '-L', type=int, default=1050)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='float32', choices=['float32', 'float16', 'bfloat16'])
    parser.add_argument('--chunk-size', type=int, nargs='+', default=None,
                        help='chunk sizes of the torch backend to time '
                        '(default: its own choice, tinyvim_mm.ops.default_chunk_size)')
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (default: leave as is)')
    parser.add_argument('--skip-ref', action='store_true', help='do not time the slow loop')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', type=Path, default=None, help='also write the results here')
    return parser.parse_args()


def make_inputs(args: argparse.Namespace) -> List[torch.Tensor]:
    """Realistic inputs: S4D-real ``A``, Mamba's ``dt`` init, ``D`` ones."""
    gen = torch.Generator().manual_seed(args.seed)
    b, K, d, N, L = args.batch, args.directions, args.d_inner, args.d_state, args.length
    dtype = getattr(torch, args.dtype)
    u = torch.randn(b, K * d, L, generator=gen)
    delta = 0.5 * torch.randn(b, K * d, L, generator=gen)
    A = -torch.exp(torch.log(torch.arange(1, N + 1.0)) + 0.1 * torch.randn(K * d, N, generator=gen))
    B = torch.randn(b, K, N, L, generator=gen)
    C = torch.randn(b, K, N, L, generator=gen)
    D = torch.ones(K * d)
    dt0 = torch.exp(torch.empty(K * d).uniform_(math.log(1e-3), math.log(1e-1), generator=gen))
    delta_bias = dt0 + torch.log(-torch.expm1(-dt0))  # inverse softplus
    inputs = [u.to(dtype), delta.to(dtype), A, B.to(dtype), C.to(dtype), D, delta_bias]
    return [t.to(args.device).requires_grad_() for t in inputs]


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Return ``measure(fn) -> milliseconds`` for ``device``."""
    if device.type == 'cuda':
        def measure(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end)
    else:
        def measure(fn):
            start = time.perf_counter()
            fn()
            return (time.perf_counter() - start) * 1e3
    return measure


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    inputs = make_inputs(args)
    grad_out = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(1))
    grad_out = grad_out.to(device, inputs[0].dtype)

    impls: Dict[str, Callable] = {}
    if not args.skip_ref:
        impls['ref'] = selective_scan_ref
    for chunk in args.chunk_size or [default_chunk_size(args.length)]:
        impls[f'torch (chunk {chunk})'] = (
            lambda *a, chunk=chunk: selective_scan_torch(*a, chunk_size=chunk))
    if device.type == 'cuda' and 'cuda' in available_backends():
        impls['cuda'] = lambda *a: selective_scan(*a, backend='cuda')

    def forward(fn):
        with torch.no_grad():
            return fn(*inputs)

    def forward_backward(fn):
        return torch.autograd.grad(fn(*inputs), inputs, grad_out)

    # accuracy against the first implementation (the loop unless --skip-ref)
    base_name, base = next(iter(impls.items()))
    base_y, base_grads = forward(base), forward_backward(base)
    measure = timer(device)
    results = {}
    for name, fn in impls.items():
        y, grads = forward(fn), forward_backward(fn)
        results[name] = dict(
            max_abs_diff_out=(y.float() - base_y.float()).abs().max().item(),
            max_abs_diff_grad=max((g.float() - gb.float()).abs().max().item()
                                  for g, gb in zip(grads, base_grads)),
            fwd_ms=[], fwd_bwd_ms=[])
        for _ in range(args.warmup):
            forward(fn)
            forward_backward(fn)
    for _ in range(args.repeats):
        for name, fn in impls.items():
            results[name]['fwd_ms'].append(measure(lambda: forward(fn)))
            results[name]['fwd_bwd_ms'].append(measure(lambda: forward_backward(fn)))
    for res in results.values():
        res['fwd_ms'] = statistics.median(res['fwd_ms'])
        res['fwd_bwd_ms'] = statistics.median(res['fwd_bwd_ms'])

    b, K, d, N, L = args.batch, args.directions, args.d_inner, args.d_state, args.length
    print(f'selective scan: b={b} K={K} d={d} (K*d={K * d}) N={N} L={L} '
          f'{args.dtype} on {device}, {torch.get_num_threads()} CPU threads, '
          f'median of {args.repeats}')
    print(f'{"backend":<18} {"fwd ms":>9} {"fwd+bwd ms":>11} {"x fwd":>7} {"x fwd+bwd":>10} '
          f'{"max|dy|":>9} {"max|dgrad|":>10}')
    ref = results[base_name]
    for name, res in results.items():
        res['speedup_fwd'] = ref['fwd_ms'] / res['fwd_ms']
        res['speedup_fwd_bwd'] = ref['fwd_bwd_ms'] / res['fwd_bwd_ms']
        print(f'{name:<18} {res["fwd_ms"]:9.2f} {res["fwd_bwd_ms"]:11.2f} '
              f'{res["speedup_fwd"]:7.1f} {res["speedup_fwd_bwd"]:10.1f} '
              f'{res["max_abs_diff_out"]:9.2e} {res["max_abs_diff_grad"]:10.2e}')
    print(f'(speed-ups and differences relative to {base_name!r})')
    if args.json:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        config['threads'] = torch.get_num_threads()
        args.json.write_text(json.dumps(dict(config=config, baseline=base_name,
                                             results=results), indent=2))


if __name__ == '__main__':
    main()
