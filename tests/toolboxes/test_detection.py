"""Mask R-CNN with TinyViM backbones (mmdet): configs, any input size,
pretrained loading and a short toy train + eval through ``mmengine.Runner``."""
import copy
import io
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import convert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from tinyvim_mm.datasets import TOY_COCO_CLASSES, make_toy_coco

from conftest import REPO  # noqa: E402
FPN_IN = {'s': [48, 64, 168, 224], 'b': [48, 96, 192, 384], 'l': [64, 128, 384, 512]}


def load_cfg(name: str) -> Config:
    return Config.fromfile(REPO / 'configs' / name)


def build_detector(cfg: Config) -> torch.nn.Module:
    init_default_scope('mmdet')
    return MODELS.build(cfg.model)


@pytest.mark.parametrize('arch', ['s', 'b', 'l'])
def test_paper_configs(arch: str) -> None:
    cfg = load_cfg(f'mask_rcnn_tinyvim_{arch}.py')
    assert cfg.custom_imports == dict(imports=['tinyvim_mm'], allow_failed_imports=False)
    backbone = cfg.model.backbone
    assert backbone.type == 'TinyViM' and backbone.arch == arch
    assert 'depth' not in backbone  # the ResNet dict of the base is replaced
    assert (backbone.frozen_stages, backbone.norm_eval) == (-1, False)
    assert cfg.sync_bn == 'torch'
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint=f'checkpoints/tinyvim-{arch}_in1k.pth')
    assert cfg.model.neck.in_channels == FPN_IN[arch]
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
                                               weight_decay=0.05)
    assert cfg.train_cfg.max_epochs == 12
    assert cfg.param_scheduler[1].milestones == [8, 11]
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=32)
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
    resize = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'Resize']
    assert resize[0].scale == (1333, 800)
    model = build_detector(cfg)
    assert model.backbone.out_channels == tuple(FPN_IN[arch])


def test_polygon_masks_give_the_bitmaps_targets() -> None:
    """The configs keep COCO's polygons through the data workers (poly2mask=False);
    rasterised as each proposal's 28x28 target they agree with the targets that mmdet's
    plain recipe resamples (RoIAlign) from full-size bitmaps of the same polygons: they
    differ only along the outlines (each form rounds the boundary pixels its own way)."""
    import numpy as np
    from mmdet.structures.mask import BitmapMasks, PolygonMasks, mask_target
    from mmengine.config import ConfigDict

    assert all(t.poly2mask is False for t in load_cfg('mask_rcnn_tinyvim_b.py')
               .train_dataloader.dataset.pipeline if t.type == 'LoadAnnotations')
    rng = np.random.default_rng(0)
    height, width, polygons, boxes = 400, 600, [], []
    for _ in range(12):  # ellipses and triangles of 20-200 pixels
        cx, cy = rng.uniform(100, 500), rng.uniform(100, 300)
        rx, ry = rng.uniform(10, 100, 2)
        n = int(rng.choice([3, 32]))
        angles = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, np.pi)
        outline = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1)
        polygons.append([outline.ravel()])
        boxes.append([*outline.min(0), *outline.max(0)])
    drawn = PolygonMasks(polygons, height, width)
    exact = BitmapMasks(drawn.to_ndarray(), height, width)
    # proposals: each object's box, moved and scaled by up to 15 %
    boxes = torch.tensor(boxes, dtype=torch.float32).repeat(4, 1)
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    proposals = boxes + size * torch.from_numpy(rng.uniform(-0.15, 0.15, boxes.shape)).float()
    gt_inds = torch.arange(12).repeat(4)
    cfg = ConfigDict(mask_size=28)
    from_polygons, from_bitmaps = (mask_target([proposals], [gt_inds], [m], cfg) > 0.5
                                   for m in (drawn, exact))
    assert from_polygons.shape == from_bitmaps.shape == (48, 28, 28)
    iou = ((from_polygons & from_bitmaps).sum((1, 2))
           / (from_polygons | from_bitmaps).sum((1, 2)).clamp(min=1))
    assert iou.mean() > 0.95 and iou.min() > 0.85, iou
    # a wrong object's polygons would not pass: the check tells targets apart
    shuffled = mask_target([proposals], [gt_inds.roll(1)], [drawn], cfg) > 0.5
    wrong = (shuffled & from_bitmaps).sum((1, 2)) / (shuffled | from_bitmaps).sum((1, 2))
    assert wrong.mean() < 0.5


