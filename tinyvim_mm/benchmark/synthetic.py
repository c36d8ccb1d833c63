"""Synthetic samples in the toolboxes' packed format (what their ``Pack*Inputs``
transforms produce: a ``uint8`` ``(3, H, W)`` image and a data sample with labels), so
that benchmarks feed models exactly as the data pipelines would, without files, JPEG
decoding or augmentations."""
import copy
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

#: Objects per detection image (COCO train2017 has about 7.3 on average).
OBJECTS_PER_IMAGE = 8


def _image(gen: torch.Generator, size: Tuple[int, int]) -> torch.Tensor:
    return torch.randint(0, 256, (3, *size), generator=gen, dtype=torch.uint8)


def _classification(gen: torch.Generator, size: Tuple[int, int], num_classes: int) -> dict:
    from mmpretrain.structures import DataSample
    sample = DataSample(metainfo=dict(img_shape=size, ori_shape=size))
    sample.set_gt_label(int(torch.randint(0, num_classes, (1, ), generator=gen)))
    return dict(inputs=_image(gen, size), data_samples=sample)


def _detection(gen: torch.Generator, size: Tuple[int, int], num_classes: int,
               index: int, polygons: bool = False) -> dict:
    """Boxes of 32 px to half the image, each with an elliptic mask: a full-size bitmap
    (``BitmapMasks``, what mmdet's ``LoadAnnotations`` gives by default) or, with
    ``polygons``, the ellipse as a polygon of 32 vertices (``PolygonMasks``:
    ``LoadAnnotations(poly2mask=False)``)."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks, PolygonMasks
    from mmengine.structures import InstanceData
    height, width = size
    n = OBJECTS_PER_IMAGE
    wh = 32 + torch.rand(n, 2, generator=gen) * (torch.tensor([width, height]) / 2 - 32)
    xy = torch.rand(n, 2, generator=gen) * (torch.tensor([width, height]) - wh)
    boxes = torch.cat([xy, xy + wh], dim=1)
    if polygons:
        angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        masks = PolygonMasks([[np.stack([(x0 + x1) / 2 + (x1 - x0) / 2 * np.cos(angles),
                                         (y0 + y1) / 2 + (y1 - y0) / 2 * np.sin(angles)],
                                        axis=1).reshape(-1)]
                              for x0, y0, x1, y1 in boxes.tolist()], height, width)
    else:
        ys, xs = np.mgrid[:height, :width]
        masks = BitmapMasks(np.stack([
            ((xs - (x0 + x1) / 2) / ((x1 - x0) / 2))**2
            + ((ys - (y0 + y1) / 2) / ((y1 - y0) / 2))**2 <= 1
            for x0, y0, x1, y1 in boxes.tolist()]).astype(np.uint8), height, width)
    instances = InstanceData(bboxes=HorizontalBoxes(boxes),
                             labels=torch.randint(0, num_classes, (n, ), generator=gen),
                             masks=masks)
    ignored = InstanceData(bboxes=HorizontalBoxes(torch.zeros(0, 4)),
                           labels=torch.zeros(0, dtype=torch.long))
    sample = DetDataSample(metainfo=dict(img_id=index, img_path='', ori_shape=size,
                                         img_shape=size, scale_factor=(1.0, 1.0),
                                         flip=False, flip_direction=None))
    sample.gt_instances, sample.ignored_instances = instances, ignored
    return dict(inputs=_image(gen, size), data_samples=sample)


def _segmentation(gen: torch.Generator, size: Tuple[int, int], num_classes: int) -> dict:
    """Labels constant on 16x16 blocks (about as many classes per image as ADE20K's)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    height, width = size
    blocks = torch.randint(0, num_classes, (1, 1, -(-height // 16), -(-width // 16)),
                           generator=gen)
    labels = torch.nn.functional.interpolate(blocks.float(), scale_factor=16.0)
    sample = SegDataSample(metainfo=dict(img_path='', seg_map_path='', ori_shape=size,
                                         img_shape=size, pad_shape=size,
                                         scale_factor=(1.0, 1.0), flip=False,
                                         flip_direction=None, reduce_zero_label=False))
    sample.gt_sem_seg = PixelData(data=labels[0, :, :height, :width].long())
    return dict(inputs=_image(gen, size), data_samples=sample)


def packed_samples(scope: str, count: int, size: Sequence[int], num_classes: int,
                   seed: int = 0, polygons: bool = False) -> List[dict]:
    """``count`` training samples of toolbox ``scope`` (``'mmpretrain'``, ``'mmdet'``,
    ``'mmseg'``) at ``size = (H, W)``, as its packing transform gives them; detection
    masks as polygons with ``polygons`` (else bitmaps)."""
    gen = torch.Generator().manual_seed(seed)
    size = (int(size[0]), int(size[1]))
    if scope == 'mmpretrain':
        return [_classification(gen, size, num_classes) for _ in range(count)]
    if scope == 'mmdet':
        return [_detection(gen, size, num_classes, i, polygons) for i in range(count)]
    if scope == 'mmseg':
        return [_segmentation(gen, size, num_classes) for _ in range(count)]
    raise ValueError(f'no synthetic samples for scope {scope!r}')


def dense_inputs(scope: str, batch: int, size: Sequence[int], device: torch.device,
                 seed: int = 0) -> Dict[str, list]:
    """``test_step`` data for a detector / segmentor: ``batch`` random ``uint8`` images
    on ``device`` and data samples with the image metadata."""
    gen = torch.Generator().manual_seed(seed)
    size = (int(size[0]), int(size[1]))
    images = [_image(gen, size).to(device) for _ in range(batch)]
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        meta = dict(img_shape=size, ori_shape=size, scale_factor=(1.0, 1.0), img_id=0)
        samples = [DetDataSample(metainfo=meta) for _ in range(batch)]
    elif scope == 'mmseg':
        from mmseg.structures import SegDataSample
        meta = dict(img_shape=size, ori_shape=size, pad_shape=size)
        samples = [SegDataSample(metainfo=meta) for _ in range(batch)]
    else:
        raise ValueError(f'end-to-end dense inference needs an mmdet or mmseg config, '
                         f'got scope {scope!r}')
    return dict(inputs=images, data_samples=samples)


class PackedDataset(Dataset):
    """``length`` items cycling over a few pre-built packed samples, returned as they are
    in the main process (the data preprocessors work on copies: ``cast_data`` builds new
    data samples), and as fresh copies in a data worker, as a real pipeline builds them:
    sending an item to the main process moves its tensors to shared memory, after which
    the kept sample's data elements would be sent as numpy arrays."""

    def __init__(self, samples: List[dict], length: int) -> None:
        if not samples:
            raise ValueError('PackedDataset needs at least one sample')
        self.samples = samples
        self.length = length
        self.metainfo: dict = {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index % len(self.samples)]
        return sample if get_worker_info() is None else copy.deepcopy(sample)
