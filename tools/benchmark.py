"""Throughput of TinyViM (training form, deploy form, fast paths) and its peers,
measured side by side in one process.

Examples::

    # inference img/s of S/B/L, training form vs folded, fp16 autocast, batch 1024
    python tools/benchmark.py --arch s b l --form train deploy --dtype fp16
    # the fast paths: channels-last, fused Triton scan + FFN blocks, torch.compile
    python tools/benchmark.py --arch s --form deploy --channels-last --scan-backend triton \\
        --fuse-blocks --half-weights --compile
    # timm peers in the same run, a classifier / detector / segmentor config
    python tools/benchmark.py --arch s --compare --json bench.json
    python tools/benchmark.py --config configs/mask_rcnn_tinyvim_b.py --form deploy
    # training step (fwd + bwd + AdamW, AMP fp16 + GradScaler, batch 256)
    python tools/benchmark.py --train-step --arch s --batch-size 256 --channels-last --compile
    # everything the README table needs, one process (< ~7 min on an H100)
    python tools/benchmark.py --preset readme --json bench.json --plot bench.png

Timing: warm-up, then ``--repeats`` runs of enough iterations to last
``--min-time`` seconds each, timed with CUDA events; the median is reported.
Inference runs under ``torch.no_grad()``; fp16/bf16 mean autocast. Every
variant runs in a ``try`` (errors are recorded and the run goes on) under a
time limit, and the JSON is rewritten after each variant.
"""
import argparse
import contextlib
import dataclasses
import gc
import importlib.metadata
import json
import math
import platform
import signal
import statistics
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
from tinyvim_mm.deploy import optimize_for_inference  # noqa: E402
from tinyvim_mm.models import TinyViM  # noqa: E402
from tinyvim_mm.ops import available_backends  # noqa: E402
from tinyvim_mm.ops.device import DOT_MIN_CAPABILITY, device_key, triton_unsupported  # noqa: E402

PEERS = ('mobileone_s1', 'repvit_m1_1', 'efficientformer_l1', 'fastvit_t12', 'poolformer_s12',
         'mambaout_femto', 'resnet50')
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
DET_CONFIG = 'configs/mask_rcnn_tinyvim_b.py'
SEG_CONFIG = 'configs/fpn_tinyvim_b_ade20k_40k.py'
R50_MASK_RCNN = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
NUM_PROBE = 8  # samples compared with the float32 training-form reference
COMPILE_COST = 100.0  # seconds a compiled variant is budgeted (compile included)
EAGER_COST = 15.0


@dataclasses.dataclass
class Variant:
    """One measurement. ``model``: ``tinyvim-{s,b,l}``, ``timm:{name}`` or a
    config path; ``mode``: ``infer``, ``train-step``, ``det`` or ``seg``."""
    model: str
    mode: str = 'infer'
    form: str = 'train'
    dtype: str = 'fp16'
    batch: Any = 1024
    img_size: Tuple[int, int] = (224, 224)
    channels_last: bool = False
    compile: Optional[str] = None
    cuda_graphs: bool = False
    scan_backend: str = 'auto'
    fuse_blocks: bool = False
    fuse_max_channels: int = 128
    fold_axial: bool = False
    half_weights: bool = False
    fused_adamw: bool = False
    profile: bool = False
    tag: str = ''

    @property
    def label(self) -> str:
        name = Path(self.model).stem if self.model.endswith('.py') else self.model
        parts = [name, self.mode if self.mode != 'infer' else self.form, self.dtype]
        flags = [('cl', self.channels_last), (f'compile:{self.compile}', self.compile),
                 ('graphs', self.cuda_graphs), ('scan:' + self.scan_backend,
                                                 self.scan_backend != 'auto'),
                 (f'fused<={self.fuse_max_channels}', self.fuse_blocks),
                 ('axial7x7', self.fold_axial), ('half-w', self.half_weights),
                 ('fused-adamw', self.fused_adamw), ('profiled', self.profile)]
        return ' '.join(parts + [name for name, on in flags if on])


class Classifier(nn.Module):
    """The released TinyViM classifier in the mmpretrain layout (``backbone``,
    ``head.head``, ``head.dist_head``: converted released checkpoints load as
    they are): BN'd last stage -> GAP -> both heads; eval returns their
    average, training both."""

    def __init__(self, arch: str, scan_backend: str = 'auto', num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = TinyViM(arch, out_indices=(3, ), scan_backend=scan_backend)
        width = self.backbone.out_channels[-1]
        self.head = nn.Module()
        self.head.head = nn.Linear(width, num_classes)
        self.head.dist_head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor):
        pooled = self.backbone(x)[-1].mean((2, 3))
        head, dist = self.head.head(pooled), self.head.dist_head(pooled)
        return (head, dist) if self.training else (head + dist) / 2


