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
from typing import Dict, Iterable, List, NamedTuple, Optional

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


def _channels_last(t: torch.Tensor) -> bool:
    return t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(
        memory_format=torch.channels_last)


def _in_memory_order(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``t`` with its dimensions in memory order, if channels-last (a unit's norm does
    not depend on the order of its elements)."""
    return t.permute(0, 2, 3, 1) if channels_last else t


class _Group(NamedTuple):
    """Parameters whose units have one size (and device and dtypes), clipped together."""
    members: List[int]  # indices into the parameter list
    rows: List[int]  # units per member: output rows (dim 0), or one for a 0-/1-D tensor
    channels_last: List[bool]  # per member: its rows are read in memory order
    weights: Optional[List[torch.Tensor]]  # the weights as (units, unit size) views (None:
    # a weight in a layout without such a view, read again each time)


def _plan(params: List[torch.Tensor]) -> List[_Group]:
    groups: Dict[tuple, List[int]] = defaultdict(list)
    for i, p in enumerate(params):
        size = p.numel() if p.ndim <= 1 else math.prod(p.shape[1:])
        groups[(size, p.device, p.dtype, p.grad.dtype)].append(i)
    plan = []
    for members in groups.values():
        rows = [1 if params[i].ndim <= 1 else params[i].shape[0] for i in members]
        layout = [_channels_last(params[i]) for i in members]
        weights = _weight_units(params, members, layout, rows)
        views = all(w.data_ptr() == params[i].data_ptr() for w, i in zip(weights, members))
        plan.append(_Group(members, rows, layout, weights if views else None))
    return plan


def _weight_units(params: List[torch.Tensor], members: List[int], layout: List[bool],
                  rows: List[int]) -> List[torch.Tensor]:
    return [_in_memory_order(params[i].detach(), cl).reshape(r, -1)
            for i, cl, r in zip(members, layout, rows)]


class AdaptiveGradClipper:
    """AGC (module docstring) as a callable that keeps, between calls on the same
    parameters, how they are grouped and their weights' unit views, so that a training
    step spends its host time on the clipping rather than on planning it (TinyViM-S: 449
    parameters in 34 unit sizes).

    Units of the same size (and device and dtypes) are clipped together: their rows are
    concatenated, so a network costs a few kernels per distinct unit size rather than
    several per parameter; the result is the per-parameter rule's (timm's
    ``adaptive_clip_grad``). The plan is rebuilt whenever the parameters with gradients,
    their storage (``p.data`` replaced, e.g. by a layout change) or a gradient dtype
    change.
    """

    def __init__(self) -> None:
        self._key: Optional[tuple] = None
        self._groups: List[_Group] = []

    @torch.no_grad()
    def __call__(self, parameters: Iterable[torch.Tensor], clip_factor: float,
                 eps: float = 1e-3) -> torch.Tensor:
        """Clip gradients unit-wise in place: ``g *= min(1, clip_factor *
        max(||w||, eps) / ||g||)`` per unit (output row of a weight; a whole 1-D tensor).

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
        key = tuple((id(p), p.data_ptr(), g.dtype) for p, g in zip(params, grads))
        if key != self._key:
            self._groups, self._key = _plan(params), key
        for group in self._groups:
            members = [_in_memory_order(grads[i], cl)
                       for i, cl in zip(group.members, group.channels_last)]
            views = [g.reshape(r, -1) for g, r in zip(members, group.rows)]
            units = torch.cat(views)
            weights = group.weights or _weight_units(params, group.members,
                                                     group.channels_last, group.rows)
            max_norm = torch.linalg.vector_norm(torch.cat(weights), dim=1,
                                                keepdim=True).clamp_(min=eps)
            scale = (max_norm.mul_(clip_factor)
                     / torch.linalg.vector_norm(units, dim=1, keepdim=True).clamp_(min=1e-6))
            units.mul_(scale.clamp_(max=1.0))
            clipped = list(units.split(group.rows))
            for j, (v, g) in enumerate(zip(views, members)):
                if v.data_ptr() != g.data_ptr():  # a gradient in another layout than its
                    views[j] = g  # weight's: its units were a copy, in g's logical order
                    clipped[j] = clipped[j].reshape(g.shape)
            torch._foreach_copy_(views, clipped)  # the views write into the gradients
        return total


def adaptive_clip_grad_(parameters: Iterable[torch.Tensor], clip_factor: float,
                        eps: float = 1e-3) -> torch.Tensor:
    """One-off AGC (:class:`AdaptiveGradClipper`, which training steps use to keep their
    plan): clips ``parameters``' gradients in place and returns their norm before."""
    return AdaptiveGradClipper()(parameters, clip_factor, eps)


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
            self.clip_func = AdaptiveGradClipper()
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
