"""The example configs (``configs/examples/``): other heads of mmdet and mmseg on a TinyViM
backbone build and train a step; what toolboxes pass to backbones is accepted; a neck or
head whose ``in_channels`` disagree with the backbone fails at build, naming both."""
import copy
import warnings

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from conftest import REPO
from tinyvim_mm.models.backbones import TinyViM, check_in_channels

EXAMPLES = REPO / 'configs' / 'examples'


def _model(name: str, **model_overrides):
    cfg = Config.fromfile(EXAMPLES / name)
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = None  # from scratch (no checkpoint here)
    cfg.merge_from_dict({f'model.{k}': v for k, v in model_overrides.items()})
    check_in_channels(cfg.model)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS'])
    return cfg, registry.MODELS.build(cfg.model)


def _train_step(cfg, model, data) -> dict:
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    before = [p.detach().clone() for p in model.backbone.parameters()]
    losses = model.train_step(data, wrapper)
    assert losses and all(torch.isfinite(v).all() for v in losses.values()), losses
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.backbone.parameters()))
    assert changed > len(before) // 2, 'the step did not update the backbone'
    return losses


@pytest.mark.parametrize('name,with_mask', [
    ('retinanet_tinyvim_b_fpn_1x_coco.py', False),
    ('cascade_mask_rcnn_tinyvim_b_fpn_1x_coco.py', True),
])
def test_detection_examples_train_a_step(name, with_mask):
    from mmdet.testing import demo_mm_inputs
    cfg, model = _model(name)
    assert isinstance(model.backbone, TinyViM) and model.backbone.arch['widths'][-1] == 384
    packed = demo_mm_inputs(2, [[3, 128, 160], [3, 96, 128]], num_items=[2, 3],
                            num_classes=80, with_mask=with_mask)
    losses = _train_step(cfg, model, packed)
    assert any('cls' in k for k in losses)


def _seg_batch(num_classes: int, size=(64, 96)):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, *size)))
        samples.append(sample)
    return dict(inputs=[torch.randint(0, 255, (3, *size), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)


def test_upernet_example_trains_a_step():
    cfg, model = _model('upernet_tinyvim_b_4xb4_160k_ade20k_512x512.py',
                        **{'data_preprocessor.size': (64, 96)})
    assert model.decode_head.in_channels == [48, 96, 192, 384]
    _train_step(cfg, model, _seg_batch(cfg.model.decode_head.num_classes))


def test_segmentor_pretrained_goes_to_init_cfg():
    """mmseg's EncoderDecoder hands its ``pretrained`` to the backbone (the failure was a
    TypeError): it becomes the backbone's Pretrained init_cfg, with a deprecation warning;
    with an init_cfg as well, the error names the fix."""
    cfg = Config.fromfile(EXAMPLES / 'upernet_tinyvim_b_4xb4_160k_ade20k_512x512.py')
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    cfg.model.pretrained = 'checkpoints/tinyvim-b_in1k.pth'
    both = copy.deepcopy(cfg.model)  # mmseg writes `pretrained` into the backbone dict
    cfg.model.backbone.init_cfg = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = MODELS.build(cfg.model)
    assert model.backbone.init_cfg == dict(type='Pretrained',
                                           checkpoint='checkpoints/tinyvim-b_in1k.pth')
    assert any('pretrained' in str(w.message) and 'deprecated' in str(w.message) for w in caught)
    with pytest.raises(ValueError, match='model.pretrained=None'):
        MODELS.build(both)


@pytest.mark.parametrize('name,key,bad', [
    ('retinanet_tinyvim_b_fpn_1x_coco.py', 'neck.in_channels', [256, 512, 1024, 2048]),
    ('upernet_tinyvim_b_4xb4_160k_ade20k_512x512.py', 'decode_head.in_channels',
     [48, 96, 192, 512]),
    ('upernet_tinyvim_b_4xb4_160k_ade20k_512x512.py', 'auxiliary_head.in_channels', 1024),
])
def test_wrong_in_channels_fail_at_build(name, key, bad):
    cfg = Config.fromfile(EXAMPLES / name)
    cfg.merge_from_dict({f'model.{key}': bad})
    with pytest.raises(ValueError, match=r'in_channels.*\[48, 96, 192, 384\] channels'):
        check_in_channels(cfg.model)
