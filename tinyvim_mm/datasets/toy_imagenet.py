"""Synthetic ImageNet-layout classification dataset (textured shapes).

Layout written by :func:`make_toy_imagenet` (what mmpretrain's ``ImageNet``
reads)::

    root/
    ├── train/n90000000/n90000000_00000.JPEG ...   one folder per class
    ├── val/ILSVRC2012_val_00000001.JPEG ...       flat
    └── meta/
        ├── train.txt    "n90000000/n90000000_00000.JPEG 0"
        ├── val.txt      "ILSVRC2012_val_00000001.JPEG 0"
        └── classes.txt  one class name per line, in label order

Config::

    train_dataloader.dataset = dict(
        type='ImageNet', data_root='data/toy/imagenet', split='train',
        classes='data/toy/imagenet/meta/classes.txt')  # or metainfo=dict(
    # classes=TOY_IMAGENET_CLASSES); model head num_classes=10

``classes`` must be set: ``ImageNet`` otherwise reports the 1000 ImageNet
names (labels still load, but ``dataset_meta`` would be wrong).
"""
from pathlib import Path

import cv2
import numpy as np

from ._shapes import (ToyDatasetInfo, add_grain, fill_polygon,
                      noisy_background, random_colour, sample_rng,
                      shape_polygon, save_jpeg)

TOY_IMAGENET_CLASSES = ('circle', 'square', 'triangle', 'star', 'cross',
                        'ring', 'blob', 'stripes_h', 'stripes_v', 'checker')

_TASK_ID = 0


def _wnid(label: int) -> str:
    return f'n{90000000 + label}'


def _texture(name: str, rng: np.random.Generator, h: int,
             w: int) -> np.ndarray:
    """Float ``(h, w)`` square-wave pattern in {0, 1}, slightly rotated."""
    period = rng.uniform(6, 16)
    angle = np.deg2rad(rng.uniform(-12, 12))
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    u = xx * np.cos(angle) + yy * np.sin(angle) + rng.uniform(0, period)
    v = -xx * np.sin(angle) + yy * np.cos(angle) + rng.uniform(0, period)
    if name == 'stripes_h':
        return (v // (period / 2)) % 2
    if name == 'stripes_v':
        return (u // (period / 2)) % 2
    return ((u // period) + (v // period)) % 2  # checker


def _render_image(label: int, rng: np.random.Generator,
                  img_size: tuple[int, int]) -> np.ndarray:
    """Render one RGB ``uint8`` image of class ``label``."""
    h, w = img_size
    name = TOY_IMAGENET_CLASSES[label]
    img = noisy_background(rng, h, w)
    bg_mean = np.array(cv2.mean(img)[:3])
    if name in ('stripes_h', 'stripes_v', 'checker'):
        pattern = _texture(name, rng, h, w)[..., None]
        colour = random_colour(rng, bg_mean, min_dist=120)
        alpha = rng.uniform(0.5, 0.9)
        img += alpha * pattern * (colour - img)
    else:
        img = img.astype(np.uint8)  # OpenCV anti-aliases 8-bit images only
        r = rng.uniform(0.2, 0.42) * min(h, w)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        colour = tuple(random_colour(rng, bg_mean).tolist())
        if name == 'ring':
            thickness = max(2, round(r * rng.uniform(0.25, 0.45)))
            radius = round(r - thickness / 2)
            cv2.circle(img, (round(cx), round(cy)), radius, colour, thickness,
                       cv2.LINE_AA)
        else:
            fill_polygon(img, shape_polygon(name, rng, cx, cy, r), colour,
                         antialias=True)
    return add_grain(rng, img, sigma=rng.uniform(2, 10))


def make_toy_imagenet(root: str | Path,
                      num_classes: int = len(TOY_IMAGENET_CLASSES),
                      train_per_class: int = 40,
                      val_per_class: int = 10,
                      img_size: tuple[int, int] = (96, 128),
                      seed: int = 0) -> ToyDatasetInfo:
    """Write the toy classification set in ImageNet layout under ``root``.

    Args:
        root: Output directory (created if missing).
        num_classes: Use the first ``num_classes`` of
            :data:`TOY_IMAGENET_CLASSES` (2..10).
        train_per_class: Training images per class.
        val_per_class: Validation images per class (labels interleaved).
        img_size: Image ``(height, width)``.
        seed: Random seed; the output is a pure function of the arguments.
    """
    if not 2 <= num_classes <= len(TOY_IMAGENET_CLASSES):
        raise ValueError(f'num_classes must be in [2, '
                         f'{len(TOY_IMAGENET_CLASSES)}], got {num_classes}.')
    root = Path(root)
    classes = TOY_IMAGENET_CLASSES[:num_classes]
    (root / 'meta').mkdir(parents=True, exist_ok=True)
    (root / 'val').mkdir(exist_ok=True)

    train_lines = []
    for label in range(num_classes):
        (root / 'train' / _wnid(label)).mkdir(parents=True, exist_ok=True)
        for i in range(train_per_class):
            rel = f'{_wnid(label)}/{_wnid(label)}_{i:05d}.JPEG'
            rng = sample_rng(seed, _TASK_ID, 0, label * 1_000_000 + i)
            img = _render_image(label, rng, img_size)
            save_jpeg(root / 'train' / rel, img)
            train_lines.append(f'{rel} {label}\n')

    val_lines = []
    for i in range(val_per_class * num_classes):
        label = i % num_classes
        rel = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        rng = sample_rng(seed, _TASK_ID, 1, i)
        save_jpeg(root / 'val' / rel, _render_image(label, rng, img_size))
        val_lines.append(f'{rel} {label}\n')

    (root / 'meta' / 'train.txt').write_text(''.join(train_lines))
    (root / 'meta' / 'val.txt').write_text(''.join(val_lines))
    (root / 'meta' / 'classes.txt').write_text(''.join(
        f'{c}\n' for c in classes))
    return ToyDatasetInfo('imagenet', str(root), classes,
                          dict(train=len(train_lines), val=len(val_lines)))
