"""Synthetic COCO-layout detection / instance segmentation dataset.

Layout written by :func:`make_toy_coco` (what mmdet's ``CocoDataset`` and
``CocoMetric`` read)::

    root/
    ├── annotations/instances_train2017.json
    ├── annotations/instances_val2017.json
    ├── train2017/000000000001.jpg ...
    └── val2017/000000000001.jpg ...

Each scene holds 1..``max_objects`` non-overlapping shapes on a noisy
background with unannotated line clutter.  Every object is painted through the
pycocotools rasterisation of its polygon, so the stored polygon (and the mask
that mmdet's ``LoadAnnotations(poly2mask=True)`` decodes from it) is exactly
the painted region; ``bbox`` is the polygon's extent, ``area`` the mask area.

Config::

    metainfo = dict(classes=TOY_COCO_CLASSES)  # category ids 1..K, in order
    dataset = dict(type='CocoDataset', data_root='data/toy/coco',
                   metainfo=metainfo,
                   ann_file='annotations/instances_train2017.json',
                   data_prefix=dict(img='train2017/'))
    # bbox/mask heads: num_classes=len(TOY_COCO_CLASSES);
    # val_evaluator ann_file='data/toy/coco/annotations/instances_val2017.json'

``metainfo.classes`` is required: without it ``CocoDataset`` looks up the 80
COCO names, finds none of them and yields no instances.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ._shapes import (POLYGON_SHAPES, ToyDatasetInfo, add_grain,
                      noisy_background, random_colour, sample_rng,
                      save_jpeg, shape_polygon)

TOY_COCO_CLASSES = ('circle', 'square', 'triangle')

_TASK_ID = 1
_SPLITS = ('train2017', 'val2017')
_MARGIN = 2.0  # minimum gap between object bounding boxes, in pixels


@dataclass(frozen=True)
class CocoObject:
    """One rendered object."""

    label: int  # index into the class tuple (category id - 1)
    polygon: np.ndarray  # (N, 2) x, y; exactly the values stored in the JSON
    mask: np.ndarray  # (H, W) uint8, pycocotools rasterisation of ``polygon``
    area: float  # number of pixels in ``mask``
    colour: np.ndarray  # RGB fill colour before grain / JPEG


def render_coco_scene(
    seed: int,
    split: str,
    index: int,
    classes: tuple[str, ...] = TOY_COCO_CLASSES,
    img_size: tuple[int, int] = (256, 320),
    max_objects: int = 5,
) -> tuple[np.ndarray, list[CocoObject]]:
    """Render image ``index`` of ``split`` ('train2017' or 'val2017').

    The image size is ``img_size`` (height, width) scaled by a random factor in
    [0.8, 1.2] per side.  Returns the RGB ``uint8`` image and its objects.
    """
    rng = sample_rng(seed, _TASK_ID, _SPLITS.index(split), index)
    h, w = (round(s * rng.uniform(0.8, 1.2)) for s in img_size)
    img = noisy_background(rng, h, w)
    for _ in range(rng.integers(0, 4)):
        p1, p2 = rng.uniform(0, [w, h], (2, 2)).round().astype(int)
        cv2.line(img, tuple(p1.tolist()), tuple(p2.tolist()),
                 tuple(rng.uniform(0, 255, 3).tolist()),
                 int(rng.integers(1, 4)))
    bg_mean = np.array(cv2.mean(img)[:3])

    objects: list[CocoObject] = []
    boxes: list[np.ndarray] = []
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(50):
            r = rng.uniform(0.06, 0.2) * min(h, w)
            cx = rng.uniform(r + 1, w - r - 1)
            cy = rng.uniform(r + 1, h - r - 1)
            box = np.array([cx - r, cy - r, cx + r, cy + r])
            if all((box[:2] >= b[2:] + _MARGIN).any()
                   or (b[:2] >= box[2:] + _MARGIN).any() for b in boxes):
                break
        else:
            continue  # no free spot left: fewer objects in this scene
        boxes.append(box)
        label = int(rng.integers(len(classes)))
        poly = shape_polygon(classes[label], rng, cx, cy, r).round(2)
        rle = mask_utils.frPyObjects([poly.ravel().tolist()], h, w)
        mask = mask_utils.decode(rle)[..., 0]
        colour = random_colour(rng, bg_mean)
        img[mask.astype(bool)] = colour
        area = float(mask_utils.area(rle)[0])
        objects.append(CocoObject(label, poly, mask, area, colour))
    return add_grain(rng, img, sigma=rng.uniform(2, 8)), objects


def _write_split(root: Path, split: str, num_images: int, seed: int,
                 classes: tuple[str, ...], img_size: tuple[int, int],
                 max_objects: int) -> None:
    (root / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        img, objects = render_coco_scene(seed, split, index, classes,
                                         img_size, max_objects)
        img_id = index + 1
        file_name = f'{img_id:012d}.jpg'
        save_jpeg(root / split / file_name, img)
        images.append(
            dict(id=img_id, file_name=file_name, height=img.shape[0],
                 width=img.shape[1], license=1, coco_url='', flickr_url='',
                 date_captured='2017-01-01 00:00:00'))
        for obj in objects:
            (x0, y0), (x1, y1) = obj.polygon.min(0), obj.polygon.max(0)
            annotations.append(
                dict(id=len(annotations) + 1, image_id=img_id,
                     category_id=obj.label + 1,
                     segmentation=[obj.polygon.ravel().tolist()],
                     area=obj.area,
                     bbox=[round(float(v), 2)
                           for v in (x0, y0, x1 - x0, y1 - y0)],
                     iscrowd=0))
    coco = dict(
        info=dict(description='tinyvim_mm toy COCO (synthetic shapes)',
                  url='', version='1.0', year=2017, contributor='tinyvim_mm',
                  date_created='2017-01-01'),
        licenses=[dict(id=1, name='synthetic', url='')],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(classes)
        ])
    (root / 'annotations').mkdir(exist_ok=True)
    with open(root / 'annotations' / f'instances_{split}.json', 'w') as f:
        json.dump(coco, f)


def make_toy_coco(root: str | Path,
                  classes: tuple[str, ...] = TOY_COCO_CLASSES,
                  num_train: int = 200,
                  num_val: int = 50,
                  img_size: tuple[int, int] = (256, 320),
                  max_objects: int = 5,
                  seed: int = 0) -> ToyDatasetInfo:
    """Write the toy detection set in COCO 2017 layout under ``root``.

    Args:
        root: Output directory (created if missing).
        classes: Shape classes, a subset of ``POLYGON_SHAPES``; category ``i``
            of the JSON (id ``i + 1``) is ``classes[i]``.
        num_train: Number of training images.
        num_val: Number of validation images.
        img_size: Nominal image ``(height, width)``; each side varies +-20%.
        max_objects: Maximum objects per image (at least one each).
        seed: Random seed; the output is a pure function of the arguments.
    """
    classes = tuple(classes)
    if not classes or not set(classes) <= set(POLYGON_SHAPES):
        raise ValueError(f'classes must be a non-empty subset of '
                         f'{POLYGON_SHAPES}, got {classes}.')
    root = Path(root)
    for split, num in zip(_SPLITS, (num_train, num_val)):
        _write_split(root, split, num, seed, classes, img_size, max_objects)
    return ToyDatasetInfo('coco', str(root), classes,
                          dict(train=num_train, val=num_val))
