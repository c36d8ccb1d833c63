"""Logging a training loop's scalars without making the host wait for the device.

MMEngine's ``RuntimeInfoHook`` writes every iteration's losses to the message hub with
``tensor.item()``: the host waits there until the device has finished the iteration
(backward and optimizer step included), then fetches the next batch, runs the hooks and
launches the next forward while the device idles. :class:`AsyncRuntimeInfoHook` starts
copies of the losses to pinned host memory instead and writes them one iteration later,
when they have long arrived: the host runs ahead and the device stays busy.
"""
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine.hooks import RuntimeInfoHook
from mmengine.registry import HOOKS
from mmengine.utils import apply_to


class HostScalars:
    """One-element tensors (and plain numbers) on their way to the host.

    The CUDA tensors of each device are gathered into one float64 tensor (exact for the
    float16 / bfloat16 / float32 values and the integers below 2**53 that losses and
    norms are) and copied to pinned host memory without waiting, behind the work that
    computes them; :meth:`read` waits for those copies only (a CUDA event), not for the
    work queued after them. Tensors elsewhere are read at once (on the CPU that costs no
    waiting).

    Args:
        values: name -> one-element tensor or number.

    Raises:
        ValueError: a tensor with other than one element (naming it).
    """

    def __init__(self, values: Dict[str, Any]) -> None:
        self._names = list(values)
        self._plain: Dict[str, Any] = {}
        self._pending: List[Tuple[List[str], List[torch.dtype], torch.Tensor,
                                  torch.cuda.Event]] = []
        by_device: Dict[torch.device, Dict[str, torch.Tensor]] = {}
        for name, value in values.items():
            if not isinstance(value, torch.Tensor):
                self._plain[name] = value
                continue
            if value.numel() != 1:
                raise ValueError(f'{name!r}: a logged value must have one element, got a '
                                 f'tensor of shape {tuple(value.shape)}')
            if value.device.type == 'cuda':
                by_device.setdefault(value.device, {})[name] = value.detach()
            else:
                self._plain[name] = value.item()
        for device, tensors in by_device.items():
            gathered = torch.stack([t.reshape(()).to(torch.float64) for t in tensors.values()])
            host = torch.empty(gathered.shape, dtype=torch.float64, pin_memory=True)
            with torch.cuda.device(device):  # the copy and its event on that device
                host.copy_(gathered, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
            self._pending.append((list(tensors), [t.dtype for t in tensors.values()], host,
                                  event))

    def read(self) -> Dict[str, Any]:
        """The values as Python numbers, in the order given (waits for their copies)."""
        out = dict(self._plain)
        for names, dtypes, host, event in self._pending:
            event.synchronize()
            for name, dtype, value in zip(names, dtypes, host.tolist()):
                out[name] = value if dtype.is_floating_point else int(value)
        return {name: out[name] for name in self._names}


@HOOKS.register_module()
class AsyncRuntimeInfoHook(RuntimeInfoHook):
    """MMEngine's ``RuntimeInfoHook`` whose training outputs (the losses) reach the message
    hub one iteration late, so that the host never waits for the device to log them.

    After each training iteration the outputs' copies to the host start
    (:class:`HostScalars`) and the previous iteration's arrive in the message hub, with
    the same values, in the same order, as ``RuntimeInfoHook`` writes them; the last
    iteration's are written at the end of each epoch, before validation, before a
    checkpoint is saved (its log history is complete; saving waits for the device anyway)
    and at the end of training. What differs: a log line at iteration ``i`` averages the
    losses up to ``i - 1``. Other hooks still get the iteration's own ``outputs``.

    ``fast_training.async_logging`` puts it in place of ``RuntimeInfoHook``
    (:mod:`tinyvim_mm.engine.fast_training`); by itself:
    ``default_hooks = dict(runtime_info=dict(type='AsyncRuntimeInfoHook'))``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending: Optional[HostScalars] = None

    def flush(self, runner) -> None:
        """Write the pending iteration's outputs to the message hub (waits for them)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            for key, value in pending.read().items():
                runner.message_hub.update_scalar(f'train/{key}', value)

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        self.flush(runner)
        if outputs is not None:
            self._pending = HostScalars(outputs)

    def after_train_epoch(self, runner) -> None:
        self.flush(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """The pending outputs into the message hub and the checkpoint's copy of it (the
        runner copied the hub before calling this hook)."""
        if self._pending is not None:
            self.flush(runner)
            checkpoint['message_hub'] = apply_to(runner.message_hub.state_dict(),
                                                 lambda x: hasattr(x, 'cpu'), lambda x: x.cpu())

    def before_val(self, runner) -> None:
        self.flush(runner)
        super().before_val(runner)

    def after_train(self, runner) -> None:
        self.flush(runner)
        super().after_train(runner)
