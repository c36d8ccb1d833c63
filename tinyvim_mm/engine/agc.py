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
import math
from collections import defaultdict
from typing import Dict, Iterable, List, Optional

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


def _units(t: torch.Tensor) -> torch.Tensor:
    """``t`` as ``(units, unit size)``: its output rows (dim 0), or one unit if 1-D."""
    return t.reshape(1, -1) if t.ndim <= 1 else t.reshape(t.shape[0], -1)


@torch.no_grad()
def adaptive_clip_grad_(parameters: Iterable[torch.Tensor], clip_factor: float,
                        eps: float = 1e-3) -> torch.Tensor:
    """Clip gradients unit-wise in place: ``g *= min(1, clip_factor *
    max(||w||, eps) / ||g||)`` per unit (output row of a weight; a whole 1-D tensor).

    Units of the same size (and device and dtypes) are clipped together: their rows are
    concatenated, so a network costs a few kernels per distinct unit size rather than
    several per parameter (TinyViM-S: 445 parameters); the result is the per-parameter
    rule's (timm's ``adaptive_clip_grad``).

    Args:
        parameters: tensors whose ``.grad`` is clipped (``None`` grads skipped).
        clip_factor: largest allowed gradient-to-weight norm ratio per unit.
        eps: floor of the weight norm, so zero-initialised units can move.

    Returns:
        The global L2 norm of the gradients before clipping (for logging).
    """
    if clip_factor <= 0:
        raise ValueError(f'AGC clip_factor must be > 0, got {clip_factor}')
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.tensor(0.)
    grads = [p.grad for p in params]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    groups: Dict[tuple, List[int]] = defaultdict(list)
    for i, (p, g) in enumerate(zip(params, grads)):
        size = p.numel() if p.ndim <= 1 else math.prod(p.shape[1:])
        groups[(size, p.device, p.dtype, g.dtype)].append(i)
    for members in groups.values():
        weights = torch.cat([_units(params[i]) for i in members])
        units = torch.cat([_units(grads[i]) for i in members])
        max_norm = torch.linalg.vector_norm(weights, dim=1, keepdim=True).clamp_(min=eps)
        scale = (max_norm.mul_(clip_factor)
                 / torch.linalg.vector_norm(units, dim=1, keepdim=True).clamp_(min=1e-6))
        units.mul_(scale.clamp_(max=1.0))
        rows = [1 if grads[i].ndim <= 1 else grads[i].shape[0] for i in members]
        torch._foreach_copy_([grads[i] for i in members],
                             [u.view(grads[i].shape)
                              for i, u in zip(members, units.split(rows))])
    return total


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
