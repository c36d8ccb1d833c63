"""Synthetic ADE20K-layout semantic segmentation dataset.

Layout written by :func:`make_toy_ade` (what mmseg's ``ADE20KDataset``
reads)::

    root/
    ├── images/training/ADE_train_00000001.jpg ...
    ├── images/validation/ADE_val_00000001.jpg ...
    ├── annotations/training/ADE_train_00000001.png ...
    └── annotations/validation/ADE_val_00000001.png ...

Label PNGs follow ADE20K: 0 = "other" (ignored), ``k`` in 1..K = class
``TOY_ADE_CLASSES[k - 1]``.  A scene is a Voronoi partition plus overlaid
polygons, each region filled with the texture of its class (sharp boundaries),
and one or two small polygons of label 0 filled with colourful clutter.  Image
sizes vary (validation image 1 is always 389x517) to exercise test-time
resizing.

The class names are the first K names of ADE20K, because
``ADE20KDataset`` only accepts ``metainfo.classes`` that are a subset of its
150 names; it then builds ``label_map`` {i: i for i < K, others: 255}, i.e.
the identity on the toy labels.  Config::

    dataset = dict(type='ADE20KDataset', data_root='data/toy/ade',
                   metainfo=dict(classes=TOY_ADE_CLASSES,
                                 palette=TOY_ADE_PALETTE),
                   data_prefix=dict(img_path='images/training',
                                    seg_map_path='annotations/training'))
    # reduce_zero_label stays True (ADE20KDataset's default and the
    # LoadAnnotations in mmseg's ADE pipelines): 0 -> 255, k -> k - 1.
    # decode_head (and auxiliary_head) num_classes=len(TOY_ADE_CLASSES).

``palette`` may be omitted (mmseg then takes the same subset of the ADE20K
palette); class names outside ADE20K's list raise ``ValueError``.
"""
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ._shapes import (POLYGON_SHAPES, ToyDatasetInfo, fill_polygon,
                      sample_rng, save_jpeg, save_png, shape_polygon,
                      smooth_noise)

TOY_ADE_CLASSES = ('wall', 'building', 'sky', 'floor', 'tree', 'ceiling',
                   'road')
TOY_ADE_PALETTE = [[120, 120, 120], [180, 120, 120], [6, 230, 230],
                   [80, 50, 50], [4, 200, 3], [120, 120, 80], [140, 140, 140]]

_TASK_ID = 2
_SPLITS = ('training', 'validation')
_PREFIX = dict(training='ADE_train', validation='ADE_val')
_ODD_SIZE = (389, 517)  # (height, width) of validation image 1


@dataclass(frozen=True)
class _Region:
    """The pixels of one label value in an ``h`` x ``w`` image."""

    h: int
    w: int
    idx: np.ndarray  # (n,) flat pixel indices
    ys: np.ndarray  # (n,) float32 rows
    xs: np.ndarray  # (n,) float32 columns


# A texture returns (pattern, colour0, colour1, grain): pixel colour is
# colour0 + pattern * (colour1 - colour0) + grain * N(0, 1).
_TextureParams = tuple[np.ndarray, np.ndarray, np.ndarray, float]


def _wall(rng: np.random.Generator, px: _Region) -> _TextureParams:
    base = rng.uniform([150, 140, 120], [225, 215, 195])
    return px.ys / px.h, base, base * 0.88, 3.0


