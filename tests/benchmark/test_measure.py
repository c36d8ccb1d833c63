"""Every measurement kind on the CPU at tiny sizes (1-2 timed calls): the numbers exist,
the folded and fast forms compute the training form's outputs, a timm peer is
reparameterized, the runner-level training runs the config's loop on in-memory samples."""
import gc
import math

import pytest
import torch
import torch.nn as nn

from tinyvim_mm.benchmark import measure, parse_model
from tinyvim_mm.benchmark.measure import Context
from tinyvim_mm.benchmark.models import build_classifier
from tinyvim_mm.benchmark.runner_train import (TrainVariant, data_workers, prepare_config,
                                               runner_train)
from tinyvim_mm.benchmark.timing import TimingConfig
from tinyvim_mm.benchmark.toolbox import load_config
from tinyvim_mm.benchmark.treatments import Treatment

TINY_ARCH = dict(widths=[16, 16, 32, 32], depths=[1, 1, 2, 1], _delete_=True)
TINY_DENSE = {'model.backbone.arch': TINY_ARCH, 'model.neck.in_channels': [16, 16, 32, 32]}
CPU_FP32 = Treatment(dtype='fp32', channels_last=True)


@pytest.fixture
def ctx() -> Context:
    timing = TimingConfig(warmup=0, warmup_time=0, repeats=1, min_time=0)
    return Context(torch.device('cpu'), timing)


def test_throughput_forms_and_timm_peer(ctx):
    rows = {name: measure.throughput(ctx, parse_model(name), CPU_FP32, 2, (32, 32))
            for name in ('tinyvim-s:fast', 'timm:mobileone_s0')}
    for name, row in rows.items():
        assert row['img_per_s'] > 0 and row['batch'] == 2 and row['ms'] > 0, name
        assert row['rel_err'] < 1e-4, name  # folded / fused = the training form, float32
    # the peer's training-time branches are gone: timm's reparameterize_model ran
    spec = parse_model('timm:mobileone_s0')
    assert any(isinstance(m, nn.BatchNorm2d) for m in build_classifier(spec, False).modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in build_classifier(spec, True).modules())


def test_cuda_graphs_need_cuda(ctx):
    with pytest.raises(ValueError, match='cuda_graphs needs a CUDA device'):
        measure.throughput(ctx, parse_model('tinyvim-s'), Treatment(cuda_graphs=True), 2,
                           (32, 32))


def test_latency(ctx):
    row = measure.latency(ctx, parse_model('timm:mobileone_s0'), CPU_FP32, [1, 2], (32, 32))
    assert set(row['batches']) == {'1', '2'}
    for per in row['batches'].values():
        assert per['ms'] > 0 and per['p90_ms'] >= per['ms'] and per['calls'] >= 1


def test_train_step(ctx):
    row = measure.train_step(ctx, parse_model('tinyvim-s'), CPU_FP32, 2, (32, 32))
    assert row['img_per_s'] > 0 and row['first_loss'] == pytest.approx(6.9, abs=1.0)
    with pytest.raises(ValueError, match='inference only'):
        measure.train_step(ctx, parse_model('tinyvim-s:fast'), CPU_FP32, 2, (32, 32))


