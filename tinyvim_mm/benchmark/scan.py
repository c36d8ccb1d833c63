"""Selective-scan backends side by side: the flat ``selective_scan`` interface
(``ref``, ``torch``, ``cuda``, ``triton`` forward) on the same inputs, the Laplace
mixer's whole fused cross scan (Triton, forward and backward) through
:mod:`tinyvim_mm.ops.scan.cross_triton_bench`, and whole training steps of one model
whose backend is switched between interleaved rounds (:func:`model_steps_by_backend`)."""
import math
import statistics
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from tinyvim_mm.ops import (available_backends, default_chunk_size, selective_scan,
                            selective_scan_ref, selective_scan_torch)
from tinyvim_mm.ops.device import device_key, triton_unsupported

from .measure import heads_loss
from .timing import percentile, seconds_per_call, synchronize


def scan_inputs(batch: int, directions: int, d_inner: int, d_state: int, length: int,
                device: torch.device, dtype: torch.dtype, seed: int = 0) -> List[torch.Tensor]:
    """``(u, delta, A, B, C, D, delta_bias)`` as the mixer makes them: S4D-real ``A``,
    Mamba's ``dt`` initialisation, ``D`` ones; all requiring gradients."""
    gen = torch.Generator().manual_seed(seed)
    kd = directions * d_inner
    u = torch.randn(batch, kd, length, generator=gen)
    delta = 0.5 * torch.randn(batch, kd, length, generator=gen)
    A = -torch.exp(torch.log(torch.arange(1, d_state + 1.0))
                   + 0.1 * torch.randn(kd, d_state, generator=gen))
    B = torch.randn(batch, directions, d_state, length, generator=gen)
    C = torch.randn(batch, directions, d_state, length, generator=gen)
    D = torch.ones(kd)
    dt0 = torch.exp(torch.empty(kd).uniform_(math.log(1e-3), math.log(1e-1), generator=gen))
    delta_bias = dt0 + torch.log(-torch.expm1(-dt0))  # inverse softplus
    tensors = [u.to(dtype), delta.to(dtype), A, B.to(dtype), C.to(dtype), D, delta_bias]
    return [t.to(device).requires_grad_() for t in tensors]


def scan_backends(device: torch.device, dtype: torch.dtype, length: int,
                  chunk_sizes: Optional[Sequence[int]] = None, include_ref: bool = True
                  ) -> Tuple[Dict[str, Tuple[Callable, bool]], Dict[str, str]]:
    """``({name: (fn, differentiable)}, {name: why unavailable})`` for ``device``."""
    impls: Dict[str, Tuple[Callable, bool]] = {}
    missing: Dict[str, str] = {}
    if include_ref:
        impls['ref'] = (selective_scan_ref, True)
    for chunk in chunk_sizes or [default_chunk_size(length)]:
        impls[f'torch (chunk {chunk})'] = (
            lambda *a, chunk=chunk: selective_scan_torch(*a, chunk_size=chunk), True)
    if device.type != 'cuda':
        missing['cuda'] = missing['triton'] = f'needs a CUDA device (running on {device})'
        return impls, missing
    if 'cuda' in available_backends():
        impls['cuda'] = (lambda *a: selective_scan(*a, backend='cuda'), True)
    else:
        missing['cuda'] = "mamba-ssm's selective_scan_cuda extension does not import"
    reason = triton_unsupported(*device_key(device), dtype)
    if reason:
        missing['triton'] = reason
    else:  # forward only: with gradients the backend falls back to 'auto'
        impls['triton (fwd)'] = (lambda *a: selective_scan(*a, backend='triton'), False)
    return impls, missing


