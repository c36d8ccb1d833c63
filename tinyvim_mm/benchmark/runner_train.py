"""Runner-level training benchmark: a config's real training loop through MMEngine's
``Runner`` (data preprocessor, model, losses, optimizer wrapper, parameter schedulers,
hooks, EMA), fed from memory.

Why the Runner and not ``model.train_step`` calls: the loop's own costs (hooks such as
EMA and logging, the optimizer wrapper's gradient clipping and loss scaling, batch
augmentations in the data preprocessor) are part of what a training recipe costs, and
the settings "released recipe vs our default" variants change (the configs'
``fast_training``: AMP, channels-last, fused AdamW, applied by ``FastTrainingRunner``
while the runner is built) only take effect there.

What is left out: files, JPEG decoding and CPU augmentations. The dataloader yields
already packed samples (as ``Pack*Inputs`` would: ``uint8`` images and labels, boxes and
masks or segmentation maps, see :mod:`.synthetic`), so the numbers measure the model and
the loop, not the data pipeline. It keeps the config's collate function, memory pinning
and (up to the CPUs there are) its data workers: as in real training, batches are
collated in worker processes while the main process trains, and only what the main
process does counts. Validation, checkpoint saving (once an epoch)
and the config's schedule length are replaced by a fixed number of iterations;
everything else is the config's.
"""
import dataclasses
import gc
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.hooks import Hook

from .measure import Context
from .models import ModelSpec
from .profile import LoopProfile
from .synthetic import PackedDataset, packed_samples
from .timing import peak_memory_gb, peak_memory_reset, percentile, synchronize
from .toolbox import find_value, load_config, scope_of, strip_pretrained

#: Distinct samples built per run (the dataset cycles over them).
POOL = 8


@dataclasses.dataclass(frozen=True)
class TrainVariant:
    """A variant of a config's training: ``--cfg-options`` style overrides, e.g.
    ``{'fast_training.channels_last': False}``."""
    name: str
    cfg_options: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(cls, entry: Any) -> 'TrainVariant':
        if isinstance(entry, str):
            return cls(entry)
        unknown = set(entry) - {'name', 'cfg_options'}
        if unknown or 'name' not in entry:
            raise ValueError(f'training variant {entry!r}: needs a name; unknown key(s) '
                             f'{sorted(unknown)}; valid: name, cfg_options')
        return cls(entry['name'], dict(entry.get('cfg_options') or {}))

    @property
    def label(self) -> str:
        return ', '.join(f'{k}={v}' for k, v in self.cfg_options.items()) or 'the config as is'


def default_size(cfg, scope: str) -> Tuple[int, int]:
    """The training input size the config's pipeline produces: the classification crop,
    the segmentation crop, the detection resize scale (``(1333, 800)`` -> ``(800, 1333)``)."""
    pipeline = cfg.train_dataloader.get('dataset', {}).get('pipeline') or []
    if scope == 'mmseg' and cfg.get('crop_size'):
        return tuple(cfg.crop_size)
    for step in pipeline:
        if scope == 'mmpretrain' and step.get('type') == 'RandomResizedCrop':
            scale = step['scale']
            return (scale, scale) if isinstance(scale, int) else (scale[1], scale[0])
        if scope == 'mmdet' and step.get('type') == 'Resize':
            return (min(step['scale']), max(step['scale']))
    raise ValueError('cannot tell the training input size from the config; give img_size')


def polygon_masks(cfg) -> bool:
    """Whether the config's training pipeline keeps instance masks as polygons
    (``LoadAnnotations(with_mask=True, poly2mask=False)``, as mmdet's ``*_poly`` recipes)."""
    pipeline = cfg.train_dataloader.get('dataset', {}).get('pipeline') or []
    return any(step.get('type') == 'LoadAnnotations' and step.get('with_mask')
               and step.get('poly2mask', True) is False for step in pipeline)


