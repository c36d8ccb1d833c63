"""Running sections: every measurement under a time limit, errors recorded (the run goes
on), later measurements skipped when the time budget runs short, the JSON rewritten
after each one."""
import gc
import importlib.metadata
import json
import math
import platform
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from tinyvim_mm.ops import available_backends
from tinyvim_mm.ops.device import DOT_MIN_CAPABILITY, device_key, triton_unsupported

from . import measure
from .measure import Context
from .models import ModelSpec
from .presets import STARTUP_S, Column, Section
from .runner_train import runner_train
from .timing import time_limit

PACKAGES = ('triton', 'timm', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'mmpretrain',
            'mamba_ssm')


def environment(device: torch.device) -> Dict[str, Any]:
    """Versions, the device and the settings that change timings."""
    env: Dict[str, Any] = dict(
        python=platform.python_version(), torch=torch.__version__, device=str(device),
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
        matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        scan_backends=available_backends(), threads=torch.get_num_threads())
    for name in PACKAGES:
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = 'not installed'
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, capability=f'{props.major}.{props.minor}',
                   sms=props.multi_processor_count,
                   memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    env['triton_scan'] = triton_unsupported(*device_key(device), torch.float16) or 'ok'
    env['triton_ffn'] = triton_unsupported(*device_key(device), torch.float16,
                                           DOT_MIN_CAPABILITY) or 'ok'
    return env


def measure_one(ctx: Context, section: Section, spec: ModelSpec,
                column: Column) -> Dict[str, Any]:
    """One cell of ``section``: ``spec`` under ``column``."""
    if section.kind == 'runner_train':
        return runner_train(ctx, spec, column.variant, section.iters, section.warmup,
                            section.batch, section.img_size, workers=section.workers)
    if section.kind == 'latency':
        return measure.latency(ctx, spec, column.treatment, section.batches, section.img_size)
    fn = getattr(measure, section.kind)
    return fn(ctx, spec, column.treatment, section.batch, section.img_size)


def section_cells(section: Section) -> List[Tuple[ModelSpec, Column]]:
    """The cells of ``section`` in the order :meth:`Suite.run` measures them."""
    if section.kind == 'runner_train':
        return [(spec, column) for spec in section.models for column in section.columns]
    return [(spec, column) for column in section.columns for spec in section.models]


class Suite:
    """Measures sections on ``device``, recording every cell.

    Args:
        device: where to run.
        json_path: rewritten after every measurement (``None``: no file).
        time_budget: seconds for the whole run; a measurement whose estimated cost
            (:meth:`Section.cost_s`) no longer fits is skipped (``None``: no budget).
        item_timeout: seconds one measurement may take.
        seed: weights and inputs seed.
        meta: extra JSON fields (the preset's name, the top-1 table).
        log: where progress lines go.
    """

    def __init__(self, device: torch.device, json_path: Optional[str] = None,
                 time_budget: Optional[float] = None, item_timeout: float = 300.0,
                 seed: int = 0, meta: Optional[Dict[str, Any]] = None,
                 log: Callable[[str], None] = print) -> None:
        self.device = device
        self.json_path = json_path
        self.deadline = time.monotonic() + time_budget if time_budget else None
        self.item_timeout = item_timeout
        self.seed = seed
        self.meta = dict(meta or {})
        self.log = log
        self.env = environment(device)
        self.sections: List[Section] = []
        self.records: List[Dict[str, Any]] = []

    def remaining(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def run(self, sections: List[Section]) -> List[Dict[str, Any]]:
        """Measure every cell, section by section; returns the records. Throughput-like
        sections go column by column (every model's first column before any second one:
        what is skipped when time runs short is the extra columns); ``runner_train``
        sections row by row, since their ratio compares the columns of one row (the
        released recipe and the default of one config, measured back to back, and
        complete when time runs short)."""
        self.sections = list(sections)
        total = STARTUP_S + sum(s.cost_s(c) * len(s.models) for s in sections
                                for c in s.columns)
        self.log(f'{sum(len(s.models) * len(s.columns) for s in sections)} measurements, '
                 f'about {total / 60:.1f} min on an H200')
        for index, section in enumerate(sections):
            ctx = Context(self.device, section.timing, self.seed)
            for spec, column in section_cells(section):
                self._run_cell(ctx, index, section, spec, column)
        self.save()
        return self.records

    def _run_cell(self, ctx: Context, index: int, section: Section, spec: ModelSpec,
                  column: Column) -> None:
        record: Dict[str, Any] = dict(section=index, kind=section.kind, model=spec.name,
                                      label=spec.label, column=column.name,
                                      treatment=column.label)
        name = f'[{len(self.records) + 1}] {section.kind} {spec.label} ({column.name})'
        cost = section.cost_s(column)
        if self.remaining() < cost:
            record['status'] = f'skipped: {max(self.remaining(), 0):.0f} s of the budget left'
            self.log(f'{name}: {record["status"]}')
            self._append(record)
            return
        self.log(f'{name} ...')
        start = time.monotonic()
        try:
            with time_limit(min(self.item_timeout, max(self.remaining(), 1.0))):
                record.update(measure_one(ctx, section, spec, column))
            record['status'] = 'ok'
        except Exception as exc:  # recorded: one broken cell must not end the run
            record.update(status='error', error=f'{type(exc).__name__}: {exc}'[:2000],
                          traceback=traceback.format_exc(limit=-8)[-4000:])
        finally:
            torch._dynamo.reset()
            gc.collect()
            if self.device.type == 'cuda':
                torch.cuda.empty_cache()
        record['wall_s'] = round(time.monotonic() - start, 1)
        self.log(f'    {summary(record)}')
        self._append(record)

    def _append(self, record: Dict[str, Any]) -> None:
        self.records.append(record)
        self.save()

    def save(self) -> None:
        """Write the JSON (``json_path``): environment, sections, records, ``meta``."""
        if not self.json_path:
            return
        path = Path(self.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = dict(self.meta, env=self.env, sections=[s.describe() for s in self.sections],
                    records=self.records)
        path.write_text(json.dumps(data, indent=1, default=str))


def summary(record: Dict[str, Any]) -> str:
    """One line for a finished measurement."""
    if record.get('status') != 'ok':
        return f'{record.get("status")}: {record.get("error", "")}'
    if record['kind'] == 'latency':
        text = ', '.join(f'b{b}: {v["ms"]:.3f} ms (p90 {v["p90_ms"]:.3f})'
                         for b, v in record['batches'].items())
    else:
        text = (f'{record["img_per_s"]:.1f} img/s, {record["ms"]:.2f} ms '
                f'(p90 {record["p90_ms"]:.2f})')
    if record.get('rel_err') is not None:
        text += f', rel err {record["rel_err"]:.1e}'
    if record.get('peak_mem_gb') is not None:
        text += f', peak {record["peak_mem_gb"]:.2f} GB'
    return text + f', {record["wall_s"]} s'
