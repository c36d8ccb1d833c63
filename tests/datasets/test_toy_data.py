"""Tests for the synthetic toy datasets (tiny sizes)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from tinyvim_mm.datasets import (TOY_ADE_CLASSES, TOY_ADE_PALETTE,
                                 TOY_COCO_CLASSES, TOY_IMAGENET_CLASSES,
                                 TOY_SIZES, make_toy_data, render_ade_sample,
                                 render_coco_scene)

TINY = TOY_SIZES['tiny']
MARKER = '.toy_data.json'


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp('toy')
    make_toy_data(root, size='tiny', seed=0)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*')) if p.is_file() and p.name != MARKER
    }


def _infos(dataset) -> list[dict]:
    """All data infos (``data_list`` is emptied once serialized)."""
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def test_layout(toy_root: Path) -> None:
    n_cls = len(TOY_IMAGENET_CLASSES)
    inet = toy_root / 'imagenet'
    assert len(list((inet / 'train').glob('n*/*.JPEG'))) == \
        n_cls * TINY['imagenet']['train_per_class']
    assert len(list((inet / 'val').glob('*.JPEG'))) == \
        n_cls * TINY['imagenet']['val_per_class']
    assert (inet / 'meta' / 'classes.txt').read_text().split() == \
        list(TOY_IMAGENET_CLASSES)
    assert len((inet / 'meta' / 'train.txt').read_text().splitlines()) == \
        n_cls * TINY['imagenet']['train_per_class']

    coco = toy_root / 'coco'
    for split, key in (('train2017', 'num_train'), ('val2017', 'num_val')):
        ann = json.loads(
            (coco / 'annotations' / f'instances_{split}.json').read_text())
        assert set(ann) == {'info', 'licenses', 'images', 'annotations',
                            'categories'}
        assert len(ann['images']) == TINY['coco'][key]
        for img in ann['images']:
            with Image.open(coco / split / img['file_name']) as im:
                assert im.format == 'JPEG'
                assert im.size == (img['width'], img['height'])
        assert [c['id'] for c in ann['categories']] == [1, 2, 3]
        assert [c['name'] for c in ann['categories']] == list(TOY_COCO_CLASSES)
        per_image = np.bincount([a['image_id'] for a in ann['annotations']])
        assert 1 <= per_image[1:].min() and per_image.max() <= 5

    ade = toy_root / 'ade'
    for split, key in (('training', 'num_train'), ('validation', 'num_val')):
        imgs = sorted(p.stem for p in (ade / 'images' / split).glob('*.jpg'))
        anns = sorted(
            p.stem for p in (ade / 'annotations' / split).glob('*.png'))
        assert imgs == anns and len(imgs) == TINY['ade'][key]

    for task in ('imagenet', 'coco', 'ade'):
        assert (toy_root / task / MARKER).is_file()


def test_imagenet_loads(toy_root: Path) -> None:
    from mmpretrain.datasets import CustomDataset, ImageNet

    root = toy_root / 'imagenet'
    classes_file = str(root / 'meta' / 'classes.txt')
    n_cls = len(TOY_IMAGENET_CLASSES)
    train = ImageNet(data_root=str(root), split='train', classes=classes_file)
    assert train.CLASSES == TOY_IMAGENET_CLASSES
    assert len(train) == n_cls * TINY['imagenet']['train_per_class']
    for info in _infos(train):
        wnid = Path(info['img_path']).parent.name
        assert info['gt_label'] == int(wnid[1:]) - 90000000

    val = ImageNet(
        data_root=str(root), split='val',
        metainfo=dict(classes=TOY_IMAGENET_CLASSES))
    assert len(val) == n_cls * TINY['imagenet']['val_per_class']
    assert val.get_gt_labels().tolist() == [i % n_cls for i in range(len(val))]

    # Folder mode (no ann_file) finds the same samples and labels.
    folders = CustomDataset(
        data_root=str(root), data_prefix='train',
        metainfo=dict(classes=TOY_IMAGENET_CLASSES))
    assert [(d['img_path'], d['gt_label']) for d in _infos(folders)] == \
        [(d['img_path'], d['gt_label']) for d in _infos(train)]

    img = np.asarray(Image.open(train.get_data_info(0)['img_path']))
    assert img.shape == (96, 128, 3) and img.std() > 10


def _coco_dataset(root: Path, split: str):
    from mmdet.datasets import CocoDataset
    return CocoDataset(
        data_root=str(root),
        ann_file=f'annotations/instances_{split}.json',
        data_prefix=dict(img=f'{split}/'),
        metainfo=dict(classes=TOY_COCO_CLASSES),
        pipeline=[])


def test_coco_loads_with_exact_masks(toy_root: Path) -> None:
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets.transforms import LoadAnnotations

    dataset = _coco_dataset(toy_root / 'coco', 'train2017')
    assert len(dataset) == TINY['coco']['num_train']
    assert dataset.metainfo['classes'] == TOY_COCO_CLASSES
    load_img = LoadImageFromFile()
    load_ann = LoadAnnotations(with_bbox=True, with_mask=True, poly2mask=True)
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        img, objects = render_coco_scene(0, 'train2017', index)
        results = load_ann(load_img(dict(info)))
        assert results['img_shape'] == img.shape[:2]
        assert results['gt_bboxes_labels'].tolist() == \
            [o.label for o in objects]
        masks = results['gt_masks'].masks
        boxes = results['gt_bboxes'].numpy()
        assert len(masks) == len(objects) > 0
        loaded_bgr = results['img'].astype(np.float32)
        for obj, mask, box in zip(objects, masks, boxes):
            # The annotation decodes to exactly the painted object.
            inter = np.logical_and(mask, obj.mask).sum()
            union = np.logical_or(mask, obj.mask).sum()
            assert inter / union > 0.999
            # The bbox encloses the polygon and the mask pixels.
            assert (obj.polygon >= box[:2] - 1e-3).all()
            assert (obj.polygon <= box[2:] + 1e-3).all()
            ys, xs = np.nonzero(mask)
            assert xs.min() >= box[0] - 1 and xs.max() + 1 <= box[2] + 1
            assert ys.min() >= box[1] - 1 and ys.max() + 1 <= box[3] + 1
            assert box[2] - box[0] >= 10 and box[3] - box[1] >= 10
            # The JPEG shows the object's colour inside its mask.
            inside = loaded_bgr[mask.astype(bool)][:, ::-1].mean(0)
            assert np.abs(inside - obj.colour).max() < 25


def test_coco_metric_gt_as_predictions(toy_root: Path) -> None:
    from mmdet.evaluation import CocoMetric

    root = toy_root / 'coco'
    dataset = _coco_dataset(root, 'val2017')
    metric = CocoMetric(
        ann_file=str(root / 'annotations' / 'instances_val2017.json'),
        metric=['bbox', 'segm'])
    metric.dataset_meta = dataset.metainfo
    samples = []
    for info in _infos(dataset):
        h, w = info['height'], info['width']
        insts = info['instances']
        masks = np.stack([
            mask_utils.decode(mask_utils.frPyObjects(i['mask'], h, w))[..., 0]
            for i in insts
        ])
        samples.append(
            dict(
                img_id=info['img_id'],
                ori_shape=(h, w),
                pred_instances=dict(
                    bboxes=torch.tensor([i['bbox'] for i in insts]),
                    scores=torch.ones(len(insts)),
                    labels=torch.tensor([i['bbox_label'] for i in insts]),
                    masks=torch.from_numpy(masks).bool())))
    metric.process({}, samples)
    result = metric.evaluate(len(samples))
    assert result['coco/bbox_mAP'] > 0.99
    assert result['coco/segm_mAP'] > 0.99


def test_ade_loads_with_ignore_label(toy_root: Path) -> None:
    from mmseg.datasets import ADE20KDataset
    from mmseg.datasets.transforms import LoadAnnotations

    num_classes = len(TOY_ADE_CLASSES)
    assert TOY_ADE_CLASSES == \
        ADE20KDataset.METAINFO['classes'][:num_classes]
    assert TOY_ADE_PALETTE == \
        ADE20KDataset.METAINFO['palette'][:num_classes]
    for split, key in (('training', 'num_train'), ('validation', 'num_val')):
        dataset = ADE20KDataset(
            data_root=str(toy_root / 'ade'),
            data_prefix=dict(
                img_path=f'images/{split}',
                seg_map_path=f'annotations/{split}'),
            metainfo=dict(classes=TOY_ADE_CLASSES, palette=TOY_ADE_PALETTE),
            pipeline=[])
        assert len(dataset) == TINY['ade'][key]
        assert dataset.metainfo['classes'] == TOY_ADE_CLASSES
        assert dataset.metainfo['palette'] == TOY_ADE_PALETTE
        assert {k: v for k, v in dataset.label_map.items() if v != 255} == \
            {i: i for i in range(num_classes)}
        for index, info in enumerate(_infos(dataset)):
            img, label = render_ade_sample(0, split, index)
            png = np.asarray(Image.open(info['seg_map_path']))
            assert np.array_equal(png, label)
            assert set(np.unique(png)) <= set(range(num_classes + 1))
            assert (png == 0).mean() > 0.002  # some ignored "other" pixels
            assert len(np.unique(png)) >= 3
            with Image.open(info['img_path']) as im:
                assert im.size == png.shape[::-1]
            gt = LoadAnnotations()(dict(info, seg_fields=[]))['gt_seg_map']
            assert np.array_equal(gt, np.where(png == 0, 255, png - 1))
    # The validation set exercises odd image sizes.
    odd = toy_root / 'ade' / 'images' / 'validation' / 'ADE_val_00000001.jpg'
    with Image.open(odd) as im:
        assert im.size == (517, 389)


def test_determinism(toy_root: Path, tmp_path: Path) -> None:
    make_toy_data(tmp_path / 'same', size='tiny', seed=0)
    make_toy_data(tmp_path / 'other', size='tiny', seed=1)
    for task in ('imagenet', 'coco', 'ade'):
        ref = _files(toy_root / task)
        same = _files(tmp_path / 'same' / task)
        other = _files(tmp_path / 'other' / task)
        assert same == ref
        images = [k for k in ref if k.lower().endswith(('.jpeg', '.jpg'))]
        assert images and all(other[k] != ref[k] for k in images)
    coco_json = 'annotations/instances_val2017.json'
    assert _files(tmp_path / 'other' / 'coco')[coco_json] != \
        _files(toy_root / 'coco')[coco_json]


def test_make_toy_data_caching(tmp_path: Path) -> None:
    first = make_toy_data(tmp_path, tasks=['imagenet'], size='tiny')
    marker = tmp_path / 'imagenet' / MARKER
    stamp = marker.stat().st_mtime_ns
    again = make_toy_data(tmp_path, tasks=['imagenet'], size='tiny')
    assert again == first and marker.stat().st_mtime_ns == stamp

    before = _files(tmp_path / 'imagenet')
    make_toy_data(tmp_path, tasks=['imagenet'], size='tiny', seed=3)
    assert json.loads(marker.read_text())['params']['seed'] == 3
    assert _files(tmp_path / 'imagenet') != before
    assert [p.name for p in tmp_path.iterdir()] == ['imagenet']

    (tmp_path / 'coco').mkdir()
    (tmp_path / 'coco' / 'precious.txt').write_text('not ours')
    with pytest.raises(FileExistsError):
        make_toy_data(tmp_path, tasks=['coco'], size='tiny')
    assert (tmp_path / 'coco' / 'precious.txt').exists()
    with pytest.raises(ValueError):
        make_toy_data(tmp_path, tasks=['voc'], size='tiny')
