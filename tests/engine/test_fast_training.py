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
                                             compile_for_training, compile_kwargs,
                                             init_in_plain_layout, plan_fast_training,
                                             prepare_model, uses_cuda_graphs)

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


def test_cuda_graphs_only_where_they_are_correct():
    graphs = dict(amp='float16', compile=dict(mode='reduce-overhead'))
    assert uses_cuda_graphs(graphs['compile']) and uses_cuda_graphs(dict(mode='max-autotune'))
    assert uses_cuda_graphs(dict(options={'triton.cudagraphs': True}))
    assert not uses_cuda_graphs(True) and not uses_cuda_graphs(dict(mode='default'))
    assert plan_fast_training(graphs, (9, 0)) == (graphs, [])
    settings, notes = plan_fast_training(graphs, (9, 0), accumulation=4)
    assert settings == dict(amp='float16') and 'gradient accumulation (4' in notes[0]
    settings, notes = plan_fast_training(graphs, (9, 4), rocm=True)
    assert 'compile' not in settings and 'ROCm' in notes[0]
    plain = dict(compile=True)  # no graphs: accumulation is fine
    assert plan_fast_training(plain, (9, 0), accumulation=4) == (plain, [])
    settings, notes = plan_fast_training(graphs, (9, 0), sync_bn=True)
    assert settings == dict(amp='float16') and 'SyncBatchNorm' in notes[0]
    assert plan_fast_training(plain, (9, 0), sync_bn=True) == (plain, [])


def test_plan_reads_sync_bn_of_distributed_runs(monkeypatch):
    """The Semantic FPN configs' CUDA graphs apply on one GPU; a distributed launch with
    their ``sync_bn`` drops them (what FastTrainingRunner plans from the config)."""
    from tinyvim_mm.engine import fast_training
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda *a: (9, 0))
    cfg = Config.fromfile(str(REPO / 'configs/fpn_tinyvim_b_ade20k_40k.py'))
    assert cfg.sync_bn == 'torch'
    overlaps = dict(async_logging=True, preprocess_stream=True)
    assert fast_training._plan(cfg) == (dict(compile='reduce-overhead', **overlaps), [])
    cfg.launcher = 'pytorch'
    settings, notes = fast_training._plan(cfg)
    assert settings == overlaps and 'SyncBatchNorm' in notes[0]


def test_compile_setting_forms():
    """``True``, a mode string (what ``--cfg-options fast_training.compile=MODE`` gives over
    a config's ``compile=False``) and a dict; anything else is an error naming it."""
    assert compile_kwargs(True) == {}
    assert compile_kwargs('reduce-overhead') == dict(mode='reduce-overhead')
    assert compile_kwargs(dict(mode='default', dynamic=False)) == dict(mode='default',
                                                                    dynamic=False)
    assert uses_cuda_graphs('reduce-overhead') and not uses_cuda_graphs('default')
    settings, notes = plan_fast_training(dict(compile='max-autotune'), (9, 0), accumulation=2)
    assert settings == {} and 'compile off' in notes[0]
    for bad, match in [('fast', "unknown torch.compile mode 'fast'"),
                       (3, 'must be False, True, a torch.compile mode or a dict')]:
        with pytest.raises(ValueError, match=match):
            plan_fast_training(dict(compile=bad), (9, 0))
    cfg = Config.fromfile(str(REPO / 'configs/fpn_tinyvim_b_ade20k_40k.py'))
    cfg.merge_from_dict({'fast_training.compile': 'reduce-overhead'})
    assert plan_fast_training(cfg.fast_training, (9, 0))[0]['compile'] == 'reduce-overhead'