def compare_scans(inputs: List[torch.Tensor], impls: Dict[str, Tuple[Callable, bool]],
                  device: torch.device, repeats: int, warmup: int) -> Dict[str, Dict[str, Any]]:
    """Median and p90 ms of the forward (no grad) and of forward + backward (gradients
    of every input) per backend, timed in turns within each repeat so that load changes
    hit all alike; largest differences of outputs and gradients from the first backend."""
    gen = torch.Generator().manual_seed(1)
    grad_out = torch.randn(inputs[0].shape, generator=gen).to(device, inputs[0].dtype)

    def forward(fn: Callable) -> torch.Tensor:
        with torch.no_grad():
            return fn(*inputs)

    def forward_backward(fn: Callable) -> Tuple[torch.Tensor, ...]:
        return torch.autograd.grad(fn(*inputs), inputs, grad_out)

    base_name, (base, _) = next(iter(impls.items()))
    base_y, base_grads = forward(base), forward_backward(base)
    results: Dict[str, Dict[str, Any]] = {}
    for name, (fn, differentiable) in impls.items():
        y = forward(fn)
        res = dict(max_abs_diff_out=(y.float() - base_y.float()).abs().max().item(),
                   fwd=[], fwd_bwd=[] if differentiable else None)
        if differentiable:
            grads = forward_backward(fn)
            res['max_abs_diff_grad'] = max((g.float() - gb.float()).abs().max().item()
                                           for g, gb in zip(grads, base_grads))
        for _ in range(warmup):
            forward(fn)
            if differentiable:
                forward_backward(fn)
        results[name] = res
    synchronize(device)
    for _ in range(repeats):
        for name, (fn, differentiable) in impls.items():
            results[name]['fwd'].append(seconds_per_call(lambda: forward(fn), device, 1))
            if differentiable:
                results[name]['fwd_bwd'].append(
                    seconds_per_call(lambda: forward_backward(fn), device, 1))
    for name, res in results.items():
        for key in ('fwd', 'fwd_bwd'):
            samples = res.pop(key)
            res[f'{key}_ms'] = None if samples is None else statistics.median(samples) * 1e3
            res[f'{key}_p90_ms'] = None if samples is None else percentile(samples, 90) * 1e3
        res['speedup_fwd'] = results[base_name]['fwd_ms'] / res['fwd_ms']
        res['speedup_fwd_bwd'] = (None if res['fwd_bwd_ms'] is None else
                                  results[base_name]['fwd_bwd_ms'] / res['fwd_bwd_ms'])
    return results


def cross_scan(batch: int, d_inner: int, grid: Tuple[int, int], dtype: torch.dtype,
               repeats: int, device: torch.device) -> Tuple[Optional[List[dict]], str]:
    """The fused Triton cross scan (forward and backward) against the model's
    gather + scan + merge with the other backends, from
    ``tinyvim_mm.ops.scan.cross_triton_bench.benchmark``: ``(rows, markdown)``, or
    ``(None, why not)`` where it cannot run (no CUDA, module missing or failing)."""
    if device.type != 'cuda':
        return None, f'skipped: the fused cross scan needs a CUDA device (running on {device})'
    try:
        from tinyvim_mm.ops.scan import cross_triton_bench
    except ImportError as exc:  # hook: the module is being written alongside
        return None, f'not available: {exc}'
    try:
        rows = cross_triton_bench.benchmark([(batch, d_inner, *grid)], [dtype], repeats)
    except Exception as exc:  # reported, the flat comparison still stands
        return None, f'failed: {type(exc).__name__}: {exc}'
    return rows, cross_triton_bench.markdown(rows)


