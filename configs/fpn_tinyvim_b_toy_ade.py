# Semantic FPN + TinyViM-B from scratch on the toy ADE set: the TinyViM-S toy
# run (fpn_tinyvim_s_toy_ade.py) with the backbone and FPN widths of
# fpn_tinyvim_b_ade20k_40k.py. Used by tools/experiments/toy_seg.sh.
_base_ = './fpn_tinyvim_s_toy_ade.py'

model = dict(backbone=dict(arch='b'), neck=dict(in_channels=[48, 96, 192, 384]))
