"""Timings of the trainable 2-D cross scan: the Triton op of :mod:`.cross_triton`
against mamba-ssm's ``selective_scan_cuda`` (when importable) and the torch backend,
each as the Laplace mixer runs it, on a CUDA device.

For the latter two the timed region includes what the model does around the scan:
the cross-scan gather of ``x`` into 4 sequences and the cross-merge of the 4 outputs
back onto the grid (``delta``, ``B``, ``C`` come out of the projections already in
scan order, so they are inputs there). The Triton op reads everything at its pixels.

``python -m tinyvim_mm.ops.scan.cross_triton_bench`` prints a markdown table.
"""
import argparse
import statistics
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .cross_triton import NUM_DIRECTIONS, cross_selective_scan_train, split_projection

Shape = Tuple[int, int, int, int]

#: (b, d, H, W): classification stages of TinyViM-S/B at 224 (scan at 7x7), detection at
#: 800x1333 (25x42 after the 1/32 pooling) and a larger map.
DEFAULT_SHAPES: Tuple[Shape, ...] = ((256, 12, 7, 7), (256, 96, 7, 7), (64, 168, 7, 7),
                                     (2, 96, 25, 42), (2, 192, 25, 42), (2, 96, 60, 70))
DEFAULT_DTYPES = (torch.float32, torch.bfloat16)


def _cross_scan(x: Tensor) -> Tensor:
    """The model's gather: ``(b, d, H, W) -> (b, 4, d, H*W)``, row-major, column-major,
    both reversed."""
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    xs = torch.stack([rows, cols], dim=1)
    return torch.cat([xs, xs.flip(-1)], dim=1)


def _cross_merge(ys: Tensor, height: int, width: int) -> Tensor:
    """The model's merge: ``(b, 4, d, H*W) -> (b, d, H, W)``."""
    b, _, d, _ = ys.shape
    ys = ys[:, :2] + ys[:, 2:].flip(-1)
    return ys[:, 0].view(b, d, height, width) + ys[:, 1].view(b, d, width, height).transpose(2, 3)


def _inputs(shape: Shape, dtype: torch.dtype, n_state: int, grad: bool) -> Dict[str, Tensor]:
    """Random inputs in both layouts: per pixel as the Triton op takes them (one
    channels-last projection ``proj`` holding ``delta``, ``B``, ``C``, as the mixer's
    fused path makes it) and in scan order as the model feeds the other backends."""
    b, d, height, width = shape
    length = height * width
    dev = dict(device='cuda')
    x = torch.randn(b, d, height, width, dtype=dtype, **dev)
    proj = torch.randn(b, height, width, NUM_DIRECTIONS * (d + 2 * n_state), dtype=dtype, **dev)
    proj[..., :NUM_DIRECTIONS * d] *= 0.5
    A = -torch.exp(torch.log(torch.arange(1, n_state + 1, **dev, dtype=torch.float32))
                   + 0.1 * torch.randn(NUM_DIRECTIONS * d, n_state, **dev))
    delta, B, C = split_projection(proj, d, n_state)
    t = dict(x=x, proj=proj, A=A, D=torch.randn(NUM_DIRECTIONS * d, **dev),
             bias=0.5 * torch.randn(NUM_DIRECTIONS * d, **dev))
    # scan order (b, 4d, L) / (b, 4, N, L), contiguous as the model's einsums produce them
    scan = [torch.stack([_cross_scan(v[:, k])[:, k] for k in range(NUM_DIRECTIONS)], 1)
            for v in (delta, B, C)]
    t['delta_seq'] = scan[0].reshape(b, NUM_DIRECTIONS * d, length).contiguous()
    t['B_seq'], t['C_seq'] = scan[1].contiguous(), scan[2].contiguous()
    if grad:
        for name in ('x', 'proj', 'A', 'D', 'bias', 'delta_seq', 'B_seq', 'C_seq'):
            t[name].requires_grad_()
    return t


def _model_path(backend: str, t: Dict[str, Tensor]) -> Tensor:
    """cross-scan gather -> ``selective_scan(backend)`` -> cross-merge, float32 out."""
    from tinyvim_mm.ops import selective_scan
    b, d, height, width = t['x'].shape
    us = _cross_scan(t['x']).reshape(b, NUM_DIRECTIONS * d, height * width)
    ys = selective_scan(us, t['delta_seq'], t['A'], t['B_seq'], t['C_seq'], t['D'], t['bias'],
                        delta_softplus=True, backend=backend)
    return _cross_merge(ys.view(b, NUM_DIRECTIONS, d, -1).float(), height, width)


def _triton_path(t: Dict[str, Tensor]) -> Tensor:
    return cross_selective_scan_train(t['x'], t['proj'], t['A'], t['D'], t['bias'])


