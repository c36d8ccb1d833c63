# Mask R-CNN + FPN with a TinyViM-L backbone, 1x COCO (recipe: mask_rcnn_tinyvim_b.py).
_base_ = './mask_rcnn_tinyvim_b.py'

checkpoint = 'checkpoints/tinyvim-l_in1k.pth'

model = dict(
    backbone=dict(arch='l', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 384, 512]))
