# Semantic FPN + TinyViM-B on ADE20K, 40k iterations: the TinyViM-S recipe
# (see fpn_tinyvim_s_ade20k_40k.py) with the B backbone.
_base_ = './fpn_tinyvim_s_ade20k_40k.py'

# `python tools/convert_official.py TinyViM-B.pth checkpoints/tinyvim-b_in1k.pth`
checkpoint = 'checkpoints/tinyvim-b_in1k.pth'

model = dict(
    backbone=dict(arch='b', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 192, 384]))
