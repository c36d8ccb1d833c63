"""ImageNet classification: recipe configs, hard distillation, AGC, released checkpoints."""
import copy
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import ExponentialMovingAverage
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS, PARAM_SCHEDULERS, TRANSFORMS
from mmpretrain.structures import DataSample

from conftest import REPO, load_module
import tinyvim_mm  # noqa: F401  (registers TinyViM, the head, the classifier, AGC)
from tinyvim_mm.engine import AdaptiveGradClipper, AGCOptimWrapper, adaptive_clip_grad_
from tinyvim_mm.models.classifiers.distill_classifier import DistillImageClassifier
from tinyvim_mm.models.heads import DistillClsHead

CONFIGS = REPO / 'configs'
TOL = 1e-4
TINY_ARCH = dict(widths=(8, 16, 24, 32), depths=(1, 1, 2, 1))


@pytest.fixture(scope='module', autouse=True)
def _scope():
    init_default_scope('mmpretrain')


def _cfg(name: str) -> Config:
    return Config.fromfile(CONFIGS / name)


def _build(cfg: Config) -> DistillImageClassifier:
    """The model as the Runner builds it (top-level data_preprocessor merged)."""
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    return MODELS.build(model_cfg)


@pytest.fixture(scope='module')
def s_model() -> DistillImageClassifier:
    """TinyViM-S built from the distillation config (teacher weights not loaded)."""
    return _build(_cfg('tinyvim_s_8xb128_in1k.py'))


def _tiny_model(teacher_ckpt: Path, num_classes: int = 4) -> DistillImageClassifier:
    """A tiny TinyViM student with a timm resnet18 teacher."""
    return DistillImageClassifier(
        backbone=dict(type='TinyViM', arch=TINY_ARCH, out_indices=(3, ), scan_backend='torch'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='DistillClsHead', num_classes=num_classes, in_channels=32),
        teacher=dict(type='TimmClassifier', model_name='resnet18', num_classes=num_classes),
        teacher_checkpoint=str(teacher_ckpt))


