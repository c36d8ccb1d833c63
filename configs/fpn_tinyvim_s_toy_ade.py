# Semantic FPN + TinyViM-S trained from scratch on the toy ADE20K-layout set
# (7 classes, ~240-400 x 320-560 images): the ADE20K recipe with toy data.
# Make the data with
#   python tools/dataset_converters/make_toy_data.py --out data/toy --tasks ade
#
# The one toy segmentation recipe: 128x128 crops and a test scale with a shorter
# side of 128 (half the toy images' native scale), cheap enough for a CPU, so that
# every toy checkpoint fits this config; the schedule is the one-GPU run (1000
# iterations x 16 images). tools/quickstart.py (160 iterations on CPU),
# tools/experiments/toy_seg.sh and the tests change only schedule, batch, loaders
# and paths (--cfg-options).
_base_ = './fpn_tinyvim_s_ade20k_40k.py'

data_root = 'data/toy/ade'
# tinyvim_mm.datasets.TOY_ADE_CLASSES / TOY_ADE_PALETTE (the first 7 ADE20K
# classes). The labels are ADE-style (0 = other), so reduce_zero_label stays
# True as in the ADE20K pipelines.
metainfo = dict(
    classes=('wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road'),
    palette=[[120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50],
             [4, 200, 3], [120, 120, 80], [140, 140, 140]])
crop_size = (128, 128)
scale = (512, 128)  # keep-ratio bound: shorter side 128
max_iters = 1000

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None),  # from scratch: TinyViM's own init
    decode_head=dict(num_classes=len(metainfo['classes'])))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=2,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader

# From scratch: a larger lr with a linear warm-up, then the recipe's poly decay
# (iterations).
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, begin=0, end=100, by_epoch=False),
    dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=100, end=max_iters, by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# Validation images all differ in size: cuDNN autotuning would run for each.
env_cfg = dict(cudnn_benchmark=False)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
# No CUDA graphs at toy scale: a run of ~1,000 short iterations saves less than the
# minutes its compilation takes.
fast_training = dict(compile=False)