def prepare_config(cfg, variant: TrainVariant, work_dir: str, max_iters: int):
    """``cfg`` (in place) for a benchmark run of ``variant``: its overrides, no downloads,
    ``max_iters`` iterations without validation or checkpoints, quiet logs."""
    if variant.cfg_options:
        cfg.merge_from_dict(dict(variant.cfg_options))
    strip_pretrained(cfg.model)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                         val_interval=max_iters + 1)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator', 'load_from'):
        cfg[key] = None
    cfg.resume = False
    cfg.launcher = 'none'
    cfg.default_hooks.checkpoint = None
    if cfg.get('log_processor') is not None:
        cfg.log_processor.by_epoch = False
    cfg.work_dir = work_dir
    cfg.experiment_name = f'benchmark_{uuid.uuid4().hex[:8]}'
    if cfg.get('visualizer') is not None:  # a named one (mmdet, mmseg) would be reused,
        cfg.visualizer.name = cfg.experiment_name  # with the last run's deleted work dir
    cfg.log_level = 'WARNING'
    return cfg


def data_workers(cfg, workers: Optional[int] = None) -> int:
    """The data workers of a run: ``workers``, or the config's ``num_workers`` capped at
    the CPUs this process may use, less one for the main process."""
    if workers is not None:
        if workers < 0:
            raise ValueError(f'workers must be >= 0, got {workers}')
        return workers
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return max(0, min(int(cfg.train_dataloader.get('num_workers', 0)), (cpus or 1) - 1))


def _teacher_checkpoint(cfg, scope: str, work_dir: str) -> None:
    """Random weights for a distillation teacher, saved where the config reads them."""
    if not cfg.model.get('teacher'):
        return
    import importlib

    from .toolbox import quiet_logs
    registry = importlib.import_module(f'{scope}.registry')
    with quiet_logs():
        teacher = registry.MODELS.build(cfg.model.teacher)
    path = f'{work_dir}/teacher.pth'
    torch.save(teacher.state_dict(), path)
    cfg.model.teacher_checkpoint = path


class _PeakMemory(Hook):
    """The peak device memory of the iterations after the warm-up, read first thing after
    each (MMEngine's LogProcessor resets the peak statistics whenever it logs): allocated,
    and held (reserved by the caching allocator, CUDA-graph memory pools included: their
    activations are not counted as allocated once the graph is recorded)."""
    priority = 'HIGHEST'

    def __init__(self, device: torch.device, warmup: int) -> None:
        self.device = device
        self.warmup = warmup
        self.peak_gb: Optional[float] = None
        self.held_gb: Optional[float] = None

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        if batch_idx + 1 > self.warmup:
            peak = peak_memory_gb(self.device)
            if peak is not None:
                self.peak_gb = max(self.peak_gb or 0.0, peak)
                held = torch.cuda.max_memory_reserved(self.device) / 2**30
                self.held_gb = round(max(self.held_gb or 0.0, held), 3)


class _IterTimes(Hook):
    """Wall time of every iteration as the loop's host sees it, what of it went to waiting
    for the batch and to Python's garbage collector, the losses, and the peak-memory reset
    and a full garbage collection at the end of the warm-up.

    The device is synchronised only after the first iteration (its time: the compilation
    and the first launches) and where the timed window starts and ends (after the
    warm-up's last iteration and the timed ones' last): inside it the loop waits for the
    device where the loop itself does (MMEngine's RuntimeInfoHook reads the losses every
    iteration; ``fast_training.async_logging`` does not wait), so the window's mean is
    the loop's pace either way. The losses are kept on the device and read after training.
    """
    priority = 'LOWEST'

    def __init__(self, device: torch.device, warmup: int, iters: int) -> None:
        self.device = device
        self.warmup = warmup
        self.iters = iters
        self.stamps: List[float] = []
        self._losses: List[torch.Tensor] = []
        self.data_ms: List[float] = []  # waiting for the batch, per iteration
        self.gc_ms: List[float] = []  # Python's garbage collector, per iteration
        self._gc_total = 0.0
        self._gc_start = 0.0

    def _gc_callback(self, phase: str, info: Dict[str, int]) -> None:
        if phase == 'start':
            self._gc_start = time.perf_counter()
        else:
            self._gc_total += time.perf_counter() - self._gc_start

    def before_train(self, runner) -> None:
        synchronize(self.device)
        self.stamps.append(time.perf_counter())
        gc.callbacks.append(self._gc_callback)

    def after_train(self, runner) -> None:
        self.forget_gc()

    def forget_gc(self) -> None:
        """Stop timing the garbage collector (idempotent)."""
        if self._gc_callback in gc.callbacks:
            gc.callbacks.remove(self._gc_callback)

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self.data_ms.append((time.perf_counter() - self.stamps[-1]) * 1e3)

    @property
    def losses(self) -> List[float]:
        """The training loss of every iteration (reads them from the device)."""
        return [float(t) for t in self._losses]

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        if batch_idx + 1 in (1, self.warmup, self.warmup + self.iters):
            synchronize(self.device)
        if batch_idx + 1 == self.warmup:
            # A full collection now, in the last warm-up iteration: the warm-up (and a
            # compilation) leaves many new long-lived objects, whose first full collection
            # otherwise lands in one timed iteration (measured: 0.33 s of one of 20;
            # a long run spreads such rare pauses over thousands of iterations).
            gc.collect()
            peak_memory_reset(self.device)
        self.stamps.append(time.perf_counter())
        self.gc_ms.append(self._gc_total * 1e3)
        self._gc_total = 0.0
        if outputs and 'loss' in outputs:  # a copy: a CUDA graph's output is overwritten
            self._losses.append(torch.as_tensor(outputs['loss']).detach().clone())


