# TinyViM-S trained from scratch on the toy ImageNet-layout set (10 classes of
# textured shapes, 96x128 images) at 64x64, with the classification recipe of
# tinyvim_s_8xb128_in1k.py scaled to a toy run: AdamW + AGC, label smoothing, EMA
# of the weights, both heads of the distillation classifier. Mixup/CutMix,
# RandAugment, random erasing and repeated augmentation, the regularisers of the
# 300-epoch ImageNet run, are left out: they only slow a short run on 400-3000 images
# down. With hard distillation from a toy teacher: tinyvim_s_toy_imagenet_distill.py.
#
# The one toy classification recipe: model and pipelines (train and test at
# 64x64) are cheap enough for a CPU, so that every toy checkpoint fits this config;
# the schedule is the one-GPU run (40 epochs x 128 images). tools/quickstart.py
# (12 epochs on CPU) and tools/experiments/toy_cls.sh change only schedule, batch,
# loaders and paths (--cfg-options), e.g.
#   python tools/dataset_converters/make_toy_data.py --out data/toy --tasks imagenet
#   python tools/train.py configs/tinyvim_s_toy_imagenet.py --cfg-options \
#       train_cfg.max_epochs=12 param_scheduler.1.end=12 train_dataloader.batch_size=32
# (a shorter max_epochs also needs param_scheduler.1.end, the end of the cosine).
_base_ = './tinyvim_s_8xb128_in1k.py'

data_root = 'data/toy/imagenet'
# tinyvim_mm.datasets.TOY_IMAGENET_CLASSES
classes = ('circle', 'square', 'triangle', 'star', 'cross', 'ring', 'blob', 'stripes_h',
           'stripes_v', 'checker')
num_classes = len(classes)
img_size = 64

model = dict(
    head=dict(num_classes=num_classes),
    teacher=None,
    teacher_checkpoint=None,
    train_cfg=None)  # no Mixup / CutMix
data_preprocessor = dict(num_classes=num_classes)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.4, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [  # the whole shorter side at img_size, centre crop
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
dataset = dict(data_root=data_root, classes=classes)
train_dataloader = dict(batch_size=128, num_workers=8, drop_last=False,
                        sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True),
                        dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=100, num_workers=2,
                      dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

# One GPU, batch 128: the lr is set directly (no linear scaling from 1024).
lr = 2e-3
max_epochs = 40
warmup_epochs = 3
optim_wrapper = dict(optimizer=dict(lr=lr))
# Warm-up from 1 % of the lr and an EMA of short horizon (1/16): short runs depend on
# both (12 CPU epochs: 26 % top-1 from 1e-6/lr and momentum 0.04, 56 % with these).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
custom_hooks = [
    dict(type='EMAHook', ema_type='ForeachExponentialMovingAverage', momentum=1 / 16,
         update_buffers=True, priority='ABOVE_NORMAL')
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None))
randomness = dict(seed=0)
# No CUDA graphs at toy scale: a run of ~1,000 short iterations saves less than the
# minutes its compilation takes (train and eval graphs, one per batch shape).
fast_training = dict(compile=False)
