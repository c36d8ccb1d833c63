"""Inference on single images for the three toolboxes, with strict checkpoints.

The task follows the config's ``default_scope``: ``mmpretrain`` (classification: the
top-k classes, ``UniversalVisualizer``), ``mmdet`` (Mask R-CNN: boxes and masks,
``DetLocalVisualizer``) or ``mmseg`` (Semantic FPN: the class map,
``SegLocalVisualizer``).

* :func:`read_image` checks and decodes the image (before any model is built);
* :func:`load_inference_config` reads a config for inference;
* :func:`init_model` builds the toolbox's model and loads a checkpoint strictly
  (missing, unexpected or mis-shaped keys are an error naming them, as in
  ``tools/test.py``);
* :func:`draw` does all of it and saves the toolbox's drawing (``tools/demo.py``).
"""
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch.nn as nn
from mmengine.config import Config

from tinyvim_mm.models.backbones import check_in_channels

#: default_scope -> task
TASKS = {'mmpretrain': 'cls', 'mmdet': 'det', 'mmseg': 'seg'}
VISUALIZER_TYPES = {'mmpretrain': 'UniversalVisualizer', 'mmdet': 'DetLocalVisualizer',
                    'mmseg': 'SegLocalVisualizer'}
#: Images with a shorter side below this are drawn upscaled (classification: half of
#: it), so that labels stay legible; the model sees them at its test scale anyway.
MIN_SIDE = 512


class CheckpointMismatchError(RuntimeError):
    """A checkpoint whose weights do not fit the model exactly."""


def read_image(path: str) -> np.ndarray:
    """The image at ``path`` as a BGR ``uint8`` array.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an image OpenCV can decode.
    """
    import mmcv
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Image {path!r} not found')
    try:
        img = mmcv.imfrombytes(Path(path).read_bytes())
    except Exception as err:  # decoders raise various errors on garbage
        raise ValueError(f'{path!r} is not a readable image ({err})') from err
    if img is None or img.ndim != 3 or img.size == 0:
        raise ValueError(f'{path!r} is not a readable image (JPEG, PNG, BMP, ...)')
    return img


def load_inference_config(config: str) -> Config:
    """Read ``config`` for inference: the test pipeline without annotation loading,
    no distillation teacher (inference never uses it)."""
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


def task_of(cfg: Config) -> str:
    """``'cls'``, ``'det'`` or ``'seg'`` from the config's ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise ValueError(f'default_scope {scope!r} of the config is none of {sorted(TASKS)}')
    return TASKS[scope]


def config_meta(cfg: Config) -> Dict[str, Any]:
    """Class names (and palette) of the config's test dataset: what a model without
    checkpoint metadata shows."""
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope(cfg.default_scope)
    dataset = cfg.test_dataloader.dataset
    meta = dict(getattr(DATASETS.get(dataset.type), 'METAINFO', {}))
    meta.update(dataset.get('metainfo') or {})
    classes = dataset.get('classes')
    if isinstance(classes, str) and os.path.isfile(classes):
        meta['classes'] = Path(classes).read_text().split()
    elif classes:
        meta['classes'] = list(classes)
    return meta


def _read_checkpoint(checkpoint: str) -> Dict[str, Any]:
    """A local checkpoint through the safe loader: ``{'state_dict': ..., 'meta': ...}``."""
    from tinyvim_mm.checkpoint import extract_state_dict, load_local_checkpoint
    raw = load_local_checkpoint(checkpoint, map_location='cpu')
    meta = raw.get('meta') if isinstance(raw, dict) else None
    return dict(state_dict=extract_state_dict(raw), meta=meta or {})


def load_state_dict_strict(model: nn.Module, state_dict: Dict[str, Any],
                           source: str = 'checkpoint') -> None:
    """Load ``state_dict`` into ``model`` if it fits exactly, else raise
    :class:`CheckpointMismatchError` naming the missing, unexpected and mis-shaped keys."""
    from tinyvim_mm.engine.hooks import check_state_dict
    problems = check_state_dict(model, state_dict)
    if problems:
        raise CheckpointMismatchError(
            f'{source} does not fit the model of the config ({"; ".join(problems)}). Use '
            'the config the checkpoint was trained with; convert released checkpoints with '
            'tools/convert_official.py.')
    model.load_state_dict(state_dict, strict=True)


def init_model(cfg: Config, checkpoint: Optional[str] = None, device: str = 'cpu') -> nn.Module:
    """The toolbox's inference model of ``cfg`` (from :func:`load_inference_config`) in
    eval mode on ``device``, with ``checkpoint`` loaded strictly (without one it keeps
    its random initialisation) and ``dataset_meta`` from the checkpoint, else from the
    config."""
    check_in_channels(cfg.model)
    task = task_of(cfg)
    ckpt = _read_checkpoint(checkpoint) if checkpoint else None  # file errors first
    if task == 'cls':
        from mmpretrain.apis import get_model
        model = get_model(cfg, pretrained=False)
    elif task == 'det':  # as mmdet's init_detector, without its COCO-classes fallback
        from mmdet.registry import MODELS
        from mmengine.model import revert_sync_batchnorm
        from mmengine.registry import init_default_scope
        init_default_scope('mmdet')
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
        model.cfg = cfg  # what inference_detector reads
    else:
        from mmseg.apis import init_model as init_segmentor
        model = init_segmentor(cfg, None, device='cpu')
    meta = config_meta(cfg)
    if ckpt is not None:
        load_state_dict_strict(model, ckpt['state_dict'], f'Checkpoint {checkpoint!r}')
        meta.update({k.lower(): v for k, v in ckpt['meta'].get('dataset_meta', {}).items()})
    if task == 'cls':
        model._dataset_meta = meta
    else:
        model.dataset_meta = meta
    return model.to(device).eval()


def _upscaled_rgb(img: np.ndarray, min_side: int) -> np.ndarray:
    """``img`` (BGR) as RGB, upscaled to a shorter side of ``min_side`` if smaller."""
    import mmcv
    rgb = mmcv.bgr2rgb(img)
    if min(rgb.shape[:2]) < min_side:
        rgb = mmcv.imrescale(rgb, min_side / min(rgb.shape[:2]), interpolation='bicubic')
    return rgb


def _visualizer(cfg: Config, meta: dict) -> Any:
    """The config's visualizer, under a fresh instance name, drawing to files only."""
    from mmengine.registry import VISUALIZERS, init_default_scope
    init_default_scope(cfg.default_scope)
    vis_cfg = dict(cfg.get('visualizer') or {}, vis_backends=None,
                   name=f'demo_{time.time_ns()}')
    vis_cfg.setdefault('type', VISUALIZER_TYPES[cfg.default_scope])
    vis_cfg.pop('save_dir', None)
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.dataset_meta = meta
    return visualizer


