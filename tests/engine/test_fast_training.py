"""Fast training by default (``fast_training`` + ``FastTrainingRunner``): which settings
apply where, the config and model edits, a CPU run in the plain form, and on a GPU the
fast form against the plain one (losses over the first iterations) and bit-exact resume."""
import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook

from conftest import REPO
from tinyvim_mm.datasets import make_toy_ade
from tinyvim_mm.engine.fast_training import (FastTrainingRunner, apply_to_config,
                                             init_in_plain_layout, plan_fast_training,
                                             prepare_model)

FULL = dict(amp='float16', channels_last=True, fused_optimizer=True, compile=True)
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


@pytest.mark.parametrize('capability,applied,note', [
    (None, {}, 'no CUDA device'),
    ((6, 0), dict(amp='float16', channels_last=True, fused_optimizer=True), 'compile off'),
    ((8, 0), FULL, None),
])
def test_plan_by_device(capability, applied, note):
    settings, notes = plan_fast_training(FULL, capability)
    assert settings == applied
    assert (note is None and not notes) or any(note in n for n in notes)


def test_plan_bf16_falls_back_before_ampere_and_bad_settings_fail():
    settings, notes = plan_fast_training(dict(amp='bfloat16'), (7, 0))
    assert settings == dict(amp='float16') and 'bfloat16' in notes[0]
    assert plan_fast_training(None, (9, 0)) == ({}, [])
    assert plan_fast_training(dict(amp=False, compile=False), (9, 0)) == ({}, [])
    with pytest.raises(ValueError, match='Unknown fast_training settings'):
        plan_fast_training(dict(amp='float16', tf32=True), (9, 0))
    with pytest.raises(ValueError, match='fast_training.amp'):
        plan_fast_training(dict(amp='fp8'), (9, 0))


def test_config_edits():
    cfg = Config.fromfile(REPO / 'configs' / 'tinyvim_s_8xb128_in1k.py')
    assert cfg.runner_type == 'FastTrainingRunner' and cfg.fast_training.amp == 'float16'
    apply_to_config(cfg, dict(amp='float16', fused_optimizer=True))
    assert cfg.optim_wrapper.type == 'AmpAGCOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'float16' and cfg.optim_wrapper.optimizer.fused
    assert cfg.optim_wrapper.clip_grad.type == 'agc'
    seg = Config.fromfile(REPO / 'configs' / 'fpn_tinyvim_s_ade20k_40k.py')
    apply_to_config(seg, dict(amp='bfloat16'))
    assert seg.optim_wrapper.type == 'AmpOptimWrapper' and seg.optim_wrapper.dtype == 'bfloat16'
    seg.optim_wrapper.optimizer.type = 'Lion'
    with pytest.raises(ValueError, match='no fused implementation'):
        apply_to_config(seg, dict(fused_optimizer=True))


def test_model_edits_keep_the_state_dict():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    model.backbone = nn.Conv2d(8, 8, 1)
    keys = list(model.state_dict())
    prepare_model(model, dict(channels_last=True, compile=dict(backend='eager')))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert list(model.state_dict()) == keys  # in-place compile: no `_orig_mod.` prefix


def test_channels_last_weights_are_initialised_as_the_plain_form():
    """The same seed gives the same weights in both layouts (a random initialiser run on
    channels-last memory gives a permutation of them), and the layout and the parameter
    objects survive."""
    def build_and_init(channels_last: bool, wrap: bool) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 3))
        if channels_last:
            model.to(memory_format=torch.channels_last)
        params = list(model.parameters())

        def init():
            for m in model:
                nn.init.trunc_normal_(m.weight, std=0.02)
        init_in_plain_layout(model, init) if wrap else init()
        assert all(a is b for a, b in zip(params, model.parameters()))
        return model

    plain = build_and_init(channels_last=False, wrap=False)
    fast = build_and_init(channels_last=True, wrap=True)
    naive = build_and_init(channels_last=True, wrap=False)
    for p, f, n in zip(plain.parameters(), fast.parameters(), naive.parameters()):
        assert torch.equal(p, f)
        if p.ndim == 4:
            assert f.is_contiguous(memory_format=torch.channels_last)
            assert not torch.equal(p, n)


