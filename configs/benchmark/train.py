# Runner-level training (MMEngine's Runner, in-memory samples): TinyViM-S/B ImageNet
# with and without the distillation teacher, Mask R-CNN and Semantic FPN with
# TinyViM-B; the released recipe's equivalent (AMP, NCHW, plain AdamW, eager) against
# the configs' default, and for ImageNet the default without its CUDA graphs (eager).
# About 12 min on one H200 (each CUDA-graph column compiles for 1-2 min); --time-budget
# skips the later columns.
_base_ = ['./_base_/sections.py']
sections = [_base_.train_cls, _base_.train_dense]
