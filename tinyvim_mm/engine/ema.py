"""Exponential moving average of the weights in a few multi-tensor kernels.

MMEngine's ``ExponentialMovingAverage`` updates one tensor at a time: for TinyViM-S with
its buffers, ~700 ``lerp_`` launches and their Python loop after every iteration, in a
training loop whose host time already exceeds its GPU time (docs/benchmarks.md).
"""
import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage
from mmengine.registry import MODELS


@MODELS.register_module()
class ForeachExponentialMovingAverage(ExponentialMovingAverage):
    """``ExponentialMovingAverage`` (same arguments, same result) whose averaging step is
    one ``torch._foreach_lerp_`` over all floating-point tensors; used by ``EMAHook``
    with ``ema_type='ForeachExponentialMovingAverage'``."""

    def update_parameters(self, model: nn.Module) -> None:
        if self.steps == 0 or self.steps % self.interval:
            super().update_parameters(model)  # the first copy; steps between updates
            return
        source = model.state_dict() if self.update_buffers else dict(model.named_parameters())
        averaged, current = [], []
        for name, avg in self.avg_parameters.items():
            if avg.dtype.is_floating_point:
                averaged.append(avg.data)
                current.append(source[name].data.to(avg.device))
        if averaged:
            torch._foreach_lerp_(averaged, current, self.momentum)
        if not self.update_buffers:
            buffers = list(self.module.buffers())
            if buffers:
                torch._foreach_copy_(buffers, [b.data.to(a.device) for a, b in
                                               zip(buffers, model.buffers())])
        self.steps += 1
