"""Synthetic toy datasets in the standard ImageNet / COCO / ADE20K layouts.

They let tests, the quickstart and short training runs work without any
download; the toolboxes' own dataset classes read them unchanged.
"""
from ._shapes import POLYGON_SHAPES, ToyDatasetInfo
from .toy import TOY_SIZES, TOY_TASKS, make_toy_data
from .toy_ade import (TOY_ADE_CLASSES, TOY_ADE_PALETTE, make_toy_ade,
                      render_ade_sample)
from .toy_coco import (TOY_COCO_CLASSES, CocoObject, make_toy_coco,
                       render_coco_scene)
from .toy_imagenet import TOY_IMAGENET_CLASSES, make_toy_imagenet

__all__ = [
    'POLYGON_SHAPES', 'TOY_ADE_CLASSES', 'TOY_ADE_PALETTE', 'TOY_COCO_CLASSES',
    'TOY_IMAGENET_CLASSES', 'TOY_SIZES', 'TOY_TASKS', 'CocoObject',
    'ToyDatasetInfo', 'make_toy_ade', 'make_toy_coco', 'make_toy_data',
    'make_toy_imagenet', 'render_ade_sample', 'render_coco_scene'
]
