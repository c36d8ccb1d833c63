"""Drawing helpers and result type shared by the synthetic toy datasets.

Everything is driven by an explicit :class:`numpy.random.Generator`, so the
output is a pure function of the seed.  Polygons are ``(N, 2)`` float arrays of
``(x, y)`` vertices in pixel coordinates.
"""
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

#: Shapes that :func:`shape_polygon` can produce (all simple polygons).
POLYGON_SHAPES = ('circle', 'square', 'triangle', 'star', 'cross', 'hexagon',
                  'blob')

JPEG_QUALITY = 90


@dataclass(frozen=True)
class ToyDatasetInfo:
    """Summary of a generated toy dataset."""

    name: str
    root: str
    classes: tuple[str, ...]
    num_samples: dict[str, int]  # split -> number of images


def sample_rng(seed: int, task: int, split: int,
               index: int) -> np.random.Generator:
    """Independent generator for one sample.

    The key always has four entries: ``SeedSequence`` pads short keys with
    zeros, so keys of different lengths could collide.
    """
    return np.random.default_rng([seed, task, split, index])


def _regular(n: int, cx: float, cy: float, radii: np.ndarray | float,
             angle: float) -> np.ndarray:
    theta = angle + np.arange(n) * (2 * np.pi / n)
    return np.stack([cx + radii * np.cos(theta), cy + radii * np.sin(theta)],
                    axis=1)


def shape_polygon(name: str, rng: np.random.Generator, cx: float, cy: float,
                  r: float) -> np.ndarray:
    """Randomly rotated polygon of shape ``name`` inscribed in radius ``r``.

    Every vertex lies within distance ``r`` of ``(cx, cy)``.
    """
    angle = rng.uniform(0, 2 * np.pi)
    if name == 'circle':
        return _regular(max(16, int(r)), cx, cy, r, angle)
    if name == 'square':
        return _regular(4, cx, cy, r, angle)
    if name == 'triangle':
        return _regular(3, cx, cy, r, angle)
    if name == 'hexagon':
        return _regular(6, cx, cy, r, angle)
    if name == 'star':
        radii = np.tile([r, r * rng.uniform(0.38, 0.5)], 5)
        return _regular(10, cx, cy, radii, angle)
    if name == 'cross':
        a = rng.uniform(0.28, 0.4)  # half arm width relative to the arm length
        unit = np.array([[a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a],
                         [-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a]])
        # Scale so that the arm corners (distance sqrt(1 + a^2)) stay within r.
        unit *= r / np.hypot(1, a)
        rot = np.array([[np.cos(angle), -np.sin(angle)],
                        [np.sin(angle), np.cos(angle)]])
        return unit @ rot.T + [cx, cy]
    if name == 'blob':
        n = 24
        harmonics = np.arange(1, 4)
        amp = rng.uniform(0.06, 0.15, 3)
        phase = rng.uniform(0, 2 * np.pi, 3)
        theta = np.arange(n) * (2 * np.pi / n)
        wobble = (amp[:, None] *
                  np.sin(harmonics[:, None] * theta + phase[:, None])).sum(0)
        radii = r * (1 + wobble) / (1 + amp.sum())
        return _regular(n, cx, cy, radii, angle)
    raise ValueError(f'Unknown shape {name!r}; choose from {POLYGON_SHAPES}.')


def fill_polygon(img: np.ndarray, poly: np.ndarray,
                 colour: int | tuple[float, ...], antialias: bool) -> None:
    """Rasterise ``poly`` into ``img`` in place with OpenCV (sub-pixel).

    OpenCV treats integer coordinates as pixel centres; the COCO set instead
    paints through pycocotools so that masks match the COCO convention.
    """
    pts = np.round(poly * 16).astype(np.int32)
    line = cv2.LINE_AA if antialias else cv2.LINE_8
    cv2.fillPoly(img, [pts], colour, lineType=line, shift=4)


def _noise_grid(rng: np.random.Generator, h: int, w: int,
                cells: int) -> np.ndarray:
    """Uniform noise on a coarse grid with ``cells`` cells on the long side."""
    gh = max(2, round(cells * h / max(h, w)))
    gw = max(2, round(cells * w / max(h, w)))
    return rng.random((gh, gw), dtype=np.float32)


def smooth_noise(rng: np.random.Generator, h: int, w: int,
                 cells: int) -> np.ndarray:
    """Low-frequency noise in ``[0, 1]``, shape ``(h, w)``."""
    grid = _noise_grid(rng, h, w, cells)
    return np.clip(
        cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def random_colour(rng: np.random.Generator,
                  avoid: np.ndarray | None = None,
                  min_dist: float = 150.0) -> np.ndarray:
    """Random RGB colour, at L1 distance >= ``min_dist`` from ``avoid``."""
    while True:
        colour = rng.uniform(0, 255, 3)
        if avoid is None or np.abs(colour - avoid).sum() >= min_dist:
            return colour


def noisy_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Float32 ``(h, w, 3)`` background: two colours mixed by smooth noise."""
    c1, c2 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    grid = _noise_grid(rng, h, w, cells=int(rng.integers(2, 6)))
    colours = c1 + grid[..., None] * (c2 - c1)
    return np.clip(
        cv2.resize(colours, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255)


def add_grain(rng: np.random.Generator, img: np.ndarray,
              sigma: float) -> np.ndarray:
    """Add Gaussian grain and convert to ``uint8`` (rounded, saturated)."""
    grain = rng.standard_normal(img.shape[:2], dtype=np.float32) * sigma
    return cv2.add(img.astype(np.float32), cv2.merge([grain] * 3),
                   dtype=cv2.CV_8U)


def save_jpeg(path: Path, img: np.ndarray) -> None:
    """Write an RGB ``uint8`` array as JPEG."""
    Image.fromarray(img).save(path, quality=JPEG_QUALITY)


def save_png(path: Path, label: np.ndarray) -> None:
    """Write a ``uint8`` label map as a single-channel PNG."""
    Image.fromarray(label).save(path)