class ConfigClassifier(nn.Module):
    """An mmpretrain classifier built from a config, called on image tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, mode='tensor')


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``TimeoutError`` in the main thread after ``seconds`` (Unix)."""
    if seconds <= 0 or not hasattr(signal, 'SIGALRM'):
        yield
        return

    def handler(signum, frame):
        raise TimeoutError(f'variant exceeded its {seconds:.0f} s limit')

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics, so that folding is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def environment(device: torch.device) -> Dict[str, Any]:
    """Versions, device and the settings that change timings."""
    env: Dict[str, Any] = dict(
        python=platform.python_version(), torch=torch.__version__, device=str(device),
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
        matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        scan_backends=available_backends(), threads=torch.get_num_threads())
    for name in ('triton', 'timm', 'mmcv', 'mmdet', 'mmsegmentation', 'mmpretrain', 'mamba_ssm'):
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = 'not installed'
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, capability=f'{props.major}.{props.minor}',
                   sms=props.multi_processor_count, memory_gb=round(props.total_memory / 2**30, 1),
                   cuda=torch.version.cuda)
    env['triton_scan'] = triton_unsupported(*device_key(device), torch.float16) or 'ok'
    env['triton_ffn'] = triton_unsupported(*device_key(device), torch.float16,
                                           DOT_MIN_CAPABILITY) or 'ok'
    return env