def draw_cls(cfg: Config, model: nn.Module, img: np.ndarray, out: str,
             topk: int = 5) -> np.ndarray:
    """The top-``topk`` classes and scores written on ``img`` (BGR)."""
    from mmpretrain.apis import ImageClassificationInferencer
    sample = ImageClassificationInferencer(model, device=next(model.parameters()).device)(
        img, return_datasamples=True)[0]
    k = min(topk, sample.pred_score.numel())
    sample.set_pred_label(sample.pred_score.topk(k).indices)
    return _visualizer(cfg, model._dataset_meta).visualize_cls(
        _upscaled_rgb(img, MIN_SIDE // 2), sample, out_file=out)


def draw_det(cfg: Config, model: nn.Module, img: np.ndarray, out: str,
             score_thr: float = 0.3) -> np.ndarray:
    """Boxes, masks, class names and scores above ``score_thr`` on ``img`` (BGR)."""
    from mmdet.apis import inference_detector
    rgb = _upscaled_rgb(img, MIN_SIDE)
    result = inference_detector(model, np.ascontiguousarray(rgb[..., ::-1]))
    visualizer = _visualizer(cfg, model.dataset_meta)
    visualizer.add_datasample('demo', rgb, result, draw_gt=False, pred_score_thr=score_thr,
                              out_file=out)
    return visualizer.get_image()


def draw_seg(cfg: Config, model: nn.Module, img: np.ndarray, out: str) -> np.ndarray:
    """The predicted class map, with class names, blended over ``img`` (BGR)."""
    from mmseg.apis import inference_model
    rgb = _upscaled_rgb(img, MIN_SIDE)
    result = inference_model(model, np.ascontiguousarray(rgb[..., ::-1]))
    visualizer = _visualizer(cfg, model.dataset_meta)
    visualizer.add_datasample('demo', rgb, result, draw_gt=False, with_labels=True,
                              out_file=out)
    return visualizer.get_image()


def draw(image: str, config: str, checkpoint: Optional[str] = None, out: str = 'demo.png',
         device: str = 'cpu', score_thr: float = 0.3, topk: int = 5) -> str:
    """Predict on ``image`` with ``config`` (+ ``checkpoint``, loaded strictly) and save
    the toolbox's drawing as ``out``; returns the task (``cls``/``det``/``seg``).

    The image is checked first, the checkpoint read before the model is built: a
    missing or unreadable file fails before any model exists.
    """
    img = read_image(image)
    cfg = load_inference_config(config)
    task = task_of(cfg)
    model = init_model(cfg, checkpoint, device)
    Path(out).resolve().parent.mkdir(parents=True, exist_ok=True)
    if task == 'cls':
        draw_cls(cfg, model, img, out, topk)
    elif task == 'det':
        draw_det(cfg, model, img, out, score_thr)
    else:
        draw_seg(cfg, model, img, out)
    return task
