# Toy COCO from scratch with TinyViM-S (the recipe: mask_rcnn_tinyvim_b_toy_coco.py);
# the detection run of tools/quickstart.py.
_base_ = './mask_rcnn_tinyvim_b_toy_coco.py'

model = dict(backbone=dict(arch='s'), neck=dict(in_channels=[48, 64, 168, 224]))
