"""Draw a TinyViM model's prediction on an image, with the toolbox's visualizer.

The task follows the config's ``default_scope``: ``mmpretrain`` draws the
top-5 classes (``UniversalVisualizer``), ``mmdet`` the boxes and masks
(``DetLocalVisualizer``), ``mmseg`` the segmentation overlay
(``SegLocalVisualizer``). Images with a shorter side below 512 pixels (256 for
classification) are drawn upscaled, so that the labels stay legible; the model
sees them at its test scale either way. Without a checkpoint the model keeps its
random initialisation (useful only to check the plumbing).

Examples::

    python tools/demo.py data/toy/coco/val2017/000000000001.jpg \\
        configs/mask_rcnn_tinyvim_s_toy_coco.py work_dirs/quickstart/det/epoch_4.pth \\
        --out det.png
    python tools/demo.py demo.JPEG configs/tinyvim_s_8xb128_in1k.py \\
        checkpoints/tinyvim-s_in1k.pth --out cls.png
"""
import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TASKS = {'mmpretrain': 'cls', 'mmdet': 'det', 'mmseg': 'seg'}
MIN_SIDE = 512  # smaller images are drawn upscaled (classification: to half of it)


def load_config(config: str) -> Any:
    """Read ``config`` for inference: test pipeline without annotation loading,
    no distillation teacher (inference never uses it)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import tinyvim_mm  # noqa: F401  (registers TinyViM)
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    dataset = cfg.test_dataloader.dataset
    while 'pipeline' not in dataset and 'dataset' in dataset:  # dataset wrappers
        dataset = dataset.dataset
    dataset.pipeline = [t for t in dataset.pipeline if t.type != 'LoadAnnotations']
    if cfg.get('test_pipeline'):  # what mmseg's inference_model reads
        cfg.test_pipeline = dataset.pipeline
    if cfg.model.get('teacher') is not None:
        cfg.model.teacher = cfg.model.teacher_checkpoint = None
    return cfg


def task_of(cfg: Any) -> str:
    """``'cls'``, ``'det'`` or ``'seg'`` from the config's ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise ValueError(f'default_scope {scope!r} of the config is none of {sorted(TASKS)}')
    return TASKS[scope]


def _visualizer(cfg: Any, registry: Any, meta: dict) -> Any:
    """The config's visualizer, under a fresh instance name, drawing to files only."""
    vis_cfg = dict(cfg.get('visualizer') or {}, vis_backends=None,
                   name=f'demo_{time.time_ns()}')
    vis_cfg.setdefault('type', {'mmpretrain': 'UniversalVisualizer', 'mmdet': 'DetLocalVisualizer',
                                'mmseg': 'SegLocalVisualizer'}[cfg.default_scope])
    vis_cfg.pop('save_dir', None)
    visualizer = registry.build(vis_cfg)
    visualizer.dataset_meta = meta
    return visualizer


def _config_meta(cfg: Any, registry: Any) -> dict:
    """Class names (and palette) from the config's test dataset, for a model
    without checkpoint metadata."""
    dataset = cfg.test_dataloader.dataset
    meta = dict(getattr(registry.get(dataset.type), 'METAINFO', {}))
    meta.update(dataset.get('metainfo') or {})
    classes = dataset.get('classes')
    if isinstance(classes, str) and os.path.isfile(classes):
        meta['classes'] = Path(classes).read_text().split()
    elif classes:
        meta['classes'] = list(classes)
    return meta


def _read_rgb(image: str, min_side: int) -> np.ndarray:
    """The image as RGB, upscaled to a shorter side of ``min_side`` if smaller so
    that labels stay legible (the model sees it at its test scale anyway)."""
    import mmcv
    img = mmcv.imread(image, channel_order='rgb')
    if min(img.shape[:2]) < min_side:
        img = mmcv.imrescale(img, min_side / min(img.shape[:2]), interpolation='bicubic')
    return img


