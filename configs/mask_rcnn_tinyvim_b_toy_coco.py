# Mask R-CNN TinyViM-B trained from scratch on the synthetic toy COCO set
# (tools/dataset_converters/make_toy_data.py --tasks coco -> data/toy/coco):
# 3 shape classes, ~256x320 images, 1 GPU x 8 images (AMP: `--amp`). A smoke test
# of the detection stack and a quick "it learns" check
# (tools/experiments/toy_det.sh), not a benchmark.
_base_ = './mask_rcnn_tinyvim_b.py'

classes = ('circle', 'square', 'triangle')  # tinyvim_mm.datasets.TOY_COCO_CLASSES
data_root = 'data/toy/coco/'
img_scale = (384, 320)  # (w, h) bound: the ~256x320 images are upscaled ~1.2x
max_epochs = 16

model = dict(
    backbone=dict(init_cfg=None),  # from scratch: the backbone's own init
    roi_head=dict(bbox_head=dict(num_classes=len(classes)),
                  mask_head=dict(num_classes=len(classes))),
    # At most 5 objects per image: 300 proposals and 128 sampled RoIs (COCO: 1000 / 512).
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300),
                   rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(max_per_img=300)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
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

# From scratch at batch 8: a higher lr, a short warm-up, lr steps at 2/3 and 11/12.
auto_scale_lr = dict(enable=False, base_batch_size=8)
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=10.0, norm_type=2))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs,
         milestones=[max_epochs * 2 // 3, max_epochs * 11 // 12], gamma=0.1),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=10)