def toy_seg(tmp_path: Path, iters: int = 3) -> Config:
    """The shipped toy Semantic FPN config, tiny: 64x64 crops, 4 images, ``iters`` steps."""
    root = make_toy_ade(tmp_path / 'ade', num_train=4, num_val=2).root
    cfg = Config.fromfile(REPO / 'configs' / 'fpn_tinyvim_s_toy_ade.py')
    cfg.merge_from_dict({
        'work_dir': str(tmp_path / 'work'), 'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
        'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False,
        'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False,
        'train_dataloader.dataset.data_root': str(root),
        'val_dataloader.dataset.data_root': str(root),
        'test_dataloader.dataset.data_root': str(root),
        'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters + 1,
        'default_hooks.checkpoint.interval': iters, 'default_hooks.logger.interval': 1,
        'randomness': dict(seed=0, deterministic=False), 'param_scheduler': [],
        'runner_type': 'FastTrainingRunner'})
    return cfg


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
def test_runner_on_cpu_trains_in_the_plain_form(tmp_path, capfd):
    cfg = toy_seg(tmp_path, iters=1)
    cfg.fast_training = FULL
    runner = FastTrainingRunner.from_cfg(cfg)
    assert runner.fast_training == {}
    assert 'fast_training: none applied; no CUDA device' in ''.join(capfd.readouterr())
    runner.train()
    assert runner.optim_wrapper.__class__.__name__ == 'OptimWrapper'
    assert not runner.model.backbone.patch_embed[0].c.weight.is_contiguous(
        memory_format=torch.channels_last)


def _losses(cfg: Config) -> list:
    """Per-iteration total losses of a run of ``cfg``."""
    losses = []
    runner = FastTrainingRunner.from_cfg(cfg)
    runner.register_hook(_Record(losses), priority='LOWEST')
    runner.train()
    return losses


class _Record(Hook):
    """Appends each iteration's total loss to ``out``."""

    def __init__(self, out: list) -> None:
        self.out = out

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.out.append(outputs['loss'].item())


@needs_gpu
def test_fast_layout_tracks_the_plain_form_on_gpu(tmp_path, no_tf32):
    """Same data, same init, float32: channels-last + fused AdamW give the plain form's
    losses over 5 iterations within 0.5 % (only the order of float32 sums changes: cuDNN's
    channels-last kernels, the fused optimizer; a transposed layout or a wrong optimizer
    state is off by far more)."""
    plain = toy_seg(tmp_path / 'plain', iters=5)
    plain.fast_training = None
    fast = toy_seg(tmp_path / 'fast', iters=5)
    fast.fast_training = dict(channels_last=True, fused_optimizer=True)
    a, b = _losses(plain), _losses(fast)
    assert len(a) == len(b) == 5 and all(math.isfinite(x) for x in a + b)
    assert max(abs(x - y) / abs(x) for x, y in zip(a, b)) < 5e-3, (a, b)


@needs_gpu
def test_amp_form_starts_at_the_plain_loss_on_gpu(tmp_path, no_tf32):
    """With every fast setting (fp16 AMP too) the first loss, before any update, is the
    float32 one within 5 % (a device run: 1.6 %, fp16 activations through a randomly
    initialised network); the trajectories then part (fp16 rounding, the loss scaler's
    skipped first steps), so later losses are only checked to be finite."""
    plain = toy_seg(tmp_path / 'plain', iters=5)
    plain.fast_training = None
    fast = toy_seg(tmp_path / 'fast', iters=5)
    fast.fast_training = dict(amp='float16', channels_last=True, fused_optimizer=True)
    a, b = _losses(plain), _losses(fast)
    assert len(a) == len(b) == 5 and all(math.isfinite(x) for x in a + b)
    assert abs(a[0] - b[0]) / abs(a[0]) < 0.05, (a, b)


@needs_gpu
def test_resume_is_exact_in_the_fast_form(tmp_path):
    """4 iterations straight equal 2 + resumed 2, with every fast setting on (the AMP loss
    scaler and the fused optimizer state are in the checkpoint)."""
    cfg = toy_seg(tmp_path / 'full', iters=4)
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.train_cfg.val_begin = 100  # mmseg's IoUMetric (histc) has no deterministic CUDA form
    cfg.custom_hooks = [dict(type='CheckpointGuardHook')]
    cfg.fast_training = dict(amp='float16', channels_last=True, fused_optimizer=True)
    full = _losses(copy.deepcopy(cfg))
    half = copy.deepcopy(cfg)
    half.merge_from_dict({'work_dir': str(tmp_path / 'half'), 'train_cfg.max_iters': 2,
                          'default_hooks.checkpoint.interval': 2})
    first = _losses(half)
    resumed = copy.deepcopy(cfg)
    resumed.merge_from_dict({'work_dir': str(tmp_path / 'half'), 'resume': True})
    rest = _losses(resumed)
    assert first + rest == full, (first, rest, full)