def test_dense_and_backbone(ctx):
    det = parse_model(dict(name='configs/mask_rcnn_tinyvim_s_toy_coco.py',
                           cfg_options=TINY_DENSE, optimize=dict(fuse_blocks=False),
                           cuda_graphs=['backbone', 'neck', 'rpn_head']))
    row = measure.dense(ctx, det, Treatment(), 1, (64, 64))  # graphs wrap, CPU runs eager
    assert row['img_per_s'] > 0 and row['first_call_s'] > 0
    seg = parse_model(dict(name='configs/fpn_tinyvim_s_toy_ade.py', cfg_options=TINY_DENSE))
    assert measure.dense(ctx, seg, Treatment(), 2, (64, 64))['img_per_s'] > 0
    wrong = parse_model(dict(name='configs/fpn_tinyvim_s_toy_ade.py', cfg_options=TINY_DENSE,
                             cuda_graphs=['rpn_head']))
    with pytest.raises(ValueError, match="names 'rpn_head', which the model"):
        measure.dense(ctx, wrong, Treatment(), 2, (64, 64))
    # torch.compile through the treatment (its ``eager`` backend keeps the CPU test fast)
    compiled = Treatment(dtype='fp32', compile=True, compile_backend='eager')
    assert measure.backbone(ctx, seg, compiled, 2, (64, 96))['img_per_s'] > 0
    with pytest.raises(ValueError, match='runs eager'):
        measure.dense(ctx, seg, Treatment(compile=True), 2, (64, 64))
    with pytest.raises(ValueError, match='take a config'):
        measure.dense(ctx, parse_model('tinyvim-s'), Treatment(), 2, (64, 64))


def _timing_gc() -> bool:
    """Whether a runner benchmark's garbage-collector callback is still registered."""
    return any(getattr(c, '__qualname__', '').startswith('_IterTimes') for c in gc.callbacks)


def test_runner_train_that_fails_unregisters_its_gc_timing(ctx):
    spec = parse_model(dict(name='configs/tinyvim_s_toy_imagenet.py',
                            cfg_options={'model.backbone.arch': TINY_ARCH,
                                         'model.head.in_channels': 7}))  # wrong: 32
    with pytest.raises(RuntimeError):
        runner_train(ctx, spec, TrainVariant('default'), iters=1, warmup=1, batch=2,
                     img_size=(32, 32), workers=0)
    assert not _timing_gc()


def test_runner_train_toy_classification(ctx):
    """The toy ImageNet config's loop (Mixup/CutMix, AGC, EMA, distillation teacher with
    random weights) on in-memory samples, two variants."""
    spec = parse_model(dict(name='configs/tinyvim_s_toy_imagenet.py',
                            cfg_options={'model.backbone.arch': TINY_ARCH,
                                         'model.head.in_channels': 32}))
    for variant in (TrainVariant('default'),
                    TrainVariant('no fused', {'fast_training.fused_optimizer': False})):
        row = runner_train(ctx, spec, variant, iters=2, warmup=1, batch=2, img_size=(32, 32),
                           workers=1)
        assert len(row['iter_ms']) == 2 and row['p90_ms'] >= row['median_ms'] > 0
        # throughput from the mean iteration
        assert row['ms'] == pytest.approx(sum(row['iter_ms']) / 2, rel=1e-3, abs=0.01)
        # what each iteration spent waiting for its batch and collecting garbage
        assert len(row['data_ms']) == len(row['gc_ms']) == 2
        assert all(0 <= d + g <= t for d, g, t in zip(row['data_ms'], row['gc_ms'],
                                                     row['iter_ms']))
        assert not _timing_gc()  # the hook removed its callback
        # the loop's spans (on the CPU, clock time): all of an iteration but its first mark
        # and last sync, in the loop's order; the teacher runs between neck and head
        phases = row['phases_ms']
        assert list(phases) == ['preprocess', 'backbone', 'neck (+ teacher)',
                                'heads, losses, backward', 'optimizer step',
                                'hooks after the step', 'between']
        assert all(v >= 0 for v in phases.values())
        assert sum(v for k, v in phases.items() if k != 'between') <= max(row['iter_ms'])
        assert row['img_per_s'] == pytest.approx(2e3 / row['ms'], rel=1e-3)
        assert row['workers'] == 1 and row['iters'] == 2
        assert row['img_per_s'] > 0 and row['iter_per_s'] > 0
        assert row['img_size'] == [32, 32] and row['first_iter_s'] > 0
        # fast_training: AMP on a GPU, off on the CPU
        assert row['optim_wrapper'] == ('AmpAGCOptimWrapper' if torch.cuda.is_available()
                                        else 'AGCOptimWrapper')
        assert 0 < row['first_loss'] < 10 and row['last_loss'] > 0