def _save_teacher(path: Path, num_classes: int = 4) -> Path:
    """A random timm resnet18 checkpoint (released-style: weights under ``model``)."""
    import timm
    torch.save({'model': timm.create_model('resnet18', num_classes=num_classes).state_dict()},
               path)
    return path


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize('arch,width', [('s', 224), ('b', 384), ('l', 512)])
def test_config_builds(arch, width, s_model):
    cfg = _cfg(f'tinyvim_{arch}_8xb128_in1k.py')
    assert cfg.default_scope == 'mmpretrain'
    assert 'tinyvim_mm.models.classifiers.distill_classifier' in cfg.custom_imports.imports
    assert cfg.model.teacher == dict(type='TimmClassifier', model_name='regnety_160',
                                     pretrained=False, num_classes=1000)
    assert cfg.model.teacher_checkpoint.endswith('regnety_160-a5fe3fc4.pth')
    if arch == 's':
        model = s_model
        assert model.teacher.model.__class__.__name__ == 'RegNet'
    else:  # the teacher is the same for all; skip building RegNetY-16GF again
        cfg.model.update(teacher=None, teacher_checkpoint=None)
        model = _build(cfg)
    assert model.backbone.arch['widths'][-1] == width and model.backbone.out_indices == (3, )
    assert isinstance(model.head, DistillClsHead) and model.head.distill_weight == 0.5
    loss = model.head.loss_module
    assert type(loss).__name__ == 'LabelSmoothLoss' and loss.label_smooth_val == 0.1
    augments = model.data_preprocessor.batch_augments.augments
    assert [(type(a).__name__, a.alpha) for a in augments] == [('Mixup', 0.8), ('CutMix', 1.0)]
    assert model.data_preprocessor.num_classes == 1000
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64), mode='tensor').shape == (1, 1000)

    # optimizer: AdamW 2e-3 for 8 x 128, wd 0.025 except norms/biases/layer_scale/A_logs/Ds
    assert cfg.train_dataloader.batch_size == 128 and cfg.auto_scale_lr.base_batch_size == 1024
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert isinstance(wrapper, AGCOptimWrapper)
    assert wrapper.clip_grad_kwargs == dict(clip_factor=0.02, eps=1e-3)
    assert type(wrapper.optimizer).__name__ == 'AdamW'
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    assert {g['lr'] for g in wrapper.optimizer.param_groups} == {2e-3}
    for name, param in model.named_parameters():
        no_decay = (param.ndim <= 1 or name.endswith(('layer_scale', 'A_logs', 'Ds', 'bias'))
                    or '.bn.' in name or 'norm' in name)
        assert decay[id(param)] == (0. if no_decay else 0.025), name
    if arch != 's':
        return

    # schedule: 5 warm-up epochs 1e-6 -> 2e-3, cosine to 1e-5 at epoch 300, per iteration
    assert cfg.train_cfg.max_epochs == 300
    epoch_length = 2
    optimizer = OptimWrapper(torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=2e-3))
    schedulers = [PARAM_SCHEDULERS.build(s, default_args=dict(optimizer=optimizer,
                                                              epoch_length=epoch_length))
                  for s in copy.deepcopy(cfg.param_scheduler)]
    lrs = []
    for _ in range(300 * epoch_length):
        lrs.append(optimizer.get_lr()['lr'][0])
        for scheduler in schedulers:
            scheduler.step()
    assert lrs[0] == pytest.approx(1e-6)
    peak = 5 * epoch_length
    assert lrs[peak // 2] < 1.2e-3 and lrs[peak] == pytest.approx(2e-3)
    assert max(lrs) == pytest.approx(2e-3)
    assert lrs[-1] == pytest.approx(1e-5, rel=1e-2)
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))

    # EMA, data pipelines
    assert cfg.custom_hooks == [dict(type='EMAHook', ema_type='ForeachExponentialMovingAverage',
                                     momentum=4e-5, update_buffers=True,
                                     priority='ABOVE_NORMAL')]
    train = {type(t).__name__: t
             for t in map(TRANSFORMS.build, cfg.train_dataloader.dataset.pipeline)}
    assert train['RandomResizedCrop'].scale == (224, 224)
    assert train['RandomResizedCrop'].interpolation == 'bicubic'
    rand_aug = train['RandAugment']
    assert (rand_aug.num_policies, rand_aug.magnitude_level, rand_aug.magnitude_std,
            rand_aug.total_level) == (2, 9, 0.5, 10)
    assert train['RandomErasing'].erase_prob == 0.25
    test = [TRANSFORMS.build(t) for t in cfg.test_dataloader.dataset.pipeline]
    resize, crop = test[1], test[2]
    assert (type(resize).__name__, resize.scale, resize.edge, resize.interpolation) == (
        'ResizeEdge', 248, 'short', 'bicubic')
    assert crop.crop_size == (224, 224)
    assert cfg.val_dataloader.dataset.data_root == 'data/imagenet'


@pytest.mark.parametrize('arch', ['s', 'b', 'l'])
def test_noteacher_configs(arch):
    cfg = _cfg(f'tinyvim_{arch}_8xb128_in1k_noteacher.py')
    assert cfg.model.teacher is None and cfg.model.teacher_checkpoint is None
    assert cfg.optim_wrapper.type == 'AGCOptimWrapper' and cfg.train_cfg.max_epochs == 300


