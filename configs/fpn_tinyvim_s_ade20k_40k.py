# Semantic FPN with a TinyViM-S backbone on ADE20K (150 classes), the
# PoolFormer / EfficientFormer recipe the paper follows: 512x512 crops,
# 8 GPUs x 4 images, AdamW lr 2e-4 wd 1e-4, poly (power 0.9) over 40k
# iterations, single-scale "whole" test at 2048x512 keep-ratio (no resize to
# a multiple of 32: TinyViM takes any size). B and L configs inherit this one.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_40k.py'
]

custom_imports = dict(imports=['tinyvim_mm'], allow_failed_imports=False)

# ImageNet-1k weights: the released checkpoint, or its conversion by
# `python tools/convert_official.py TinyViM-S.pth checkpoints/tinyvim-s_in1k.pth`.
checkpoint = 'checkpoints/tinyvim-s_in1k.pth'
crop_size = (512, 512)

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='TinyViM',
        arch='s',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,  # BN trained: the dense output norms are new
        drop_path_rate=0.0,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 64, 168, 224]),
    decode_head=dict(num_classes=150))

# Under DDP every BN, the backbone's included, becomes SyncBN (the FPN head's
# norm_cfg already is): statistics over the whole batch of 32 and identical
# running statistics on every rank (DDP does not broadcast buffers here), so
# results don't depend on the GPU count. mmengine reverts SyncBN to BN when
# not distributed (1 GPU / CPU).
sync_bn = 'torch'

# 8 GPUs x 4 images = total batch 32, the batch the lr is meant for.
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=32)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=0, end=40000, by_epoch=False)
]

# Fast training on GPUs (tinyvim_mm.engine.fast_training; ignored on CPU, with a log line):
# - compile: the backbone's training steps compiled into CUDA graphs (torch.compile
#   mode='reduce-overhead'; the fixed 512x512 crops give one shape; validation and test
#   run it eagerly at their many sizes). At 4 images per GPU the eager loop waits on the
#   host's kernel launches: on an H200, TinyViM-B trains at 67.6 img/s against 44.4 in
#   the plain form in the same process (1.52x; peak 2.3 vs 4.5 GB; the first iteration
#   compiles for about 2 minutes; docs/benchmarks.md). Dropped, with a log line, in
#   distributed runs with sync_bn (torch.compile breaks the graph at every SyncBatchNorm).
# - async_logging, preprocess_stream: the losses logged one iteration late without
#   waiting for the device, the data preprocessor on a CUDA stream of its own. On an
#   H100 with the compile: 81.8 -> 86.8 img/s, 7.7 -> 4.2 GB held (1.60x the plain
#   form's 54.3 img/s in the same run).
# - AMP, channels-last and fused AdamW stay off: eager they gained 4 % together (fp16
#   AMP's casts add host work; 3.4 vs 4.5 GB); turn them on where memory is short, e.g.
#   `--cfg-options fast_training.amp=float16`; the compile off with
#   `fast_training.compile=False`, everything with `fast_training=None`.
runner_type = 'FastTrainingRunner'
fast_training = dict(amp=False, channels_last=False, fused_optimizer=False,
                     compile='reduce-overhead', async_logging=True, preprocess_stream=True)