def test_config_edits():
    cfg = Config.fromfile(REPO / 'configs' / 'tinyvim_s_8xb128_in1k.py')
    assert cfg.runner_type == 'FastTrainingRunner' and cfg.fast_training.amp == 'float16'
    # CUDA graphs replay one batch shape: the training loader drops the incomplete batch
    assert cfg.fast_training.compile == dict(mode='reduce-overhead')
    assert cfg.train_dataloader.drop_last
    toy = Config.fromfile(REPO / 'configs' / 'tinyvim_s_toy_imagenet.py')
    assert toy.fast_training.compile is False and not toy.train_dataloader.drop_last
    off = Config.fromfile(REPO / 'configs' / 'tinyvim_s_8xb128_in1k.py')
    off.merge_from_dict({'fast_training.compile': False})  # the documented switch
    assert plan_fast_training(off.fast_training, (9, 0))[0].get('compile') is None
    apply_to_config(cfg, dict(amp='float16', fused_optimizer=True))
    assert cfg.optim_wrapper.type == 'AmpAGCOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'float16' and cfg.optim_wrapper.optimizer.fused
    assert cfg.optim_wrapper.clip_grad.type == 'agc'
    # Mask R-CNN trains in fp32 with host-side settings only (AMP and the fused optimizer
    # did not pay off on an H200), Semantic FPN with its backbone in CUDA graphs (fixed
    # crops) and the two overlaps; each setting is one --cfg-options away; the toy
    # segmentation config compiles nothing
    overlaps = dict(async_logging=True, preprocess_stream=True)
    det = dict(overlaps, host_threads=1)
    seg = dict(compile='reduce-overhead', **overlaps)
    for name, default in [('mask_rcnn_tinyvim_b.py', det), ('fpn_tinyvim_s_ade20k_40k.py', seg),
                          ('fpn_tinyvim_s_toy_ade.py', overlaps)]:
        dense = Config.fromfile(REPO / 'configs' / name)
        assert dense.runner_type == 'FastTrainingRunner'
        assert plan_fast_training(dense.fast_training, (9, 0)) == (default, []), name
        dense.merge_from_dict({'fast_training.amp': 'float16', 'fast_training.compile': False,
                               **{f'fast_training.{k}': False for k in det}})
        assert plan_fast_training(dense.fast_training, (9, 0))[0] == dict(amp='float16')
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
    assert model.backbone.weight.is_contiguous(memory_format=torch.channels_last)
    assert model[0].weight.is_contiguous()  # necks and heads keep the plain layout
    assert list(model.state_dict()) == keys  # in-place compile: no `_orig_mod.` prefix

def _preprocessor_and_batch(seed: int = 0):
    """mmpretrain's ClsDataPreprocessor with Mixup / CutMix, and a uint8 batch of 4."""
    from mmpretrain.models import ClsDataPreprocessor
    from mmpretrain.structures import DataSample
    pre = ClsDataPreprocessor(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                              num_classes=5, to_onehot=True,
                              batch_augments=dict(augments=[dict(type='Mixup', alpha=0.8),
                                                            dict(type='CutMix', alpha=1.0)]))
    g = torch.Generator().manual_seed(seed)
    batch = dict(inputs=torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g),
                 data_samples=[DataSample().set_gt_label(i % 5) for i in range(4)])
    return pre, batch


def _seeded(fn, *args):
    import numpy as np
    np.random.seed(0)
    torch.manual_seed(0)
    return fn(*args)


def test_preprocess_stream_wraps_training_calls_only():
    from tinyvim_mm.engine.fast_training import _tensors
    pre, batch = _preprocessor_and_batch()
    reference = _seeded(pre, copy.deepcopy(batch), True)
    model = nn.Module()
    model.data_preprocessor = pre
    prepare_model(model, dict(preprocess_stream=True))
    assert 'forward' in vars(pre)  # wrapped on the instance
    out = _seeded(pre, copy.deepcopy(batch), True)  # no CUDA here: the call as before
    assert torch.equal(out['inputs'], reference['inputs'])
    found = list(_tensors(out))  # the batch and every sample's label and score
    assert len(found) == 1 + 2 * 4 and found[0] is out['inputs']
    assert torch.equal(out['data_samples'][2].gt_score, reference['data_samples'][2].gt_score)
    settings, notes = plan_fast_training(dict(preprocess_stream=True), None)
    assert settings == {} and 'preprocess_stream' in notes[0]


def test_preprocess_stream_marks_detection_targets():
    """The boxes of a detection batch (mmdet's HorizontalBoxes keep their tensor in an
    attribute) are found, so they too are marked for the main stream; masks stay on the
    host (numpy)."""
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    from tinyvim_mm.engine.fast_training import _tensors
    boxes, labels = torch.rand(3, 4), torch.tensor([1, 2, 3])
    sample = DetDataSample()
    sample.gt_instances = InstanceData(bboxes=HorizontalBoxes(boxes), labels=labels,
                                       masks=BitmapMasks(np.zeros((3, 8, 8), np.uint8), 8, 8))
    found = list(_tensors(dict(inputs=torch.zeros(1), data_samples=[sample])))
    held = sample.gt_instances.bboxes.tensor
    assert len(found) == 3 and {id(t) for t in found[1:]} == {id(held), id(labels)}
    assert torch.equal(held, boxes)


