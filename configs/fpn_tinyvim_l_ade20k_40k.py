# Semantic FPN + TinyViM-L on ADE20K, 40k iterations: the TinyViM-S recipe
# (see fpn_tinyvim_s_ade20k_40k.py) with the L backbone.
_base_ = './fpn_tinyvim_s_ade20k_40k.py'

# `python tools/convert_official.py TinyViM-L.pth checkpoints/tinyvim-l_in1k.pth`
checkpoint = 'checkpoints/tinyvim-l_in1k.pth'

model = dict(
    backbone=dict(arch='l', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 384, 512]))
