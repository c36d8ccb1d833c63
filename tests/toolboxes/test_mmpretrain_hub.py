"""mmpretrain knows our models by name: list_models, get_model, inference_model and
ImageClassificationInferencer (the ModelHub registration of ``tinyvim_mm_compat``)."""
import numpy as np
import pytest
import torch

mmpretrain = pytest.importorskip('mmpretrain')


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """mmpretrain's inferencers build their pipelines in the current default scope, which
    earlier tests of this process may have set to mmdet / mmseg."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def test_list_models():
    names = mmpretrain.list_models('*tinyvim*')
    for arch in 'sbl':
        assert f'tinyvim_{arch}_8xb128_in1k' in names
        assert f'tinyvim_{arch}_8xb128_in1k_noteacher' in names
    assert not [n for n in names if 'mask_rcnn' in n or 'fpn' in n]  # classification only


def test_get_model_inference_and_inferencer(tmp_path):
    model = mmpretrain.get_model('tinyvim_s_8xb128_in1k_noteacher')
    assert type(model.backbone).__name__ == 'TinyViM' and model.head.num_classes == 1000
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    result = mmpretrain.inference_model('tinyvim_s_8xb128_in1k_noteacher', image)
    assert 0 <= result['pred_label'] < 1000 and 0 <= result['pred_score'] <= 1
    ckpt = tmp_path / 'toy.pth'
    toy = mmpretrain.get_model('tinyvim_s_toy_imagenet')
    torch.save({'state_dict': toy.state_dict()}, ckpt)
    inferencer = mmpretrain.ImageClassificationInferencer('tinyvim_s_toy_imagenet',
                                                          pretrained=str(ckpt))
    (pred, ) = inferencer(image)
    assert len(pred['pred_scores']) == 10
