# TinyViM-S trained from scratch on the toy ImageNet-layout set (10 classes of
# textured shapes, 96x128 images): the ImageNet recipe of
# tinyvim_s_8xb128_in1k.py (AdamW + AGC, Mixup/CutMix, RandAugment, random
# erasing, label smoothing, EMA, hard distillation) at 128x128 (about the
# images' native scale), on one GPU, with a short schedule.
# Data: python tools/dataset_converters/make_toy_data.py --out data/toy --tasks imagenet
# Teacher: any 10-class checkpoint of timm's resnet18 at teacher_checkpoint;
# tools/experiments/toy_cls.sh trains one first, then this config, and reports
# the top-1 (it is the usage example). Other settings from the command line, e.g.
#   --cfg-options train_cfg.max_epochs=30 train_dataloader.batch_size=32 \
#       model.teacher_checkpoint=PATH optim_wrapper.optimizer.lr=1e-3
# (a shorter max_epochs also needs param_scheduler.1.end=..., the end of the cosine).
_base_ = './tinyvim_s_8xb128_in1k.py'

data_root = 'data/toy/imagenet'
num_classes = 10  # tinyvim_mm.datasets.TOY_IMAGENET_CLASSES
img_size = 128

model = dict(
    head=dict(num_classes=num_classes),
    teacher=dict(_delete_=True, type='TimmClassifier', model_name='resnet18', pretrained=False,
                 num_classes=num_classes),
    teacher_checkpoint='work_dirs/toy_teacher/resnet18_toy_imagenet.pth')
data_preprocessor = dict(num_classes=num_classes)

# The recipe's pipelines (see mmpretrain's imagenet_bs64_swin_224.py) at img_size.
bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=bgr_mean, fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=int(img_size / 0.9), edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
dataset = dict(data_root=data_root, classes=data_root + '/meta/classes.txt')
train_dataloader = dict(batch_size=64, num_workers=8,
                        dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=100, num_workers=2,
                      dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

# One GPU, batch 64: the lr is set directly (no linear scaling from 1024).
lr = 2e-3
max_epochs = 60
warmup_epochs = 3
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / lr, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
# EMA horizon about the recipe's share of the run (~7 % of the iterations).
custom_hooks = [
    dict(type='EMAHook', momentum=0.04, update_buffers=True, priority='ABOVE_NORMAL')
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None))
randomness = dict(seed=0)
