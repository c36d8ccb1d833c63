# TinyViM-L on ImageNet-1k, the paper's recipe (see tinyvim_s_8xb128_in1k.py).
_base_ = './tinyvim_s_8xb128_in1k.py'

model = dict(backbone=dict(arch='l'), head=dict(in_channels=512))
