# Mask R-CNN (800x1333) and Semantic FPN (512x512) with TinyViM-B against the
# toolboxes' ResNet-50 models, end to end, in float32 and in fp16 autocast: the fast rows
# as `tools/test.py --deploy` runs them (backbone from CUDA graphs) and with the neck and
# RPN / decode head in CUDA graphs too (ResNet-50 likewise), Semantic FPN also in fp16
# channels-last (not yet measured); the backbones alone at
# 2x3x800x1333, eager, compiled and from a CUDA graph, and in fp16. About 3.5 min on one
# H200 (measured: 139 s of measurements, the rest model building and start-up).
_base_ = ['./_base_/sections.py']
sections = [_base_.dense_det, _base_.dense_seg, _base_.dense_det_fp16, _base_.dense_seg_fp16,
            _base_.dense_seg_fp16_cl, _base_.backbone_det, _base_.backbone_det_fp16]