def test_data_workers_follow_the_config_within_the_cpus(monkeypatch):
    """Batches are collated in worker processes, as in real training: the config's
    ``num_workers``, at most one fewer than the CPUs; an explicit count wins."""
    cfg = load_config('configs/tinyvim_s_8xb128_in1k.py')
    assert cfg.train_dataloader.num_workers == 8
    monkeypatch.setattr('os.sched_getaffinity', lambda pid: set(range(16)))
    assert data_workers(cfg) == 8
    monkeypatch.setattr('os.sched_getaffinity', lambda pid: {0, 1})
    assert data_workers(cfg) == 1
    assert data_workers(cfg, 0) == 0 and data_workers(cfg, 3) == 3
    with pytest.raises(ValueError, match='workers must be >= 0'):
        data_workers(cfg, -1)


def test_packed_samples_stay_intact_through_a_persistent_worker():
    """Every batch from a data worker holds the samples as built (tensors, not the numpy
    arrays an item sent twice from the worker would arrive as)."""
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader

    from tinyvim_mm.benchmark.synthetic import PackedDataset, packed_samples
    samples = packed_samples('mmpretrain', 2, (16, 16), 10, 0)
    loader = DataLoader(PackedDataset(samples, 6), batch_size=2, num_workers=1,
                        persistent_workers=True, collate_fn=pseudo_collate)
    batches = list(loader)
    assert len(batches) == 3
    for batch in batches:
        labels = [s.gt_label for s in batch['data_samples']]
        assert all(isinstance(t, torch.Tensor) for t in labels), labels
        assert [int(t) for t in labels] == [int(s['data_samples'].gt_label) for s in samples]


def test_prepare_config_variants(tmp_path):
    """Variants are cfg-options overrides; the run trains a fixed number of iterations
    with nothing downloaded, no validation and no checkpoints."""
    cfg = load_config('configs/mask_rcnn_tinyvim_b.py')
    released = TrainVariant.parse(dict(name='released', cfg_options={
        'fast_training.channels_last': False, 'fast_training.fused_optimizer': False}))
    prepare_config(cfg, released, str(tmp_path), 7)
    assert cfg.fast_training == dict(amp=False, channels_last=False, fused_optimizer=False,
                                     compile=False, async_logging=True,
                                     preprocess_stream=True, host_threads=1)
    assert cfg.model.backbone.init_cfg is None and cfg.default_hooks.checkpoint is None
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=7, val_interval=8)
    assert cfg.val_dataloader is None and cfg.log_level == 'WARNING'
    with pytest.raises(ValueError, match="unknown key.*'amp'"):
        TrainVariant.parse(dict(name='x', amp=True))


def test_teacherless_inference_build():
    """Classifier configs are measured without their distillation teacher."""
    model = build_classifier(parse_model('configs/tinyvim_s_8xb128_in1k.py'), True)
    assert model.model.teacher is None and model.model.backbone.deploy  # folded
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_runner_train_segmentation_twice(ctx):
    """Two runs of an mmseg config in one process: its named visualizer must not carry
    the first run's (deleted) work dir into the second."""
    spec = parse_model(dict(name='configs/fpn_tinyvim_s_toy_ade.py', cfg_options=TINY_DENSE))
    rows = [runner_train(ctx, spec, TrainVariant(name), iters=1, warmup=1, batch=2,
                         img_size=(32, 32)) for name in ('first', 'second')]
    for row in rows:
        assert row['iters'] == 1 and row['img_per_s'] > 0 and math.isfinite(row['last_loss'])
        assert row['peak_mem_gb'] is None  # CPU: no device memory statistics