class Runner:
    """Runs variants one after the other, recording each (errors included)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.deadline = time.monotonic() + args.time_budget if args.time_budget else None
        self.results: List[Dict[str, Any]] = []
        self.env = environment(self.device)
        self.ratios: Dict[str, Any] = {}
        self._weights: Dict[str, Dict[str, torch.Tensor]] = {}
        self._references: Dict[Tuple, torch.Tensor] = {}

    # ----------------------------------------------------------------- bookkeeping
    def remaining(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def run(self, v: Variant, cost: Optional[float] = None) -> Dict[str, Any]:
        """Measure ``v``; skipped when less than ``cost`` seconds of the budget are left."""
        cost = cost if cost is not None else (COMPILE_COST if v.compile else EAGER_COST)
        record: Dict[str, Any] = dict(label=v.label, tag=v.tag, variant=dataclasses.asdict(v))
        index = len(self.results) + 1
        if self.remaining() < cost:
            record['status'] = f'skipped: {self.remaining():.0f} s of the time budget left'
            print(f'[{index}] {v.label}: {record["status"]}', flush=True)
            self._append(record)
            return record
        print(f'[{index}] {v.label} ...', flush=True)
        start = time.monotonic()
        try:
            limit = min(self.args.variant_timeout, max(self.remaining(), 1.0))
            with time_limit(limit):
                record.update(self._dispatch(v))
            record['status'] = 'ok'
        except Exception as exc:  # record and go on: one broken variant must not end the run
            record.update(status='error', error=f'{type(exc).__name__}: {exc}'[:2000],
                          traceback=traceback.format_exc(limit=-6)[-4000:])
        finally:
            self._cleanup()
        record['wall_s'] = round(time.monotonic() - start, 1)
        print(f'    {self._summary(record)}', flush=True)
        self._append(record)
        return record

    def _append(self, record: Dict[str, Any]) -> None:
        self.results.append(record)
        self.save()

    def _cleanup(self) -> None:
        """Free the variant's compiled code and device memory."""
        torch._dynamo.reset()
        if self.device.type == 'cuda':
            gc.collect()
            torch.cuda.empty_cache()

    @staticmethod
    def _summary(r: Dict[str, Any]) -> str:
        if r.get('status') != 'ok':
            return f'{r.get("status")}: {r.get("error", "")}'
        text = f'{r["img_per_s"]:.1f} img/s (batch {r["batch"]}, {r["ms_per_iter"]:.2f} ms/iter)'
        if r.get('peak_mem_gb') is not None:
            text += f', peak {r["peak_mem_gb"]:.2f} GB'
        if r.get('rel_diff') is not None:
            text += f', rel diff {r["rel_diff"]:.1e}'
        return text + f', first call {r.get("first_call_s", 0):.1f} s, {r["wall_s"]} s'

    def save(self) -> None:
        if self.args.json:
            Path(self.args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(self.args.json).write_text(json.dumps(
                dict(env=self.env, args={k: str(v) for k, v in vars(self.args).items()},
                     results=self.results, ratios=self.ratios), indent=1, default=str))

    # ----------------------------------------------------------------- models
    def _tinyvim(self, arch: str, scan_backend: str) -> Classifier:
        """A classifier with this run's deterministic weights for ``arch``."""
        if arch not in self._weights:
            torch.manual_seed(self.args.seed)
            model = Classifier(arch)
            randomise_bn(model, self.args.seed)
            self._weights[arch] = model.state_dict()
        model = Classifier(arch, scan_backend)
        model.load_state_dict(self._weights[arch])
        return model

    def build(self, v: Variant) -> Tuple[nn.Module, Optional[str]]:
        """``(model in its measured form, reference key or None)`` on the CPU."""
        if v.model.startswith('tinyvim-'):
            arch = v.model.split('-', 1)[1]
            model = self._tinyvim(arch, v.scan_backend).eval()
            key = arch
        elif v.model.startswith('timm:'):
            import timm
            from timm.utils import reparameterize_model
            torch.manual_seed(self.args.seed)
            model = timm.create_model(v.model[5:], pretrained=False).eval()
            return reparameterize_model(model), None
        else:
            torch.manual_seed(self.args.seed)  # the same weights for every form
            model, key = self._config_classifier(v.model), None
        if v.form == 'deploy':
            half = DTYPES[v.dtype] if v.half_weights and v.dtype != 'fp32' else None
            optimize_for_inference(model, fuse_blocks=v.fuse_blocks,
                                   max_fused_channels=v.fuse_max_channels,
                                   fold_axial=v.fold_axial, scan_backend=v.scan_backend,
                                   half=half)
        return model, key

    @staticmethod
    def _config_classifier(path: str) -> nn.Module:
        from mmengine.registry import init_default_scope
        from mmpretrain.registry import MODELS
        cfg = load_config(path)
        model_cfg = cfg.model
        if 'teacher' in model_cfg:  # distillation teacher: not part of the measured model
            model_cfg.teacher, model_cfg.teacher_checkpoint = None, None
        model_cfg.backbone.init_cfg = None
        init_default_scope(cfg.get('default_scope', 'mmpretrain'))
        return ConfigClassifier(MODELS.build(model_cfg)).eval()

    def reference(self, key: str, probe: torch.Tensor) -> torch.Tensor:
        """Float32 training-form eager logits of ``probe`` (TF32 off)."""
        cache_key = (key, tuple(probe.shape))
        if cache_key not in self._references:
            model = self._tinyvim(key, 'auto').eval().to(self.device)
            tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
            try:
                with torch.no_grad():
                    self._references[cache_key] = model(probe).float()
            finally:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        return self._references[cache_key]

    # ----------------------------------------------------------------- timing
    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def _time_iters(self, step: Callable[[], Any], iters: int) -> float:
        """Seconds per call of ``step`` over ``iters`` calls."""
        if self.device.type == 'cuda':
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

    def measure(self, step: Callable[[], Any]) -> Dict[str, Any]:
        """Warm-up, then the median over ``--repeats`` timed runs."""
        for _ in range(self.args.warmup):
            step()
        self._sync()
        once = self._time_iters(step, 1)
        iters = max(1, min(200, math.ceil(self.args.min_time / max(once, 1e-6))))
        samples = [self._time_iters(step, iters) for _ in range(self.args.repeats)]
        median = statistics.median(samples)
        return dict(ms_per_iter=median * 1e3, iters=iters,
                    spread=(max(samples) - min(samples)) / median,
                    samples_ms=[round(s * 1e3, 4) for s in samples])

    def _autocast(self, dtype: str, cache: bool = True):
        if dtype == 'fp32':
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[dtype], cache_enabled=cache)

    def _compile(self, module: nn.Module, v: Variant) -> Callable:
        mode = None if v.compile in (None, 'default') else v.compile
        if v.cuda_graphs and mode is None and self.device.type == 'cuda':
            mode = 'reduce-overhead'
        return torch.compile(module, mode=mode, backend=self.args.compile_backend)

    def _graph(self, step: Callable[[], Any]) -> Callable[[], Any]:
        """Capture ``step`` in a CUDA graph; the returned callable replays it."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = step()

        def replay():
            graph.replay()
            return out
        return replay

    def _peak_reset(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)

    def _peak(self) -> Optional[float]:
        if self.device.type != 'cuda':
            return None
        return round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)

    # ----------------------------------------------------------------- variants
    def _dispatch(self, v: Variant) -> Dict[str, Any]:
        if v.mode == 'infer':
            return self._infer(v)
        if v.mode == 'train-step':
            return self._train_step(v)
        return self._dense(v)

    def _max_batch(self, model: nn.Module, v: Variant, memory_format: torch.memory_format) -> int:
        """Largest power of two (from ``--max-batch-start`` to ``--max-batch-cap``)
        whose forward pass fits; eager, before any compilation."""
        best, batch = None, self.args.max_batch_start
        while batch <= self.args.max_batch_cap:
            try:
                x = torch.randn(batch, 3, *v.img_size, device=self.device)
                with torch.no_grad(), self._autocast(v.dtype):
                    model(x.contiguous(memory_format=memory_format))
                self._sync()
                best, batch = batch, batch * 2
            except torch.cuda.OutOfMemoryError:
                break
            finally:
                x = None
                gc.collect()
                if self.device.type == 'cuda':
                    torch.cuda.empty_cache()
        if best is None:
            raise RuntimeError(f'batch {self.args.max_batch_start} does not fit')
        return best

    def _infer(self, v: Variant) -> Dict[str, Any]:
        model, key = self.build(v)
        memory_format = torch.channels_last if v.channels_last else torch.contiguous_format
        model = model.to(self.device, memory_format=memory_format)
        batch = self._max_batch(model, v, memory_format) if v.batch == 'max' else int(v.batch)
        in_dtype = DTYPES[v.dtype] if v.half_weights else torch.float32
        gen = torch.Generator().manual_seed(self.args.seed + 1)
        x = torch.randn(batch, 3, *v.img_size, generator=gen)
        probe = x[:min(NUM_PROBE, batch)].clone()
        x = x.to(self.device, in_dtype).contiguous(memory_format=memory_format)
        fn = self._compile(model, v) if v.compile else model

        def step():
            with torch.no_grad(), self._autocast(v.dtype, cache=not v.cuda_graphs):
                return fn(x)

        self._peak_reset()
        begin = time.monotonic()
        out = step()
        self._sync()
        first_call = time.monotonic() - begin
        result: Dict[str, Any] = dict(batch=batch, first_call_s=round(first_call, 2))
        if key is not None:
            ref = self.reference(key, probe.to(self.device))
            got = out[:len(probe)].float()
            result.update(max_abs_diff=(got - ref).abs().max().item(),
                          rel_diff=((got - ref).norm() / ref.norm()).item())
        if v.cuda_graphs and not v.compile and self.device.type == 'cuda':
            step = self._graph(step)
        result.update(self.measure(step))
        result['peak_mem_gb'] = self._peak()
        result['img_per_s'] = batch / (result['ms_per_iter'] / 1e3)
        if v.profile:
            result['profile'] = self._profile(step)
        return result

    def _profile(self, step: Callable[[], Any]) -> str:
        """Top kernels of a few steps (``torch.profiler``)."""
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU]
        if self.device.type == 'cuda':
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities) as prof:
            for _ in range(3):
                step()
            self._sync()
        sort = 'self_cuda_time_total' if self.device.type == 'cuda' else 'self_cpu_time_total'
        table = prof.key_averages().table(sort_by=sort, row_limit=18, max_name_column_width=60)
        print(table, flush=True)
        return table

    def _train_step(self, v: Variant) -> Dict[str, Any]:
        arch = v.model.split('-', 1)[1]
        memory_format = torch.channels_last if v.channels_last else torch.contiguous_format
        model = self._tinyvim(arch, v.scan_backend).train()
        model = model.to(self.device, memory_format=memory_format)
        fused = v.fused_adamw and self.device.type == 'cuda'
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.025,
                                      **({'fused': True} if fused else {}))
        scaler = torch.amp.GradScaler(self.device.type, enabled=v.dtype == 'fp16')
        gen = torch.Generator().manual_seed(self.args.seed + 2)
        batch = int(v.batch)
        x = torch.randn(batch, 3, *v.img_size, generator=gen).to(self.device)
        x = x.contiguous(memory_format=memory_format)
        target = torch.randint(0, 1000, (batch, ), generator=gen).to(self.device)
        fn = self._compile(model, v) if v.compile else model

        def step():
            with self._autocast(v.dtype):
                head, dist = fn(x)
                loss = (F.cross_entropy(head, target) + F.cross_entropy(dist, target)) / 2
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            return loss

        begin = time.monotonic()
        first_loss = step().item()
        first_call = time.monotonic() - begin
        for _ in range(self.args.warmup):
            step()
        self._sync()
        self._peak_reset()
        result = dict(batch=batch, first_call_s=round(first_call, 2), first_loss=first_loss)
        result.update(self.measure(step))
        result['peak_mem_gb'] = self._peak()
        result['img_per_s'] = batch / (result['ms_per_iter'] / 1e3)
        return result

    def _dense(self, v: Variant) -> Dict[str, Any]:
        """Detector / segmentor inference through ``model.test_step`` on random
        images with real data samples (random weights)."""
        from mmengine.registry import init_default_scope
        cfg = load_config(v.model)
        cfg.model.backbone.init_cfg = None  # random weights: nothing to load or download
        if cfg.model.get('pretrained'):
            cfg.model.pretrained = None
        if v.mode == 'det':
            from mmdet.registry import MODELS
            # score threshold 0: the usual 100 detections per image reach the mask head
            cfg.model.test_cfg.rcnn.score_thr = 0.0
        else:
            from mmseg.registry import MODELS
        init_default_scope('mmdet' if v.mode == 'det' else 'mmseg')
        model = MODELS.build(cfg.model)
        if v.form == 'deploy' and isinstance(model.backbone, TinyViM):
            optimize_for_inference(model.backbone, fuse_blocks=v.fuse_blocks,
                                   max_fused_channels=v.fuse_max_channels,
                                   fold_axial=v.fold_axial, scan_backend=v.scan_backend)
        model = model.to(self.device).eval()
        batch = int(v.batch)
        data = dense_inputs(v.mode, batch, v.img_size, self.device)

        def step():
            with torch.no_grad(), self._autocast(v.dtype):
                return model.test_step(data)

        self._peak_reset()
        begin = time.monotonic()
        step()
        self._sync()
        result = dict(batch=batch, first_call_s=round(time.monotonic() - begin, 2))
        result.update(self.measure(step))
        result['peak_mem_gb'] = self._peak()
        result['img_per_s'] = batch / (result['ms_per_iter'] / 1e3)
        return result


def load_config(path: str):
    """A config from a file or an installed package (``mmdet::...``)."""
    from mmengine.config import Config
    if '::' in path:
        from mmengine.hub import get_config
        return get_config(path)
    return Config.fromfile(path if Path(path).is_file() else REPO / path)


def dense_inputs(mode: str, batch: int, size: Tuple[int, int], device: torch.device) -> dict:
    """``test_step`` data: random uint8 images and data samples with metainfo."""
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, *size), generator=gen, dtype=torch.uint8).to(device)
              for _ in range(batch)]
    if mode == 'det':
        from mmdet.structures import DetDataSample
        meta = dict(img_shape=size, ori_shape=size, scale_factor=(1.0, 1.0), img_id=0)
        samples = [DetDataSample(metainfo=meta) for _ in range(batch)]
    else:
        from mmseg.structures import SegDataSample
        meta = dict(img_shape=size, ori_shape=size, pad_shape=size)
        samples = [SegDataSample(metainfo=meta) for _ in range(batch)]
    return dict(inputs=images, data_samples=samples)


# --------------------------------------------------------------------- the preset
def _ok(record: Optional[Dict[str, Any]]) -> bool:
    return bool(record) and record.get('status') == 'ok'


def _best(records: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    done = [r for r in records if _ok(r)]
    return max(done, key=lambda r: r['img_per_s']) if done else None


def _ratio(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]]) -> Optional[float]:
    return round(a['img_per_s'] / b['img_per_s'], 3) if _ok(a) and _ok(b) else None


def _variant(record: Dict[str, Any]) -> Variant:
    fields = dict(record['variant'])
    fields['img_size'] = tuple(fields['img_size'])
    return Variant(**fields)


def preset_readme(runner: Runner) -> None:
    """Everything the README table and the issue's ratios need, most important first."""
    args = runner.args
    size = (args.img_size, args.img_size)
    batch = args.batch_size if args.batch_size not in (None, 'max') else 1024
    base = dict(dtype='fp16', batch=batch, img_size=size)
    compile_mode = None if args.skip_compile else (args.compile or 'default')

    # 1. training-form eager fp16: the released implementation's speed, the denominators
    baseline = {a: runner.run(Variant(f'tinyvim-{a}', tag=f'baseline-{a}', **base))
                for a in 'sbl'}
    # 2. deploy search on S, eager (cheap): each lever on top of the previous
    fast = dict(channels_last=True, scan_backend='triton', half_weights=True)
    candidates = [
        Variant('tinyvim-s', form='deploy', tag='search', **base),
        Variant('tinyvim-s', form='deploy', tag='search', channels_last=True, **base),
        Variant('tinyvim-s', form='deploy', tag='search', **fast, **base),
        Variant('tinyvim-s', form='deploy', tag='search', fuse_blocks=True, **fast, **base),
        Variant('tinyvim-s', form='deploy', tag='search', fuse_blocks=True, fold_axial=True,
                **fast, **base),
        Variant('tinyvim-s', form='deploy', tag='search', fuse_blocks=True,
                fuse_max_channels=256, **fast, **base),
    ]
    searched = [runner.run(v) for v in candidates]
    best_eager = _best(searched)
    best_flags = _variant(best_eager) if best_eager else candidates[2]
    # 3. the best eager flags under torch.compile
    compiled = None
    if compile_mode:
        compiled = runner.run(dataclasses.replace(best_flags, compile=compile_mode, tag='search'))
    best_s = _best([best_eager, compiled] if compiled else [best_eager])
    best_template = _variant(best_s) if best_s else best_flags
    best = {'s': best_s}
    # 4. B and L with the best flags (and the best eager flags, if compiled won)
    for arch in 'bl':
        rows = [runner.run(dataclasses.replace(best_template, model=f'tinyvim-{arch}',
                                               tag='best'))]
        if best_template.compile:
            rows.append(runner.run(dataclasses.replace(best_flags, model=f'tinyvim-{arch}',
                                                       tag='search')))
        best[arch] = _best(rows)
    # 5. peers: eager, fp16, channels-last, reparameterized
    peers = {p: runner.run(Variant(f'timm:{p}', tag='peer', channels_last=True, **base))
             for p in args.peers}
    # 6. training step: released-form eager vs channels-last + compile + fused AdamW
    train = dict(mode='train-step', dtype='fp16', batch=args.train_batch, img_size=size)
    train_base = runner.run(Variant('tinyvim-s', tag='train-baseline', **train))
    train_rows = [runner.run(Variant('tinyvim-s', tag='train-search', channels_last=True,
                                     fused_adamw=True, **train))]
    if compile_mode:
        train_rows.append(runner.run(Variant('tinyvim-s', tag='train-search', channels_last=True,
                                             fused_adamw=True, compile=compile_mode, **train),
                                     cost=2 * COMPILE_COST))
    # 7. detection and segmentation (float32, deploy backbone with the Triton scan)
    dense = {}
    if not args.skip_dense:
        det = dict(mode='det', dtype='fp32', batch=args.det_batch, img_size=tuple(args.det_shape))
        dense['det_tinyvim_b'] = runner.run(Variant(DET_CONFIG, form='deploy',
                                                    scan_backend='triton', tag='det', **det),
                                            cost=30)
        dense['det_r50'] = runner.run(Variant(R50_MASK_RCNN, tag='det', **det), cost=30)
        seg = dict(mode='seg', dtype='fp32', batch=args.seg_batch, img_size=tuple(args.seg_shape))
        dense['seg_tinyvim_b'] = runner.run(Variant(SEG_CONFIG, form='deploy',
                                                    scan_backend='triton', tag='seg', **seg),
                                            cost=30)
    # 8. training-form eager fp32
    baseline32 = {a: runner.run(Variant(f'tinyvim-{a}', tag=f'baseline-fp32-{a}',
                                        **dict(base, dtype='fp32'))) for a in 'sbl'}
    # 9. extras while the budget lasts: where the time goes, compiled peer
    if best_s:
        runner.run(dataclasses.replace(best_template, profile=True, tag='profile'))
    runner.run(Variant('tinyvim-s', profile=True, tag='profile', **base))
    if compile_mode:
        runner.run(Variant('timm:repvit_m1_1', tag='peer-compiled', channels_last=True,
                           compile=compile_mode, **base))

    best_train = _best(train_rows)
    runner.ratios = dict(
        deploy_vs_train_fp16={a: _ratio(best[a], baseline[a]) for a in 'sbl'},
        best_deploy_label={a: best[a]['label'] if best[a] else None for a in 'sbl'},
        train_fp16_vs_fp32={a: _ratio(baseline[a], baseline32[a]) for a in 'sbl'},
        tinyvim_s_vs_peers={p: _ratio(best['s'], r) for p, r in peers.items()},
        train_step=dict(
            speedup=_ratio(best_train, train_base),
            label=best_train['label'] if best_train else None,
            peak_mem_gb=dict(baseline=train_base.get('peak_mem_gb'),
                             optimized=best_train.get('peak_mem_gb') if best_train else None)),
        det_tinyvim_b_vs_r50=_ratio(dense.get('det_tinyvim_b'), dense.get('det_r50')),
        img_per_s={k: round(r['img_per_s'], 1) for k, r in dense.items() if _ok(r)})
    targets = dict(
        deploy_2x={a: (r or 0) >= 2.0 for a, r in runner.ratios['deploy_vs_train_fp16'].items()},
        s_beats_peers=all((r or 0) > 1.0 for r in runner.ratios['tinyvim_s_vs_peers'].values()),
        train_1p3x=(runner.ratios['train_step']['speedup'] or 0) >= 1.3)
    mem = runner.ratios['train_step']['peak_mem_gb']
    targets['train_mem_not_higher'] = (None not in mem.values()
                                       and mem['optimized'] <= mem['baseline'])
    runner.ratios['targets'] = targets


