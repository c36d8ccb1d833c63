"""Exponential moving average of the weights in one multi-tensor kernel per step.

MMEngine's ``ExponentialMovingAverage`` updates one tensor at a time from a fresh
``model.state_dict()``: for TinyViM-S with its buffers, ~800 ``lerp_`` launches, a walk of
~500 modules and their Python loops after every iteration, in a training loop whose host
time already exceeds its GPU time (docs/benchmarks.md).
"""
import weakref
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage
from mmengine.registry import MODELS

#: Where a tensor of the source model lives: its module's ``_parameters`` or ``_buffers``
#: table and its key there.
Slot = Tuple[Dict[str, Optional[torch.Tensor]], str]


def _slots(model: nn.Module, names: List[str]) -> Optional[List[Slot]]:
    """The table and key of every state-dict ``name`` of ``model``; ``None`` where one is
    not a plain parameter or buffer (a custom state dict: then read it every step)."""
    modules = dict(model.named_modules(remove_duplicate=False))
    slots = []
    for name in names:
        prefix, _, key = name.rpartition('.')
        module = modules.get(prefix)
        if module is None:
            return None
        for table in (module._parameters, module._buffers):
            if table.get(key) is not None:
                slots.append((table, key))
                break
        else:
            return None
    return slots


@MODELS.register_module()
class ForeachExponentialMovingAverage(ExponentialMovingAverage):
    """``ExponentialMovingAverage`` (same arguments, same result) whose averaging step is
    one ``torch._foreach_lerp_`` over all floating-point tensors; used by ``EMAHook``
    with ``ema_type='ForeachExponentialMovingAverage'``.

    The source tensors are found without building a state dict: on the first averaging
    step the module tree is walked once for the ``_parameters`` / ``_buffers`` table
    and key of each averaged tensor, and each step reads those tables. Layout and device
    conversions of the source model (which replace tensors inside the tables) are
    thus followed; a different source model object makes the walk run again.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._names = [n for n, t in self.avg_parameters.items() if t.dtype.is_floating_point]
        # the tensors themselves (a Parameter follows its .data being replaced)
        self._averaged = [self.avg_parameters[n] for n in self._names]
        self._source: Optional[weakref.ref] = None
        self._source_slots: Optional[List[Slot]] = None

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self.steps == 0 or self.steps % self.interval:
            super().update_parameters(model)  # the first copy; steps between updates
            return
        names, averaged = self._names, self._averaged
        if self._source is None or self._source() is not model:
            self._source = weakref.ref(model)
            self._source_slots = _slots(model, names)
        if self._source_slots is None:
            source = (model.state_dict() if self.update_buffers
                      else dict(model.named_parameters()))
            current = [source[n].data for n in names]
        else:
            current = [table[key] for table, key in self._source_slots]
        if averaged:
            device = averaged[0].device
            if any(t.device != device for t in current):
                current = [t.to(device) for t in current]
            torch._foreach_lerp_(averaged, current, self.momentum)
        if not self.update_buffers:
            buffers = list(self.module.buffers())
            if buffers:
                torch._foreach_copy_(buffers, [b.data.to(a.device) for a, b in
                                               zip(buffers, model.buffers())])
        self.steps += 1