def test_toy_configs():
    """One toy recipe: train and test at 64x64, no teacher; the distillation variant adds
    only the teacher; the teacher config trains resnet18 on the same data."""
    cfg = _cfg('tinyvim_s_toy_imagenet.py')
    assert cfg.model.head.num_classes == cfg.data_preprocessor.num_classes == 10
    assert cfg.model.teacher is None and cfg.model.train_cfg is None  # no Mixup / CutMix
    steps = {split: {t.type: t for t in cfg[f'{split}_dataloader'].dataset.pipeline}
             for split in ('train', 'test')}
    assert steps['train']['RandomResizedCrop'].scale == 64
    assert steps['test']['ResizeEdge'].scale == steps['test']['CenterCrop'].crop_size == 64
    assert cfg.test_dataloader.dataset.data_root == 'data/toy/imagenet'
    assert len(cfg.test_dataloader.dataset.classes) == 10
    assert cfg.param_scheduler[1].end == cfg.train_cfg.max_epochs
    assert cfg.optim_wrapper.clip_grad.type == 'agc'
    distill = _cfg('tinyvim_s_toy_imagenet_distill.py')
    assert distill.model.teacher == dict(type='TimmClassifier', model_name='resnet18',
                                         pretrained=False, num_classes=10)
    del distill.model['teacher'], distill.model['teacher_checkpoint']
    del cfg.model['teacher'], cfg.model['teacher_checkpoint']
    assert distill.model == cfg.model and distill.train_dataloader == cfg.train_dataloader
    teacher = _cfg('resnet18_toy_imagenet_teacher.py')
    assert teacher.model.type == 'TimmClassifier' and teacher.custom_hooks == []
    assert teacher.train_dataloader == cfg.train_dataloader
    assert teacher.train_cfg.max_epochs == cfg.train_cfg.max_epochs


def test_toy_teacher_checkpoint_into_student(tmp_path):
    """tools/train.py on the teacher config writes an mmpretrain checkpoint that the
    distillation student loads as its teacher, strictly."""
    from tinyvim_mm.datasets import make_toy_imagenet
    root = make_toy_imagenet(tmp_path / 'toy', train_per_class=1, val_per_class=1).root
    work = tmp_path / 'teacher'
    load_module(REPO / 'tools' / 'train.py', 'tinyvim_train_teacher').main([
        str(CONFIGS / 'resnet18_toy_imagenet_teacher.py'), '--work-dir', str(work),
        '--cfg-options', f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}', 'train_dataloader.batch_size=5',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'train_cfg.max_epochs=1', 'train_cfg.val_begin=2', 'param_scheduler.0.end=1',
        'param_scheduler.1.begin=1', 'param_scheduler.1.end=2'])
    checkpoint = (work / 'last_checkpoint').read_text().strip()
    saved = torch.load(checkpoint, weights_only=False)['state_dict']
    assert 'fc.weight' in saved and not any(k.startswith('model.') for k in saved)
    cfg = _tiny_toy_cfg()
    cfg.model.teacher_checkpoint = checkpoint
    student = _build(cfg)
    student.init_weights()
    for key, value in saved.items():
        assert torch.equal(student.teacher.state_dict()[key], value), key


# ---------------------------------------------------------------- distillation
def _fixed_head(**kwargs) -> DistillClsHead:
    head = DistillClsHead(num_classes=3, in_channels=2, **kwargs)
    with torch.no_grad():
        for linear, bias in ((head.head, [1., 0., 0.]), (head.dist_head, [0., 2., 0.])):
            linear.weight.zero_()
            linear.bias.copy_(torch.tensor(bias))
    return head  # logits: head [1, 0, 0], dist_head [0, 2, 0] for every sample


