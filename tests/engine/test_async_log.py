"""Logging without waiting for the device (``tinyvim_mm.engine.async_log``): the values
reach the message hub unchanged and in order, one iteration late; the fast_training
setting that turns it on."""
from typing import Optional

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from conftest import REPO
from tinyvim_mm.engine import AsyncRuntimeInfoHook, HostScalars
from tinyvim_mm.engine.fast_training import apply_to_config, plan_fast_training

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


def test_host_scalars_keep_values_types_and_order():
    values = dict(loss=torch.tensor(0.1234567, dtype=torch.float32),
                  half=torch.tensor([2.5], dtype=torch.float16), count=torch.tensor(7),
                  plain=1.5)
    read = HostScalars(values).read()
    assert list(read) == list(values)
    assert read['loss'] == values['loss'].item()  # float32 -> float64 -> float: exact
    assert read['half'] == 2.5 and read['count'] == 7 and isinstance(read['count'], int)
    assert read['plain'] == 1.5
    with pytest.raises(ValueError, match="'acc'.*shape \\(3,\\)"):
        HostScalars(dict(acc=torch.zeros(3)))


@needs_gpu
def test_host_scalars_from_the_gpu():
    x = torch.randn(2048, 2048, device='cuda')
    loss = (x @ x).square().mean()  # queued work the copy must come after
    pending = HostScalars(dict(loss=loss, step=torch.tensor(3, device='cuda'), lr=0.1))
    read = pending.read()
    assert read == dict(loss=loss.item(), step=3, lr=0.1)


class _Toy(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        inputs, targets = torch.stack(inputs), torch.stack(targets)
        loss = (self.linear(inputs).squeeze(1) - targets).square().mean()
        return dict(loss=loss, loss_aux=loss.detach() * 0.5)


class _Data(Dataset):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(4, generator=g), targets=torch.randn((), generator=g))


class _Probe(Hook):
    """How many losses the message hub holds after each iteration's hooks."""
    priority = 'LOWEST'

    def __init__(self) -> None:
        self.counts = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        buffer = runner.message_hub.log_scalars.get('train/loss')
        self.counts.append(0 if buffer is None else len(buffer.data[0]))


def _train(tmp_path, runtime_info: str, checkpoint: Optional[dict] = None):
    probe = _Probe()
    torch.manual_seed(0)
    runner = Runner(
        model=_Toy(), work_dir=str(tmp_path / runtime_info),
        experiment_name=f'{tmp_path.name}_{runtime_info}',  # a message hub of its own
        train_dataloader=dict(dataset=_Data(), batch_size=4, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(runtime_info=dict(type=runtime_info), checkpoint=checkpoint,
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[probe], default_scope='mmengine', randomness=dict(seed=0))
    runner.train()
    hub = runner.message_hub
    return ({k: hub.get_scalar(f'train/{k}').data[0].tolist() for k in ('loss', 'loss_aux')},
            probe.counts)


def test_async_hook_logs_the_same_values_one_iteration_late(tmp_path):
    plain, plain_counts = _train(tmp_path, 'RuntimeInfoHook')
    deferred, deferred_counts = _train(tmp_path, 'AsyncRuntimeInfoHook')
    assert len(plain['loss']) == 6  # 2 epochs x 3 iterations
    assert deferred == plain  # same values, same order, none lost at the epochs' ends
    assert plain_counts == [1, 2, 3, 4, 5, 6]
    # one behind within an epoch; the epoch's last one arrives at its end
    assert deferred_counts == [0, 1, 2, 3, 4, 5]


def test_checkpoints_hold_the_whole_log_history(tmp_path):
    """A checkpoint saved by iteration, mid-epoch, holds the losses up to its own
    iteration, as with RuntimeInfoHook (the pending ones are written before saving)."""
    every_2 = dict(type='CheckpointHook', by_epoch=False, interval=2)
    histories = {}
    for hook in ('RuntimeInfoHook', 'AsyncRuntimeInfoHook'):
        _train(tmp_path, hook, every_2)
        saved = {}
        for it in (2, 4):  # iteration 2 is mid-epoch (3 per epoch), 4 too
            hub = torch.load(tmp_path / hook / f'iter_{it}.pth', weights_only=False)[
                'message_hub']
            saved[it] = hub['log_scalars']['train/loss'].data[0].tolist()
        histories[hook] = saved
    assert [len(v) for v in histories['RuntimeInfoHook'].values()] == [2, 4]
    assert histories['AsyncRuntimeInfoHook'] == histories['RuntimeInfoHook']


def test_fast_training_setting_swaps_the_runtime_info_hook():
    settings, notes = plan_fast_training(dict(async_logging=True), None)
    assert settings == {} and 'async_logging' in notes[0]  # CPU: nothing to wait for
    assert plan_fast_training(dict(async_logging=True), (9, 0)) == (
        dict(async_logging=True), [])
    cfg = Config.fromfile(REPO / 'configs' / 'tinyvim_s_8xb128_in1k.py')
    assert cfg.fast_training.async_logging
    apply_to_config(cfg, dict(async_logging=True))
    assert cfg.default_hooks.runtime_info == dict(type='AsyncRuntimeInfoHook')
    assert cfg.default_hooks.checkpoint.type == 'CheckpointHook'  # the others stay
    custom = Config(dict(default_hooks=dict(runtime_info=dict(type='MyRuntimeInfoHook'))))
    with pytest.raises(ValueError, match='MyRuntimeInfoHook.*async_logging=False'):
        apply_to_config(custom, dict(async_logging=True))
    assert isinstance(AsyncRuntimeInfoHook(), Hook)
