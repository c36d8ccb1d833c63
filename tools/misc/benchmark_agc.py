"""Time adaptive gradient clipping per training step on a TinyViM classifier's parameters:
timm's per-parameter ``adaptive_clip_grad``, our ``AdaptiveGradClipper`` planned on every
call (a new one each time, as ``adaptive_clip_grad_``) and the training steps' one, which
keeps its plan. Calls alternate between the variants, each on the same fresh gradients
(as after ``zero_grad(set_to_none=True)``); minimum and median ms per call, and the largest
difference from timm's clipped gradients (relative to the largest gradient).

Examples::

    python tools/misc/benchmark_agc.py --host-only       # the host's share, on the CPU
    python tools/misc/benchmark_agc.py --device cuda     # whole tensors, synchronised

``--host-only`` keeps every parameter's layout and unit size but one output row, so the
kernels are tiny and the time is what the host spends per step (Python, dispatch): what a
launch-bound GPU loop waits for.
"""
import argparse
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='s', choices=['s', 'b', 'l'])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--host-only', action='store_true',
                        help='one output row per parameter (host cost, not compute)')
    parser.add_argument('--calls', type=int, default=50, help='timed calls per variant')
    parser.add_argument('--multi-tensor', action='store_true',
                        help="AdaptiveGradClipper scales as on CUDA (one multi-tensor kernel) "
                             'on any device')
    parser.add_argument('--clip-factor', type=float, default=0.02)
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error(f'--calls must be >= 1, got {args.calls}')
    return args


def parameters(arch: str, device: torch.device, host_only: bool) -> List[nn.Parameter]:
    """The classifier's parameters in the training form's layout (channels-last)."""
    from tinyvim_mm.models import TinyViMClassifier
    model = TinyViMClassifier(arch).to(device, memory_format=torch.channels_last)
    if not host_only:
        return list(model.parameters())
    layout = {4: torch.channels_last}
    return [nn.Parameter(torch.randn((1, ) + p.shape[1:] if p.ndim > 1 else p.shape,
                                     device=device).contiguous(
                                         memory_format=layout.get(p.ndim,
                                                                  torch.contiguous_format)))
            for p in model.parameters()]


def main(argv: Optional[List[str]] = None) -> Dict[str, List[float]]:
    args = parse_args(argv)
    from timm.utils.agc import adaptive_clip_grad

    from tinyvim_mm.benchmark.timing import synchronize
    from tinyvim_mm.engine.agc import AdaptiveGradClipper
    device = torch.device(args.device)
    params = parameters(args.arch, device, args.host_only)
    clipper = AdaptiveGradClipper(True if args.multi_tensor else None)
    variants: Dict[str, Callable[[], object]] = {
        "timm's per-parameter AGC": lambda: adaptive_clip_grad(params, args.clip_factor),
        'AdaptiveGradClipper, planned every call':
            lambda: AdaptiveGradClipper(clipper.multi_tensor)(params, args.clip_factor),
        'AdaptiveGradClipper (plan kept)': lambda: clipper(params, args.clip_factor)}
    times: Dict[str, List[float]] = {name: [] for name in variants}
    diffs: Dict[str, float] = {name: 0.0 for name in variants}
    for call in range(args.calls + 5):
        grads = [torch.randn_like(p) * 0.05 for p in params]
        clipped = []
        for name, run in variants.items():
            for p, g in zip(params, grads):
                p.grad = g.clone()
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            if call >= 5:
                times[name].append((time.perf_counter() - start) * 1e3)
            clipped.append(torch.cat([p.grad.flatten() for p in params]))
        scale = clipped[0].abs().max()
        for name, c in zip(variants, clipped):
            diffs[name] = max(diffs[name], ((c - clipped[0]).abs().max() / scale).item())
    print(f'AGC per call, TinyViM-{args.arch.upper()} ({len(params)} parameters'
          f'{", one row each" if args.host_only else ""}), {device}, {args.calls} calls\n')
    print('| variant | min ms | median ms | max difference from timm |\n|---|---|---|---|')
    for name, values in times.items():
        print(f'| {name} | {min(values):.2f} | {statistics.median(values):.2f} | '
              f'{diffs[name]:.1e} |')
    return times


if __name__ == '__main__':
    main()
