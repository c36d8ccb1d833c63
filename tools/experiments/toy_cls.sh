#!/usr/bin/env bash
# Does TinyViM-S learn with the ImageNet recipe? Generates a toy ImageNet-layout set
# (10 classes of textured shapes, tinyvim_mm.datasets.make_toy_imagenet), trains the
# distillation teacher (timm resnet18, plain augmentation) and saves it as a local
# checkpoint, then trains configs/tinyvim_s_toy_imagenet.py from scratch with the full
# recipe (AdamW + AGC, Mixup/CutMix, RandAugment, random erasing, label smoothing, EMA,
# hard distillation from that teacher) and prints the top-1 of the (EMA) model on the
# validation split.
#
# GPU (1 GPU, ~3-4 min, AMP, target top-1 >= 90 %), from the repository root:
#   bash tools/experiments/toy_cls.sh
# CPU trend run (64x64, 400 images, short schedules, no AMP, ~1 h on 2 cores):
#   TOY_CLS_CPU=1 bash tools/experiments/toy_cls.sh
# Overrides (env): TRAIN_PER_CLASS, VAL_PER_CLASS (toy set size), EPOCHS, TEACHER_EPOCHS,
# BATCH, IMG (train/test crop side; the test resize is IMG / 0.9), LR, WORKERS,
# AMP (1|0), SEED, DATA_DIR, WORK_DIR, MIN_TOP1 (exit status 1 below it, in %).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "${TOY_CLS_CPU:-0}" = 1 ]; then
  : "${TRAIN_PER_CLASS:=40}" "${VAL_PER_CLASS:=10}" "${EPOCHS:=24}" "${TEACHER_EPOCHS:=20}"
  : "${BATCH:=32}" "${IMG:=64}" "${WORKERS:=1}" "${AMP:=0}" "${MIN_TOP1:=0}"
else
  : "${TRAIN_PER_CLASS:=300}" "${VAL_PER_CLASS:=20}" "${EPOCHS:=40}" "${TEACHER_EPOCHS:=30}"
  : "${BATCH:=128}" "${IMG:=128}" "${WORKERS:=12}" "${AMP:=1}" "${MIN_TOP1:=90}"
fi
: "${SEED:=0}" "${DATA_DIR:=data/toy}" "${WORK_DIR:=work_dirs/toy_cls_s}"
DATA_ROOT="$DATA_DIR/imagenet_${TRAIN_PER_CLASS}x${VAL_PER_CLASS}"
export TRAIN_PER_CLASS VAL_PER_CLASS EPOCHS TEACHER_EPOCHS BATCH IMG WORKERS AMP MIN_TOP1
export SEED WORK_DIR DATA_ROOT
export LR="${LR:-}"

start=$(date +%s)
python - <<'PY'
import os
from pathlib import Path

from tinyvim_mm.datasets import make_toy_imagenet

env = os.environ
root = Path(env['DATA_ROOT'])
if (root / 'meta' / 'classes.txt').is_file():  # written last
    print(f'toy ImageNet: reusing {root}')
else:
    info = make_toy_imagenet(root, train_per_class=int(env['TRAIN_PER_CLASS']),
                             val_per_class=int(env['VAL_PER_CLASS']))
    print(f'toy ImageNet: {info.num_samples} images in {root}')
PY

python - <<'PY'
import copy
import math
import os
import sys
import time

import torch
from mmengine.config import Config
from mmengine.runner import Runner

env = os.environ
epochs, teacher_epochs = int(env['EPOCHS']), int(env['TEACHER_EPOCHS'])
batch, img, workers = int(env['BATCH']), int(env['IMG']), int(env['WORKERS'])
amp = env['AMP'] == '1'
work_dir, data_root = env['WORK_DIR'], env['DATA_ROOT']
classes = os.path.join(data_root, 'meta', 'classes.txt')
num_classes = len(open(classes).read().split())
num_train = len(open(os.path.join(data_root, 'meta', 'train.txt')).readlines())

cfg = Config.fromfile('configs/tinyvim_s_toy_imagenet.py')
cfg.work_dir = work_dir
cfg.randomness = dict(seed=int(env['SEED']))
# Data: root, crop side, loaders.
for loader in (cfg.train_dataloader, cfg.val_dataloader):
    loader.dataset.update(data_root=data_root, classes=classes)
    for step in loader.dataset.pipeline:
        if step['type'] == 'RandomResizedCrop':
            step['scale'] = img
        elif step['type'] == 'ResizeEdge':
            step['scale'] = int(img / 0.9)
        elif step['type'] == 'CenterCrop':
            step['crop_size'] = img