def _forward_backward(run: Callable[[Dict[str, Tensor]], Tensor], inputs: Dict[str, Tensor],
                      grad_y: Tensor) -> None:
    run(inputs).backward(grad_y)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median of ``repeats`` CUDA-event timings of ``fn`` after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _kernel_ms(fn: Callable[[], object], repeats: int) -> float:
    """GPU time of ``fn`` (ms): its kernels' durations summed over ``repeats`` calls
    under ``torch.profiler``, divided by ``repeats``. Unlike :func:`_median_ms` this
    leaves out the gaps between launches, which at small sizes are the host's time."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    total_us = 0.0
    for event in prof.key_averages():
        device_us = getattr(event, 'device_time_total', None)  # cuda_time_total before 2.4
        total_us += event.cuda_time_total if device_us is None else device_us
    return total_us / 1e3 / repeats


def _backends() -> List[str]:
    from .cuda import extension_available
    return ['triton'] + (['cuda'] if extension_available() else []) + ['torch']


def benchmark(shapes: Sequence[Shape] = DEFAULT_SHAPES,
              dtypes: Sequence[torch.dtype] = DEFAULT_DTYPES, repeats: int = 20,
              n_state: int = 8) -> List[Dict[str, object]]:
    """Median times (ms, CUDA events: what eager mode spends, host gaps included) of the
    forward and of forward + backward, the GPU time of forward + backward (kernels only,
    ``torch.profiler``), and the peak memory of forward + backward above the inputs (MiB),
    for each shape ``(b, d, H, W)``, dtype (of ``x``, ``delta``, ``B``, ``C``) and backend
    (``'triton'``: this op; ``'cuda'``: mamba-ssm's kernel if importable; ``'torch'``).

    Raises:
        RuntimeError: without a CUDA device.
    """
    if not torch.cuda.is_available():
        raise RuntimeError('cross_triton_bench times CUDA kernels and needs a CUDA device; '
                           'none is available here.')
    rows = []
    for shape in shapes:
        for dtype in dtypes:
            for backend in _backends():
                run = _triton_path if backend == 'triton' else partial(_model_path, backend)
                with torch.no_grad():
                    inputs = _inputs(shape, dtype, n_state, grad=False)
                    fwd = _median_ms(partial(run, inputs), repeats)
                inputs = _inputs(shape, dtype, n_state, grad=True)
                step = partial(_forward_backward, run, inputs, torch.randn(shape, device='cuda'))
                step()
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                step()
                peak = (torch.cuda.max_memory_allocated() - base) / 2**20
                rows.append(dict(shape=tuple(shape), dtype=str(dtype).replace('torch.', ''),
                                 backend=backend, fwd_ms=fwd,
                                 fwd_bwd_ms=_median_ms(step, repeats),
                                 fwd_bwd_kernel_ms=_kernel_ms(step, repeats), peak_mib=peak))
                del inputs, step
    return rows


def markdown(rows: List[Dict[str, object]]) -> str:
    """``rows`` of :func:`benchmark` as a markdown table, with each backend's times over
    the Triton op's."""
    base: Dict[Tuple, Dict[str, object]] = {(r['shape'], r['dtype']): r for r in rows
                                            if r['backend'] == 'triton'}
    lines = ['| b, d, H, W | dtype | backend | fwd ms | fwd+bwd ms | x triton | '
             'fwd+bwd GPU ms | x triton | peak MiB |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        ref: Optional[Dict[str, object]] = base.get((r['shape'], r['dtype']))
        ratio = r['fwd_bwd_ms'] / ref['fwd_bwd_ms'] if ref else float('nan')
        gpu_ratio = r['fwd_bwd_kernel_ms'] / ref['fwd_bwd_kernel_ms'] if ref else float('nan')
        lines.append(f"| {', '.join(map(str, r['shape']))} | {r['dtype']} | {r['backend']} | "
                     f"{r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} | {ratio:.2f} | "
                     f"{r['fwd_bwd_kernel_ms']:.3f} | {gpu_ratio:.2f} | {r['peak_mib']:.1f} |")
    return '\n'.join(lines)


def _parse_shape(text: str) -> Shape:
    b, d, height, width = (int(v) for v in text.split(','))
    return b, d, height, width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--shapes', type=_parse_shape, nargs='+', default=list(DEFAULT_SHAPES),
                        help='b,d,H,W ...')
    parser.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'],
                        choices=['float32', 'float16', 'bfloat16'])
    parser.add_argument('--repeats', type=int, default=20)
    args = parser.parse_args()
    rows = benchmark(args.shapes, [getattr(torch, name) for name in args.dtypes], args.repeats)
    print(markdown(rows))


if __name__ == '__main__':
    main()
