"""ONNX Runtime latency on the CPU: TinyViM classifiers and timm peers exported the same
way (folded / reparameterized, opset 17, dynamic batch and size), timed side by side in
one process, interleaved (A, B, C, C, B, A, ...), with per-round ratios to a reference.

Two clocks: ``wall`` (what a deployment sees; noisy on a shared machine) and ``cpu``
(CPU time of the calling thread: with one intra-op thread onnxruntime computes on the
caller, so time lost to other processes is not counted; repeatable within ~1 %)."""
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from tinyvim_mm.deploy import export_onnx
from tinyvim_mm.models import TinyViMClassifier
from .models import randomise_bn

CLOCKS = {'wall': time.perf_counter, 'cpu': time.thread_time}


def export_model(name: str, path: Path, img_size: int = 224) -> Path:
    """``tinyvim-{s,b,l}`` (random weights, randomised BatchNorm statistics) or
    ``timm:NAME`` (reparameterized where timm can) as an ONNX file at ``path``."""
    torch.manual_seed(0)
    if name.startswith('tinyvim-'):
        model = randomise_bn(TinyViMClassifier(name.split('-')[1], scan_backend='torch').eval())
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
                clock: Callable[[], float], warmup: int = 5) -> Dict[str, List[float]]:
    """Seconds per call of each callable, the callables taking turns every round (in
    alternating order), ``per_round`` calls each."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            for _ in range(per_round):
                start = clock()
                calls[name]()
                times[name].append(clock() - start)
    return times


def onnx_latency(models: Sequence[str], out_dir: Path, reference: Optional[str] = None,
                 threads: int = 2, clock: str = 'wall', rounds: int = 30, per_round: int = 3,
                 img_size: int = 224) -> List[Dict[str, object]]:
    """Batch-1 latency (ms: median, p10, p90) of each model and the median of its per-round
    ratios to ``reference`` (default: the first model)."""
    if clock not in CLOCKS:
        raise ValueError(f'clock must be one of {sorted(CLOCKS)}, got {clock!r}')
    if clock == 'cpu' and threads != 1:
        raise ValueError('the cpu clock counts the calling thread only: use threads=1')
    reference = reference or models[0]
    if reference not in models:
        raise ValueError(f'reference {reference!r} is not among the models {list(models)}')
    torch.set_num_threads(threads)
    x = np.random.default_rng(0).standard_normal((1, 3, img_size, img_size), np.float32)
    calls = {}
    for name in models:
        path = export_model(name, out_dir / f'{name.replace(":", "_")}.onnx', img_size)
        sess = session(path, threads)
        calls[name] = lambda sess=sess: sess.run(None, {'input': x})
    times = interleaved(calls, rounds, per_round, CLOCKS[clock])
    ref = np.asarray(times[reference]).reshape(rounds, per_round).mean(1)
    rows = []
    for name, samples in times.items():
        ms = np.asarray(samples) * 1e3
        per_round_ratio = np.asarray(samples).reshape(rounds, per_round).mean(1) / ref
        rows.append(dict(model=name, median_ms=float(np.median(ms)),
                         p10_ms=float(np.percentile(ms, 10)), p90_ms=float(np.percentile(ms, 90)),
                         ratio=float(statistics.median(per_round_ratio)), reference=reference,
                         threads=threads, clock=clock))
    return rows


def latency_table(rows: List[Dict[str, object]], top1: Dict[str, float]) -> str:
    """Markdown: model, top-1, median / p10 / p90 ms, median per-round ratio."""
    ref = rows[0]['reference']
    lines = [f'| model | ImageNet top-1 | median ms | p10 | p90 | × {ref} (per-round median) |',
             '|---|---|---|---|---|---|']
    for row in rows:
        t1 = top1.get(row['model'])
        lines.append(f"| {row['model']} | {'—' if t1 is None else f'{t1:g}'} | "
                     f"{row['median_ms']:.2f} | {row['p10_ms']:.2f} | {row['p90_ms']:.2f} | "
                     f"{row['ratio']:.3f} |")
    return '\n'.join(lines) + '\n'
