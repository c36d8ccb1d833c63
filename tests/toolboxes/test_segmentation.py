"""Semantic FPN + TinyViM (mmseg): configs, odd-size inference, toy training, the toy
experiment script."""
import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Tuple

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmseg.registry import DATASETS, MODELS
from mmseg.structures import SegDataSample

import tinyvim_mm  # noqa: F401  (registers TinyViM)
from tinyvim_mm.datasets import TOY_ADE_CLASSES, TOY_ADE_PALETTE, make_toy_ade
from tinyvim_mm.checkpoint import convert_official

from conftest import REPO  # noqa: E402

CONFIGS = REPO / 'configs'
IN_CHANNELS = {'s': [48, 64, 168, 224], 'b': [48, 96, 192, 384], 'l': [64, 128, 384, 512]}


def load_config(name: str) -> Config:
    return Config.fromfile(CONFIGS / f'{name}.py')


def build_segmentor(cfg: Config, **test_cfg) -> torch.nn.Module:
    """The config's EncoderDecoder in eval mode, SyncBN reverted for CPU."""
    init_default_scope('mmseg')
    model_cfg = copy.deepcopy(cfg.model)
    if test_cfg:
        model_cfg.test_cfg = test_cfg
    return revert_sync_batchnorm(MODELS.build(model_cfg)).eval()


@pytest.fixture(scope='module')
def s_config() -> Config:
    return load_config('fpn_tinyvim_s_ade20k_40k')