#: The loop's boundaries that :class:`_Phases` marks, in order, each with the name of the
#: span it ends.
PHASE_MARKS = (('start', ''), ('preprocessed', 'preprocess'), ('features', 'backbone'),
               ('heads', 'neck (+ teacher)'), ('step', 'heads, losses, backward'),
               ('stepped', 'optimizer step'), ('end', 'hooks after the step'))


class _Phases(Hook):
    """Where the timed iterations' time goes on the device's timeline, without
    synchronising: CUDA events (on the CPU, clock readings) at the loop's boundaries,
    read after training. The boundaries: the iteration's start, the data preprocessor's
    end (Mixup / CutMix included), the neck's start (the backbone's end), the start of
    the heads' losses (``head.loss``, ``rpn_head.loss_and_predict``, ``bbox_head.loss``
    or ``decode_head.loss``; the distillation teacher runs between neck and head), the
    optimizer step's start and end (the backward, gradient clipping and loss scaling
    come before it), and the iteration's end (EMA and the other hooks). ``between`` is
    the device's time from one iteration's end to the next one's start (what the host
    does meanwhile: fetching the batch, the loop). Only modules outside
    ``torch.compile`` get hooks; a boundary the model does not have merges two spans.
    An iteration whose optimizer step was skipped (AMP overflow) is left out."""
    priority = 'LOWEST'

    def __init__(self, device: torch.device, first: int, iters: int) -> None:
        self.device, self.first, self.iters = device, first, iters
        self._marks: Dict[int, Dict[str, Any]] = {}
        self._undo: List[Callable[[], None]] = []
        self._iter: Optional[int] = None

    def _mark(self, name: str) -> None:
        if self._iter is None:
            return
        if self.device.type == 'cuda':
            if torch.cuda.is_current_stream_capturing():
                return
            stamp = torch.cuda.Event(enable_timing=True)
            stamp.record()
        else:
            stamp = time.perf_counter()
        self._marks[self._iter][name] = stamp

    def before_train(self, runner) -> None:
        from mmengine.model import is_model_wrapper
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        hook = lambda name: lambda *args: self._mark(name)  # noqa: E731
        handles = [model.data_preprocessor.register_forward_hook(hook('preprocessed'))]
        if isinstance(getattr(model, 'neck', None), torch.nn.Module):
            handles.append(model.neck.register_forward_pre_hook(hook('features')))
        optimizer = runner.optim_wrapper.optimizer
        handles += [optimizer.register_step_pre_hook(hook('step')),
                    optimizer.register_step_post_hook(hook('stepped'))]
        self._undo = [handle.remove for handle in handles]
        # the heads' losses are methods, not forwards: marked by a wrapper on the instance
        for head, method in (('head', 'loss'), ('rpn_head', 'loss_and_predict'),
                             ('bbox_head', 'loss'), ('decode_head', 'loss')):
            module = getattr(model, head, None)
            if isinstance(module, torch.nn.Module) and hasattr(module, method):
                self._undo.append(self._mark_before(module, method, 'heads'))
                break

    def _mark_before(self, obj: Any, method: str, name: str) -> Callable[[], None]:
        """Mark ``name`` before every call of ``obj.method``; returns the undo."""
        original = getattr(obj, method)

        def marked(*args: Any, **kwargs: Any) -> Any:
            self._mark(name)
            return original(*args, **kwargs)

        setattr(obj, method, marked)
        return lambda: delattr(obj, method)

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        timed = self.first <= batch_idx < self.first + self.iters
        self._iter = batch_idx if timed else None
        if timed:
            self._marks[batch_idx] = {}
            self._mark('start')

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        self._mark('end')
        self._iter = None

    def after_train(self, runner) -> None:
        self.remove()

    def remove(self) -> None:
        """Take the hooks and wrappers off (idempotent)."""
        for undo in self._undo:
            undo()
        self._undo = []

    def medians(self) -> Dict[str, float]:
        """Median ms of each span over the timed iterations that have all of theirs."""
        synchronize(self.device)

        def ms(a: Any, b: Any) -> float:
            return a.elapsed_time(b) if self.device.type == 'cuda' else (b - a) * 1e3

        present = {n for marks in self._marks.values() for n in marks}
        spans: Dict[str, List[float]] = {}
        previous_end = None
        for index in sorted(self._marks):
            marks = self._marks[index]
            if present <= set(marks):
                if previous_end is not None:
                    spans.setdefault('between', []).append(ms(previous_end, marks['start']))
                labels, last = [], 'start'
                for name, label in PHASE_MARKS[1:]:
                    labels.append(label)
                    if name in present:
                        spans.setdefault(', '.join(labels), []).append(
                            ms(marks[last], marks[name]))
                        labels, last = [], name
            previous_end = marks.get('end')
        return {name: round(statistics.median(v), 3) for name, v in spans.items()}