def test_distillation_loss_by_hand():
    head = _fixed_head()
    feats = (torch.randn(2, 2), )
    samples = [DataSample().set_gt_label(0), DataSample().set_gt_label(1)]
    teacher = torch.tensor([[0., 5., 1.], [0., 1., 5.]])  # hard labels 1, 2
    losses = head.loss(feats, samples, teacher_logits=teacher)
    log_h, log_d = math.log(math.e + 2), math.log(math.e ** 2 + 2)
    ce_head = ((log_h - 1) + log_h) / 2  # CE([1,0,0], 0), CE([1,0,0], 1)
    ce_dist = ((log_d - 2) + log_d) / 2  # CE([0,2,0], 1), CE([0,2,0], 2)
    assert losses['loss_cls'].item() == pytest.approx(0.5 * ce_head, abs=1e-6)
    assert losses['loss_dist'].item() == pytest.approx(0.5 * ce_dist, abs=1e-6)
    # without teacher both heads learn the labels: CE([0,2,0], 0), CE([0,2,0], 1)
    losses = head.loss(feats, samples)
    assert losses['loss_dist'].item() == pytest.approx(0.5 * (log_d + (log_d - 2)) / 2, abs=1e-6)
    # inference: the average of the heads, [0.5, 1, 0]
    assert torch.allclose(head(feats), torch.tensor([[0.5, 1., 0.]] * 2))
    pred = head.predict(feats)[0].pred_score
    assert torch.allclose(pred, torch.softmax(torch.tensor([0.5, 1., 0.]), 0))
    with pytest.raises(ValueError, match='same classes'):
        head.loss(feats, samples, teacher_logits=torch.zeros(2, 5))