# --------------------------------------------------------------------- CLI runs
def variants_from_args(args: argparse.Namespace) -> List[Variant]:
    """The cartesian product the command line asks for."""
    flags = dict(channels_last=args.channels_last, compile=args.compile,
                 cuda_graphs=args.cuda_graphs, scan_backend=args.scan_backend,
                 fuse_blocks=args.fuse_blocks, fuse_max_channels=args.fuse_max_channels,
                 fold_axial=args.fold_axial, half_weights=args.half_weights,
                 profile=args.profile)
    size = (args.img_size, args.img_size)
    batch = args.batch_size or (256 if args.train_step else 1024)
    models = [f'tinyvim-{a}' for a in args.arch or []] + list(args.config or [])
    if not models and not args.compare:
        models = ['tinyvim-s']
    variants = []
    for model in models:
        mode = 'infer'
        if model.endswith('.py') or '::' in model:
            scope = load_config(model).get('default_scope', 'mmpretrain')
            mode = {'mmdet': 'det', 'mmseg': 'seg'}.get(scope, 'infer')
        for dtype in args.dtype:
            if args.train_step:
                variants.append(Variant(model, mode='train-step', dtype=dtype, batch=batch,
                                        img_size=size, fused_adamw=args.fused_adamw, **flags))
                continue
            for form in args.form:
                if mode == 'det':
                    dense = dict(batch=args.det_batch, img_size=tuple(args.det_shape))
                elif mode == 'seg':
                    dense = dict(batch=args.seg_batch, img_size=tuple(args.seg_shape))
                else:
                    dense = dict(batch=batch, img_size=size)
                variants.append(Variant(model, mode=mode, form=form, dtype=dtype, **dense,
                                        **flags))
    if args.compare and not args.train_step:
        peer_flags = dict(channels_last=args.channels_last, compile=args.compile)
        variants += [Variant(f'timm:{p}', dtype=d, batch=batch, img_size=size, tag='peer',
                             **peer_flags) for p in args.peers for d in args.dtype]
    return variants