@pytest.fixture(scope='module')
def toy_ade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training and 2 validation images; validation image 1 is 389x517."""
    root = tmp_path_factory.mktemp('toy_ade')
    make_toy_ade(root, num_train=4, num_val=2)
    return root


@pytest.mark.parametrize('arch', ['s', 'b', 'l'])
def test_ade20k_recipe(arch: str) -> None:
    cfg = load_config(f'fpn_tinyvim_{arch}_ade20k_40k')
    assert cfg.custom_imports == dict(imports=['tinyvim_mm'], allow_failed_imports=False)
    backbone = cfg.model.backbone
    assert backbone.type == 'TinyViM' and backbone.arch == arch
    assert backbone.out_indices == (0, 1, 2, 3)
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint=f'checkpoints/tinyvim-{arch}_in1k.pth')
    assert cfg.model.pretrained is None
    assert cfg.model.neck.in_channels == IN_CHANNELS[arch]
    assert cfg.model.decode_head.num_classes == 150
    assert cfg.model.data_preprocessor.size == (512, 512) == cfg.crop_size
    assert cfg.model.test_cfg == dict(mode='whole')
    assert cfg.sync_bn == 'torch' and cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    # 8 GPUs x 4 images, AdamW 2e-4 / 1e-4, poly 0.9 down to 1e-6 over 40k iterations.
    assert cfg.train_dataloader.batch_size == 4 and cfg.auto_scale_lr.base_batch_size == 32
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
                                               weight_decay=1e-4)
    assert cfg.param_scheduler == [dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=0,
                                        end=40000, by_epoch=False)]
    assert cfg.train_cfg.max_iters == 40000
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == 'ADE20KDataset'
    assert dataset.data_root == 'data/ade/ADEChallengeData2016'
    crop = next(t for t in dataset.pipeline if t['type'] == 'RandomCrop')
    assert crop['crop_size'] == (512, 512)
    resize = cfg.test_pipeline[1]
    assert (resize['type'], resize['scale'], resize['keep_ratio']) == ('Resize', (2048, 512), True)
    assert not any(t['type'] == 'ResizeToMultiple' for t in cfg.test_pipeline)
    assert (cfg.val_evaluator.type, cfg.val_evaluator.iou_metrics) == ('IoUMetric', ['mIoU'])

    model = build_segmentor(cfg)
    assert type(model.backbone).__name__ == 'TinyViM'
    assert list(model.backbone.out_channels) == IN_CHANNELS[arch]


@pytest.mark.parametrize('arch', ['s', 'b'])
def test_toy_configs(arch: str) -> None:
    toy = load_config(f'fpn_tinyvim_{arch}_toy_ade')
    real = load_config(f'fpn_tinyvim_{arch}_ade20k_40k')
    for loader in (toy.train_dataloader, toy.val_dataloader, toy.test_dataloader):
        assert loader.dataset.data_root == 'data/toy/ade'
        assert loader.dataset.metainfo == dict(classes=TOY_ADE_CLASSES, palette=TOY_ADE_PALETTE)
        load_ann = next(t for t in loader.dataset.pipeline if t['type'] == 'LoadAnnotations')
        assert load_ann['reduce_zero_label']
    assert toy.model.decode_head.num_classes == len(TOY_ADE_CLASSES)
    assert toy.model.backbone.init_cfg is None
    assert {**toy.model.backbone, 'init_cfg': None} == {**real.model.backbone, 'init_cfg': None}
    assert toy.model.neck == real.model.neck
    assert toy.sync_bn == real.sync_bn
    # one recipe for CPU and GPU runs: 128x128 crops, the test scale the crops are cut from
    train = {t['type']: t for t in toy.train_dataloader.dataset.pipeline}
    test = {t['type']: t for t in toy.test_dataloader.dataset.pipeline}
    assert train['RandomCrop']['crop_size'] == toy.model.data_preprocessor.size == (128, 128)
    assert train['RandomResize']['scale'] == test['Resize']['scale'] == (512, 128)
    assert toy.param_scheduler[-1]['end'] == toy.train_cfg.max_iters


def test_pretrained_backbone_through_segmentor(s_config: Config, synth, fixtures_dir: Path,
                                               tmp_path: Path) -> None:
    released = synth.synth_state_dict(fixtures_dir / 'keys_s.json')
    path = tmp_path / 'tinyvim-s_in1k.pth'
    torch.save(dict(state_dict=convert_official(released, 'classifier')), path)
    cfg = copy.deepcopy(s_config)
    cfg.model.backbone.init_cfg.checkpoint = str(path)
    model = build_segmentor(cfg)
    model.init_weights()
    state = model.backbone.state_dict()
    loaded = [k for k in released if not k.startswith(('norm.', 'head.', 'dist_head.'))]
    assert len(loaded) > 700
    assert all(torch.equal(state[k], released[k]) for k in loaded)


def predict(model: torch.nn.Module, size: Tuple[int, int]) -> SegDataSample:
    img = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size))
    with torch.no_grad():
        return model.test_step(dict(inputs=[img], data_samples=[sample]))[0]


@pytest.mark.parametrize('test_cfg', [
    dict(mode='whole'),
    # 240x300 crops: 60x75 at stride 4, not multiples of the pool factor 8.
    dict(mode='slide', crop_size=(240, 300), stride=(160, 200)),
], ids=['whole', 'slide'])
@pytest.mark.parametrize('size', [(389, 517), (333, 600)])
def test_inference_on_odd_sizes(s_config: Config, test_cfg: dict, size: Tuple[int, int]) -> None:
    model = build_segmentor(s_config, **test_cfg)
    calls = []
    model.backbone.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[2:]))
    result = predict(model, size)
    if test_cfg['mode'] == 'whole':
        assert calls == [size]
    else:  # 2 x 3 windows, each crop-sized
        assert calls == [test_cfg['crop_size']] * 6
    assert result.pred_sem_seg.data.shape == (1, *size)
    assert result.seg_logits.data.shape == (150, *size)
    assert torch.isfinite(result.seg_logits.data).all()


def test_ade20k_test_pipeline_on_odd_image(s_config: Config, toy_ade: Path) -> None:
    """2048x512 keep-ratio resize of the 389x517 toy image -> 512x680 input,
    stage features 128x170 ... 16x22 (widths not multiples of the pool factors 8, 4, 2);
    the prediction is mapped back to 389x517."""
    init_default_scope('mmseg')
    dataset_cfg = copy.deepcopy(s_config.val_dataloader.dataset)
    dataset_cfg.data_root = str(toy_ade)
    dataset = DATASETS.build(dataset_cfg)
    data = pseudo_collate([dataset[0]])
    assert data['data_samples'][0].ori_shape == (389, 517)
    assert data['inputs'][0].shape == (3, 512, 680)
    model = build_segmentor(s_config)
    shapes = []
    model.backbone.register_forward_hook(lambda m, a, out: shapes.extend(o.shape[2:] for o in out))
    with torch.no_grad():
        result = model.test_step(data)[0]
    assert [tuple(s) for s in shapes] == [(128, 170), (64, 85), (32, 43), (16, 22)]
    assert result.pred_sem_seg.data.shape == (1, 389, 517)
    assert result.gt_sem_seg.data.shape == (1, 389, 517)


def test_toy_train_and_eval_with_runner(toy_ade: Path, tmp_path: Path) -> None:
    """2 iterations of the toy TinyViM-S config as it is, then mIoU on the toy validation
    set."""
    cfg = load_config('fpn_tinyvim_s_toy_ade')
    cfg.work_dir = str(tmp_path)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.data_root = str(toy_ade)
    cfg.train_dataloader.batch_size = 2
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=0, end=2,
                                by_epoch=False)]
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 1

    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    assert torch.isfinite(torch.tensor(hub.get_scalar('train/loss').current()))
    miou = hub.get_scalar('val/mIoU').current()
    assert 0 <= miou <= 100
    assert runner.val_evaluator.dataset_meta['classes'] == TOY_ADE_CLASSES


def test_toy_seg_experiment_script(tmp_path: Path) -> None:
    """tools/experiments/toy_seg.sh end to end on CPU (tiny data, 2 iterations): it trains
    and tests the toy config with tools/train.py / test.py, prints the mIoU and exits
    non-zero below MIN_MIOU."""
    env = dict(os.environ, ARCH='s', DATA_SIZE='tiny', ITERS='2', WARMUP='1', BATCH='2',
               WORKERS='0', MIN_MIOU='101', DATA_DIR=str(tmp_path / 'data'),
               WORK_DIR=str(tmp_path / 'work'), OMP_NUM_THREADS='1')
    proc = subprocess.run(['bash', str(REPO / 'tools/experiments/toy_seg.sh')], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r'TinyViM-S Semantic FPN toy ADE20K mIoU \(%\) = \d+\.?\d* '
                        r'\(target >= 101: NOT met\)', last), last
    assert (tmp_path / 'work' / 'iter_2.pth').is_file()