def test_distillation_loss_soft_labels_smoothing():
    """Mixup scores + label smoothing on ``head``; the teacher's argmax on ``dist_head``."""
    head = _fixed_head(distill_weight=0.25,
                       loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'))
    samples = [DataSample().set_gt_score(torch.tensor([0.7, 0.3, 0.]))]
    losses = head.loss((torch.randn(1, 2), ), samples, teacher_logits=torch.tensor([[0., 0., 1.]]))
    target = [0.7 * 0.9 + 0.1 / 3, 0.3 * 0.9 + 0.1 / 3, 0.1 / 3]
    log_z = math.log(math.e + 2)
    soft_ce = sum(t * (log_z - z) for t, z in zip(target, [1., 0., 0.]))
    assert losses['loss_cls'].item() == pytest.approx(0.75 * soft_ce, abs=1e-6)
    assert losses['loss_dist'].item() == pytest.approx(0.25 * math.log(math.e ** 2 + 2), abs=1e-6)


def test_teacher_frozen_and_outside_student(tmp_path):
    ckpt = _save_teacher(tmp_path / 'teacher.pth')
    model = _tiny_model(ckpt)
    model.init_weights()
    teacher = model.teacher
    assert torch.equal(teacher.model.fc.weight, torch.load(ckpt)['model']['fc.weight'])
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not teacher_ids & {id(p) for p in model.parameters()}
    assert not any('teacher' in k or k.startswith('model.') for k in model.state_dict())
    model.train()
    assert model.backbone.training and not teacher.training
    wrapper = build_optim_wrapper(model, dict(type='AGCOptimWrapper',
                                              optimizer=dict(type='AdamW', lr=1e-3),
                                              clip_grad=dict(type='agc', clip_factor=0.02)))
    assert not teacher_ids & {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    inputs = torch.randn(2, 3, 64, 64)
    samples = [DataSample().set_gt_label(i) for i in (0, 3)]
    losses = model.loss(inputs, samples)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert not model.teacher_logits(inputs).requires_grad
    # EMA: a copy of the student only; the teacher is shared, not copied
    ema = ExponentialMovingAverage(model, momentum=0.1)
    assert ema.module.teacher is teacher
    assert not any('teacher' in k for k in ema.avg_parameters)
    # device / dtype moves follow the student
    model.double()
    assert next(teacher.parameters()).dtype == torch.float64
    assert model.teacher_logits(inputs.double()).shape == (2, 4)


def test_teacher_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match='teacher_checkpoint'):
        DistillImageClassifier(
            backbone=dict(type='TinyViM', arch=TINY_ARCH, out_indices=(3, )),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='DistillClsHead', num_classes=4, in_channels=32),
            teacher=dict(type='TimmClassifier', model_name='resnet18', num_classes=4))
    model = _tiny_model(tmp_path / 'missing.pth')
    with pytest.raises(RuntimeError, match='not loaded'):
        model.teacher_logits(torch.randn(1, 3, 32, 32))
    with pytest.raises(FileNotFoundError, match='missing.pth.*not found'):
        model.init_weights()
    (tmp_path / 'garbage.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(RuntimeError, match='Cannot read teacher checkpoint'):
        _tiny_model(tmp_path / 'garbage.pth').load_teacher()
    wrong_classes = _save_teacher(tmp_path / 'r18_c7.pth', num_classes=7)
    with pytest.raises(RuntimeError, match=r'does not fit.*shape mismatches.*fc\.weight'):
        _tiny_model(wrong_classes).load_teacher()
    torch.save({'state_dict': {'conv.weight': torch.zeros(1)}}, tmp_path / 'other.pth')
    with pytest.raises(RuntimeError, match='missing keys.*unexpected keys'):
        _tiny_model(tmp_path / 'other.pth').load_teacher()


# ---------------------------------------------------------------- AGC
def test_agc_by_hand():
    weight = nn.Parameter(torch.tensor([[3., 4.], [0., 1e-4], [1., 0.]]))
    weight.grad = torch.tensor([[30., 40.], [1., 0.], [0.01, 0.]])
    bias = nn.Parameter(torch.tensor([0.6, 0.8]))  # 1-D: one unit, norm 1
    bias.grad = torch.tensor([3., 4.])  # norm 5 > 0.1 * 1
    total = adaptive_clip_grad_([weight, bias], clip_factor=0.1, eps=1e-3)
    assert total.item() == pytest.approx(math.sqrt(50 ** 2 + 1 + 1e-4 + 25))
    # row 0: max 0.1 * 5 = 0.5 of 50 -> x0.01; row 1: weight norm floored to eps,
    # max 1e-4 of 1; row 2: 0.01 < 0.1, unchanged
    assert torch.allclose(weight.grad, torch.tensor([[0.3, 0.4], [1e-4, 0.], [0.01, 0.]]))
    assert torch.allclose(bias.grad, torch.tensor([0.06, 0.08]))


def test_agc_matches_timm_and_wrapper_applies_it():
    from timm.utils.agc import adaptive_clip_grad
    conv = nn.Conv2d(4, 6, 3)
    grads = [torch.randn_like(p) * 0.05 for p in conv.parameters()]
    ref = copy.deepcopy(conv)
    for p, q, g in zip(conv.parameters(), ref.parameters(), grads):
        p.grad, q.grad = g.clone(), g.clone()
    adaptive_clip_grad_(conv.parameters(), clip_factor=0.02)
    adaptive_clip_grad(ref.parameters(), clip_factor=0.02)
    assert not torch.allclose(conv.weight.grad, grads[0])  # clipping happened
    for p, q in zip(conv.parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad)

    param = nn.Parameter(torch.tensor([[3., 4.]]))
    wrapper = AGCOptimWrapper(torch.optim.SGD([param], lr=1.),
                              clip_grad=dict(type='agc', clip_factor=0.1))
    wrapper.update_params((param * torch.tensor([[30., 40.]])).sum())  # grad [30, 40]
    assert torch.allclose(param.detach(), torch.tensor([[2.7, 3.6]]))
    assert wrapper.message_hub.get_scalar('train/grad_norm').current() == pytest.approx(50.)
    # deferred (what CUDA gradients get by default): the norm is logged one step later
    deferred = AGCOptimWrapper(torch.optim.SGD([param], lr=0.), defer_norm_log=True,
                               clip_grad=dict(type='agc', clip_factor=1.))
    hub = deferred.message_hub
    count = hub.get_scalar('train/grad_norm').data[0].size
    deferred.update_params((param * torch.tensor([[3., 4.]])).sum())  # norm 5
    assert hub.get_scalar('train/grad_norm').data[0].size == count
    deferred.update_params((param * torch.tensor([[6., 8.]])).sum())  # norm 10
    assert hub.get_scalar('train/grad_norm').current() == pytest.approx(5.)
    deferred.log_pending_norm()
    assert hub.get_scalar('train/grad_norm').current() == pytest.approx(10.)
    assert hub.get_scalar('train/grad_norm').data[0].size == count + 2
    # other clip types are mmengine's
    assert AGCOptimWrapper(torch.optim.SGD([param], lr=1.), clip_grad=dict(max_norm=1.)).clip_func \
        is OptimWrapper(torch.optim.SGD([param], lr=1.), clip_grad=dict(max_norm=1.)).clip_func
    with pytest.raises(ValueError, match='clip_factor'):
        AGCOptimWrapper(torch.optim.SGD([param], lr=1.), clip_grad=dict(type='agc', eps=1e-3))


def test_agc_matches_timm_on_a_whole_network():
    """Clipping a whole network at once (units concatenated, norms by segmented sums)
    changes nothing: a TinyViM classifier in channels-last (non-contiguous 4-D gradients,
    1-D and scalar parameters, units of many sizes) gets timm's per-parameter result, with
    far fewer operators."""
    from timm.utils.agc import adaptive_clip_grad
    from torch.profiler import ProfilerActivity, profile

    from tinyvim_mm.models import TinyViMClassifier
    model = TinyViMClassifier(TINY_ARCH, num_classes=10).to(memory_format=torch.channels_last)
    model.register_parameter('scalar', nn.Parameter(torch.tensor(0.5)))
    ref = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    before = []
    for p, q in zip(model.parameters(), ref.parameters()):
        grad = torch.randn(p.shape, generator=gen) * 0.05
        before.append(grad)
        p.grad = grad.clone().contiguous(memory_format=torch.channels_last) if p.ndim == 4 \
            else grad.clone()
        q.grad = grad.clone()
    with profile(activities=[ProfilerActivity.CPU]) as whole:
        total = adaptive_clip_grad_(model.parameters(), clip_factor=0.02)
    with profile(activities=[ProfilerActivity.CPU]) as per_parameter:
        adaptive_clip_grad(ref.parameters(), clip_factor=0.02)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-9, msg=name)
    assert sum(not torch.equal(q.grad, g) for q, g in zip(ref.parameters(), before)) > 10
    expected = torch.linalg.vector_norm(torch.cat([g.flatten() for g in before]))
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert _computing_ops(whole) * 3 < _computing_ops(per_parameter)


