"""Classifiers.

- :class:`TinyViMClassifier`: plain PyTorch (benchmarks, ONNX export, scripts);
- ``DistillImageClassifier`` (:mod:`.distill_classifier`, with ``DistillClsHead``): the
  mmpretrain model of the ImageNet configs, registered when that module is imported
  (the configs' ``custom_imports`` do it), so that detection and segmentation users never
  import mmpretrain.
"""
from .plain import TinyViMClassifier

__all__ = ['TinyViMClassifier']
