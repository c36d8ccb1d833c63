"""Measurements of one model under one treatment: inference throughput, latency, a
training step, end-to-end dense inference and backbone-only inference. Each returns a
dict of results (times in ms, throughput in img/s, peak memory in GB on CUDA)."""
import dataclasses
import time
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from tinyvim_mm.deploy import enable_cuda_graphs

from .models import ModelSpec, build_classifier, fold, optimize_tinyvim
from .synthetic import dense_inputs
from .timing import (TimingConfig, measure, peak_memory_gb, peak_memory_reset,
                     synchronize)
from .toolbox import build_model, load_config, scope_of
from .treatments import Treatment, compiled, graph_step, inference_step, place, place_input

#: Images whose outputs are compared with the float32 unfolded eager model.
NUM_PROBE = 8


@dataclasses.dataclass
class Context:
    """What every measurement shares: device, timing settings, weights seed, and the
    reference outputs computed so far."""
    device: torch.device
    timing: TimingConfig = TimingConfig()
    seed: int = 0
    references: Dict[Tuple, torch.Tensor] = dataclasses.field(default_factory=dict)


def _images(batch: int, size: Sequence[int], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.randn(batch, 3, *size, generator=gen)


def _first_call(step, device: torch.device) -> Tuple[Any, float]:
    begin = time.perf_counter()
    out = step()
    synchronize(device)
    return out, round(time.perf_counter() - begin, 3)


def _reference(ctx: Context, spec: ModelSpec, probe: torch.Tensor) -> torch.Tensor:
    """Float32 eager outputs of the unfolded model (TF32 off) for ``probe``."""
    key = (spec.zoo_key, tuple(probe.shape))
    if key not in ctx.references:
        base = dataclasses.replace(spec, name=spec.zoo_key, optimize=None)
        model = build_classifier(base, reparameterize=False, seed=ctx.seed).to(ctx.device)
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            with torch.no_grad():
                ctx.references[key] = model(probe.to(ctx.device)).float()
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return ctx.references[key]


def throughput(ctx: Context, spec: ModelSpec, treatment: Treatment, batch: int,
               img_size: Sequence[int]) -> Dict[str, Any]:
    """Inference img/s at ``batch``; ``rel_err``: relative L2 difference of the first
    outputs from the float32 unfolded eager model's."""
    treatment.check_device(ctx.device)
    x = _images(batch, img_size, ctx.seed)
    ref = _reference(ctx, spec, x[:NUM_PROBE])
    model = place(build_classifier(spec, treatment.reparameterize, ctx.seed), treatment,
                  ctx.device)
    step = inference_step(model, place_input(x, treatment, ctx.device), treatment, ctx.device)
    peak_memory_reset(ctx.device)
    out, first = _first_call(step, ctx.device)
    got = out[:len(ref)].float()
    rel_err = ((got - ref).norm() / ref.norm().clamp(min=1e-12)).item()
    timing = measure(graph_step(step, treatment, ctx.device), ctx.device, ctx.timing)
    return dict(batch=batch, img_per_s=batch / timing.median_s, first_call_s=first,
                rel_err=rel_err, peak_mem_gb=peak_memory_gb(ctx.device), **timing.as_dict())


def latency(ctx: Context, spec: ModelSpec, treatment: Treatment, batches: Sequence[int],
            img_size: Sequence[int]) -> Dict[str, Any]:
    """Per-call latency (median and p90, ms) at each batch size, each call timed alone."""
    treatment.check_device(ctx.device)
    model = place(build_classifier(spec, treatment.reparameterize, ctx.seed), treatment,
                  ctx.device)
    peak_memory_reset(ctx.device)
    per_batch: Dict[str, Any] = {}
    for batch in batches:
        x = place_input(_images(batch, img_size, ctx.seed), treatment, ctx.device)
        step = inference_step(model, x, treatment, ctx.device)
        _, first = _first_call(step, ctx.device)
        timing = measure(graph_step(step, treatment, ctx.device), ctx.device, ctx.timing,
                         per_call=True)
        per_batch[str(batch)] = dict(first_call_s=first, ms=round(timing.median_s * 1e3, 4),
                                     p90_ms=round(timing.p90_s * 1e3, 4),
                                     calls=len(timing.samples_s))
    return dict(batches=per_batch, peak_mem_gb=peak_memory_gb(ctx.device))


def heads_loss(output: Any, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, averaged over the heads of models that return several."""
    heads: List[torch.Tensor] = list(output) if isinstance(output, (tuple, list)) else [output]
    return sum(F.cross_entropy(h.float(), target) for h in heads) / len(heads)


def train_step(ctx: Context, spec: ModelSpec, treatment: Treatment, batch: int,
               img_size: Sequence[int]) -> Dict[str, Any]:
    """Forward, backward and AdamW step on random images and labels (training form, never
    folded; fp16 with a GradScaler, bf16 without); img/s and peak memory."""
    if treatment.cuda_graphs or treatment.half_weights:
        raise ValueError('training steps take no cuda_graphs / half_weights (autocast only)')
    model = place(build_classifier(spec, False, ctx.seed, train=True), treatment, ctx.device)
    fused = treatment.fused_optimizer
    if fused and ctx.device.type != 'cuda':
        raise ValueError(f'fused_optimizer needs a CUDA device, got {ctx.device}')
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.025,
                                  **({'fused': True} if fused else {}))
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=treatment.dtype == 'fp16')
    x = place_input(_images(batch, img_size, ctx.seed), treatment, ctx.device)
    gen = torch.Generator().manual_seed(ctx.seed + 2)
    target = torch.randint(0, 1000, (batch, ), generator=gen).to(ctx.device)
    fn = compiled(model, treatment)

    def step() -> torch.Tensor:
        with treatment.autocast(ctx.device):
            loss = heads_loss(fn(x), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss

    loss, first = _first_call(step, ctx.device)
    peak_memory_reset(ctx.device)
    timing = measure(step, ctx.device, ctx.timing)
    return dict(batch=batch, img_per_s=batch / timing.median_s, first_call_s=first,
                first_loss=loss.item(), peak_mem_gb=peak_memory_gb(ctx.device),
                **timing.as_dict())


def _config(spec: ModelSpec, treatment: Treatment, eager_only: bool):
    if spec.kind != 'config':
        raise ValueError(f'{spec.name}: dense and backbone measurements take a config')
    if eager_only and (treatment.compile or treatment.cuda_graphs):
        raise ValueError('end-to-end dense inference runs eager (no compile / CUDA graphs)')
    return load_config(spec.target, spec.cfg_options)


def toolbox_model(ctx: Context, spec: ModelSpec, treatment: Treatment, cfg) -> torch.nn.Module:
    """The model of ``cfg`` on the device in eval mode, folded / optimized as asked,
    the submodules the spec names replaying CUDA graphs."""
    torch.manual_seed(ctx.seed)
    model = build_model(cfg).eval()
    if spec.optimize is not None:
        optimize_tinyvim(model, spec.optimize)
    elif treatment.reparameterize:
        fold(model, 'config')
    model = place(model, treatment, ctx.device)
    for name in spec.cuda_graphs or ():
        try:
            module = model.get_submodule(name)
        except AttributeError as err:
            raise ValueError(f'{spec.name}: cuda_graphs names {name!r}, which the model '
                             f'({type(model).__name__}) does not have') from err
        enable_cuda_graphs(module)
    return model


def dense(ctx: Context, spec: ModelSpec, treatment: Treatment, batch: int,
          img_size: Sequence[int]) -> Dict[str, Any]:
    """Detector / segmentor inference end to end (``test_step``: data preprocessor,
    model, post-processing) on random images; a detector keeps 100 detections per
    image (score threshold 0), so its mask head always runs in full."""
    cfg = _config(spec, treatment, eager_only=True)
    scope = scope_of(cfg)
    rcnn = (cfg.model.get('test_cfg') or {}).get('rcnn')
    if scope == 'mmdet' and rcnn is not None:
        rcnn.score_thr = 0.0
    model = toolbox_model(ctx, spec, treatment, cfg)
    data = dense_inputs(scope, batch, img_size, ctx.device, ctx.seed)

    def step() -> Any:
        with torch.no_grad(), treatment.autocast(ctx.device):
            return model.test_step(data)

    peak_memory_reset(ctx.device)
    _, first = _first_call(step, ctx.device)
    timing = measure(step, ctx.device, ctx.timing)
    return dict(batch=batch, img_per_s=batch / timing.median_s, first_call_s=first,
                peak_mem_gb=peak_memory_gb(ctx.device), **timing.as_dict())


def backbone(ctx: Context, spec: ModelSpec, treatment: Treatment, batch: int,
             img_size: Sequence[int]) -> Dict[str, Any]:
    """The config's backbone alone on a ``(batch, 3, H, W)`` tensor."""
    treatment.check_device(ctx.device)
    cfg = _config(spec, treatment, eager_only=False)
    net = toolbox_model(ctx, spec, treatment, cfg).backbone
    x = place_input(_images(batch, img_size, ctx.seed), treatment, ctx.device)
    step = inference_step(net, x, treatment, ctx.device)
    peak_memory_reset(ctx.device)
    _, first = _first_call(step, ctx.device)
    timing = measure(graph_step(step, treatment, ctx.device), ctx.device, ctx.timing)
    return dict(batch=batch, img_per_s=batch / timing.median_s, first_call_s=first,
                peak_mem_gb=peak_memory_gb(ctx.device), **timing.as_dict())
