"""Treatments: what is done to every model of a table alike — precision, memory layout,
folding, ``torch.compile``, CUDA graphs — and the step functions they produce."""
import contextlib
import dataclasses
from typing import Any, Callable, ContextManager, Dict, Optional

import torch
import torch.nn as nn

from tinyvim_mm.ops.cuda_graphs import capture

DTYPES: Dict[str, torch.dtype] = {
    'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class Treatment:
    """How a model runs.

    Args:
        dtype: ``'fp32'``, or ``'fp16'`` / ``'bf16'`` autocast.
        half_weights: also store conv / linear weights (and the input) in ``dtype``.
        channels_last: model and input in channels-last memory format (else the input
            in NCHW and the model's weights as built: TinyViM's inference form keeps its
            backbone channels-last, as ``tools/test.py --deploy`` runs it).
        reparameterize: fold the model where it can be folded (TinyViM: its rep layers;
            timm: ``timm.utils.reparameterize_model``; toolbox models: ``switch_to_deploy``).
        compile: ``torch.compile`` the model (``compile_mode``, ``compile_backend``).
        cuda_graphs: replay the step as a CUDA graph (compiled: ``'reduce-overhead'``).
        fused_optimizer: fused AdamW (training steps only).
    """
    dtype: str = 'fp32'
    half_weights: bool = False
    channels_last: bool = False
    reparameterize: bool = True
    compile: bool = False
    compile_mode: Optional[str] = None
    compile_backend: str = 'inductor'
    cuda_graphs: bool = False
    fused_optimizer: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f'unknown dtype {self.dtype!r}; valid: {", ".join(DTYPES)}')
        if self.half_weights and self.dtype == 'fp32':
            raise ValueError("half_weights needs dtype 'fp16' or 'bf16'")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def label(self) -> str:
        """E.g. ``'fp16, channels-last, folded, compiled'``."""
        parts = [self.dtype if self.dtype == 'fp32' else f'{self.dtype} autocast']
        flags = [('half weights', self.half_weights), ('channels-last', self.channels_last),
                 ('folded', self.reparameterize),
                 ('compiled' + (f' ({self.compile_mode})' if self.compile_mode else ''),
                  self.compile),
                 ('CUDA graphs', self.cuda_graphs), ('fused AdamW', self.fused_optimizer)]
        return ', '.join(parts + [name for name, on in flags if on])

    def replace(self, **changes: Any) -> 'Treatment':
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f'unknown treatment option(s) {sorted(unknown)}; valid: '
                             f'{[f.name for f in dataclasses.fields(self)]}')
        return dataclasses.replace(self, **changes)

    def check_device(self, device: torch.device) -> None:
        """Raise ``ValueError`` where the device cannot apply this treatment."""
        if self.cuda_graphs and device.type != 'cuda':
            raise ValueError(f'cuda_graphs needs a CUDA device, got {device}')

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, device: torch.device, cache: bool = True) -> ContextManager:
        """Autocast to ``dtype`` (nothing for fp32)."""
        if self.dtype == 'fp32':
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.torch_dtype, cache_enabled=cache)


def cast_weights(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Conv / linear weights in ``dtype`` (norms and SSM parameters stay float32), in
    place: one rule for every model."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.to(dtype)
    return model


def place(model: nn.Module, treatment: Treatment, device: torch.device) -> nn.Module:
    """``model`` with ``treatment``'s weights and memory format, on ``device``."""
    if treatment.half_weights:
        cast_weights(model, treatment.torch_dtype)
    if treatment.channels_last:
        model.to(memory_format=torch.channels_last)
    return model.to(device)


def place_input(x: torch.Tensor, treatment: Treatment, device: torch.device) -> torch.Tensor:
    dtype = treatment.torch_dtype if treatment.half_weights else torch.float32
    return x.to(device, dtype).contiguous(memory_format=treatment.memory_format)


def compiled(fn: Callable, treatment: Treatment) -> Callable:
    """``fn`` under ``torch.compile`` if the treatment asks for it."""
    if not treatment.compile:
        return fn
    mode = treatment.compile_mode
    if treatment.cuda_graphs and mode is None:
        mode = 'reduce-overhead'
    return torch.compile(fn, mode=mode, backend=treatment.compile_backend)


def cuda_graph(step: Callable[[], Any]) -> Callable[[], Any]:
    """Capture ``step`` (after 3 warm-up calls on a side stream) in a CUDA graph; the
    returned callable replays it and returns the captured output."""
    graph, out = capture(step, warmup=3)

    def replay() -> Any:
        graph.replay()
        return out
    return replay


def inference_step(model: nn.Module, x: torch.Tensor, treatment: Treatment,
                   device: torch.device) -> Callable[[], Any]:
    """``model(x)`` without gradients under the treatment; call it once before timing
    (first call: compilation, cuDNN autotuning; a compiled model has run once eagerly
    already). Eager CUDA graphs are captured at :func:`graph_step`."""
    cache = not treatment.cuda_graphs  # autocast's weight cache would be baked in
    if treatment.compile:
        # one eager call first: tensors a model caches at its first call (timm's
        # EfficientFormer attention biases) then live outside the compiled CUDA graphs,
        # which would overwrite them on the next replay
        with torch.no_grad(), treatment.autocast(device, cache):
            model(x)
    fn = compiled(model, treatment)

    def step() -> Any:
        with torch.no_grad(), treatment.autocast(device, cache):
            return fn(x)
    return step


def graph_step(step: Callable[[], Any], treatment: Treatment,
               device: torch.device) -> Callable[[], Any]:
    """``step`` replayed from a CUDA graph where the treatment asks for eager graphs
    (compiled ones use ``'reduce-overhead'``), else ``step``."""
    if treatment.cuda_graphs and not treatment.compile and device.type == 'cuda':
        return cuda_graph(step)
    return step