def print_table(results: List[Dict[str, Any]]) -> None:
    """One row per variant; ``x base``: over the first training-form eager fp16
    inference of the same model."""
    base: Dict[str, Dict[str, Any]] = {}
    for r in results:
        v = r['variant']
        if (_ok(r) and (v['mode'], v['form'], v['dtype']) == ('infer', 'train', 'fp16')
                and not v['compile']):
            base.setdefault(v['model'], r)
    print(f'\n{"variant":<72} {"batch":>6} {"img/s":>10} {"ms/iter":>9} {"x base":>7} '
          f'{"peak GB":>8} {"rel diff":>9}')
    for r in results:
        if not _ok(r):
            print(f'{r["label"]:<72} {r.get("status", "")[:60]}')
            continue
        ref = base.get(r['variant']['model'])
        ratio = (f'{r["img_per_s"] / ref["img_per_s"]:.2f}'
                 if ref and r['variant']['mode'] == 'infer' else '-')
        mem = '-' if r.get('peak_mem_gb') is None else f'{r["peak_mem_gb"]:.2f}'
        rel = '-' if r.get('rel_diff') is None else f'{r["rel_diff"]:.1e}'
        print(f'{r["label"]:<72} {r["batch"]:>6} {r["img_per_s"]:>10.1f} '
              f'{r["ms_per_iter"]:>9.2f} {ratio:>7} {mem:>8} {rel:>9}')


