"""The distillation teacher: built only when training needs it (inference and evaluation
never build it nor need its checkpoint), fast on CUDA (half precision, channels-last)
without changing the hard labels it hands the student."""
import copy

import pytest
import torch

pytest.importorskip('mmpretrain')
from mmengine.registry import init_default_scope  # noqa: E402

from tinyvim_mm.models.classifiers.distill_classifier import DistillImageClassifier  # noqa: E402


def build(teacher_ckpt: str = 'missing.pth', **kwargs) -> DistillImageClassifier:
    init_default_scope('mmpretrain')
    return DistillImageClassifier(
        backbone=dict(type='TinyViM', arch=dict(widths=(8, 16, 24, 32), depths=(1, 1, 2, 1)),
                      out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='DistillClsHead', num_classes=5, in_channels=32),
        teacher=dict(type='TimmClassifier', model_name='resnet18', num_classes=5),
        teacher_checkpoint=teacher_ckpt, **kwargs)


def test_teacher_is_built_on_first_use_only(tmp_path):
    model = build()
    assert model.has_teacher and model._teacher is None  # predict / test never build it
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32), mode='tensor').shape == (2, 5)
    assert model._teacher is None
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        model.init_weights()  # what Runner.train() calls: builds, then loads
    assert type(model.teacher).__name__ == 'TimmClassifier'


def test_teacher_logits_after_loading(tmp_path):
    import timm
    ckpt = tmp_path / 'teacher.pth'
    torch.save({'model': timm.create_model('resnet18', num_classes=5).state_dict()}, ckpt)
    model = build(str(ckpt))
    model.init_weights()
    x = torch.randn(3, 3, 32, 32)
    logits = model.teacher_logits(x)
    assert logits.shape == (3, 5) and logits.dtype == torch.float32
    assert torch.equal(logits, model.teacher_logits(x, fast=False))  # CPU: plain form
    assert model.teacher_agreement(x) == 1.0


@pytest.mark.parametrize('fast', [dict(dtype='fp8'), dict(dtype='float16', tf32=True),
                                  dict(compile='reduce-overhead'), dict(cuda_graphs='yes'),
                                  dict(cuda_graphs=True, compile=dict(mode='reduce-overhead')),
                                  dict(concurrent=1)])
def test_bad_teacher_fast(fast):
    with pytest.raises(ValueError, match='teacher_fast'):
        build(teacher_fast=fast)


@pytest.fixture
def teacher_ckpt(tmp_path) -> str:
    """A bare state dict of the test teacher (timm resnet18, 5 classes)."""
    import timm
    path = tmp_path / 'teacher.pth'
    torch.save(timm.create_model('resnet18', num_classes=5).state_dict(), path)
    return str(path)


def test_teacher_fast_default_and_cpu_form(teacher_ckpt):
    """The default teacher_fast (fp16, compiled, CUDA graphs, on a stream of its own)
    applies on CUDA only: on the CPU the teacher stays as built (fp32, not compiled) and
    runs after the student, with no stream."""
    model = build(teacher_ckpt)
    assert model.teacher_fast == dict(dtype='float16', channels_last=False, compile=True,
                                      cuda_graphs=True, concurrent=True)
    model.init_weights()
    model.loss(torch.randn(2, 3, 32, 32), _samples([1, 2]))
    teacher = model.teacher
    assert teacher._compiled_call_impl is None and model._teacher_graphed is None
    assert next(teacher.parameters()).dtype == torch.float32
    assert model._teacher_streams.module == {}


def _samples(labels, device='cpu'):
    """Data samples with their labels on ``device``, as the data preprocessor gives them."""
    from mmpretrain.structures import DataSample
    return [DataSample().set_gt_label(int(i)).to(device) for i in labels]


def _losses(model, x, labels):
    return model.loss(x, _samples(labels, x.device))


@pytest.mark.parametrize('device', [
    'cpu', pytest.param('cuda', marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                          reason='needs a CUDA device'))])
def test_concurrent_teacher_gives_the_same_losses(teacher_ckpt, device):
    """teacher_fast.concurrent runs the teacher on a stream of its own beside the
    student (CUDA; elsewhere the plain order): the losses are those of the plain order,
    exactly, the teacher replayed from its CUDA graph included (three calls: warm-up,
    capture, replay)."""
    fast = dict(dtype='float16', compile=False, cuda_graphs=True)
    torch.manual_seed(0)
    plain = build(teacher_ckpt, teacher_fast=fast).to(device)
    plain.init_weights()
    side = copy.deepcopy(plain)
    side.teacher_fast = dict(fast, concurrent=True)
    x = torch.randn(4, 3, 32, 32, device=device)
    for _ in range(3):
        expected, got = _losses(plain, x, [0, 1, 2, 3]), _losses(side, x, [0, 1, 2, 3])
        assert set(got) == set(expected) and len(got) == 2
        for key in expected:
            assert torch.equal(got[key], expected[key]), key
    assert bool(side._teacher_streams.module) == (device == 'cuda')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('fast', [None, dict(dtype='float16', compile=False, cuda_graphs=True),
                                  dict(dtype='float16', compile=False, cuda_graphs=False)])
