# Mask R-CNN + FPN with a TinyViM-S backbone, 1x COCO (recipe: mask_rcnn_tinyvim_b.py).
_base_ = './mask_rcnn_tinyvim_b.py'

checkpoint = 'checkpoints/tinyvim-s_in1k.pth'

model = dict(
    backbone=dict(arch='s', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 64, 168, 224]))
