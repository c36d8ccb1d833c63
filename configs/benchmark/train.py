# Runner-level training (MMEngine's Runner, in-memory samples, the configs' data workers):
# TinyViM-S/B ImageNet with and without the distillation teacher against the released
# recipe's equivalent (AMP, NCHW, plain AdamW, eager) and the default without its CUDA
# graphs (eager); Mask R-CNN with TinyViM-B in its plain form (bitmap masks, losses read
# every iteration, torch's host threads) against its default and the default without
# each of its settings; Semantic FPN with TinyViM-B plain, default (backbone in CUDA
# graphs) and fast form. About 25 min on one H200 (each CUDA-graph column compiles for
# 1.5-4 min): split it with --only or --time-budget, which skips the later columns, or
# run the train_s preset for the README's row.
_base_ = ['./_base_/sections.py']
sections = [_base_.train_cls, _base_.train_det, _base_.train_seg]
