"""Adaptive gradient clipping (AGC) as an mmengine optimizer wrapper.

AGC (Brock et al., 2021, "High-Performance Large-Scale Image Recognition
Without Normalization") rescales the gradient of every unit (output row of a
weight; a whole tensor for 1-D parameters) whose norm exceeds
``clip_factor * max(||unit weight||, eps)``. It is timm's ``--clip-mode agc``,
which the TinyViM recipe uses with ``--clip-grad 0.02``.

Config::

    optim_wrapper = dict(type='AGCOptimWrapper',        # or 'AmpAGCOptimWrapper'
                         optimizer=dict(type='AdamW', lr=2e-3),
                         clip_grad=dict(type='agc', clip_factor=0.02, eps=1e-3))

``clip_grad`` of type ``'norm'`` / ``'value'`` (or ``None``) behaves exactly as
in mmengine's wrappers. With mixed precision the gradients are unscaled before
clipping (mmengine's ``AmpOptimWrapper.step`` does it whenever ``clip_grad`` is
set).
"""
from typing import Iterable, Optional

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


def _unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm of each output unit (dim 0) of ``x``; of the whole tensor if 1-D."""
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)


@torch.no_grad()
def adaptive_clip_grad_(parameters: Iterable[torch.Tensor], clip_factor: float,
                        eps: float = 1e-3) -> torch.Tensor:
    """Clip gradients unit-wise in place: ``g *= min(1, clip_factor *
    max(||w||, eps) / ||g||)`` per unit.

    Args:
        parameters: tensors whose ``.grad`` is clipped (``None`` grads skipped).
        clip_factor: largest allowed gradient-to-weight norm ratio per unit.
        eps: floor of the weight norm, so zero-initialised units can move.

    Returns:
        The global L2 norm of the gradients before clipping (for logging).
    """
    if clip_factor <= 0:
        raise ValueError(f'AGC clip_factor must be > 0, got {clip_factor}')
    norms = []
    for p in parameters:
        if p.grad is None:
            continue
        grad = p.grad.detach()
        norms.append(torch.linalg.vector_norm(grad))
        max_norm = _unitwise_norm(p.detach()).clamp(min=eps) * clip_factor
        grad.mul_((max_norm / _unitwise_norm(grad).clamp(min=1e-6)).clamp(max=1.0))
    if not norms:
        return torch.tensor(0.)
    return torch.linalg.vector_norm(torch.stack(norms))


class _AGCMixin:
    """Accept ``clip_grad=dict(type='agc', clip_factor=..., eps=...)`` on top of
    the wrapper's own ``'norm'`` / ``'value'`` clipping."""

    def __init__(self, *args, clip_grad: Optional[dict] = None, **kwargs) -> None:
        agc = None
        if clip_grad is not None and clip_grad.get('type') == 'agc':
            agc = {k: v for k, v in clip_grad.items() if k != 'type'}
            unknown = set(agc) - {'clip_factor', 'eps'}
            if 'clip_factor' not in agc or unknown:
                raise ValueError("clip_grad=dict(type='agc') takes clip_factor (required) "
                                 f'and eps, got {dict(clip_grad)}')
            clip_grad = None
        super().__init__(*args, clip_grad=clip_grad, **kwargs)
        if agc is not None:
            self.clip_func = adaptive_clip_grad_
            self.grad_name = 'grad_norm'
            self.clip_grad_kwargs = agc


@OPTIM_WRAPPERS.register_module()
class AGCOptimWrapper(_AGCMixin, OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` with adaptive gradient clipping
    (``clip_grad=dict(type='agc', clip_factor=0.02)``)."""


@OPTIM_WRAPPERS.register_module()
class AmpAGCOptimWrapper(_AGCMixin, AmpOptimWrapper):
    """:class:`~mmengine.optim.AmpOptimWrapper` with adaptive gradient clipping
    on the unscaled gradients (``clip_grad=dict(type='agc', clip_factor=0.02)``)."""