cfg.train_dataloader.update(batch_size=batch, num_workers=workers, persistent_workers=workers > 0)
cfg.val_dataloader.update(num_workers=min(workers, 2), persistent_workers=False)
cfg.test_dataloader = cfg.val_dataloader

# 1. The teacher: timm resnet18, plain augmentation, AdamW + cosine.
tcfg = copy.deepcopy(cfg)
tcfg.experiment_name = 'toy_teacher'
tcfg.work_dir = os.path.join(work_dir, 'teacher')
tcfg.model = dict(type='TimmClassifier', model_name='resnet18', pretrained=False,
                  num_classes=num_classes)
tcfg.train_dataloader.dataset.pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img, crop_ratio_range=(0.25, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
tcfg.optim_wrapper = dict(type='AmpOptimWrapper' if amp else 'OptimWrapper',
                          optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05))
tcfg.param_scheduler = dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0,
                            end=teacher_epochs, convert_to_iter_based=True)
tcfg.custom_hooks = []
tcfg.train_cfg = dict(by_epoch=True, max_epochs=teacher_epochs, val_interval=teacher_epochs)
tcfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=False)
tcfg.default_hooks.logger.interval = 10
tic = time.perf_counter()
teacher_runner = Runner.from_cfg(tcfg)
teacher_runner.train()
teacher_top1 = teacher_runner.message_hub.get_scalar('val/accuracy/top1').current()
teacher_time = time.perf_counter() - tic
# TimmClassifier.state_dict() holds timm's own key names.
teacher_ckpt = os.path.join(work_dir, 'teacher', 'resnet18_toy_imagenet.pth')
torch.save(dict(state_dict=teacher_runner.model.state_dict()), teacher_ckpt)
print(f'teacher resnet18: {teacher_epochs} epochs in {teacher_time:.0f} s, '
      f'top-1 {teacher_top1:.1f} %: {teacher_ckpt}', flush=True)
del teacher_runner

# 2. TinyViM-S with the recipe and that teacher.
cfg.experiment_name = 'toy_cls_s'
cfg.model.head.num_classes = cfg.model.teacher.num_classes = num_classes
cfg.data_preprocessor.num_classes = num_classes
cfg.model.teacher_checkpoint = teacher_ckpt
warmup, cosine = cfg.param_scheduler
warmup.end = cosine.begin = min(warmup.end, max(epochs // 10, 1))
cosine.end = epochs
cfg.train_cfg.update(max_epochs=epochs, val_interval=max(epochs // 4, 1))
cfg.default_hooks.checkpoint.interval = epochs
cfg.default_hooks.logger.interval = 10
iters = epochs * math.ceil(num_train / batch)
cfg.custom_hooks[0].momentum = min(0.5, 1 / (0.07 * iters))  # EMA over ~7 % of the run
if env['LR']:
    cfg.optim_wrapper.optimizer.lr = float(env['LR'])
if amp:
    cfg.optim_wrapper.type = 'AmpAGCOptimWrapper'
tic = time.perf_counter()
runner = Runner.from_cfg(cfg)
runner.train()  # validates every epochs // 4 and at the end, with the EMA weights
top1 = runner.message_hub.get_scalar('val/accuracy/top1').current()
target = float(env['MIN_TOP1'])
print(f'teacher resnet18: {teacher_epochs} epochs in {teacher_time:.0f} s, '
      f'top-1 {teacher_top1:.1f} %')
print(f'TinyViM-S, toy ImageNet ({num_train} train images), recipe + hard distillation: '
      f'{epochs} epochs x batch {batch} at {img}x{img}{" (AMP)" if amp else ""}, '
      f'lr {cfg.optim_wrapper.optimizer.lr:g}, train+val {time.perf_counter() - tic:.0f} s: '
      f'top-1 = {top1:.1f} % (target {target:g} %: {"met" if top1 >= target else "NOT met"})')
sys.exit(0 if top1 >= target else 1)
PY
echo "toy_cls.sh total: $(( $(date +%s) - start )) s"