def draw_cls(cfg: Any, image: str, checkpoint: Optional[str], out: str, device: str,
             topk: int = 5) -> np.ndarray:
    """Top-``topk`` classes and scores written on the image."""
    from mmpretrain.apis import ImageClassificationInferencer, get_model
    from mmpretrain.registry import DATASETS, VISUALIZERS
    model = get_model(cfg, pretrained=checkpoint or False, device=device)
    meta = model._dataset_meta or _config_meta(cfg, DATASETS)
    sample = ImageClassificationInferencer(model, device=device)(
        image, return_datasamples=True)[0]
    k = min(topk, sample.pred_score.numel())
    sample.set_pred_label(sample.pred_score.topk(k).indices)
    return _visualizer(cfg, VISUALIZERS, meta).visualize_cls(
        _read_rgb(image, MIN_SIDE // 2), sample, out_file=out)


def draw_det(cfg: Any, image: str, checkpoint: Optional[str], out: str, device: str,
             score_thr: float = 0.3) -> np.ndarray:
    """Boxes, masks, class names and scores above ``score_thr``."""
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import DATASETS, VISUALIZERS
    model = init_detector(cfg, checkpoint, device=device)
    if not checkpoint or not model.dataset_meta.get('classes'):
        model.dataset_meta = _config_meta(cfg, DATASETS)
    img = _read_rgb(image, MIN_SIDE)
    result = inference_detector(model, np.ascontiguousarray(img[..., ::-1]))
    visualizer = _visualizer(cfg, VISUALIZERS, model.dataset_meta)
    visualizer.add_datasample('demo', img, result, draw_gt=False, pred_score_thr=score_thr,
                              out_file=out)
    return visualizer.get_image()


def draw_seg(cfg: Any, image: str, checkpoint: Optional[str], out: str,
             device: str) -> np.ndarray:
    """The predicted class map blended over the image, with class names."""
    from mmseg.apis import inference_model, init_model
    from mmseg.registry import DATASETS, VISUALIZERS
    model = init_model(cfg, checkpoint, device=device)
    if not checkpoint or not model.dataset_meta.get('palette'):
        model.dataset_meta = _config_meta(cfg, DATASETS)
    img = _read_rgb(image, MIN_SIDE)
    result = inference_model(model, np.ascontiguousarray(img[..., ::-1]))
    visualizer = _visualizer(cfg, VISUALIZERS, model.dataset_meta)
    visualizer.add_datasample('demo', img, result, draw_gt=False, with_labels=True,
                              out_file=out)
    return visualizer.get_image()


def draw(image: str, config: str, checkpoint: Optional[str] = None, out: str = 'demo.png',
         device: str = 'cpu', score_thr: float = 0.3, topk: int = 5) -> str:
    """Predict on ``image`` with ``config`` (+ ``checkpoint``) and save the
    toolbox's drawing as ``out``; returns the task (``cls``/``det``/``seg``)."""
    cfg = load_config(config)
    task = task_of(cfg)
    Path(out).resolve().parent.mkdir(parents=True, exist_ok=True)
    if task == 'cls':
        draw_cls(cfg, image, checkpoint, out, device, topk)
    elif task == 'det':
        draw_det(cfg, image, checkpoint, out, device, score_thr)
    else:
        draw_seg(cfg, image, checkpoint, out, device)
    return task


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='input image')
    parser.add_argument('config', help='a classification, Mask R-CNN or Semantic FPN config')
    parser.add_argument('checkpoint', nargs='?', help='weights (default: random init)')
    parser.add_argument('--out', default='demo.png', help='output PNG')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: smallest score drawn')
    parser.add_argument('--topk', type=int, default=5, help='classification: classes shown')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    task = draw(args.image, args.config, args.checkpoint, args.out, args.device,
                args.score_thr, args.topk)
    print(f'{task}: {args.out}')


if __name__ == '__main__':
    main()
