# Toy COCO from scratch with TinyViM-S (settings: mask_rcnn_tinyvim_b_toy_coco.py).
_base_ = './mask_rcnn_tinyvim_b_toy_coco.py'

model = dict(backbone=dict(arch='s'), neck=dict(in_channels=[48, 64, 168, 224]))
