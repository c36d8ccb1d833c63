"""Batch-1 latency on the CPU, timed side by side in one process, interleaved (A, B, C,
C, B, A, ...), with per-round ratios to a reference; in one of two runtimes:

- ``onnxruntime``: TinyViM classifiers and timm peers exported the same way (folded /
  reparameterized, opset 17, dynamic batch and size);
- ``torch``: PyTorch eager, the models as :mod:`tinyvim_mm.benchmark.models` names them
  (``tinyvim-s`` folded, ``tinyvim-s:fast`` the inference form, ``timm:NAME``
  reparameterized), optionally with model and input channels-last.

Two clocks: ``wall`` (what a deployment sees; noisy on a shared machine) and ``cpu``
(CPU time of the calling thread: with one intra-op thread both runtimes compute on the
caller, so time lost to other processes is not counted; repeatable within ~1 %)."""
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from tinyvim_mm.deploy import export_onnx
from tinyvim_mm.models import TinyViMClassifier
from .models import build_classifier, parse_model, randomise_bn, zoo_key

CLOCKS = {'wall': time.perf_counter, 'cpu': time.thread_time}
RUNTIMES = ('onnxruntime', 'torch')
#: Pause before each multi-threaded onnxruntime model's turn, long enough for the previous
#: session's spinning worker threads to park (see :func:`interleaved`).
SETTLE_S = 0.02


def export_model(name: str, path: Path, img_size: int = 224) -> Path:
    """``tinyvim-{s,b,l}`` (random weights, randomised BatchNorm statistics) or
    ``timm:NAME`` (reparameterized where timm can) as an ONNX file at ``path``."""
    torch.manual_seed(0)
    if name.startswith('tinyvim-'):
        if name not in ('tinyvim-s', 'tinyvim-b', 'tinyvim-l'):
            raise ValueError(f'{name!r}: onnxruntime takes tinyvim-s|b|l (exported in the one '
                             "export form); ':fast' forms are for the torch runtime")
        model = randomise_bn(TinyViMClassifier(name[-1], scan_backend='torch').eval())
        export_onnx(model, str(path), img_size)
        return path
    if not name.startswith('timm:'):
        raise ValueError(f"unknown model {name!r}: 'tinyvim-s|b|l' or 'timm:NAME'")
    import timm
    from timm.utils import reparameterize_model
    model = reparameterize_model(timm.create_model(name[5:], pretrained=False).eval()).eval()
    axes = {0: 'batch', 2: 'height', 3: 'width'}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(model, (torch.randn(1, 3, img_size, img_size), ), str(path),
                          opset_version=17, input_names=['input'], output_names=['logits'],
                          dynamo=False, dynamic_axes={'input': axes, 'logits': {0: 'batch'}})
    return path


def torch_model(name: str, channels_last: bool = False) -> nn.Module:
    """``name`` (see the module docstring) in eval mode on the CPU, random weights and
    randomised BatchNorm statistics; model channels-last if ``channels_last``."""
    model = build_classifier(parse_model(name), reparameterize=True)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def session(path: Path, threads: int):
    """An onnxruntime CPU session: ``threads`` intra-op threads, one inter-op, sequential,
    every graph optimization."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def interleaved(calls: Dict[str, Callable[[], object]], rounds: int, per_round: int,
                clock: Callable[[], float], warmup: int = 5,
                settle: float = 0.0) -> Dict[str, List[float]]:
    """Seconds per call of each callable, the callables taking turns every round (in
    alternating order), ``per_round`` timed calls each. Each turn starts with a pause of
    ``settle`` seconds and one untimed call: an onnxruntime session's worker threads keep
    spinning for a while after its call, and on a machine with as many cores as threads
    they would take the cores from the next session's call (on 2 cores and 2 threads,
    the same TinyViM-S graph timed right after another took 1.45x as long)."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            time.sleep(settle)
            calls[name]()
            for _ in range(per_round):
                start = clock()
                calls[name]()
                times[name].append(clock() - start)
    return times


def cpu_latency(models: Sequence[str], out_dir: Path, reference: Optional[str] = None,
                threads: int = 2, clock: str = 'wall', rounds: int = 30, per_round: int = 3,
                img_size: int = 224, runtime: str = 'onnxruntime',
                channels_last: bool = False) -> List[Dict[str, object]]:
    """Batch-1 latency (ms: median, p10, p90) of each model in ``runtime`` and the median
    of its per-round ratios to ``reference`` (default: the first model). ONNX files go
    to ``out_dir``; ``channels_last`` (``torch`` only): model and input channels-last."""
    if runtime not in RUNTIMES:
        raise ValueError(f'runtime must be one of {RUNTIMES}, got {runtime!r}')
    if channels_last and runtime != 'torch':
        raise ValueError('channels_last is a layout of the torch runtime; onnxruntime picks '
                         'its own')
    if clock not in CLOCKS:
        raise ValueError(f'clock must be one of {sorted(CLOCKS)}, got {clock!r}')
    if clock == 'cpu' and threads != 1:
        raise ValueError('the cpu clock counts the calling thread only: use threads=1')
    reference = reference or models[0]
    if reference not in models:
        raise ValueError(f'reference {reference!r} is not among the models {list(models)}')
    x = np.random.default_rng(0).standard_normal((1, 3, img_size, img_size), np.float32)
    calls = {}
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name in models:
            if runtime == 'torch':
                model = torch_model(name, channels_last)
                image = torch.from_numpy(x).contiguous(
                    memory_format=torch.channels_last if channels_last else torch.contiguous_format)
                calls[name] = torch.no_grad()(lambda model=model, image=image: model(image))
            else:
                path = export_model(name, out_dir / f'{name.replace(":", "_")}.onnx', img_size)
                sess = session(path, threads)
                calls[name] = lambda sess=sess: sess.run(None, {'input': x})
        settle = SETTLE_S if runtime == 'onnxruntime' and threads > 1 else 0.0
        times = interleaved(calls, rounds, per_round, CLOCKS[clock], settle=settle)
    finally:
        torch.set_num_threads(torch_threads)
    ref = np.asarray(times[reference]).reshape(rounds, per_round).mean(1)
    rows = []
    for name, samples in times.items():
        ms = np.asarray(samples) * 1e3
        per_round_ratio = np.asarray(samples).reshape(rounds, per_round).mean(1) / ref
        rows.append(dict(model=name, median_ms=float(np.median(ms)),
                         p10_ms=float(np.percentile(ms, 10)), p90_ms=float(np.percentile(ms, 90)),
                         ratio=float(statistics.median(per_round_ratio)), reference=reference,
                         threads=threads, clock=clock, runtime=runtime,
                         channels_last=channels_last))
    return rows


def latency_table(rows: List[Dict[str, object]], top1: Dict[str, float]) -> str:
    """Markdown: model, top-1, median / p10 / p90 ms, median per-round ratio."""
    ref = rows[0]['reference']
    lines = [f'| model | ImageNet top-1 | median ms | p10 | p90 | × {ref} (per-round median) |',
             '|---|---|---|---|---|---|']
    for row in rows:
        t1 = top1.get(zoo_key(row['model']))
        lines.append(f"| {row['model']} | {'—' if t1 is None else f'{t1:g}'} | "
                     f"{row['median_ms']:.2f} | {row['p10_ms']:.2f} | {row['p90_ms']:.2f} | "
                     f"{row['ratio']:.3f} |")
    return '\n'.join(lines) + '\n'