def test_fast_teacher_keeps_the_hard_labels_on_gpu(fast):
    """DeiT's RegNetY-16GF in fp16 (compiled and replayed from a CUDA graph, the
    default; not compiled; eager) gives the fp32 teacher's hard labels.

    With random weights (no trained checkpoint can be downloaded here) and noise images
    the logits are near ties, far closer than a trained teacher's on images: 0.3 % of
    such a batch flipped in a device run. So: every image whose fp32 top-2 margin exceeds
    twice the largest fp16 logit error keeps its label, and >= 99 % of all do; the
    method that reports it, ``teacher_agreement``, agrees with the count."""
    init_default_scope('mmpretrain')
    model = DistillImageClassifier(
        backbone=dict(type='TinyViM', arch='s', out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='DistillClsHead', num_classes=1000, in_channels=224),
        teacher=dict(type='TimmClassifier', model_name='regnety_160', num_classes=1000),
        teacher_checkpoint='unused.pth',
        **({} if fast is None else dict(teacher_fast=fast))).cuda()
    graphs = model.teacher_fast['cuda_graphs']
    model._teacher_loaded = True  # random weights stand in for the checkpoint
    reference = copy.deepcopy(model.teacher).float()
    torch.manual_seed(0)
    x = torch.randn(1024, 3, 224, 224, device='cuda')
    fast, exact = [], []
    for chunk in x.split(256):
        fast.append(model.teacher_logits(chunk).float())
        with torch.no_grad():
            exact.append(reference(chunk, mode='tensor').float())
    fast, exact = torch.cat(fast), torch.cat(exact)
    top2 = exact.topk(2, dim=1).values
    decisive = (top2[:, 0] - top2[:, 1]) > 2 * (fast - exact).abs().max()
    same = fast.argmax(1) == exact.argmax(1)
    assert bool(same[decisive].all()), int((~same[decisive]).sum())
    assert float(same.float().mean()) >= 0.99
    agreement = sum(model.teacher_agreement(chunk) for chunk in x.split(256)) / 4
    assert abs(agreement - float(same.float().mean())) < 0.01
    graphed = model._teacher_graphed
    assert (graphed is not None and len(graphed.module.forward.graphs) == 1) == graphs
    assert (model.teacher._compiled_call_impl is not None) == model.teacher_fast['compile']


@pytest.mark.parametrize('capability', [(6, 1), (8, 0)])
def test_teacher_compile_needs_capability_7(teacher_ckpt, monkeypatch, capability):
    """teacher_fast.compile applies from compute capability 7.0 (Triton); below, the
    teacher runs without, with a warning (no CUDA call here: the capability is faked)."""
    import logging

    from mmengine.logging import MMLogger
    model = build(teacher_ckpt, teacher_fast=dict(dtype='float32', compile=True))
    model.init_weights()
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: capability)
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        teacher = model._fast_teacher(torch.device('cuda'))
    finally:
        logger.removeHandler(handler)
    old = capability < (7, 0)
    assert (teacher._compiled_call_impl is None) == old
    assert any('needs compute capability 7.0' in m for m in logged) == old


def _conv_weights(module: torch.nn.Module) -> list:
    """The convolution weights whose two memory formats differ (not 1 x 1, not depth-wise)."""
    return [p for p in module.parameters()
            if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1]


def test_teacher_keeps_its_memory_format_when_the_student_changes_it(teacher_ckpt):
    """The student in channels-last (fast_training.channels_last, which converts the
    whole classifier) leaves the teacher's weights in their own layout: RegNetY-16GF's
    grouped convolutions are slower in channels-last (38.2 vs 32.2 ms a batch on an
    H200), and teacher_fast decides its layout. Device and dtype moves still follow."""
    model = build(teacher_ckpt)
    model.init_weights()  # builds and loads the teacher
    model.to(memory_format=torch.channels_last)
    assert all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
               for w in _conv_weights(model.backbone))
    assert all(w.is_contiguous() for w in _conv_weights(model.teacher))
    model.to(torch.float64)
    assert all(w.dtype == torch.float64 for w in _conv_weights(model.teacher))
    assert all(w.is_contiguous() for w in _conv_weights(model.teacher))
    model.float()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.teacher_logits(x), model.teacher_logits(x.contiguous(
        memory_format=torch.channels_last)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('channels_last', [False, True])
def test_fast_teacher_layout_follows_teacher_fast_on_gpu(teacher_ckpt, channels_last):
    """On CUDA the teacher runs in teacher_fast's layout whatever the student's (here
    channels-last, as the ImageNet configs train)."""
    model = build(teacher_ckpt, teacher_fast=dict(dtype='float16', channels_last=channels_last,
                                                  compile=False, cuda_graphs=False)).cuda()
    model.init_weights()
    model.to(memory_format=torch.channels_last)
    model.teacher_logits(torch.randn(2, 3, 32, 32, device='cuda'))
    weights = _conv_weights(model.teacher)
    assert all(w.dtype == torch.float16 for w in weights)
    assert all(w.is_contiguous(memory_format=torch.channels_last) != w.is_contiguous()
               for w in weights)
    assert all(w.is_contiguous() != channels_last for w in weights)