def _applied(runner) -> Dict[str, Any]:
    """What the built runner really trains with: optim wrapper, fused optimizer, memory
    format of the model's convolution weights, a compiled backbone, losses logged without
    waiting, the intra-op threads set for training (``None``: torch's default)."""
    from mmengine.optim import AmpOptimWrapper

    from tinyvim_mm.engine import AsyncRuntimeInfoHook
    wrapper = runner.optim_wrapper
    conv = next((m.weight for m in runner.model.modules()
                 if isinstance(m, torch.nn.Conv2d) and m.weight.dim() == 4), None)
    return dict(optim_wrapper=type(wrapper).__name__,
                amp=isinstance(wrapper, AmpOptimWrapper),
                fused_optimizer=bool(wrapper.optimizer.defaults.get('fused')),
                channels_last=conv is not None
                and conv.is_contiguous(memory_format=torch.channels_last)
                and not conv.is_contiguous(),
                compiled=getattr(getattr(runner.model, 'backbone', runner.model),
                                 '_compiled_call_impl', None) is not None,
                async_logging=any(isinstance(h, AsyncRuntimeInfoHook) for h in runner.hooks),
                host_threads=getattr(runner, 'fast_training', {}).get('host_threads') or None)


def runner_train(ctx: Context, spec: ModelSpec, variant: TrainVariant, iters: int,
                 warmup: int, batch: Optional[int] = None,
                 img_size: Optional[Sequence[int]] = None,
                 profile: int = 0, workers: Optional[int] = None,
                 profile_stats: Optional[str] = None) -> Dict[str, Any]:
    """Train ``warmup + iters`` iterations of ``spec``'s config under ``variant`` through
    MMEngine's ``Runner``; time the last ``iters`` (detection masks as bitmaps, or as
    polygons where the config's pipeline keeps them so). With ``profile`` > 0, that many
    more iterations follow under the profilers (not timed), the result under ``'profile'``
    (:func:`.profile.summarise` plus ``'host'``, the host's hot functions). ``workers``:
    data worker processes (default: :func:`data_workers`); ``profile_stats``: a file for
    the profiled iterations' whole ``cProfile`` statistics (``pstats`` format).

    Returns:
        img/s and iter/s over the timed iterations (their mean: the in-memory samples
        cycle through a few distinct batches, and where their iteration times differ, as
        Mask R-CNN's with their numbers of objects, a median jumps between them), mean,
        median and p90 ms per iteration, each timed iteration's ms (and of it, the ms
        spent waiting for the batch and in Python's garbage collector: where a stall
        comes from), the median ms of the loop's spans on the device's timeline
        (``phases_ms``, :class:`_Phases`), the first iteration's seconds, peak memory
        after the warm-up (GB, CUDA), first and last loss.
    """
    from tinyvim_mm.engine.runner import build_runner
    if spec.kind != 'config':
        raise ValueError(f'{spec.name}: the runner-level benchmark takes a config')
    if iters < 1 or warmup < 1:
        raise ValueError(f'iters and warmup must be >= 1, got {iters}, {warmup}')
    if profile < 0:
        raise ValueError(f'profile must be >= 0, got {profile}')
    cfg = load_config(spec.target, spec.cfg_options)
    scope = scope_of(cfg)
    batch = batch or cfg.train_dataloader.batch_size
    size = tuple(img_size) if img_size else default_size(cfg, scope)
    work_dir = tempfile.mkdtemp(prefix='tinyvim_bench_')
    benchmark_mode = torch.backends.cudnn.benchmark
    runner = timer = phases = None
    try:
        prepare_config(cfg, variant, work_dir, warmup + iters + profile)
        _teacher_checkpoint(cfg, scope, work_dir)
        torch.backends.cudnn.benchmark = bool(cfg.get('env_cfg', {}).get('cudnn_benchmark'))
        samples = packed_samples(scope, min(batch, POOL), size,
                                 find_value(cfg.model, 'num_classes') or 2, ctx.seed,
                                 polygons=polygon_masks(cfg))
        loader = cfg.train_dataloader  # its collate function and pinning are the config's
        collate = dict(loader.get('collate_fn') or dict(type='pseudo_collate'))
        pin_memory = bool(loader.get('pin_memory')) and ctx.device.type == 'cuda'
        workers = data_workers(cfg, workers)
        cfg.train_dataloader = dict(batch_size=batch, num_workers=0,
                                    dataset=dict(type='in-memory, set below'))
        runner = build_runner(cfg)
        runner._train_dataloader = runner.build_dataloader(dict(
            batch_size=batch, num_workers=workers, persistent_workers=workers > 0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=collate, pin_memory=pin_memory,
            dataset=PackedDataset(samples, batch * (warmup + iters + profile))))
        timer = _IterTimes(ctx.device, warmup, iters)
        memory = _PeakMemory(ctx.device, warmup)
        phases = _Phases(ctx.device, warmup, iters)
        runner.register_hook(phases, priority='LOWEST')  # marks the end before timer syncs
        runner.register_hook(timer, priority='LOWEST')
        runner.register_hook(memory, priority='HIGHEST')
        profiler = (LoopProfile(ctx.device, warmup + iters, profile, profile_stats)
                    if profile else None)
        if profiler is not None:
            runner.register_hook(profiler, priority='VERY_HIGH')
        runner.train()
        applied = _applied(runner)
    finally:
        torch.backends.cudnn.benchmark = benchmark_mode
        if timer is not None:
            timer.forget_gc()  # after_train does not run when training raised
            phases.remove()
        if runner is not None:  # its log file goes with the work dir; the logger stays current
            for handler in list(runner.logger.handlers):
                if isinstance(handler, logging.FileHandler):
                    runner.logger.removeHandler(handler)
                    handler.close()
        shutil.rmtree(work_dir, ignore_errors=True)
    times = [b - a for a, b in zip(timer.stamps, timer.stamps[1:])]
    timed = times[warmup:warmup + iters]
    mean = statistics.fmean(timed)
    losses = timer.losses
    if not all(math.isfinite(v) for v in losses):
        raise FloatingPointError(f'non-finite training loss: {losses}')
    return dict(batch=batch, img_size=list(size), workers=workers, img_per_s=batch / mean,
                iter_per_s=1 / mean, ms=round(mean * 1e3, 3),
                median_ms=round(statistics.median(timed) * 1e3, 3),
                p90_ms=round(percentile(timed, 90) * 1e3, 3), iters=len(timed),
                iter_ms=[round(t * 1e3, 2) for t in timed],
                data_ms=[round(t, 2) for t in timer.data_ms[warmup:warmup + iters]],
                gc_ms=[round(t, 2) for t in timer.gc_ms[warmup:warmup + iters]],
                phases_ms=phases.medians(),
                first_iter_s=round(times[0], 3), peak_mem_gb=memory.peak_gb,
                held_mem_gb=memory.held_gb,
                first_loss=losses[0] if losses else None,
                last_loss=losses[-1] if losses else None,
                cudnn_benchmark=bool(cfg.get('env_cfg', {}).get('cudnn_benchmark')), **applied,
                **({'profile': profiler.result} if profiler is not None else {}))