def _busy_main_stream() -> torch.Tensor:
    """Work queued on the main stream, which the side stream's copies need not wait for."""
    busy = torch.randn(4096, 4096, device='cuda')
    for _ in range(4):
        busy = busy @ busy / 64
    return busy


@needs_gpu
def test_preprocess_stream_gives_the_same_batch_on_gpu():
    pre, batch = _preprocessor_and_batch()
    pre = pre.cuda()
    reference = _seeded(pre, copy.deepcopy(batch), True)
    model = nn.Module()
    model.data_preprocessor = pre
    prepare_model(model, dict(preprocess_stream=True))
    busy = _busy_main_stream()
    out = _seeded(pre, copy.deepcopy(batch), True)
    inputs = out['inputs'] * 1  # used on the main stream after the side stream's work
    assert torch.equal(inputs, reference['inputs'])
    for a, b in zip(out['data_samples'], reference['data_samples']):
        assert torch.equal(a.gt_score, b.gt_score) and torch.equal(a.gt_label, b.gt_label)
    assert torch.isfinite(busy).all()


@needs_gpu
def test_preprocess_stream_gives_the_same_detection_batch_on_gpu():
    """Mask R-CNN's batches (boxes, labels, polygon masks padded with the images) come out
    of mmdet's data preprocessor on the side stream as on the main one."""
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    from mmdet.structures.mask import PolygonMasks

    from tinyvim_mm.benchmark.synthetic import packed_samples
    pre = DetDataPreprocessor(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                              bgr_to_rgb=True, pad_size_divisor=32, pad_mask=True).cuda()
    samples = packed_samples('mmdet', 2, (200, 300), 3, 0, polygons=True)
    batch = dict(inputs=[s['inputs'] for s in samples],
                 data_samples=[s['data_samples'] for s in samples])
    reference = pre(copy.deepcopy(batch), True)
    model = nn.Module()
    model.data_preprocessor = pre
    prepare_model(model, dict(preprocess_stream=True))
    busy = _busy_main_stream()
    out = pre(copy.deepcopy(batch), True)
    assert torch.equal(out['inputs'] * 1, reference['inputs'])
    for a, b in zip(out['data_samples'], reference['data_samples']):
        a, b = a.gt_instances, b.gt_instances
        boxes = [getattr(i.bboxes, 'tensor', i.bboxes) for i in (a, b)]  # tensor or box type
        assert torch.equal(boxes[0] * 1, boxes[1]) and torch.equal(a.labels, b.labels)
        assert isinstance(a.masks, PolygonMasks) and a.masks.height == out['inputs'].shape[2]
    assert torch.isfinite(busy).all()


def test_model_edits_pass_the_compile_mode(monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 8, 3))
    model.backbone = nn.Conv2d(8, 8, 1)
    compiled = []
    monkeypatch.setattr(torch, 'compile', lambda fn, **kwargs: compiled.append(kwargs) or fn)
    prepare_model(model, dict(compile='reduce-overhead'))
    assert compiled == [dict(mode='reduce-overhead')]  # a mode string is torch.compile's mode