def plot(results: List[Dict[str, Any]], path: str) -> None:
    """Bar chart of img/s: inference (TinyViM forms and peers), training step, dense."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = [('inference', [r for r in results if _ok(r) and r['variant']['mode'] == 'infer']),
              ('training step',
               [r for r in results if _ok(r) and r['variant']['mode'] == 'train-step']),
              ('detection / segmentation',
               [r for r in results if _ok(r) and r['variant']['mode'] in ('det', 'seg')])]
    groups = [(title, rows) for title, rows in groups if rows]
    if not groups:
        return
    heights = [max(1.5, 0.28 * len(rows) + 0.8) for _, rows in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(11, sum(heights)),
                             gridspec_kw=dict(height_ratios=heights), squeeze=False)
    for ax, (title, rows) in zip(axes[:, 0], groups):
        colours = ['tab:gray' if r['variant']['model'].startswith(('timm:', 'mmdet::')) else
                   'tab:blue' if r['variant']['form'] == 'deploy' else 'tab:orange' for r in rows]
        ax.barh(range(len(rows)), [r['img_per_s'] for r in rows], color=colours)
        ax.set_yticks(range(len(rows)), [r['label'] for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('img/s')
        for i, r in enumerate(rows):
            ax.text(r['img_per_s'], i, f' {r["img_per_s"]:.0f}', va='center', fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', nargs='+', choices=['s', 'b', 'l'])
    parser.add_argument('--config', nargs='+', help='classifier / detector / segmentor configs')
    parser.add_argument('--dtype', nargs='+', default=['fp16'], choices=sorted(DTYPES))
    parser.add_argument('--batch-size', type=lambda s: s if s == 'max' else int(s),
                        help="images per iteration or 'max' (largest power of two that fits); "
                        'default 1024 (256 with --train-step)')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--form', nargs='+', default=['train'], choices=['train', 'deploy'])
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--compile', nargs='?', const='default', default=None,
                        help='torch.compile, optionally with a mode (max-autotune, ...)')
    parser.add_argument('--compile-backend', default='inductor')
    parser.add_argument('--cuda-graphs', action='store_true')
    parser.add_argument('--scan-backend', default='auto',
                        choices=['auto', 'cuda', 'torch', 'ref', 'triton'])
    parser.add_argument('--fuse-blocks', action='store_true',
                        help='deploy: Triton-fused FFN blocks (see --fuse-max-channels)')
    parser.add_argument('--fuse-max-channels', type=int, default=128)
    parser.add_argument('--fold-axial', action='store_true',
                        help="deploy: the mixers' 7x1 / 1x7 pair as one 7x7 depth-wise conv")
    parser.add_argument('--half-weights', action='store_true',
                        help='deploy: conv / linear weights (and input) in the autocast dtype')
    parser.add_argument('--compare', action='store_true', help='also time the timm peers')
    parser.add_argument('--peers', nargs='+', default=list(PEERS))
    parser.add_argument('--train-step', action='store_true',
                        help='time fwd + bwd + AdamW steps (AMP with GradScaler for fp16)')
    parser.add_argument('--fused-adamw', action='store_true')
    parser.add_argument('--preset', choices=['readme'])
    parser.add_argument('--skip-compile', action='store_true',
                        help='preset: leave out the torch.compile variants')
    parser.add_argument('--skip-dense', action='store_true',
                        help='preset: leave out detection / segmentation')
    parser.add_argument('--train-batch', type=int, default=256)
    parser.add_argument('--det-shape', type=int, nargs=2, default=[800, 1333])
    parser.add_argument('--det-batch', type=int, default=2)
    parser.add_argument('--seg-shape', type=int, nargs=2, default=[512, 512])
    parser.add_argument('--seg-batch', type=int, default=8)
    parser.add_argument('--profile', action='store_true', help='print the top kernels')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--min-time', type=float, default=0.5,
                        help='seconds each timed repeat lasts at least')
    parser.add_argument('--max-batch-start', type=int, default=64)
    parser.add_argument('--max-batch-cap', type=int, default=8192)
    parser.add_argument('--time-budget', type=float, default=None,
                        help='seconds for the whole run; later variants are skipped '
                        '(default: none, 400 for the preset)')
    parser.add_argument('--variant-timeout', type=float, default=240.0)
    parser.add_argument('--no-cudnn-benchmark', action='store_true')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='write all results here (after every variant)')
    parser.add_argument('--plot', help='write a bar chart (PNG) here')
    args = parser.parse_args(argv)
    if args.preset and args.time_budget is None:
        args.time_budget = 400.0
    if args.preset:
        args.repeats = min(args.repeats, 3)
    return args


def main(argv: Optional[List[str]] = None) -> Runner:
    args = parse_args(argv)
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    runner = Runner(args)
    gc.freeze()  # what is imported by now stays: later collections skip it
    print(json.dumps(runner.env), flush=True)
    if args.preset == 'readme':
        preset_readme(runner)
    else:
        for v in variants_from_args(args):
            runner.run(v)
    runner.save()
    print_table(runner.results)
    if runner.ratios:
        print('\nratios:', json.dumps(runner.ratios, indent=1), flush=True)
    if args.plot:
        plot(runner.results, args.plot)
    return runner


if __name__ == '__main__':
    main()
