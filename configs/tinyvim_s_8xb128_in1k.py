# TinyViM-S on ImageNet-1k, the paper's recipe (DeiT-style, as in the released
# code): 300 epochs at 224x224, 8 GPUs x 128 images, AdamW lr 2e-3 for a batch of
# 1024 (add --auto-scale-lr for another total batch: linear scaling), weight
# decay 0.025 (none on norms, biases, layer scales, A_logs, Ds), 5 warm-up epochs
# from 1e-6 then cosine to 1e-5 (per iteration), RandAugment
# rand-m9-mstd0.5-inc1, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, random
# erasing 0.25, EMA of the weights, adaptive gradient clipping 0.02, hard
# distillation from RegNetY-16GF; evaluation: shorter side 248 (224 / 0.9,
# bicubic), centre crop 224.
#
# Teacher: DeiT's RegNetY-16GF (timm 'regnety_160'), file
# regnety_160-a5fe3fc4.pth (from the DeiT repository) under checkpoints/, or
# --cfg-options model.teacher_checkpoint=PATH. Training stops before the first
# iteration if it is missing; testing does not need it. No teacher:
# tinyvim_s_8xb128_in1k_noteacher.py.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(
    imports=['tinyvim_mm', 'tinyvim_mm.models.classifiers.distill_classifier'],
    allow_failed_imports=False)
default_scope = 'mmpretrain'

num_classes = 1000
model = dict(
    type='DistillImageClassifier',
    # out_indices=(3,): the last stage, through its BatchNorm (norm6), is the
    # released classifier's final norm.
    backbone=dict(type='TinyViM', arch='s', out_indices=(3, ), drop_path_rate=0.,
                  scan_backend='auto'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='DistillClsHead',
        num_classes=num_classes,
        in_channels=224,
        distill_weight=0.5,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    teacher=dict(type='TimmClassifier', model_name='regnety_160', pretrained=False,
                 num_classes=num_classes),
    teacher_checkpoint='checkpoints/regnety_160-a5fe3fc4.pth',
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

data_preprocessor = dict(num_classes=num_classes)

# The base's train pipeline is the recipe's (RandomResizedCrop 224 bicubic,
# flip, RandAugment m9 mstd0.5 increasing, RandomErasing 0.25 per-pixel).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=248, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
# Repeated augmentation, as the released training script (DeiT's RASampler, on by
# default there): each selected image appears 3 times per epoch under different
# augmentations, spread over the GPUs; an epoch keeps about len(dataset) samples.
# default_collate stacks each batch in the workers, so the data preprocessor moves and
# normalises one (pinned) tensor instead of 128 (28 ms of host time per iteration on an
# H200 with MMEngine's per-sample pseudo_collate). The last incomplete batch of an epoch
# is dropped, as in the released script (DeiT's drop_last=True): every training batch
# has one shape, which the CUDA graphs of fast_training.compile (below) replay.
train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='RepeatAugSampler', num_repeats=3, shuffle=True))
val_dataloader = dict(batch_size=128, num_workers=8, persistent_workers=True,
                      dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

lr = 2e-3
optim_wrapper = dict(
    _delete_=True,
    type='AGCOptimWrapper',  # AmpAGCOptimWrapper under fast_training.amp (below)
    # one parameter group per distinct setting (MMEngine's default makes one per
    # parameter with a paramwise_cfg, and the fused AdamW then steps 445 groups)
    constructor='MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=lr, weight_decay=0.025, eps=1e-8, betas=(0.9, 0.999)),
    # on a GPU the wrapper logs train/grad_norm one iteration late (defer_norm_log):
    # reading it at once would make the host wait for the backward before the step
    clip_grad=dict(type='agc', clip_factor=0.02, eps=1e-3),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        flat_decay_mult=0.,  # 1-D parameters (Ds, ...)
        custom_keys={
            '.layer_scale': dict(decay_mult=0.),
            '.A_logs': dict(decay_mult=0.),
            '.Ds': dict(decay_mult=0.),
            '.dt_projs_bias': dict(decay_mult=0.),
        }))

max_epochs = 300
warmup_epochs = 5
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / lr, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)

# EMA as timm's ModelEmaV2 with decay 0.99996 (weights and BN statistics);
# validation and saved checkpoints use the EMA weights. The Foreach variant gives
# MMEngine's result in a few multi-tensor kernels instead of one per tensor, without
# building a state dict every step.
custom_hooks = [
    dict(type='EMAHook', ema_type='ForeachExponentialMovingAverage', momentum=4e-5,
         update_buffers=True, priority='ABOVE_NORMAL')
]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best='auto'))

# Fast training on GPUs (tinyvim_mm.engine.fast_training; ignored on CPU, with a log line):
# fp16 mixed precision, the backbone in channels-last memory, fused AdamW (AMP keeps AGC:
# the gradients are unscaled before clipping), and the backbone compiled into CUDA graphs
# (torch.compile mode='reduce-overhead'; compute capability >= 7.0). The eager loop is
# bound by the host's kernel launches: on an H200, TinyViM-S without teacher trains at
# 2,744 img/s with the graphs against 996 in the released recipe's form in the same
# process (2.75x; the released form's host-bound pace varies, 996-1,606 img/s across
# runs), and at 2,532 against 1,289 eager in an earlier run (docs/benchmarks.md,
# `python tools/benchmark.py --preset train_s`); with this config's RegNetY-16GF teacher
# 1,717 against 827 img/s in one process (2.08x, `--preset train_teacher`). The first
# iteration compiles for 1.5-4 minutes (validation runs the backbone eagerly);
# plain torch.compile without graphs did not pay off (0.88-1.15x eager). Turn any off with
# e.g. `--cfg-options fast_training.compile=False`, all with `fast_training=None`.
# async_logging: the losses reach the log one iteration late, from copies started without
# waiting (tinyvim_mm.engine.async_log), so the host does not wait for the device at the
# end of every iteration before it fetches the next batch, runs the hooks and launches
# the next iteration (the released script waits there: loss.item() every iteration).
# preprocess_stream: the data preprocessor (copies to the GPU, normalising, Mixup /
# CutMix) on a CUDA stream of its own, so the next batch is prepared while the device
# still trains on this one (it overlaps when the host runs ahead, as async_logging lets
# it). With both, on an H200 (`python tools/benchmark.py --preset train_s`,
# docs/benchmarks.md): TinyViM-S without teacher 4,324 against 1,429 img/s released
# (3.03x, 5.97 against 6.43 GB held); TinyViM-B without teacher 3,820 against 3,321
# without the preprocess stream and 1,453 released (2.63x); with this config's teacher
# S 2.48x, B 2.49x.
runner_type = 'FastTrainingRunner'
fast_training = dict(amp='float16', channels_last=True, fused_optimizer=True,
                     compile=dict(mode='reduce-overhead'), async_logging=True,
                     preprocess_stream=True)
# cuDNN picks its convolution kernels by timing them once per input shape (fixed 224x224
# crops here), as the released script does (DeiT's main.py: cudnn.benchmark = True).
env_cfg = dict(cudnn_benchmark=True)