class _ConvBNAct(nn.Module):
    """A module whose ``forward`` is this file's code, traced like a backbone's by every
    torch: compiling an ``nn.Sequential``'s ``_call_impl`` gives no graph on torch 2.11
    (its frames are in ``torch.nn``, which dynamo skips; only later versions wrap such a
    call for tracing, ``OptimizedModule._should_wrap_module_call_impl``)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return nn.functional.gelu(self.bn(self.conv(x)))


def test_compiled_for_training_only():
    """Training-mode calls run the compiled graph, eval-mode calls (validation and test at
    many sizes) the eager module, both with the same results; the state dict keeps its
    keys."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append([tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor)])
        return gm.forward

    torch._dynamo.reset()
    module = _ConvBNAct()
    keys = list(module.state_dict())
    compile_for_training(module, backend=backend)
    assert list(module.state_dict()) == keys
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(module.train()(x), module._call_impl(x), atol=1e-6)
    assert len(graphs) == 1
    module.eval()
    with torch.no_grad():
        for size in [(11, 13), (9, 7), (5, 6)]:
            z = torch.randn(1, 3, *size)
            assert torch.equal(module(z), module._call_impl(z))
    assert len(graphs) == 1  # no compilation in eval mode, whatever the size
    module.train()(x).sum().backward()  # training reuses its graph
    assert len(graphs) == 1 and module.conv.weight.grad is not None


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
    """Same data, same seed, float32: channels-last + fused AdamW start from the plain
    form's weights (the first loss equal to 1e-5) and follow its trajectory. Only the
    order of float32 sums differs (cuDNN's channels-last kernels, the fused optimizer), and
    AdamW's first steps (~lr * sign(g)) amplify that on near-zero gradients: on an H200 the
    losses agree to 1e-4 after one step and part by up to 2.6 % at step 5. A transposed
    layout or another initialisation is off at the first loss (1.6 % when the weights
    were initialised in channels-last memory); a wrong optimizer state far more later."""
    plain = toy_seg(tmp_path / 'plain', iters=5)
    plain.fast_training = None
    fast = toy_seg(tmp_path / 'fast', iters=5)
    fast.fast_training = dict(channels_last=True, fused_optimizer=True)
    a, b = _losses(plain), _losses(fast)
    assert len(a) == len(b) == 5 and all(math.isfinite(x) for x in a + b)
    rel = [abs(x - y) / abs(x) for x, y in zip(a, b)]
    assert rel[0] < 1e-5 and rel[1] < 1e-3 and max(rel) < 0.1, (a, b)


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
    """Resuming with every fast setting on but the compile (the AMP loss scaler and the
    fused optimizer state are in the checkpoint; the losses logged without waiting, the
    preprocessor on its own stream) continues the saved run bit for bit: a run of 3
    iterations saves at iteration 2, and the run resumed from that checkpoint computes
    iteration 3's loss exactly as the first run did (the restored weights, RNG and data
    order; with ``deterministic=True`` the forward is deterministic, the Triton scan's
    direction sums included). Trajectories of separate runs are
    compared to 1e-3 only: CUDA's atomic-add backward kernels (bilinear upsampling's) sum
    in no fixed order even with ``deterministic=True``, so two runs' weights part in the
    last bits after their first backward (H200: losses 1e-4 apart by iteration 3), while
    a lost optimizer state moves the next loss by 13 % (checked on the CPU)."""
    cfg = toy_seg(tmp_path / 'full', iters=4)
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.train_cfg.val_begin = 100  # mmseg's IoUMetric (histc) has no deterministic CUDA form
    cfg.custom_hooks = [dict(type='CheckpointGuardHook')]
    cfg.fast_training = dict(amp='float16', channels_last=True, fused_optimizer=True,
                             async_logging=True, preprocess_stream=True)
    full = _losses(copy.deepcopy(cfg))
    first = copy.deepcopy(cfg)
    first.merge_from_dict({'work_dir': str(tmp_path / 'first'), 'train_cfg.max_iters': 3,
                           'default_hooks.checkpoint.interval': 2})
    head = _losses(first)
    resumed = copy.deepcopy(cfg)
    resumed.merge_from_dict({'work_dir': str(tmp_path / 'resumed'), 'resume': True,
                             'load_from': str(tmp_path / 'first' / 'iter_2.pth')})
    rest = _losses(resumed)
    assert len(head) == 3 and len(rest) == 2, (head, rest)
    assert rest[0] == head[2], (head, rest)  # the resumed iteration 3, bit for bit
    assert head[0] == full[0], (head, full)  # same seed, same weights and data
    for x, y in zip(head[1:] + rest[1:], full[1:3] + full[3:]):
        assert abs(x - y) / abs(y) < 1e-3, (head, rest, full)


