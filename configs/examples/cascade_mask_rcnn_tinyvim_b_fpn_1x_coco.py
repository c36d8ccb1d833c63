# Cascade Mask R-CNN + FPN with a TinyViM-B backbone, 1x on COCO: mmdet's R50 recipe
# with the backbone swapped and AdamW 2e-4, wd 0.05 (as our Mask R-CNN configs).
_base_ = 'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['tinyvim_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='TinyViM',
        arch='b',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/tinyvim-b_in1k.pth')),
    neck=dict(in_channels=[48, 96, 192, 384]))  # TinyViM-B's stage widths

sync_bn = 'torch'
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Fast training on GPUs (tinyvim_mm.engine.fast_training): AMP, fused AdamW, channels-last
# and compile off, as in mask_rcnn_tinyvim_b.py, where they made the loop at 4 images per
# GPU slower (measured on an H200; not for this model). That config's host-side defaults
# (polygon masks through the data workers, async_logging, preprocess_stream,
# host_threads=1) are not measured here either: add them with --cfg-options.
runner_type = 'FastTrainingRunner'
fast_training = dict(amp=False, channels_last=False, fused_optimizer=False, compile=False)