@pytest.mark.parametrize('arch', ['s', 'b'])
def test_toy_configs(arch: str) -> None:
    """The one toy recipe: CPU-sized heads (128 channels throughout), train and test at
    the same scale, at most 20 detections."""
    cfg = load_cfg(f'mask_rcnn_tinyvim_{arch}_toy_coco.py')
    assert cfg.model.backbone.arch == arch and cfg.model.backbone.init_cfg is None
    assert cfg.model.neck.in_channels == FPN_IN[arch]
    scales = set()
    for split in ('train', 'val', 'test'):
        dataset = cfg[f'{split}_dataloader'].dataset
        assert dataset.metainfo.classes == TOY_COCO_CLASSES
        assert dataset.data_root == 'data/toy/coco/'
        scales |= {t.scale for t in dataset.pipeline if t.type == 'Resize'}
    assert scales == {(256, 224)}
    assert cfg.val_evaluator.ann_file == 'data/toy/coco/annotations/instances_val2017.json'
    model, heads = cfg.model, cfg.model.roi_head
    assert heads.bbox_head.num_classes == heads.mask_head.num_classes == len(TOY_COCO_CLASSES)
    widths = {model.neck.out_channels, model.rpn_head.in_channels, model.rpn_head.feat_channels,
              heads.bbox_roi_extractor.out_channels, heads.bbox_head.in_channels,
              heads.mask_roi_extractor.out_channels, heads.mask_head.in_channels,
              heads.mask_head.conv_out_channels}
    assert widths == {128} and model.test_cfg.rcnn.max_per_img == 20
    assert cfg.param_scheduler[1].end == cfg.train_cfg.max_epochs
    detector = build_detector(cfg)
    assert detector.backbone.out_channels == tuple(FPN_IN[arch])
    assert detector.roi_head.mask_head.conv_logits.in_channels == 128


def test_missing_pretrained_checkpoint_is_named(tmp_path: Path) -> None:
    cfg = load_cfg('mask_rcnn_tinyvim_s.py')
    missing = str(tmp_path / 'tinyvim-s_in1k.pth')
    cfg.model.backbone.init_cfg.checkpoint = missing
    with pytest.raises(FileNotFoundError, match='tinyvim-s_in1k.pth'):
        build_detector(cfg).init_weights()


@pytest.fixture(scope='module')
def detector_s() -> torch.nn.Module:
    """Mask R-CNN TinyViM-S at its own init; every score kept so that the
    mask head also runs in ``predict``; fewer sampled RoIs (CPU time)."""
    cfg = load_cfg('mask_rcnn_tinyvim_s.py')
    cfg.model.backbone.init_cfg = None
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=20)
    model = build_detector(cfg)
    model.init_weights()
    return model


def _stage_sizes(h: int, w: int) -> List[Tuple[int, int]]:
    sizes = []
    for _ in range(5):  # stem (2 strides) then 3 downsamplings: each ceil(x / 2)
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes[1:]


def _loss_and_predict(model: torch.nn.Module, shapes: List[Tuple[int, int, int]]) -> None:
    data = demo_mm_inputs(len(shapes), shapes, num_items=[3] * len(shapes), num_classes=80,
                          with_mask=True)
    model.train()
    model.zero_grad()
    batch = model.data_preprocessor(data, True)
    loss, log_vars = model.parse_losses(model.loss(batch['inputs'], batch['data_samples']))
    assert torch.isfinite(loss)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(log_vars)
    loss.backward()
    # every parameter takes part: DDP needs no find_unused_parameters
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    model.eval()
    with torch.no_grad():
        results = model.test_step(data)
    for shape, result in zip(shapes, results):
        pred = result.pred_instances
        assert 0 < len(pred) <= 20
        assert tuple(pred.masks.shape[1:]) == shape[1:]
        assert (pred.bboxes[:, 2] <= shape[2]).all() and (pred.bboxes[:, 3] <= shape[1]).all()


def test_odd_size_unpadded(detector_s: torch.nn.Module) -> None:
    """277x389 reaches the backbone as is (no padding): odd maps at most stages."""
    preprocessor = detector_s.data_preprocessor
    preprocessor.pad_size_divisor = 1
    try:
        feats = detector_s.backbone(torch.rand(1, 3, 277, 389))
        assert [tuple(f.shape[2:]) for f in feats] == _stage_sizes(277, 389)
        _loss_and_predict(detector_s, [(3, 277, 389)])
    finally:
        preprocessor.pad_size_divisor = 32


