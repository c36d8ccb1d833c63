"""Where a model's time goes: kernel (GPU) or operator (CPU) time of repeated calls
under ``torch.profiler``, grouped into categories (scan, fused FFN, inductor's kernels,
convolution, matrix products, normalisation, pooling / resampling, elementwise, layout
copies).

On CUDA the device time of every kernel is summed (gaps between launches are not
counted; ``busy_fraction`` relates the sum to the wall time of the same calls); on the
CPU the operators' self time; :class:`LoopProfile` does it (and ``cProfile`` on the host)
for iterations of a training loop. Used by ``tools/profile_kernels.py``.
"""
import cProfile
import re
import time
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.hooks import Hook

from .timing import synchronize

#: (category, pattern) tried in order on a kernel / operator name (lower case).
CATEGORIES: Tuple[Tuple[str, str], ...] = (
    ('scan', r'scan|selective'),
    ('fused FFN', r'ffn'),
    # inductor's generated kernels, named after the ops they fuse (convolution bias adds,
    # norms, activations): one category, not that of the first op in the name
    ('compiled (inductor)', r'^triton_(poi|red|per)_'),
    ('convolution', r'conv|cudnn|implicit_gemm|dgrad|wgrad|fprop|nchwtonhwc|nhwctonchw'),
    ('matrix product', r'gemm|matmul|\bmm\b|addmm|bmm|linear|cutlass|sm\d+_xmma|ampere_|cublas'),
    ('normalisation', r'norm|welford|bn_'),
    ('pooling / resampling', r'pool|upsample|interp|bilinear|nearest'),
    ('layout copy', r'copy|transpose|permute|contiguous|\bcat\b|catarray|clone|index'),
    ('elementwise', r'elementwise|vectorized|triton_|unrolled|reduce|softplus|gelu|add|mul|exp'),
)


def categorise(name: str) -> str:
    """The category of a kernel or operator name (``'other'`` if none matches)."""
    lower = name.lower()
    for category, pattern in CATEGORIES:
        if re.search(pattern, lower):
            return category
    return 'other'


def _event_time_us(event: Any, device: torch.device) -> float:
    if device.type == 'cuda':
        device_us = getattr(event, 'device_time_total', None)  # cuda_time_total before 2.4
        return event.cuda_time_total if device_us is None else device_us
    return event.self_cpu_time_total


def kernel_profile(step: Callable[[], Any], device: torch.device, repeats: int = 5,
                   top: int = 15) -> Dict[str, Any]:
    """Profile ``repeats`` calls of ``step`` (after two warm-up calls).

    Returns:
        dict with ``total_ms`` (kernel / operator time per call), ``wall_ms`` (per call,
        same calls), ``busy_fraction``, ``categories`` (list of dicts: ``category``,
        ``ms``, ``share``, ``calls`` per call) sorted by time, and ``top`` kernels.
    """
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == 'cuda'
    for _ in range(2):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        begin = time.perf_counter()
        for _ in range(repeats):
            step()
        if cuda:
            torch.cuda.synchronize(device)
        wall_ms = (time.perf_counter() - begin) * 1e3 / repeats
    return summarise(prof, device, repeats, wall_ms, top)


def summarise(prof: Any, device: torch.device, repeats: int, wall_ms: float,
              top: int = 15) -> Dict[str, Any]:
    """:func:`kernel_profile`'s result from a finished ``torch.profiler.profile`` that
    covered ``repeats`` calls of ``wall_ms`` each."""
    cuda = device.type == 'cuda'
    per_name: Dict[str, List[float]] = defaultdict(lambda: [0.0, 0])
    for event in prof.key_averages():
        if cuda and getattr(event, 'device_type', None) is not None \
                and event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = _event_time_us(event, device)
        if us <= 0:
            continue
        per_name[event.key][0] += us / 1e3 / repeats
        per_name[event.key][1] += event.count / repeats
    total = sum(ms for ms, _ in per_name.values())
    grouped: Dict[str, List[float]] = defaultdict(lambda: [0.0, 0])
    for name, (ms, calls) in per_name.items():
        group = grouped[categorise(name)]
        group[0] += ms
        group[1] += calls
    categories = [dict(category=c, ms=ms, share=ms / total if total else 0.0, calls=calls)
                  for c, (ms, calls) in sorted(grouped.items(), key=lambda kv: -kv[1][0])]
    kernels = [dict(name=n, category=categorise(n), ms=ms, share=ms / total if total else 0.0,
                    calls=calls)
               for n, (ms, calls) in sorted(per_name.items(), key=lambda kv: -kv[1][0])[:top]]
    return dict(device=str(device), repeats=repeats, total_ms=total, wall_ms=wall_ms,
                busy_fraction=total / wall_ms if wall_ms else 0.0, categories=categories,
                top=kernels)


