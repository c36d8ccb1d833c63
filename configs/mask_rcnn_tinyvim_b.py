# Mask R-CNN + FPN with a TinyViM-B backbone, 1x schedule on COCO 2017, the
# paper's detection recipe: 8 GPUs x 4 images, AdamW lr 2e-4 wd 0.05, 12
# epochs with lr steps at 8 and 11, single scale 1333x800. S and L inherit it.
#
# The base is mmdet's `_poly` variant of its R-50 Mask R-CNN 1x: the same model,
# schedule and pipeline, but the training masks stay COCO's polygons through the data
# workers (LoadAnnotations(poly2mask=False)) and become bitmaps only as each positive
# proposal's 28x28 mask target. Full-size bitmaps (8 MB per image of 8 objects at
# 800x1333) made the workers the loop's bottleneck: with 4 workers per GPU a stall of
# 250-450 ms every few iterations (`python tools/benchmark.py --preset train --only
# Mask`, docs/benchmarks.md). COCO's crowd regions (RLE) are ignored in training
# either way (mmdet's ignore_flag). tests/toolboxes/test_detection.py checks that the
# mask targets of both forms agree.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_poly-1x_coco.py'

custom_imports = dict(imports=['tinyvim_mm'], allow_failed_imports=False)

# ImageNet-1k weights: the released classifier checkpoint as it is, or its
# conversion by `python tools/convert_official.py TinyViM-B.pth
# checkpoints/tinyvim-b_in1k.pth` (docs/detection.md). Paths are relative to
# the working directory.
checkpoint = 'checkpoints/tinyvim-b_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='TinyViM',
        arch='b',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,  # BN trained: the dense output norms (norm0..norm6) are new
        drop_path_rate=0.0,
        with_cp=False,  # True: recompute blocks in backward, less activation memory
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 192, 384]))

# Under DDP the backbone's BNs (the only norms of this detector) become SyncBN:
# statistics over all 32 images rather than 4 per GPU, identical running
# statistics on every rank (mmengine's DDP doesn't broadcast buffers), results
# independent of the GPU count. mmengine reverts SyncBN to BN when not
# distributed (1 GPU / CPU). Remove the line for per-GPU BN.
sync_bn = 'torch'

# 8 GPUs x 4 images = total batch 32, the batch the lr is meant for.
train_dataloader = dict(batch_size=4, num_workers=4)
auto_scale_lr = dict(enable=False, base_batch_size=32)

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))

# Fast training on GPUs (tinyvim_mm.engine.fast_training). At 4 images per GPU the loop
# waits on the host (mmdet's sampling, proposals and mask targets between small kernels),
# so the defaults are host-side (one H100, 30 iterations, TinyViM-B, against the plain
# form with bitmap masks: 17.0 img/s; docs/benchmarks.md):
# - polygon masks (the base above): 26.8 img/s (1.58x), the wait for data 72 -> 8 ms;
# - async_logging, preprocess_stream: the losses logged one iteration late without
#   waiting for the device, the next batch copied on a stream of its own while the
#   device trains on this one: 29.4 img/s (1.73x);
# - host_threads=1: one intra-op thread in the training process while it trains, what
#   torchrun gives each of several processes per node; torch's default pool (a thread
#   per core) serves only the loop's small CPU ops and competes with the data workers
#   for the cores: 1.15x on an H200 (13.5 -> 15.6 img/s), 1.02x on an H100.
# - amp, fused_optimizer: off, they did not pay off (AMP + fused AdamW vs plain, two
#   runs: 15.4 vs 17.8 and 9.7 vs 13.6 img/s), but AMP halves the memory (6.3 vs 11.4
#   GB): `--cfg-options fast_training.amp=float16` where memory is short or on GPUs
#   without TF32 (V100; not measured).
# - No torch.compile (every image size is another graph). channels_last=True is safe (it
#   applies to the backbone, whose maps come back NCHW: mmcv's RoIAlign indexes its input
#   as contiguous NCHW memory, unchecked) but not measured for Mask R-CNN.
runner_type = 'FastTrainingRunner'
fast_training = dict(amp=False, channels_last=False, fused_optimizer=False, compile=False,
                     async_logging=True, preprocess_stream=True, host_threads=1)