def test_padded_mixed_batch(detector_s: torch.nn.Module) -> None:
    _loss_and_predict(detector_s, [(3, 201, 263), (3, 230, 171)])  # -> 256x288


def test_predict_800x1333(detector_s: torch.nn.Module) -> None:
    data = demo_mm_inputs(1, [(3, 800, 1333)], num_classes=80, with_mask=True)
    detector_s.eval()
    with torch.no_grad():
        inputs = detector_s.data_preprocessor(data, False)['inputs']
        assert tuple(inputs.shape[2:]) == (800, 1344)  # padded to a multiple of 32
        pred = detector_s.test_step(data)[0].pred_instances
    assert len(pred) > 0 and tuple(pred.masks.shape[1:]) == (800, 1333)


@pytest.mark.parametrize('form', ['fast_training', 'inference'])
def test_channels_last_backbone_keeps_roi_features(detector_s: torch.nn.Module,
                                                   form: str) -> None:
    """The fast forms run the backbone in channels-last memory (``fast_training``'s
    ``channels_last``; the inference form, whose fused blocks also write channels-last).
    mmcv's RoIAlign reads its input as NCHW memory whatever the strides: the RoI features
    must not change (a channels-last neck output made them garbage, max difference ~ the
    features' own size)."""
    from tinyvim_mm.deploy import optimize_for_inference
    from tinyvim_mm.engine.fast_training import prepare_model
    fast = copy.deepcopy(detector_s)
    if form == 'fast_training':
        prepare_model(fast, dict(channels_last=True))
    else:
        optimize_for_inference(fast)
    stem = fast.backbone.patch_embed[0]
    assert (stem.reparam if form == 'inference' else stem.c).weight.is_contiguous(
        memory_format=torch.channels_last)
    fast.eval()
    x = torch.rand(1, 3, 224, 256)
    rois = torch.tensor([[0, 10., 20., 120., 150.], [0, 50., 30., 200., 210.]])
    features = []
    for model in (detector_s.eval(), fast):
        with torch.no_grad():
            maps = model.extract_feat(x)
            features.append(model.roi_head.bbox_roi_extractor(maps[:4], rois))
    assert features[0].abs().max() > 0.1
    torch.testing.assert_close(features[1], features[0], rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_inference_form_keeps_roi_features_on_gpu(detector_s: torch.nn.Module,
                                                  no_tf32) -> None:
    """As ``tools/test.py --deploy`` runs it on a GPU (fused FFN blocks and mixers on
    channels-last activations, the backbone replayed from CUDA graphs) under fp16
    autocast: the maps reach the neck NCHW and the RoI features are the plain float32
    model's within 1e-2 relative (eager call, capture, replay)."""
    from tinyvim_mm.deploy import enable_cuda_graphs, optimize_for_inference
    plain = copy.deepcopy(detector_s).cuda().eval()
    fast = optimize_for_inference(copy.deepcopy(detector_s).cuda(), fold_axial=True)
    enable_cuda_graphs(fast.backbone)
    x = torch.rand(2, 3, 224, 256, device='cuda')
    rois = torch.tensor([[0, 10., 20., 120., 150.], [1, 50., 30., 200., 210.]], device='cuda')

    def roi_features(model: torch.nn.Module) -> torch.Tensor:
        maps = model.extract_feat(x)
        return model.roi_head.bbox_roi_extractor(maps[:4], rois).float()

    with torch.no_grad():
        expected = roi_features(plain)
        for _ in range(3):
            with torch.autocast('cuda', torch.float16):
                assert all(m.is_contiguous() for m in fast.backbone(x))
                got = roi_features(fast)
            assert ((got - expected).norm() / expected.norm()).item() < 1e-2


def test_sync_bn_keeps_checkpoint_layout(detector_s: torch.nn.Module) -> None:
    """What DDP training with ``sync_bn='torch'`` saves loads into the plain-BN model."""
    synced = convert_sync_batchnorm(copy.deepcopy(detector_s))
    assert not any(type(m) is torch.nn.BatchNorm2d for m in synced.modules())
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.backbone.modules()) > 100
    state = synced.state_dict()
    assert list(state) == list(detector_s.state_dict())
    detector_s.load_state_dict(state)