def test_phases_merge_the_spans_of_missing_boundaries(monkeypatch):
    """A model without a neck: backbone and neck (+ teacher) become one span; an iteration
    without its optimizer step (AMP overflow) is left out (the gap after it still
    counts); spans are medians over the timed iterations."""
    from tinyvim_mm.benchmark.runner_train import _Phases
    clock = iter(range(1000))
    monkeypatch.setattr('time.perf_counter', lambda: next(clock) / 1e3)  # 1 ms a reading
    phases = _Phases(torch.device('cpu'), first=1, iters=3)
    marks = ['preprocessed', 'heads', 'step', 'stepped']
    for batch_idx in range(4):  # iteration 0 is warm-up: not marked
        phases.before_train_iter(None, batch_idx)
        for name in marks if batch_idx != 2 else marks[:2]:  # iteration 2: step skipped
            if name == 'heads' and batch_idx == 3:
                next(clock)  # iteration 3's forward takes 1 ms longer
            phases._mark(name)
        phases.after_train_iter(None, batch_idx)
    assert phases.medians() == {'preprocess': 1.0, 'backbone, neck (+ teacher)': 1.5,
                                'heads, losses, backward': 1.0, 'optimizer step': 1.0,
                                'hooks after the step': 1.0, 'between': 1.0}


def test_compiled_inference_step_calls_the_model_eagerly_first():
    """A model that caches a tensor at its first call (timm's EfficientFormer attention
    biases) must fill its cache outside the compiled graph: under ``'reduce-overhead'``
    the graphs' outputs are overwritten at each replay."""
    from tinyvim_mm.benchmark.treatments import inference_step

    class Caching(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = []  # whether each call was traced by torch.compile

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls.append(torch.compiler.is_compiling())
            return x * 2

    model, x = Caching(), torch.ones(2)
    step = inference_step(model, x, Treatment(compile=True, compile_backend='eager'),
                          torch.device('cpu'))
    assert model.calls == [False]  # the eager call, before any compiled one
    assert torch.equal(step(), x * 2)
    assert model.calls == [False, True]
    plain = Caching()
    inference_step(plain, x, Treatment(), torch.device('cpu'))
    assert plain.calls == []  # eager treatments: nothing runs before the step


def test_detection_masks_follow_the_config(ctx):
    """The in-memory detection samples carry polygons where the config's LoadAnnotations
    keeps them (poly2mask=False, our configs), bitmap masks of the same ellipses where it
    rasterises them; the runner trains Mask R-CNN on either."""
    from mmdet.structures.mask import BitmapMasks, PolygonMasks

    from tinyvim_mm.benchmark.runner_train import polygon_masks
    from tinyvim_mm.benchmark.synthetic import packed_samples
    bitmap = {'train_dataloader.dataset.pipeline.1.poly2mask': True}
    for name in ('mask_rcnn_tinyvim_b_toy_coco.py', 'mask_rcnn_tinyvim_b.py'):
        assert polygon_masks(load_config(f'configs/{name}'))
        assert not polygon_masks(load_config(f'configs/{name}', bitmap))
    bitmaps, polygons = (packed_samples('mmdet', 2, (96, 128), 3, 0, polygons=p)
                         for p in (False, True))
    for a, b in zip(bitmaps, polygons):
        exact, drawn = (s['data_samples'].gt_instances.masks for s in (a, b))
        assert isinstance(exact, BitmapMasks) and isinstance(drawn, PolygonMasks)
        assert torch.equal(a['inputs'], b['inputs'])
        drawn, exact = drawn.to_ndarray().astype(bool), exact.to_ndarray().astype(bool)
        iou = (drawn & exact).sum((1, 2)) / (drawn | exact).sum((1, 2))
        assert iou.min() > 0.9, iou
    spec = parse_model(dict(name='configs/mask_rcnn_tinyvim_b_toy_coco.py',
                            cfg_options=TINY_DENSE))
    for variant in (TrainVariant('polygons'), TrainVariant('bitmaps', bitmap)):
        row = runner_train(ctx, spec, variant, iters=1, warmup=1, batch=2, img_size=(64, 96))
        assert row['iters'] == 1 and math.isfinite(row['last_loss'])