@pytest.mark.parametrize('multi_tensor', [False, True])
def test_agc_clipper_keeps_its_plan_only_while_it_holds(multi_tensor):
    """The training steps' clipper plans once and reuses it: over steps with new
    gradients, a layout change of the weights (``p.data`` replaced) and gradients in
    another layout than their weights (or none with a flat view), it clips as timm's
    per-parameter AGC does; with both ways of scaling (CUDA's multi-tensor one, forced
    here on the CPU, and the per-gradient one)."""
    from timm.utils.agc import adaptive_clip_grad

    from tinyvim_mm.models import TinyViMClassifier
    model = TinyViMClassifier(TINY_ARCH, num_classes=10)
    ref = copy.deepcopy(model)
    clipper = AdaptiveGradClipper(multi_tensor)
    gen = torch.Generator().manual_seed(0)

    def step(grad_layout=None) -> None:
        for p, q in zip(model.parameters(), ref.parameters()):
            grad = torch.randn(p.shape, generator=gen) * 0.05
            if grad_layout == 'transposed':  # 2-D gradients with no flat view
                p.grad = grad.t().contiguous().t() if p.ndim == 2 else grad.clone()
            elif grad_layout is not None and p.ndim == 4:
                p.grad = grad.contiguous(memory_format=grad_layout)
            else:
                p.grad = grad.clone()
            q.grad = grad.clone()
        clipper(model.parameters(), clip_factor=0.02)
        adaptive_clip_grad(ref.parameters(), clip_factor=0.02)
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-9, msg=name)

    step()
    plan = clipper._groups
    step()
    assert clipper._groups is plan  # reused
    with torch.no_grad():  # the weights move, as an optimizer step moves them in place
        for p, q in zip(model.parameters(), ref.parameters()):
            p.mul_(1.5), q.mul_(1.5)
    step()
    assert clipper._groups is plan
    model.to(memory_format=torch.channels_last)  # new storage: planned again
    step(torch.channels_last)
    assert clipper._groups is not plan
    step(torch.contiguous_format)  # channels-last weights, contiguous gradients
    step('transposed')


