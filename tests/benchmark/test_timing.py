"""tinyvim_mm.benchmark.timing: medians and percentiles, throughput and per-call
sampling, the time limit."""
import time

import pytest
import torch

from tinyvim_mm.benchmark.timing import (Timing, TimingConfig, measure, percentile,
                                         time_limit)

CPU = torch.device('cpu')


def test_percentile():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    assert percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_measure_throughput_and_per_call():
    calls = []
    config = TimingConfig(warmup=2, warmup_time=0, repeats=3, min_time=0.03)
    timing = measure(lambda: calls.append(time.sleep(0.002)), CPU, config)
    assert isinstance(timing, Timing) and len(timing.samples_s) == 3
    assert timing.iters >= 2  # each sample averages several calls to fill min_time / repeats
    assert 0.0015 < timing.median_s < 0.05 and timing.p90_s >= timing.median_s
    assert len(calls) == 2 + 1 + 3 * timing.iters  # warm-up, calibration, samples
    per_call = measure(lambda: time.sleep(0.001), CPU,
                       TimingConfig(warmup=0, warmup_time=0, repeats=4, min_time=0),
                       per_call=True)
    assert per_call.iters == 1 and len(per_call.samples_s) == 4
    assert per_call.as_dict()['ms'] == pytest.approx(per_call.median_s * 1e3, abs=1e-3)
    # warm-up lasts warmup_time at least
    calls.clear()
    measure(lambda: calls.append(time.sleep(0.002)), CPU,
            TimingConfig(warmup=1, warmup_time=0.05, repeats=1, min_time=0))
    assert len(calls) >= 10


def test_timing_config_is_checked():
    with pytest.raises(ValueError, match='invalid timing'):
        TimingConfig(repeats=0)


def test_time_limit():
    with pytest.raises(TimeoutError, match='0.2 s time limit'):
        with time_limit(0.2):
            time.sleep(2)
    with time_limit(0):  # no limit
        pass
