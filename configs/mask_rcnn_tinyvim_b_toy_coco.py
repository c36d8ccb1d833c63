# Mask R-CNN TinyViM-B trained from scratch on the synthetic toy COCO set
# (python tools/dataset_converters/make_toy_data.py --tasks coco -> data/toy/coco):
# 3 shape classes, ~256x320 images with at most 5 objects. A smoke test of the
# detection stack and an "it learns" check, not a benchmark.
#
# The one toy detection recipe: model and pipelines are sized for a CPU (FPN and
# heads at 128 channels, images within 256x224, 64 sampled RoIs, at most 20
# detections) so that every toy checkpoint fits this config; the schedule is the
# one-GPU run (16 epochs x 8 images). tools/quickstart.py (2 epochs on CPU) and
# tools/experiments/toy_det.sh change only schedule, batch, loaders and paths
# (--cfg-options), e.g.
#   python tools/train.py configs/mask_rcnn_tinyvim_b_toy_coco.py --amp \
#       --cfg-options train_cfg.max_epochs=24 param_scheduler.1.end=24
_base_ = './mask_rcnn_tinyvim_b.py'

classes = ('circle', 'square', 'triangle')  # tinyvim_mm.datasets.TOY_COCO_CLASSES
data_root = 'data/toy/coco/'
img_scale = (256, 224)  # (w, h) bound of the keep-ratio resize
width = 128  # FPN, RPN and RoI head channels (COCO recipe: 256)
max_epochs = 16

model = dict(
    backbone=dict(init_cfg=None),  # from scratch: the backbone's own init
    neck=dict(out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width, num_classes=len(classes))),
    # At most 5 objects per image (COCO: 2000 / 1000 proposals, 512 RoIs, 100 detections).
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=150),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(max_per_img=100), rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 filter_cfg=dict(filter_empty_gt=True, min_size=8), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=4,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# From scratch at batch 8: a higher lr, a short linear warm-up (iterations), then a
# cosine decay over the epochs (per iteration).
auto_scale_lr = dict(enable=False, base_batch_size=8)
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=10.0, norm_type=2))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=10)
randomness = dict(seed=0)
