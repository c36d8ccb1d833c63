"""Timing: warm-up, then CUDA-event (GPU) or ``perf_counter`` (CPU) timings, medians and
90th percentiles, and a wall-clock limit for one measurement."""
import contextlib
import dataclasses
import math
import signal
import statistics
import time
from typing import Any, Callable, Iterator, List, Sequence

import torch


@dataclasses.dataclass(frozen=True)
class TimingConfig:
    """How long to measure.

    Args:
        warmup: untimed calls first (after the first call, which is always untimed).
        warmup_time: and at least this many seconds of them (clocks and caches settle).
        repeats: timed samples (at least; latency takes more while ``min_time`` lasts).
        min_time: seconds of timed calls in all.
        max_iters: most calls in one throughput sample.
    """
    warmup: int = 3
    warmup_time: float = 0.2
    repeats: int = 5
    min_time: float = 1.0
    max_iters: int = 200

    def __post_init__(self) -> None:
        if (self.warmup < 0 or self.warmup_time < 0 or self.repeats < 1 or self.min_time < 0
                or self.max_iters < 1):
            raise ValueError(f'invalid timing settings: {self}')


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call: median and 90th percentile over ``samples`` (each the mean of
    ``iters`` calls)."""
    median_s: float
    p90_s: float
    samples_s: List[float]
    iters: int

    def as_dict(self) -> dict:
        return dict(ms=round(self.median_s * 1e3, 4), p90_ms=round(self.p90_s * 1e3, 4),
                    samples_ms=[round(s * 1e3, 4) for s in self.samples_s], iters=self.iters)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated."""
    if not values:
        raise ValueError('percentile of no values')
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def seconds_per_call(step: Callable[[], Any], device: torch.device, iters: int) -> float:
    """Mean seconds of ``iters`` back-to-back calls of ``step``, the queued device work
    included (CUDA events on a GPU)."""
    if device.type == 'cuda':
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        for _ in range(iters):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / iters
    begin = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - begin) / iters


def measure(step: Callable[[], Any], device: torch.device, config: TimingConfig,
            per_call: bool = False) -> Timing:
    """Time ``step`` after ``config.warmup`` calls (lasting ``warmup_time`` at least).

    Throughput (``per_call=False``): ``config.repeats`` samples, each the mean of as many
    back-to-back calls as fill ``min_time / repeats``. Latency (``per_call=True``): every
    call synchronised and timed alone, at least ``repeats`` calls and as many as fill
    ``min_time`` (at most 1000).
    """
    begin = time.perf_counter()
    calls = 0
    while calls < config.warmup or time.perf_counter() - begin < config.warmup_time:
        step()
        calls += 1
        if calls % 8 == 0:
            synchronize(device)  # the clock reads the device's pace, not the queue's
    synchronize(device)
    if per_call:
        samples: List[float] = []
        begin = time.perf_counter()
        while len(samples) < config.repeats or (
                time.perf_counter() - begin < config.min_time and len(samples) < 1000):
            samples.append(seconds_per_call(step, device, 1))
        iters = 1
    else:
        once = seconds_per_call(step, device, 1)
        budget = config.min_time / config.repeats
        iters = max(1, min(config.max_iters, math.ceil(budget / max(once, 1e-6))))
        samples = [seconds_per_call(step, device, iters) for _ in range(config.repeats)]
    return Timing(statistics.median(samples), percentile(samples, 90), samples, iters)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``TimeoutError`` in the main thread after ``seconds`` (Unix ``SIGALRM``;
    no limit where that is unavailable or ``seconds <= 0``)."""
    if seconds <= 0 or not hasattr(signal, 'SIGALRM'):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise TimeoutError(f'exceeded its {seconds:g} s time limit')

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def peak_memory_reset(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> Any:
    """Peak allocated device memory since the last reset, GB (``None`` on the CPU)."""
    if device.type != 'cuda':
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