def scan_table(results: Dict[str, Dict[str, Any]], missing: Dict[str, str]) -> str:
    """Markdown table of :func:`compare_scans`' results, then the missing backends."""
    lines = ['| backend | fwd ms (p90) | fwd+bwd ms (p90) | × fwd | × fwd+bwd | max abs diff '
             'out / grad |', '|---|---|---|---|---|---|']
    for name, r in results.items():
        fwd_bwd = ('— (forward only)' if r['fwd_bwd_ms'] is None
                   else f'{r["fwd_bwd_ms"]:.3f} ({r["fwd_bwd_p90_ms"]:.3f})')
        speed_bwd = '—' if r['speedup_fwd_bwd'] is None else f'{r["speedup_fwd_bwd"]:.1f}'
        grad = r.get('max_abs_diff_grad')
        lines.append(f'| {name} | {r["fwd_ms"]:.3f} ({r["fwd_p90_ms"]:.3f}) | {fwd_bwd} | '
                     f'{r["speedup_fwd"]:.1f} | {speed_bwd} | {r["max_abs_diff_out"]:.1e} / '
                     f'{"—" if grad is None else f"{grad:.1e}"} |')
    lines += [f'| {name} | unavailable: {why} | | | | |' for name, why in missing.items()]
    return '\n'.join(lines)


def model_steps_by_backend(arch: str, batch: int, img_size: int, backends: Sequence[str],
                           device: torch.device, amp: bool = False, rounds: int = 12,
                           steps: int = 10, warmup: int = 5, seed: int = 0,
                           compile: Optional[dict] = None) -> Dict[str, Dict[str, float]]:
    """Training steps (forward, backward, AdamW) of one TinyViM classifier whose scan
    backend is switched between timings: ``rounds`` rounds of ``steps`` steps per backend,
    the order reversed every other round, so that the same weights, inputs and machine
    state serve every backend, and drifts of the host (which sets the pace of small
    batches) hit all alike. ``amp``: fp16 autocast with a loss scaler, channels-last
    (the configs' fast form); else float32, NCHW. ``compile``: ``torch.compile`` keyword
    arguments for the backbone (``dict(mode='reduce-overhead')``: compiled into CUDA graphs,
    as the ImageNet configs train; each backend is its own compiled graph).

    Returns:
        ``{backend: {median_ms, min_ms, img_per_s, speed}}`` per step; ``speed``: the
        median over rounds of the first backend's time over this one's.
    """
    from tinyvim_mm.models import TinyViMClassifier
    from tinyvim_mm.models.layers.laplace_mixer import SelectiveScan
    if rounds < 1 or steps < 1 or not backends:
        raise ValueError('model_steps_by_backend needs rounds >= 1, steps >= 1 and a backend')
    torch.manual_seed(seed)
    layout = torch.channels_last if amp else torch.contiguous_format
    model = TinyViMClassifier(arch).to(device, memory_format=layout).train()
    if compile is not None:
        model.backbone.compile(**compile)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, 3, img_size, img_size, generator=gen).to(device, memory_format=layout)
    target = torch.randint(0, 1000, (batch, ), generator=gen).to(device)
    scans = [m for m in model.modules() if isinstance(m, SelectiveScan)]

    def step() -> None:
        with torch.autocast(device.type, torch.float16, enabled=amp):
            loss = heads_loss(model(x), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def run(backend: str, count: int) -> float:
        for m in scans:
            m.backend = backend
        synchronize(device)
        return seconds_per_call(step, device, count)

    for backend in backends:
        run(backend, warmup)
    times: Dict[str, List[float]] = {b: [] for b in backends}
    for r in range(rounds):
        for backend in (backends if r % 2 == 0 else backends[::-1]):
            times[backend].append(run(backend, steps))
    first = times[backends[0]]
    return {b: dict(median_ms=statistics.median(t) * 1e3, min_ms=min(t) * 1e3,
                    img_per_s=batch / statistics.median(t),
                    speed=statistics.median(f / s for f, s in zip(first, t)))
            for b, t in times.items()}


def model_steps_table(results: Dict[str, Dict[str, float]]) -> str:
    """Markdown table of :func:`model_steps_by_backend`'s results."""
    lines = ['| backend | ms / step, median (min) | img/s | speed (× first) |',
             '|---|---|---|---|']
    lines += [f'| {b} | {r["median_ms"]:.2f} ({r["min_ms"]:.2f}) | {r["img_per_s"]:.1f} | '
              f'{r["speed"]:.3f} |' for b, r in results.items()]
    return '\n'.join(lines)