def _building(rng: np.random.Generator, px: _Region) -> _TextureParams:
    brick = rng.uniform([110, 45, 35], [190, 115, 95])
    mortar = rng.uniform(175, 215, 3)
    ph = rng.uniform(8, 14)
    pw = ph * rng.uniform(1.8, 2.6)
    shift = (px.ys // ph % 2) * pw / 2
    is_mortar = (px.ys % ph < 2) | ((px.xs + shift) % pw < 2)
    return is_mortar.astype(np.float32), brick, mortar, 5.0


def _sky(rng: np.random.Generator, px: _Region) -> _TextureParams:
    top = rng.uniform([60, 120, 200], [120, 170, 255])
    bottom = rng.uniform([170, 200, 235], [220, 235, 255])
    return px.ys / px.h, top, bottom, 1.5


def _floor(rng: np.random.Generator, px: _Region) -> _TextureParams:
    light = rng.uniform([150, 100, 60], [215, 165, 115])
    p = rng.uniform(10, 24)
    odd = (px.ys // p + px.xs // p) % 2
    return odd, light * rng.uniform(0.5, 0.75), light, 4.0


def _tree(rng: np.random.Generator, px: _Region) -> _TextureParams:
    dark = rng.uniform([15, 50, 10], [50, 100, 40])
    light = rng.uniform([60, 140, 40], [120, 205, 90])
    leaves = smooth_noise(rng, px.h, px.w, cells=max(px.h, px.w) // 10)
    return np.clip(leaves.ravel()[px.idx] * 4 - 1.5, 0, 1), dark, light, 12.0


def _ceiling(rng: np.random.Generator, px: _Region) -> _TextureParams:
    base = rng.uniform([215, 215, 205], [250, 250, 245])
    groove = (px.ys % rng.uniform(16, 30) < 2).astype(np.float32)
    return groove, base, base - rng.uniform(30, 50), 2.0


def _road(rng: np.random.Generator, px: _Region) -> _TextureParams:
    grey = rng.uniform(60, 110) + rng.uniform(-6, 6, 3)
    return np.zeros_like(px.ys), grey, grey, 14.0


def _other(rng: np.random.Generator, px: _Region) -> _TextureParams:
    clutter = smooth_noise(rng, px.h, px.w, cells=8)
    colour0, colour1 = rng.uniform(0, 255, (2, 3))
    return clutter.ravel()[px.idx], colour0, colour1, 6.0


# Index = label value: 0 is "other", k is TOY_ADE_CLASSES[k - 1].
_TEXTURES: tuple[Callable[[np.random.Generator, _Region], _TextureParams],
                 ...] = (_other, _wall, _building, _sky, _floor, _tree,
                         _ceiling, _road)


def _layout(rng: np.random.Generator, h: int, w: int,
            num_classes: int) -> np.ndarray:
    """Label map: Voronoi cells, class polygons on top, label-0 polygons."""
    subdiv = cv2.Subdiv2D((0, 0, w, h))
    for x, y in rng.uniform(0, [w, h], (int(rng.integers(3, 7)), 2)):
        subdiv.insert((float(x), float(y)))
    cells, _ = subdiv.getVoronoiFacetList([])
    label = np.zeros((h, w), np.uint8)
    cell_values = rng.integers(1, num_classes + 1, len(cells))
    for cell, value in zip(cells, cell_values):
        fill_polygon(label, cell, int(value), antialias=False)
    num_polygons, num_other = rng.integers(1, 4), rng.integers(1, 3)
    values = np.concatenate([
        rng.integers(1, num_classes + 1, num_polygons),
        np.zeros(num_other, int)
    ])
    sizes = np.concatenate([
        rng.uniform(0.1, 0.3, num_polygons),
        rng.uniform(0.05, 0.12, num_other)
    ])
    for rel_size, value in zip(sizes, values):
        r = rel_size * min(h, w)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        shape = POLYGON_SHAPES[rng.integers(len(POLYGON_SHAPES))]
        fill_polygon(label, shape_polygon(shape, rng, cx, cy, r), int(value),
                     antialias=False)
    return label


def render_ade_sample(seed: int, split: str, index: int,
                      num_classes: int = len(TOY_ADE_CLASSES)
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Render sample ``index`` of ``split`` ('training' or 'validation').

    Returns the RGB ``uint8`` image and the ``uint8`` label map (0..K).
    """
    rng = sample_rng(seed, _TASK_ID, _SPLITS.index(split), index)
    if split == 'validation' and index == 0:
        h, w = _ODD_SIZE
    else:
        h, w = int(rng.integers(240, 401)), int(rng.integers(320, 561))
    label = _layout(rng, h, w, num_classes)
    flat = label.ravel()
    rows = np.repeat(np.arange(h, dtype=np.float32), w)
    cols = np.tile(np.arange(w, dtype=np.float32), h)
    pattern = np.empty(h * w, np.float32)
    colour0, delta = np.zeros((2, len(_TEXTURES), 3), np.float32)
    sigma = np.zeros(len(_TEXTURES), np.float32)
    for value in np.flatnonzero(np.bincount(flat)):
        idx = np.flatnonzero(flat == value)
        region = _Region(h, w, idx, rows[idx], cols[idx])
        pattern[idx], c0, c1, sigma[value] = _TEXTURES[value](rng, region)
        colour0[value], delta[value] = c0, c1 - c0
    grain = rng.standard_normal(h * w, dtype=np.float32) * sigma[flat]
    channels = [
        colour0[:, ch].take(flat) + pattern * delta[:, ch].take(flat) + grain
        for ch in range(3)
    ]
    img = cv2.merge([c.reshape(h, w) for c in channels])
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img, label


def make_toy_ade(root: str | Path,
                 num_classes: int = len(TOY_ADE_CLASSES),
                 num_train: int = 200,
                 num_val: int = 50,
                 seed: int = 0) -> ToyDatasetInfo:
    """Write the toy segmentation set in ADE20K layout under ``root``.

    Args:
        root: Output directory (created if missing).
        num_classes: Use labels 1..``num_classes``, i.e. the classes
            ``TOY_ADE_CLASSES[:num_classes]`` (2..7).
        num_train: Number of training samples.
        num_val: Number of validation samples.
        seed: Random seed; the output is a pure function of the arguments.
    """
    if not 2 <= num_classes <= len(TOY_ADE_CLASSES):
        raise ValueError(f'num_classes must be in [2, {len(TOY_ADE_CLASSES)}]'
                         f', got {num_classes}.')
    root = Path(root)
    for split, num in zip(_SPLITS, (num_train, num_val)):
        (root / 'images' / split).mkdir(parents=True, exist_ok=True)
        (root / 'annotations' / split).mkdir(parents=True, exist_ok=True)
        for index in range(num):
            img, label = render_ade_sample(seed, split, index, num_classes)
            stem = f'{_PREFIX[split]}_{index + 1:08d}'
            save_jpeg(root / 'images' / split / f'{stem}.jpg', img)
            save_png(root / 'annotations' / split / f'{stem}.png', label)
    return ToyDatasetInfo('ade', str(root), TOY_ADE_CLASSES[:num_classes],
                          dict(train=num_train, val=num_val))
