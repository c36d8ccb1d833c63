# Mask R-CNN (800x1333) and Semantic FPN (512x512) with TinyViM-B against the
# toolboxes' ResNet-50 models, end to end, float32; the backbones alone at 2x3x800x1333,
# eager and compiled. About 3.5 min on one H200.
_base_ = ['./_base_/sections.py']
sections = [_base_.dense_det, _base_.dense_seg, _base_.backbone_det]
