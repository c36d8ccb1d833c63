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
from collections import defaultdict
from typing import Dict, Iterable, List, NamedTuple, Optional

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from .async_log import HostScalars


def _flat(t: torch.Tensor) -> Optional[torch.Tensor]:
    """``t``'s elements as a 1-D view in memory order where ``t`` is dense with its first
    dimension outermost (contiguous or channels-last: each unit, an output row, is then
    one contiguous run, its elements in some order that a norm does not see), else None."""
    if t.is_contiguous() or (t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last)):
        return t.as_strided((t.numel(), ), (1, ))
    return None


class _Group(NamedTuple):
    """Parameters of one device and dtypes (weight, gradient), clipped together."""
    members: List[int]  # indices into the parameter list
    rows: List[int]  # units per member: output rows (dim 0), or one for a 0-/1-D tensor
    sizes: List[int]  # elements per member
    lengths: torch.Tensor  # the size of every unit, in order (int64, on the device)
    weights: List[Optional[torch.Tensor]]  # the weights' flat views (None: read by reshape)


def _plan(params: List[torch.Tensor]) -> List[_Group]:
    groups: Dict[tuple, List[int]] = defaultdict(list)
    for i, p in enumerate(params):
        groups[(p.device, p.dtype, p.grad.dtype)].append(i)
    plan = []
    for members in groups.values():
        rows = [1 if params[i].ndim <= 1 else params[i].shape[0] for i in members]
        sizes = [params[i].numel() for i in members]
        unit = [n // r for n, r in zip(sizes, rows)]
        lengths = torch.tensor(unit, dtype=torch.int64).repeat_interleave(torch.tensor(rows))
        weights = [_flat(params[i].detach()) for i in members]
        plan.append(_Group(members, rows, sizes, lengths.to(params[members[0]].device), weights))
    return plan


def _units_flat(t: torch.Tensor, view: Optional[torch.Tensor]) -> torch.Tensor:
    """``t``'s elements unit after unit (its flat view, else a copy in logical order)."""
    return view if view is not None else t.reshape(-1)


class AdaptiveGradClipper:
    """AGC (module docstring) in a few kernels for a whole network, as a callable that
    keeps, between calls on the same parameters, the unit sizes and the weights' flat
    views, so that a training step spends little host time on it (TinyViM-S: 449
    parameters).

    All gradients (and weights) of a device and dtype are concatenated in memory order
    (contiguous and channels-last tensors alike: a unit is one contiguous run either
    way), their unit norms come from one segmented sum of squares, and the per-unit
    scales are multiplied into the gradients in place by one multi-tensor kernel; the
    result is the per-parameter rule's (timm's ``adaptive_clip_grad``), up to the order
    of float32 sums. The plan is rebuilt whenever the parameters with gradients, their
    storage (``p.data`` replaced, e.g. by a layout change) or a gradient dtype change.

    Args:
        multi_tensor: scale the gradients by one multi-tensor kernel (:func:`_scale_units`);
            ``None``: on CUDA devices.
    """

    def __init__(self, multi_tensor: Optional[bool] = None) -> None:
        self.multi_tensor = multi_tensor
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
        key = tuple((id(p), p.data_ptr(), g.dtype) for p, g in zip(params, grads))
        if key != self._key:
            self._groups, self._key = _plan(params), key
        squares = []
        for group in self._groups:
            views = [_flat(grads[i]) for i in group.members]
            units = torch.cat([_units_flat(grads[i], v) for i, v in zip(group.members, views)])
            weights = torch.cat([_units_flat(params[i].detach(), w)
                                 for i, w in zip(group.members, group.weights)])
            # squared in place: both are fresh copies (torch.cat), read only for the norms
            g_sq = torch.segment_reduce(units.float().square_(), 'sum', lengths=group.lengths,
                                        unsafe=True)
            w_sq = torch.segment_reduce(weights.float().square_(), 'sum',
                                        lengths=group.lengths, unsafe=True)
            squares.append(g_sq.sum())
            scale = (w_sq.sqrt_().clamp_(min=eps).mul_(clip_factor)
                     / g_sq.sqrt().clamp_(min=1e-6)).clamp_(max=1.0).to(units.dtype)
            multi_tensor = scale.is_cuda if self.multi_tensor is None else self.multi_tensor
            _scale_units([grads[i] for i in group.members], views, group.rows, group.sizes,
                         group.lengths, scale, multi_tensor)
        return torch.stack(squares).sum().sqrt()


def _scale_units(grads: List[torch.Tensor], views: List[Optional[torch.Tensor]],
                 rows: List[int], sizes: List[int], lengths: torch.Tensor,
                 scale: torch.Tensor, multi_tensor: bool) -> None:
    """Multiply every unit of ``grads`` (through their flat ``views`` where they have one)
    by its entry of ``scale``, in place. ``multi_tensor`` (for CUDA): the scales repeated
    to every element, then one multi-tensor kernel (a launch per gradient would cost the
    host more than the rest of AGC); else a broadcast multiply per gradient (CPU: no
    launches to save, and repeating is slow there)."""
    if multi_tensor:
        parts = torch.repeat_interleave(scale, lengths, output_size=sum(sizes)).split(sizes)
        flat = [(v, part) for v, part in zip(views, parts) if v is not None]
        if flat:
            torch._foreach_mul_([v for v, _ in flat], [part for _, part in flat])
        for g, v, part in zip(grads, views, parts):
            if v is None:  # its units were copied in logical order
                g.mul_(part.view(g.shape))
        return
    for g, r, part in zip(grads, rows, scale.split(rows)):
        g.mul_(part.view((r, ) + (1, ) * (g.ndim - 1)) if g.ndim else part.view(()))


def adaptive_clip_grad_(parameters: Iterable[torch.Tensor], clip_factor: float,
                        eps: float = 1e-3) -> torch.Tensor:
    """One-off AGC (:class:`AdaptiveGradClipper`, which training steps use to keep their
    plan): clips ``parameters``' gradients in place and returns their norm before."""
    return AdaptiveGradClipper()(parameters, clip_factor, eps)


class _AGCMixin:
    """Accept ``clip_grad=dict(type='agc', clip_factor=..., eps=...)`` on top of
    the wrapper's own ``'norm'`` / ``'value'`` clipping, and log the gradient norm without
    waiting for the device.

    MMEngine's wrappers log the norm with ``float(norm)`` right after clipping, which makes
    the host wait for the whole backward pass before it may launch the optimizer step.
    With ``defer_norm_log`` the norm's copy to the host starts without waiting
    (:class:`~tinyvim_mm.engine.async_log.HostScalars`) and is read at the next clipping
    step, when it has long arrived; ``train/grad_norm`` lags one iteration behind the
    losses (as the losses under :class:`~tinyvim_mm.engine.async_log.AsyncRuntimeInfoHook`
    lag one behind the iterations).

    Args:
        defer_norm_log: read the norm one step later; ``None``: where the gradients are
            on a CUDA device (on the CPU reading it costs nothing).
    """

    def __init__(self, *args, clip_grad: Optional[dict] = None,
                 defer_norm_log: Optional[bool] = None, **kwargs) -> None:
        agc = None
        if clip_grad is not None and clip_grad.get('type') == 'agc':
            agc = {k: v for k, v in clip_grad.items() if k != 'type'}
            unknown = set(agc) - {'clip_factor', 'eps'}
            if 'clip_factor' not in agc or unknown:
                raise ValueError("clip_grad=dict(type='agc') takes clip_factor (required) "
                                 f'and eps, got {dict(clip_grad)}')
            clip_grad = None
        super().__init__(*args, clip_grad=clip_grad, **kwargs)
        self.defer_norm_log = defer_norm_log
        self._pending_norm: Optional[HostScalars] = None
        if agc is not None:
            self.clip_func = AdaptiveGradClipper()
            self.grad_name = 'grad_norm'
            self.clip_grad_kwargs = agc

    def _clip_grad(self) -> None:
        self.log_pending_norm()
        params = [p for group in self.optimizer.param_groups for p in group['params']
                  if p.requires_grad and p.grad is not None]
        if not params:
            return
        norm = self.clip_func(params, **self.clip_grad_kwargs)
        if norm is None:  # clip by value: no norm
            return
        defer = norm.is_cuda if self.defer_norm_log is None else self.defer_norm_log
        if defer:
            self._pending_norm = HostScalars({self.grad_name: norm})
        else:
            self.message_hub.update_scalar(f'train/{self.grad_name}', float(norm))

    def log_pending_norm(self) -> None:
        """Write a deferred gradient norm to the message hub (waits for its copy if needed)."""
        if self._pending_norm is not None:
            pending, self._pending_norm = self._pending_norm, None
            for name, norm in pending.read().items():
                self.message_hub.update_scalar(f'train/{name}', norm)


@OPTIM_WRAPPERS.register_module()
class AGCOptimWrapper(_AGCMixin, OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` with adaptive gradient clipping
    (``clip_grad=dict(type='agc', clip_factor=0.02)``)."""


@OPTIM_WRAPPERS.register_module()
class AmpAGCOptimWrapper(_AGCMixin, AmpOptimWrapper):
    """:class:`~mmengine.optim.AmpOptimWrapper` with adaptive gradient clipping
    on the unscaled gradients (``clip_grad=dict(type='agc', clip_factor=0.02)``)."""