@pytest.mark.parametrize('multi_tensor', [False, True])
def test_agc_clipper_groups_by_dtype(multi_tensor):
    """Parameters of several dtypes are clipped in one group each, each as timm clips it
    (here in float64 on copies; bfloat16 gradients within their rounding)."""
    from timm.utils.agc import adaptive_clip_grad
    gen = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.randn(8, 3, 3, 3, generator=gen)),
              nn.Parameter(torch.randn(5, 8, generator=gen).bfloat16()),
              nn.Parameter(torch.randn(8, generator=gen))]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen) * 0.5).to(p.dtype)
    ref = [nn.Parameter(p.detach().double()) for p in params]
    for p, q in zip(params, ref):
        q.grad = p.grad.double()
    before = [p.grad.clone() for p in params]
    clipper = AdaptiveGradClipper(multi_tensor)
    clipper(params, clip_factor=0.02)
    adaptive_clip_grad(ref, clip_factor=0.02)
    assert len(clipper._groups) == 2
    for p, q, g in zip(params, ref, before):
        assert p.grad.dtype == p.dtype and not torch.equal(p.grad, g)  # clipped, in place
        tol = 1e-2 if p.dtype == torch.bfloat16 else 1e-6
        torch.testing.assert_close(p.grad.double(), q.grad, rtol=tol, atol=1e-9)


def _computing_ops(prof) -> int:
    """Innermost ATen operators of a profile that compute (views and allocations left
    out): what would each be a kernel launch on a GPU."""
    free = ('view', 'reshape', 'detach', 'select', 'split', 'alias', 'as_strided', 'unbind',
            'permute', 'expand', 'squeeze', 'unsqueeze', '_reshape_alias', 'narrow', 'slice',
            'empty', 'empty_like', 'empty_strided', 'resize_', 'lift_fresh', 'result_type',
            'item', '_local_scalar_dense', 't', '_unsafe_view')
    events = [e for e in prof.events() if e.name.startswith('aten::')]
    parents = {id(e.cpu_parent) for e in events if e.cpu_parent is not None}
    return sum(id(e) not in parents and e.name[6:] not in free for e in events)


# ---------------------------------------------------------------- released checkpoints
def test_released_checkpoint_through_mmpretrain(s_model, synth, fixtures_dir, reference_s,
                                                tmp_path):
    """tools/convert_official.py output, loaded into the model of the S config, gives the
    released model's logits through mmpretrain's forward / predict / test_step."""
    src = tmp_path / 'TinyViM-S.pth'
    torch.save({'model': synth.synth_state_dict(fixtures_dir / 'keys_s.json'), 'epoch': 299}, src)
    dst = tmp_path / 'tinyvim-s_in1k.pth'
    tool = load_module(REPO / 'tools' / 'convert_official.py', 'convert_official')
    argv, sys.argv = sys.argv, ['convert_official.py', str(src), str(dst)]
    try:
        tool.main()
    finally:
        sys.argv = argv

    model = copy.deepcopy(s_model)
    load_checkpoint(model, str(dst), map_location='cpu', strict=True)  # as tools/test.py
    x = synth.reference_input(tuple(reference_s['input_shape']))  # already normalised
    ref = reference_s['logits_eval']
    model.eval()
    with torch.no_grad():
        logits = model(x, mode='tensor')  # backbone -> GAP -> mean of the two heads
        # test_step runs the config's data_preprocessor (BGR->RGB, mean/std): feed it
        # the un-normalised BGR image that normalises to ``x``.
        prep = model.data_preprocessor
        raw_bgr = (x * prep.std + prep.mean).flip(1)
        stepped = torch.stack([s.pred_score for s in model.test_step(dict(inputs=raw_bgr))])
    assert (logits - ref).abs().max().item() <= TOL
    assert torch.allclose(stepped, ref.softmax(1), atol=1e-5)
    # train mode: both heads of the released model (BatchNorm on batch statistics)
    model.train()
    with torch.no_grad():
        head, dist = model.head.forward_heads(model.extract_feat(x))
    assert (head - reference_s['logits_train_head']).abs().max().item() <= TOL
    assert (dist - reference_s['logits_train_dist']).abs().max().item() <= TOL


