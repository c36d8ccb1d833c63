# Runner-level training (MMEngine's Runner, in-memory samples): TinyViM-S/B ImageNet
# with and without the distillation teacher, Mask R-CNN and Semantic FPN with
# TinyViM-B; the released recipe's equivalent (AMP, NCHW, plain AdamW) against the
# configs' default. About 5.5 min on one H200.
_base_ = ['./_base_/sections.py']
sections = [_base_.train_cls, _base_.train_dense]