@needs_gpu
def test_compiled_with_cuda_graphs_runs_the_whole_loop_on_gpu(tmp_path):
    """The toy classification recipe with its backbone compiled into CUDA graphs
    (``compile=dict(mode='reduce-overhead')``): a partial last batch (30 images in
    batches of 8), validation with the EMA weights swapped in, two epochs; the first loss
    as the eager AMP form's (same weights; fp16 kernels fused differently: 1 %). A small
    arch keeps the three compilations (batch 8, the partial batch, evaluation) short."""
    from tinyvim_mm.datasets import make_toy_imagenet
    root = make_toy_imagenet(tmp_path / 'toy', train_per_class=3, val_per_class=1).root

    def toy_cls(work: str, compile_cfg) -> Config:
        cfg = Config.fromfile(REPO / 'configs' / 'tinyvim_s_toy_imagenet.py')
        loaders = {f'{split}_dataloader.{key}': value
                   for split in ('train', 'val', 'test')
                   for key, value in (('num_workers', 0), ('persistent_workers', False),
                                      ('dataset.data_root', str(root)))}
        cfg.merge_from_dict({**loaders, 'work_dir': str(tmp_path / work),
                             'model.backbone.arch': dict(widths=[16, 16, 32, 32],
                                                         depths=[1, 1, 2, 1], _delete_=True),
                             'model.head.in_channels': 32,
                             'train_dataloader.batch_size': 8, 'val_dataloader.batch_size': 4,
                             'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 1,
                             'param_scheduler': [], 'default_hooks.logger.interval': 1,
                             'randomness': dict(seed=0, deterministic=False)})
        cfg.fast_training.compile = compile_cfg
        return cfg

    runner = FastTrainingRunner.from_cfg(toy_cls('graphs', dict(mode='reduce-overhead')))
    losses = []
    runner.register_hook(_Record(losses), priority='LOWEST')
    runner.train()
    assert runner.fast_training['compile'] == dict(mode='reduce-overhead')
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    top1 = runner.message_hub.get_scalar('val/accuracy/top1').current()
    assert 0 <= top1 <= 100
    eager = _losses(toy_cls('eager', False))
    assert abs(eager[0] - losses[0]) / abs(eager[0]) < 0.01, (eager, losses)


class _GraphCount(Hook):
    """Dynamo's count of compiled graphs before and after each validation."""

    def __init__(self) -> None:
        self.counts = []

    def before_val_epoch(self, runner) -> None:
        self.counts.append(torch._dynamo.utils.counters['stats']['unique_graphs'])

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.counts.append(torch._dynamo.utils.counters['stats']['unique_graphs'])


@needs_gpu
def test_segmentation_trains_from_cuda_graphs_and_validates_eagerly_on_gpu(tmp_path):
    """The ADE20K configs' default (``compile='reduce-overhead'``): the backbone's training
    steps from CUDA graphs, the validation images (each of its own size) through the
    eager backbone, twice, with no compilation in between; a small arch keeps the one
    compilation short."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cfg = toy_seg(tmp_path, iters=4)
    cfg.merge_from_dict({
        'model.backbone.arch': dict(widths=[16, 16, 32, 32], depths=[1, 1, 2, 1],
                                    _delete_=True),
        'model.neck.in_channels': [16, 16, 32, 32], 'train_cfg.val_interval': 2,
        'fast_training.compile': 'reduce-overhead'})
    runner = FastTrainingRunner.from_cfg(cfg)
    losses, graphs = [], _GraphCount()
    runner.register_hook(_Record(losses), priority='LOWEST')
    runner.register_hook(graphs)
    runner.train()
    assert runner.fast_training == dict(compile='reduce-overhead')
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert 0 <= runner.message_hub.get_scalar('val/mIoU').current() <= 100
    before, after, again, last = graphs.counts
    assert before >= 1 and before == after and again == last  # eval compiles nothing


def test_host_threads_setting_and_scope(monkeypatch):
    """``host_threads``: a number of threads >= 1 (or off), set while training only (the
    runner's ``train``, MMEngine's inside it)."""
    from mmengine.runner import Runner

    from tinyvim_mm.engine import FastTrainingRunner
    from tinyvim_mm.engine.fast_training import host_threads
    assert plan_fast_training(dict(host_threads=1), (9, 0)) == (dict(host_threads=1), [])
    assert plan_fast_training(dict(host_threads=False), (9, 0)) == ({}, [])
    for bad in (0, -2, True, 1.5, '1'):
        with pytest.raises(ValueError, match='host_threads must be a number of threads'):
            plan_fast_training(dict(host_threads=bad), (9, 0))
    before = torch.get_num_threads()
    with host_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match='inside'):
        with host_threads(1):
            raise RuntimeError('inside')
    assert torch.get_num_threads() == before
    with host_threads(None):
        assert torch.get_num_threads() == before
    seen = []
    monkeypatch.setattr(Runner, 'train', lambda self: seen.append(torch.get_num_threads()))
    runner = FastTrainingRunner.__new__(FastTrainingRunner)  # the wiring alone
    runner.fast_training = dict(host_threads=1)
    runner.train()
    runner.fast_training = {}
    runner.train()
    assert seen == [1, before] and torch.get_num_threads() == before