# ---------------------------------------------------------------- training
def _tiny_toy_cfg() -> Config:
    """The toy distillation recipe with a tiny TinyViM (fast on CPU)."""
    cfg = _cfg('tinyvim_s_toy_imagenet_distill.py')
    cfg.model.backbone.update(arch=TINY_ARCH, scan_backend='torch')
    cfg.model.head.in_channels = TINY_ARCH['widths'][-1]
    return cfg


def test_loss_decreases_on_fixed_batch(tmp_path):
    cfg = _tiny_toy_cfg()
    cfg.model.teacher_checkpoint = str(_save_teacher(tmp_path / 'teacher.pth', num_classes=10))
    model = _build(cfg)
    model.init_weights()
    model.train()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    inputs = torch.randn(8, 3, 32, 32)
    samples = [DataSample().set_gt_label(i % 10) for i in range(8)]
    losses = []
    for _ in range(6):
        loss = sum(model.loss(inputs, samples).values())
        wrapper.update_params(loss)
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.15, losses


def test_runner_train_and_val_smoke(tmp_path):
    from mmengine.runner import Runner

    from tinyvim_mm.datasets import make_toy_imagenet
    root = tmp_path / 'toy'
    make_toy_imagenet(root, num_classes=8, train_per_class=1, val_per_class=1,
                      img_size=(48, 64))
    cfg = _cfg('tinyvim_s_toy_imagenet_distill.py')
    cfg.work_dir = str(tmp_path / 'work')
    cfg.model.backbone.scan_backend = 'torch'
    cfg.model.head.num_classes = cfg.model.teacher.num_classes = 8
    cfg.data_preprocessor.num_classes = 8
    cfg.model.teacher_checkpoint = str(tmp_path / 'missing.pth')
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(root), classes=str(root / 'meta' / 'classes.txt'))
        for step in loader.dataset.pipeline:  # 32x32 crops
            if 'scale' in step:
                step['scale'] = 32 if step['type'] == 'RandomResizedCrop' else 36
            if 'crop_size' in step:
                step['crop_size'] = 32
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)  # 8 images: 2 iters
    cfg.param_scheduler[0].end = cfg.param_scheduler[1].begin = 1
    cfg.param_scheduler[1].end = 2
    cfg.default_hooks.logger.interval = 1

    # a missing teacher checkpoint stops training before the first iteration
    tiny = copy.deepcopy(cfg)
    tiny.model.backbone.arch = TINY_ARCH
    tiny.model.head.in_channels = TINY_ARCH['widths'][-1]
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        Runner.from_cfg(tiny).train()
    assert not list((tmp_path / 'work').rglob('*.pth'))

    cfg.model.teacher_checkpoint = str(_save_teacher(tmp_path / 'teacher.pth', num_classes=8))
    cfg.experiment_name = 'smoke'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    hub = runner.message_hub
    assert math.isfinite(hub.get_scalar('train/loss').current())
    assert math.isfinite(hub.get_scalar('train/loss_dist').current())
    assert 0 <= hub.get_scalar('val/accuracy/top1').current() <= 100
    ckpt = torch.load(Path(cfg.work_dir) / 'epoch_1.pth', map_location='cpu', weights_only=False)
    assert 'ema_state_dict' in ckpt
    assert not any('teacher' in k or k.startswith('model.') for k in ckpt['state_dict'])