def profile_markdown(result: Dict[str, Any], title: str = '') -> str:
    """Markdown tables of :func:`kernel_profile`'s result: categories, then top kernels."""
    what = 'kernel' if result['device'].startswith('cuda') else 'operator (self CPU)'
    lines = [f'{title}: {what} time {result["total_ms"]:.3f} ms per call, wall '
             f'{result["wall_ms"]:.3f} ms (busy {100 * result["busy_fraction"]:.0f} %)\n'
             ] if title else []
    lines += ['| category | ms per call | share | count per call |', '|---|---|---|---|']
    lines += [f'| {c["category"]} | {c["ms"]:.3f} | {100 * c["share"]:.1f} % | {c["calls"]:.0f} |'
              for c in result['categories']]
    lines += ['', f'| top {what}s | category | ms per call | share | calls |',
              '|---|---|---|---|---|']
    lines += [f'| `{_short(k["name"])}` | {k["category"]} | {k["ms"]:.3f} | '
              f'{100 * k["share"]:.1f} % | {k["calls"]:.0f} |' for k in result['top']]
    return '\n'.join(lines)


def python_hotspots(profiler: Any, repeats: int, top: int = 25,
                    min_ms: float = 0.5) -> List[Dict[str, Any]]:
    """The functions of a finished ``cProfile.Profile`` that covered ``repeats`` calls
    (e.g. training iterations), by cumulative time per call: where the host's time goes.
    Functions under ``min_ms`` per call are left out; ``own_ms`` is the time spent in the
    function itself (for a CUDA synchronisation: waiting for the GPU)."""
    import pstats
    rows = []
    for (path, line, func), (_, calls, own, cumulative, _) in \
            pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        if cumulative * 1e3 / repeats < min_ms:
            continue
        where = f'{path.rsplit("site-packages/", 1)[-1]}:{line}' if line else path
        rows.append(dict(function=f'{func} ({where})', ms=cumulative * 1e3 / repeats,
                         own_ms=own * 1e3 / repeats, calls=calls / repeats))
    return sorted(rows, key=lambda r: -r['ms'])[:top]


def hotspots_markdown(rows: List[Dict[str, Any]]) -> str:
    """Markdown table of :func:`python_hotspots`."""
    lines = ['| host function | ms per call (cumulative) | own ms | calls per call |',
             '|---|---|---|---|']
    lines += [f'| `{_short(r["function"], 90)}` | {r["ms"]:.2f} | {r["own_ms"]:.2f} | '
              f'{r["calls"]:.0f} |' for r in rows]
    return '\n'.join(lines)


def _short(name: str, width: int = 70) -> str:
    name = name.replace('|', '/')
    return name if len(name) <= width else name[:width - 1] + '…'


def shares(result: Dict[str, Any], categories: Sequence[str]) -> float:
    """Summed share of ``categories`` in a :func:`kernel_profile` result."""
    return sum(c['share'] for c in result['categories'] if c['category'] in categories)


class LoopProfile(Hook):
    """``torch.profiler`` (kernels) and ``cProfile`` (host functions) over ``iters``
    iterations after the warm-up: what the loop spends on the device and on the host."""
    priority = 'VERY_HIGH'

    def __init__(self, device: torch.device, warmup: int, iters: int,
                 stats_file: Optional[str] = None) -> None:
        self.device, self.start, self.iters = device, warmup, iters
        self.stats_file = stats_file
        self.result: Optional[Dict[str, Any]] = None
        self._torch: Any = None
        self._python: Any = None
        self._begin = 0.0

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        if batch_idx != self.start:
            return
        from torch.profiler import ProfilerActivity, profile
        synchronize(self.device)
        cuda = self.device.type == 'cuda'
        self._torch = profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU])
        self._torch.__enter__()
        self._python = cProfile.Profile()
        self._begin = time.perf_counter()
        self._python.enable()

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        if batch_idx != self.start + self.iters - 1 or self._python is None:
            return
        synchronize(self.device)
        self._python.disable()
        wall_ms = (time.perf_counter() - self._begin) * 1e3 / self.iters
        self._torch.__exit__(None, None, None)
        self.result = summarise(self._torch, self.device, self.iters, wall_ms)
        self.result['host'] = python_hotspots(self._python, self.iters)
        if self.stats_file:
            self._python.dump_stats(self.stats_file)