def test_released_checkpoint_into_detector(synth, fixtures_dir: Path, tmp_path: Path) -> None:
    released = synth.synth_state_dict(fixtures_dir / 'keys_b.json')
    path = tmp_path / 'tinyvim_b_released.pth'
    torch.save({'model': released}, path)
    cfg = load_cfg('mask_rcnn_tinyvim_b.py')
    cfg.model.backbone.init_cfg.checkpoint = str(path)
    model = build_detector(cfg)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        model.init_weights()
    finally:
        logger.removeHandler(handler)
    state = model.state_dict()
    loaded = {k: v for k, v in released.items() if not k.startswith(('norm.', 'head.', 'dist_head.'))}
    for key, value in loaded.items():
        assert torch.equal(state[f'backbone.{key}'], value), key
    fresh = sorted(k for k in model.backbone.state_dict() if k not in loaded)
    assert {k.split('.')[0] for k in fresh} == {'norm0', 'norm2', 'norm4', 'norm6'}
    for name in ('norm0', 'norm2', 'norm4', 'norm6'):
        norm = getattr(model.backbone, name)
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))
    log = stream.getvalue()
    assert f'Loaded {len(loaded)} backbone tensors from {path}' in log
    assert "skipped classifier-only weights ['dist_head', 'head', 'norm']" in log
    assert "dense output norms kept at init: ['norm0', 'norm2', 'norm4', 'norm6']" in log


def test_toy_train_and_eval(tmp_path: Path) -> None:
    """Two iterations on a small toy COCO set, then CocoMetric on its val split."""
    root = make_toy_coco(tmp_path / 'coco', num_train=4, num_val=2, img_size=(128, 160)).root
    root = f'{root}/'
    cfg = load_cfg('mask_rcnn_tinyvim_s_toy_coco.py')
    cfg.work_dir = str(tmp_path / 'work')
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = root
        for step in loader.dataset.pipeline:
            if step.type == 'Resize':
                step.scale = (160, 128)
    cfg.train_dataloader.batch_sampler = None  # plain batches: 4 images, 2 iterations
    cfg.val_evaluator.ann_file = root + 'annotations/instances_val2017.json'
    cfg.test_evaluator = cfg.val_evaluator
    cfg.train_cfg.update(max_epochs=1, val_begin=2)  # no validation in train(): once, below
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=10)
    cfg.default_hooks.checkpoint = None
    runner = Runner.from_cfg(cfg)
    from mmdet.structures.mask import PolygonMasks
    sample = runner.train_dataloader.dataset[0]['data_samples']
    assert isinstance(sample.gt_instances.masks, PolygonMasks)  # the recipe's poly2mask=False
    runner.train()
    assert runner.iter == 2
    metrics = runner.val()
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics)


def test_toy_experiment_scripts(tmp_path: Path) -> None:
    """tools/experiments/*.sh parse, run tools/train.py / test.py on the toy configs (no
    Python config building), and their metric check reads tools/test.py's json."""
    experiments = REPO / 'tools' / 'experiments'
    for script in sorted(experiments.glob('*.sh')):
        subprocess.run(['bash', '-n', str(script)], check=True)
        text = script.read_text()
        assert "<<'" not in text and 'Config.fromfile' not in text, script.name
        if script.name != 'common.sh':
            assert 'set -euo pipefail' in text and 'source tools/experiments/common.sh' in text
            assert re.search(r'tools/(test\.py|dist_test\.sh)', text), script.name
    run_dir = tmp_path / 'test' / '20260101_000000'
    run_dir.mkdir(parents=True)
    (run_dir / '20260101_000000.json').write_text(
        '{"coco/bbox_mAP": 0.512, "coco/segm_mAP": 0.48, "step": 1}')
    script = (f'source {experiments / "common.sh"}; '
              f'check "bbox mAP" "$(metric coco/bbox_mAP {tmp_path / "test"})" "$MIN"')
    met = subprocess.run(['bash', '-c', script], env=dict(os.environ, MIN='0.5'),
                         capture_output=True, text=True)
    assert met.returncode == 0 and met.stdout.strip() == 'bbox mAP = 0.512 (target >= 0.5: met)'
    missed = subprocess.run(['bash', '-c', script], env=dict(os.environ, MIN='0.6'),
                            capture_output=True, text=True)
    assert missed.returncode == 1 and 'NOT met' in missed.stdout
    absent = subprocess.run(['bash', '-c', script.replace('coco/bbox_mAP', 'coco/x')],
                            env=dict(os.environ, MIN='0'), capture_output=True, text=True)
    assert absent.returncode == 1 and 'missing' in absent.stdout
    options = subprocess.run(['bash', '-c', f'source {experiments / "common.sh"}; '
                              'loader_options 0; data_root_options "a b"'],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    assert 'val_dataloader.persistent_workers=False' in options
    assert 'test_dataloader.dataset.data_root=a b' in options
